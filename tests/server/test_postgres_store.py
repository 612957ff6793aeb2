"""What only the PostgreSQL store has to show: migrations, several nodes on one database
(appending, compacting, the log becoming visible in seq order), a server restart, and a
large log. The shared contract is in test_store_contract.py."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import asyncpg
import pycrdt
import pytest

from crdt.compaction import compact
from crdt.errors import InvalidUpdate
from server.errors import StoreError, StoreUnavailable
from server.store.migrate import migrate
from server.store.migrations import POSTGRES, available_migrations
from server.store.pgdriver import LOG_ORDER_LOCK_CLASS
from server.store.ports import LOCAL_ORIGIN, AppendRow, DocumentLog, LogRow
from server.store.postgres import PostgresStore

from ..pg_cluster import PgCluster, free_port

Nodes = tuple[PostgresStore, PostgresStore]  # two nodes of one site, on one database
VERSIONS = [migration.version for migration in available_migrations()]


def typed(text: str, *, per_typist: int) -> list[bytes]:
    """One update per character of `text`, typed at the end of a shared Text by typists who
    take turns (each a fresh Doc, so its own client id, starting from the state so far).
    Turns keep generation fast: pycrdt slows down as one client's history grows."""
    updates: list[bytes] = []
    state: bytes | None = None
    end = 0  # pycrdt 0.14 indexes Text by UTF-8 byte, not by character
    for start in range(0, len(text), per_typist):
        doc = pycrdt.Doc()
        if state is not None:
            doc.apply_update(state)
        shared = doc.get("t", type=pycrdt.Text)
        subscription = doc.observe(lambda event: updates.append(event.update))
        for char in text[start : start + per_typist]:
            shared.insert(end, char)
            end += len(char.encode())
        doc.unobserve(subscription)
        state = doc.get_update()
    return updates


def distinct_chars(n: int) -> str:
    return "".join(chr(0x4E00 + i) for i in range(n))  # CJK ideographs: n distinct characters


def text_of(log: DocumentLog) -> str:
    doc = pycrdt.Doc()
    for update in log.all_updates():
        doc.apply_update(update)
    return str(doc.get("t", type=pycrdt.Text))


async def until(condition: Callable[[], Awaitable[bool]], timeout: float = 10) -> None:
    """Re-check `condition` (each check awaits the database) until it holds."""
    async with asyncio.timeout(timeout):
        while not await condition():
            pass


@pytest.fixture
async def sql(pg_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection to the test database, to look at the tables directly."""
    conn = await asyncpg.connect(pg_dsn)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def nodes(pg_dsn: str) -> AsyncIterator[Nodes]:
    """Two stores on one database, as two nodes of a site have."""
    a, b = PostgresStore(pg_dsn), PostgresStore(pg_dsn)
    await a.open()
    await b.open()
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def advisory_locks(sql: asyncpg.Connection, *, granted: bool) -> int:
    return int(
        await sql.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted = $1 "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            granted,
        )
    )


class BlockingMerge:
    """A merge that signals when it runs and then waits (in its worker thread) for `release`;
    it records whether two merges ever ran at once."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._active = 0
        self.overlapped = False
        self.merging = asyncio.Event()
        self.release = asyncio.Event()

    def __call__(self, batch: list[bytes]) -> bytes:
        with self._lock:
            self._active += 1
            self.overlapped = self.overlapped or self._active > 1
        try:
            self._loop.call_soon_threadsafe(self.merging.set)
            asyncio.run_coroutine_threadsafe(self.release.wait(), self._loop).result(10)
            return compact(batch)
        finally:
            with self._lock:
                self._active -= 1


# -- migrations --


async def test_migrating_twice_applies_nothing_the_second_time(pg_dsn: str, sql: asyncpg.Connection) -> None:
    assert await migrate(pg_dsn) == VERSIONS
    assert await migrate(pg_dsn) == []
    rows = await sql.fetch("SELECT version FROM samen_schema_migrations ORDER BY version")
    assert [row["version"] for row in rows] == VERSIONS
    tables = await sql.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    # The store's tables (the domain's migrations add more: people, tokens, ...).
    assert {row["tablename"] for row in tables} >= {
        "updates",
        "snapshots",
        "federation_cursors",
        "federation_spaces",
        "samen_schema_migrations",
    }


async def test_concurrent_migrations_apply_each_version_once(pg_dsn: str, sql: asyncpg.Connection) -> None:
    results = await asyncio.gather(migrate(pg_dsn), migrate(pg_dsn), migrate(pg_dsn))
    assert sorted(results) == [[], [], VERSIONS]
    assert await sql.fetchval("SELECT count(*) FROM samen_schema_migrations") == len(VERSIONS)


async def test_a_database_from_a_newer_release_is_refused(pg_dsn: str, sql: asyncpg.Connection) -> None:
    await migrate(pg_dsn)
    await sql.execute("INSERT INTO samen_schema_migrations (version) VALUES (9999)")
    with pytest.raises(StoreError, match="9999"):
        await PostgresStore(pg_dsn).open()


async def test_the_tables_go_to_the_schema_of_the_dsn_search_path(
    pg_dsn: str, sql: asyncpg.Connection
) -> None:
    await sql.execute("CREATE SCHEMA samen_site")
    store = PostgresStore(f"{pg_dsn}?search_path=samen_site")
    await store.open()
    try:
        await store.append([AppendRow("doc", b"x")])
        assert await store.last_seq() == 1  # its sequence is found there too
    finally:
        await store.close()
    tables = await sql.fetch("SELECT schemaname, tablename FROM pg_tables WHERE tablename = 'updates'")
    assert [tuple(row) for row in tables] == [("samen_site", "updates")]


# The PostgreSQL schema as the released versions 1 and 2 wrote it (their SQL files then).
RELEASED_VERSION_1 = """
CREATE TABLE updates (
    seq  bigserial   PRIMARY KEY,
    doc  text        NOT NULL,
    data bytea       NOT NULL,
    at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX updates_doc_seq ON updates (doc, seq);
CREATE TABLE snapshots (
    doc         text        PRIMARY KEY,
    data        bytea       NOT NULL,
    through_seq bigint      NOT NULL,
    at          timestamptz NOT NULL DEFAULT now()
);
"""
RELEASED_VERSION_2 = """
ALTER TABLE updates ADD COLUMN origin text NOT NULL DEFAULT '';
CREATE TABLE federation_cursors (
    peer      text        PRIMARY KEY,
    acked_seq bigint      NOT NULL,
    at        timestamptz NOT NULL DEFAULT now()
);
"""


async def released_database(sql: asyncpg.Connection, version: int) -> None:
    await sql.execute(
        "CREATE TABLE samen_schema_migrations "
        "(version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
    )
    for number, schema in enumerate((RELEASED_VERSION_1, RELEASED_VERSION_2)[:version], start=1):
        await sql.execute(schema)
        await sql.execute("INSERT INTO samen_schema_migrations (version) VALUES ($1)", number)


async def test_a_database_at_version_1_is_migrated(pg_dsn: str, sql: asyncpg.Connection) -> None:
    # What release 1 left behind: its tables and version, log rows and a snapshot.
    await released_database(sql, 1)
    updates = typed("abcdef", per_typist=3)
    await sql.execute(
        "INSERT INTO snapshots (doc, data, through_seq) VALUES ('doc', $1, 0)", compact(updates[:2])
    )
    await sql.execute("INSERT INTO updates (doc, data) SELECT 'doc', unnest($1::bytea[])", updates[2:5])

    store = PostgresStore(pg_dsn)
    await store.open()
    try:
        rows = await sql.fetch("SELECT version FROM samen_schema_migrations ORDER BY version")
        assert [row["version"] for row in rows] == VERSIONS
        assert [(row.seq, row.origin, row.author) for row in await store.read_log_after(0, 10)] == [
            (1, "", ""),
            (2, "", ""),
            (3, "", ""),
        ]
        assert await store.last_seq() == 3
        await store.append([AppendRow("doc", updates[5], "site-b", "bob@site-b")])
        assert (await store.read_log_after(3, 10)) == [LogRow(4, "doc", updates[5], "site-b", "bob@site-b")]
        await store.set_cursor("site-b", 2)
        assert await store.get_cursor("site-b") == 2
        assert await store.compact("doc", compact, keep_after=2) == 2
        assert text_of(await store.load("doc")) == "abcdef"
    finally:
        await store.close()
    assert await migrate(pg_dsn) == []


async def test_a_database_at_version_2_gets_authors(pg_dsn: str, sql: asyncpg.Connection) -> None:
    await released_database(sql, 2)
    updates = typed("wxyz", per_typist=2)
    await sql.execute(
        "INSERT INTO updates (doc, data, origin) SELECT 'doc', * FROM unnest($1::bytea[], $2::text[])",
        updates[:3],
        ["", "site-b", ""],
    )
    await sql.execute("INSERT INTO federation_cursors (peer, acked_seq) VALUES ('site-b', 2)")
    assert await migrate(pg_dsn) == VERSIONS[2:]
    store = PostgresStore(pg_dsn)
    await store.open()
    try:
        rows = await store.read_log_after(0, 10)
        assert [(row.origin, row.author) for row in rows] == [("", ""), ("site-b", ""), ("", "")]
        assert await store.get_cursor("site-b") == 2
        await store.append([AppendRow("doc", updates[3], LOCAL_ORIGIN, "ann@here")])
        assert (await store.read_log_after(3, 10))[0].author == "ann@here"
        assert text_of(await store.load("doc")) == "wxyz"
    finally:
        await store.close()


def test_the_shared_schema_renders_what_release_2_wrote() -> None:
    # Existing databases were made by the released files: the shared templates must mean the
    # same thing for PostgreSQL (compared without whitespace and comments).
    def squash(sql: str) -> str:
        lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
        return "".join("".join(lines).split()).replace("IFNOTEXISTS", "")

    rendered = [migration.render(POSTGRES) for migration in available_migrations()[:2]]
    assert [squash(sql) for sql in rendered] == [squash(RELEASED_VERSION_1), squash(RELEASED_VERSION_2)]


# -- errors --


async def test_open_without_a_server_is_unavailable() -> None:
    store = PostgresStore(f"postgresql://samen:secret@127.0.0.1:{free_port()}/samen")
    where = r"connecting to postgresql://samen:\*\*\*@127\.0\.0\.1"  # and no password
    with pytest.raises(StoreUnavailable, match=where) as caught:
        await store.open()
    assert "secret" not in str(caught.value)
    with pytest.raises(StoreUnavailable):
        await migrate(f"postgresql://samen@127.0.0.1:{free_port()}/samen")


async def test_sql_errors_are_store_errors_not_unavailability(nodes: Nodes, sql: asyncpg.Connection) -> None:
    a, _ = nodes
    await sql.execute("ALTER TABLE updates RENAME TO moved_away")
    with pytest.raises(StoreError) as caught:
        await a.append([AppendRow("doc", b"x")])
    assert not isinstance(caught.value, StoreUnavailable)


async def test_merge_errors_propagate_unchanged_and_leave_the_log(nodes: Nodes) -> None:
    a, _ = nodes
    await a.append([AppendRow("doc", update) for update in typed("abc", per_typist=3)])
    await a.append([AppendRow("doc", b"\xff not an update")])
    with pytest.raises(InvalidUpdate):
        await a.compact("doc", compact)

    def unreadable_disk(batch: list[bytes]) -> bytes:
        raise OSError("not a PostgreSQL problem")

    # An OSError from PostgreSQL means "unavailable"; one from merge must not read as that.
    with pytest.raises(OSError, match="not a PostgreSQL problem") as caught:
        await a.compact("doc", unreadable_disk)
    assert not isinstance(caught.value, StoreError)
    assert await a.log_length("doc") == 4


# -- several nodes on one database --


async def test_appends_from_one_node_survive_compactions_by_another(
    nodes: Nodes,
) -> None:
    a, b = nodes
    text = distinct_chars(1500)
    updates = typed(text, per_typist=500)
    batches = iter([updates[i : i + 3] for i in range(0, len(updates), 3)])
    appended = 0
    compactions: list[int] = []

    async def append_all() -> None:  # three at once on A's pool: commits overtake each other
        nonlocal appended
        for batch in batches:
            await a.append([AppendRow("doc", update) for update in batch])
            appended += len(batch)

    async def compact_until_done(appending: asyncio.Task[list[None]]) -> None:
        while not appending.done():
            compactions.append(await b.compact("doc", compact))

    appending = asyncio.ensure_future(asyncio.gather(append_all(), append_all(), append_all()))
    await asyncio.gather(appending, compact_until_done(appending))

    assert appended == len(updates)
    assert sum(1 for removed in compactions if removed) >= 2, compactions  # they did interleave
    assert text_of(await a.load("doc")) == text
    await b.compact("doc", compact)
    after = await b.load("doc")
    assert after.updates == [] and text_of(after) == text


async def test_a_row_committed_late_with_a_lower_seq_survives_compaction(
    nodes: Nodes, sql: asyncpg.Connection, pg_dsn: str
) -> None:
    a, b = nodes
    first, late, third = typed("xyz", per_typist=3)
    await a.append([AppendRow("doc", first)])
    # A transaction takes its seq now but commits only after the compaction has read the log
    # (a writer that skips the log-order lock; `append` cannot do this any more).
    slow = await asyncpg.connect(pg_dsn)
    try:
        transaction = slow.transaction()
        await transaction.start()
        await slow.execute("INSERT INTO updates (doc, data) VALUES ('doc', $1)", late)
        await a.append([AppendRow("doc", third)])  # a higher seq, committed first
        assert await b.compact("doc", compact) == 2
        await transaction.commit()
    finally:
        await slow.close()
    loaded = await a.load("doc")
    assert loaded.updates == [late] and text_of(loaded) == "xyz"
    assert await sql.fetchval("SELECT through_seq FROM snapshots WHERE doc = 'doc'") > loaded.last_seq
    # The next compaction merges the late row without moving through_seq back.
    assert await b.compact("doc", compact) == 1
    assert text_of(await a.load("doc")) == "xyz"


async def test_a_compaction_that_meets_a_concurrent_change_is_retried(
    nodes: Nodes, sql: asyncpg.Connection
) -> None:
    a, _ = nodes
    updates = typed("retry", per_typist=5)
    await a.append([AppendRow("doc", update) for update in updates[:2]])
    await a.compact("doc", compact)
    await a.append([AppendRow("doc", update) for update in updates[2:]])
    loop = asyncio.get_running_loop()
    calls = 0

    def merge_meeting_a_rogue_writer(batch: list[bytes]) -> bytes:
        # The first time, something that skips the advisory lock changes the snapshot after
        # the compaction's transaction read it: its upsert must fail to serialise, and retry.
        nonlocal calls
        calls += 1
        if calls == 1:
            touch = sql.execute("UPDATE snapshots SET at = now() WHERE doc = 'doc'")
            asyncio.run_coroutine_threadsafe(touch, loop).result(10)
        return compact(batch)

    assert await a.compact("doc", merge_meeting_a_rogue_writer) == 3
    assert calls == 2
    assert text_of(await a.load("doc")) == "retry"


async def test_compactions_on_two_nodes_take_turns(nodes: Nodes, sql: asyncpg.Connection) -> None:
    a, b = nodes
    await a.append([AppendRow("doc", update) for update in typed("hello", per_typist=5)])
    merge = BlockingMerge(asyncio.get_running_loop())
    first = asyncio.create_task(a.compact("doc", merge))
    await asyncio.wait_for(merge.merging.wait(), 10)
    second = asyncio.create_task(b.compact("doc", merge))

    async def second_is_waiting() -> bool:
        return await advisory_locks(sql, granted=False) == 1

    await until(second_is_waiting)
    merge.release.set()
    assert sorted(await asyncio.gather(first, second)) == [0, 5]
    assert not merge.overlapped
    assert await advisory_locks(sql, granted=True) == 0  # both unlocked


async def test_a_cancelled_compaction_releases_its_lock(nodes: Nodes, sql: asyncpg.Connection) -> None:
    a, b = nodes
    await a.append([AppendRow("doc", update) for update in typed("hello", per_typist=5)])
    merge = BlockingMerge(asyncio.get_running_loop())
    merging = asyncio.create_task(a.compact("doc", merge))
    await asyncio.wait_for(merge.merging.wait(), 10)
    waiting = asyncio.create_task(b.compact("doc", compact))

    async def b_is_waiting() -> bool:
        return await advisory_locks(sql, granted=False) == 1

    await until(b_is_waiting)
    waiting.cancel()  # cancelled while waiting for the lock
    with pytest.raises(asyncio.CancelledError):
        await waiting
    merging.cancel()  # cancelled while merging, holding the lock
    with pytest.raises(asyncio.CancelledError):
        await merging
    merge.release.set()  # let the orphaned merge thread finish
    assert await a.log_length("doc") == 5  # the cancelled compaction changed nothing
    async with asyncio.timeout(10):  # would hang if a lock had leaked
        assert await b.compact("doc", compact) == 5
    assert await advisory_locks(sql, granted=True) == 0


async def test_a_reader_tailing_the_log_sees_every_row_once_while_two_nodes_append(
    nodes: Nodes, pg_dsn: str
) -> None:
    # Each node appends from several tasks at once (several pool connections), so seqs are
    # taken and committed concurrently on both nodes. Without the log-order lock a commit can
    # overtake one with a lower seq, and the tailer, whose cursor has passed that seq by then,
    # skips the late row for good.
    a, b = nodes
    reader = PostgresStore(pg_dsn)
    await reader.open()
    appended: list[bytes] = []

    async def append_many(node: PostgresStore, who: str) -> None:
        for i in range(60):
            batch = [f"{who}/{i}/{j}".encode() for j in range(1 + i % 3)]
            await node.append([AppendRow(f"doc-{i % 4}", update) for update in batch])
            appended.extend(batch)

    seen: list[LogRow] = []

    async def tail(appending: asyncio.Future[list[None]]) -> None:
        cursor = 0
        while True:
            finished = appending.done()  # before the read: a read after the last commit sees all
            rows = await reader.read_log_after(cursor, 50)
            seen.extend(rows)
            if rows:
                cursor = rows[-1].seq
            elif finished:
                return

    try:
        workers = [append_many(node, f"{name}{w}") for name, node in (("a", a), ("b", b)) for w in range(4)]
        appending = asyncio.ensure_future(asyncio.gather(*workers))
        async with asyncio.timeout(60):
            await asyncio.gather(appending, tail(appending))
    finally:
        await reader.close()
    seqs = [row.seq for row in seen]
    assert seqs == sorted(set(seqs))  # in seq order, none twice
    assert len(appended) == 8 * sum(1 + i % 3 for i in range(60))
    missed = set(appended) - {row.update for row in seen}
    assert not missed, f"the tailer skipped {len(missed)} of {len(appended)} rows"
    assert len(seen) == len(appended)
    assert await a.last_seq() == seqs[-1]


async def test_last_seq_waits_for_an_append_between_its_seq_and_its_commit(
    nodes: Nodes, sql: asyncpg.Connection, pg_dsn: str
) -> None:
    # A reader starting after last_seq() must miss nothing: the value may not belong to a row
    # that is still to commit.
    a, _ = nodes
    await a.append([AppendRow("doc", b"1")])
    slow = await asyncpg.connect(pg_dsn)
    try:
        transaction = slow.transaction()
        await transaction.start()
        # What `append` does, with its commit held back.
        await slow.execute("SELECT pg_advisory_xact_lock($1, 0)", LOG_ORDER_LOCK_CLASS)
        seq = await slow.fetchval("INSERT INTO updates (doc, data) VALUES ('doc', '2') RETURNING seq")
        reading = asyncio.create_task(a.last_seq())

        async def reading_waits() -> bool:
            return await advisory_locks(sql, granted=False) == 1

        await until(reading_waits)
        assert not reading.done()
        await transaction.commit()
    finally:
        await slow.close()
    assert await asyncio.wait_for(reading, 10) == seq
    assert [row.update for row in await a.read_log_after(seq - 1, 10)] == [b"2"]


# -- a server restart --


@pytest.fixture
def own_cluster() -> Iterator[PgCluster]:
    """A cluster of this test's own, so stopping it disturbs no other test."""
    with PgCluster() as cluster:
        yield cluster


async def append_with_retries(store: PostgresStore, rows: list[AppendRow], attempts: int = 3) -> int:
    """Append like the group-commit writer would; returns how many attempts it took."""
    for attempt in range(1, attempts + 1):
        try:
            await store.append(rows)
            return attempt
        except StoreUnavailable:
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_the_store_recovers_from_a_server_restart(own_cluster: PgCluster, mode: str) -> None:
    first, second = typed("ok", per_typist=2)
    store = PostgresStore(own_cluster.dsn(), min_connections=2, max_connections=4)
    await store.open()
    try:
        await store.append([AppendRow("doc", first)])
        merge = BlockingMerge(asyncio.get_running_loop())
        compaction = asyncio.create_task(store.compact("doc", merge))
        await asyncio.wait_for(merge.merging.wait(), 10)  # its transaction is open

        await asyncio.to_thread(own_cluster.stop, mode)
        with pytest.raises(StoreUnavailable):
            await store.ping()
        with pytest.raises(StoreUnavailable):
            await store.append([AppendRow("doc", second)])
        merge.release.set()
        with pytest.raises(StoreUnavailable):
            await compaction

        await asyncio.to_thread(own_cluster.start)
        # The first call after the restart may still meet a connection of the old server.
        assert await append_with_retries(store, [AppendRow("doc", second)]) <= 2
        await store.ping()
        assert await store.log_length("doc") == 2  # the interrupted compaction changed nothing
        assert text_of(await store.load("doc")) == "ok"
        assert await store.compact("doc", compact) == 2
    finally:
        await store.close()


# -- a large log --


async def test_a_hundred_thousand_updates_load_and_compact(nodes: Nodes, sql: asyncpg.Connection) -> None:
    a, _ = nodes
    text = "".join(chr(ord("a") + i % 26) for i in range(100_000))
    updates = typed(text, per_typist=10_000)
    for start in range(0, len(updates), 1000):
        await a.append([AppendRow("big", update) for update in updates[start : start + 1000]])
    assert await sql.fetchval("SELECT count(*) FROM updates WHERE doc = 'big'") == 100_000
    loaded = await a.load("big")
    assert loaded.updates == updates and text_of(loaded) == text
    assert await a.compact("big", compact) == 100_000
    assert await sql.fetchval("SELECT count(*) FROM updates WHERE doc = 'big'") == 0
    after = await a.load("big")
    assert after.snapshot is not None and after.updates == []
    assert text_of(after) == text
