"""The store contract (both ports), run against every backend (the `store` fixture); at the
end, the migration files and the SQLite store's schema upgrades (PostgreSQL's migrations are
in test_postgres_store.py)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pycrdt
import pytest

from crdt.compaction import compact
from server.errors import StoreError
from server.store.migrations import POSTGRES, SQLITE, Migration, available_migrations, pending
from server.store.ports import LOCAL_ORIGIN, AppendRow, DocumentLog, KeptRow, LogRow, Store
from server.store.sqlite import SQLiteStore

SCHEMA_VERSION = len(available_migrations())


def typing_updates(n: int) -> list[bytes]:
    doc = pycrdt.Doc()
    text = doc.get("t", type=pycrdt.Text)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    for i in range(n):
        text += str(i % 10)
    return updates


def local(doc: str, updates: list[bytes]) -> list[AppendRow]:
    return [AppendRow(doc, update) for update in updates]


async def whole_log(store: Store) -> list[LogRow]:
    return await store.read_log_after(0, 1_000_000)


async def test_empty_document_loads_empty(store: Store) -> None:
    log = await store.load("nothing-here")
    assert log.snapshot is None and log.updates == [] and log.all_updates() == []


async def test_append_keeps_order_per_document(store: Store) -> None:
    await store.append([AppendRow("a", b"1"), AppendRow("b", b"x"), AppendRow("a", b"2")])
    await store.append([AppendRow("a", b"3")])
    assert (await store.load("a")).updates == [b"1", b"2", b"3"]
    assert (await store.load("b")).updates == [b"x"]
    assert await store.log_length("a") == 3


def text_after_loading(log: DocumentLog) -> str:
    doc = pycrdt.Doc()
    for update in log.all_updates():
        doc.apply_update(update)
    return str(doc.get("t", type=pycrdt.Text))


async def test_compaction_merges_the_log_into_a_snapshot(store: Store) -> None:
    updates = typing_updates(10)
    await store.append(local("doc", updates))
    await store.append(local("other", updates[:1]))
    removed = await store.compact("doc", compact)
    assert removed == 10
    after = await store.load("doc")
    assert after.snapshot is not None and after.updates == []
    assert text_after_loading(after) == "0123456789"
    assert await store.log_length("doc") == 0
    assert await store.log_length("other") == 1  # other documents are untouched


async def test_rows_appended_during_compaction_are_kept(store: Store) -> None:
    updates = typing_updates(10)
    await store.append(local("doc", updates[:6]))
    merging = asyncio.Event()
    release = asyncio.Event()

    def slow_merge(batch: list[bytes]) -> bytes:
        merged = compact(batch)
        loop.call_soon_threadsafe(merging.set)
        asyncio.run_coroutine_threadsafe(release.wait(), loop).result(10)
        return merged

    loop = asyncio.get_running_loop()
    compaction = asyncio.create_task(store.compact("doc", slow_merge))
    await asyncio.wait_for(merging.wait(), 10)
    await store.append(local("doc", updates[6:]))  # written while compacting
    release.set()
    assert await compaction == 6
    after = await store.load("doc")
    assert after.updates == updates[6:]
    assert text_after_loading(after) == "0123456789"


async def test_compactions_of_one_document_do_not_overlap(store: Store) -> None:
    await store.append(local("doc", typing_updates(5)))
    active = 0
    overlapped = False

    def merge(batch: list[bytes]) -> bytes:
        nonlocal active, overlapped
        active += 1
        overlapped = overlapped or active > 1
        try:
            return compact(batch)
        finally:
            active -= 1

    results = await asyncio.gather(store.compact("doc", merge), store.compact("doc", merge))
    assert sorted(results) == [0, 5] and not overlapped
    assert text_after_loading(await store.load("doc")) == "01234"


async def test_ping(store: Store) -> None:
    await store.ping()


# -- federation: origins, reading the log in seq order, cursors, keeping unacknowledged rows --


async def test_origins_and_authors_round_trip_through_the_log(store: Store) -> None:
    await store.append(
        [
            AppendRow("a", b"mine", LOCAL_ORIGIN, "ann@here"),
            AppendRow("a", b"theirs", "site-b", "bob@site-b"),
            AppendRow("b", b"c's", "site-c"),  # the server's: no author
        ]
    )
    rows = await whole_log(store)
    assert [(row.doc, row.update, row.origin, row.author) for row in rows] == [
        ("a", b"mine", "", "ann@here"),
        ("a", b"theirs", "site-b", "bob@site-b"),
        ("b", b"c's", "site-c", ""),
    ]
    assert (await store.load("a")).updates == [b"mine", b"theirs"]  # loading ignores both


async def test_read_log_after_pages_through_every_document_in_seq_order(store: Store) -> None:
    appended: list[tuple[str, bytes]] = []
    for batch in range(5):
        rows = [AppendRow(f"doc-{(batch + i) % 3}", f"{batch}.{i}".encode()) for i in range(batch + 1)]
        await store.append(rows)
        appended += [(row.doc, row.update) for row in rows]
    pages: list[list[LogRow]] = []
    cursor = 0
    while page := await store.read_log_after(cursor, 4):
        pages.append(page)
        cursor = page[-1].seq
    assert [len(page) for page in pages] == [4, 4, 4, 3]  # 15 rows, at most `limit` a page
    rows = [row for page in pages for row in page]
    assert [(row.doc, row.update) for row in rows] == appended  # append order across documents
    seqs = [row.seq for row in rows]
    assert seqs == sorted(set(seqs)) and seqs[0] > 0
    assert await store.read_log_after(seqs[-1], 4) == []
    assert await store.read_log_after(seqs[5], 2) == rows[6:8]  # from any seq, not only a page's end
    with pytest.raises(ValueError):
        await store.read_log_after(0, 0)


async def test_last_seq_never_decreases(store: Store) -> None:
    assert await store.last_seq() == 0
    updates = typing_updates(4)
    await store.append(local("doc", updates))
    newest = (await whole_log(store))[-1].seq
    assert await store.last_seq() == newest
    # Compaction deletes the newest rows of the log; the highest seq ever appended stays.
    assert await store.compact("doc", compact) == 4
    assert await whole_log(store) == []
    assert await store.last_seq() == newest
    await store.append(local("doc", updates[:1]))
    after = await store.last_seq()
    assert after > newest and after == (await whole_log(store))[-1].seq


async def test_cursors_start_at_zero_and_only_move_forward(store: Store) -> None:
    assert await store.get_cursor("site-b") == 0
    await store.set_cursor("site-b", 5)
    assert await store.get_cursor("site-b") == 5
    await store.set_cursor("site-b", 3)  # a late acknowledgement
    assert await store.get_cursor("site-b") == 5
    await store.set_cursor("site-b", 5)
    await store.set_cursor("site-b", 9)
    assert await store.get_cursor("site-b") == 9
    assert await store.get_cursor("site-c") == 0  # one cursor per peer
    await store.set_cursor("site-c", 2)
    assert (await store.get_cursor("site-b"), await store.get_cursor("site-c")) == (9, 2)


async def test_compaction_keeps_the_rows_after_keep_after(store: Store) -> None:
    updates = typing_updates(10)
    for i, update in enumerate(updates):  # another document's rows in between
        await store.append([AppendRow("doc", update), AppendRow("other", f"{i}".encode())])
    seqs = [row.seq for row in await whole_log(store) if row.doc == "doc"]
    keep_after = seqs[5] + 1  # between two of doc's rows: an "other" row's seq
    assert await store.compact("doc", compact, keep_after=keep_after) == 6
    kept = [row for row in await whole_log(store) if row.doc == "doc"]
    assert [row.seq for row in kept] == seqs[6:]  # exactly the rows after keep_after...
    assert [row.update for row in kept] == updates[6:]
    after = await store.load("doc")
    assert after.snapshot is not None and after.updates == updates[6:]  # ...merged all the same
    assert text_after_loading(after) == "0123456789"
    assert await store.log_length("other") == 10

    # Once the peers caught up, the kept rows go; the content stays whole throughout.
    assert await store.compact("doc", compact, keep_after=seqs[7]) == 2
    assert [row.update for row in await whole_log(store) if row.doc == "doc"] == updates[8:]
    assert text_after_loading(await store.load("doc")) == "0123456789"
    assert await store.compact("doc", compact, keep_after=seqs[-1] + 100) == 2
    after = await store.load("doc")
    assert after.updates == [] and text_after_loading(after) == "0123456789"


async def test_compaction_with_nothing_acknowledged_deletes_nothing(store: Store) -> None:
    updates = typing_updates(5)
    await store.append(local("doc", updates))
    assert await store.compact("doc", compact, keep_after=0) == 0
    after = await store.load("doc")
    assert after.snapshot is not None and after.updates == updates
    assert text_after_loading(after) == "01234"


def per_author(kept: Sequence[KeptRow]) -> list[list[int]]:
    """A catch-up plan: every kept row, one group per (origin, author)."""
    groups: dict[tuple[str, str], list[int]] = {}
    for row in kept:
        groups.setdefault((row.origin, row.author), []).append(row.seq)
    return list(groups.values())


async def test_compaction_does_not_merge_kept_rows_again(store: Store) -> None:
    updates = typing_updates(6)
    await store.append(local("doc", updates[:4]))
    merged: list[int] = []

    def counting(batch: list[bytes]) -> bytes:
        merged.append(len(batch))
        return compact(batch)

    assert await store.compact("doc", counting, keep_after=0) == 0  # all 4 kept for a peer
    await store.append(local("doc", updates[4:]))
    assert await store.compact("doc", counting, keep_after=0) == 0
    assert merged == [4, 1 + 2]  # the snapshot and the 2 new rows: not the 4 kept ones again
    assert await store.compact("doc", counting, keep_after=0) == 0
    assert merged == [4, 3]  # nothing new: no merge at all
    # The peer acknowledged: the kept rows go, though no row is new.
    assert await store.compact("doc", counting, keep_after=await store.last_seq()) == 6
    assert merged == [4, 3]
    after = await store.load("doc")
    assert after.updates == [] and text_after_loading(after) == "012345"


async def test_kept_rows_are_merged_again_once_their_snapshot_is_quarantined(store: Store) -> None:
    updates = typing_updates(4)
    await store.append(local("doc", updates))
    await store.compact("doc", compact, keep_after=0)  # all 4 kept, in the snapshot
    snapshot = (await store.load("doc")).snapshot
    assert snapshot is not None and await store.quarantine("doc", snapshot, "test") == 1
    # The kept rows are all that is left: the next compaction merges them into a new snapshot.
    assert await store.compact("doc", compact, keep_after=await store.last_seq()) == 4
    after = await store.load("doc")
    assert after.updates == [] and text_after_loading(after) == "0123"


async def test_kept_rows_are_merged_into_catchup_rows_as_planned(store: Store) -> None:
    updates = typing_updates(12)
    who = [("", "ann@here"), ("", "bob@here"), ("site-b", "cy@site-b"), ("", "")]
    await store.append([AppendRow("doc", u, *who[i % 4]) for i, u in enumerate(updates)])
    await store.append([AppendRow("other", b"o")])
    seqs = [row.seq for row in await whole_log(store) if row.doc == "doc"]
    assert await store.compact("doc", compact, keep_after=seqs[3]) == 4  # 8 kept for a peer
    assert await store.rows_after(seqs[3]) == 9  # doc's 8 and other's 1
    shown: list[list[KeptRow]] = []

    def nothing(kept: Sequence[KeptRow]) -> list[list[int]]:
        shown.append(list(kept))
        return []

    assert await store.merge_kept_rows("doc", compact, seqs[3], nothing) == 0
    assert shown == [[KeptRow(seq, *who[i % 4], 0) for i, seq in enumerate(seqs) if i > 3]]
    last_before = await store.last_seq()

    assert await store.merge_kept_rows("doc", compact, seqs[3], per_author) == 8
    kept = [row for row in await whole_log(store) if row.doc == "doc"]
    # One row per (origin, author), after every row there was: every cursor still finds them.
    assert sorted((row.origin, row.author) for row in kept) == sorted(who)
    assert all(row.seq > last_before for row in kept)
    assert text_after_loading(await store.load("doc")) == "012345678901"
    assert await store.log_length("other") == 1
    # What a peer at the cursor still needs is whole: the snapshot it has plus the rows.
    at_cursor = pycrdt.Doc()
    for update in updates[:4]:
        at_cursor.apply_update(update)
    for row in await store.read_log_after(seqs[3], 100):
        if row.doc == "doc":
            at_cursor.apply_update(row.update)
    assert str(at_cursor.get("t", type=pycrdt.Text)) == "012345678901"

    # The catch-up rows record their level: merged again, one level up.
    await store.merge_kept_rows("doc", compact, seqs[3], nothing)
    assert {row.level for row in shown[-1]} == {1}
    assert await store.merge_kept_rows("doc", compact, seqs[3], per_author) == 4
    await store.merge_kept_rows("doc", compact, seqs[3], nothing)
    assert {row.level for row in shown[-1]} == {2}
    assert text_after_loading(await store.load("doc")) == "012345678901"


async def test_a_catchup_plan_cannot_mix_authors_or_name_rows_not_kept(store: Store) -> None:
    updates = typing_updates(4)
    await store.append([AppendRow("doc", u, "", f"{i % 2}@here") for i, u in enumerate(updates)])
    seqs = [row.seq for row in await whole_log(store)]
    for plan in ([seqs[:2]], [[seqs[0]], [seqs[0]]], [[seqs[0], seqs[2], seqs[0]]], [[seqs[-1] + 1]]):
        with pytest.raises(ValueError):
            await store.merge_kept_rows("doc", compact, 0, lambda kept, plan=plan: plan)
    with pytest.raises(ValueError):  # seqs[0] is not after seqs[0]
        await store.merge_kept_rows("doc", compact, seqs[0], lambda kept: [[seqs[0], seqs[2]]])
    assert [row.update for row in await whole_log(store)] == updates  # untouched


async def test_rows_appended_during_a_catchup_merge_are_kept(store: Store) -> None:
    updates = typing_updates(8)
    await store.append(local("doc", updates[:6]))
    assert await store.compact("doc", compact, keep_after=0) == 0  # in the snapshot, kept
    merging, release = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()

    def slow_merge(batch: list[bytes]) -> bytes:
        merged = compact(batch)
        loop.call_soon_threadsafe(merging.set)
        asyncio.run_coroutine_threadsafe(release.wait(), loop).result(10)
        return merged

    squash = asyncio.create_task(store.merge_kept_rows("doc", slow_merge, 0, per_author))
    await asyncio.wait_for(merging.wait(), 10)
    await store.append(local("doc", updates[6:]))  # written while merging
    release.set()
    assert await squash == 6
    assert await store.log_length("doc") == 1 + 2
    assert text_after_loading(await store.load("doc")) == "01234567"


async def test_list_documents_pages_through_one_space(store: Store) -> None:
    names = ["eng/a", "eng/b", "eng/c/deep", "engine/x", "hr/a", "eng/é", "eng/z"]
    await store.append([AppendRow(name, b"u") for name in names])
    await store.compact("eng/b", lambda updates: updates[-1])  # a snapshot, no rows left
    assert await store.log_length("eng/b") == 0
    pages: list[list[str]] = []
    after = ""
    while page := await store.list_documents("eng/", after, 2):
        pages.append(page)
        after = page[-1]
    # Snapshots and log rows alike, each once, in code point order; "engine/" is not "eng/".
    assert pages == [["eng/a", "eng/b"], ["eng/c/deep", "eng/z"], ["eng/é"]]
    assert await store.list_documents("nothing/", "", 10) == []


async def test_synced_spaces_are_replaced_per_peer(store: Store) -> None:
    assert await store.synced_spaces("site-b") == frozenset()
    await store.set_synced_spaces("site-b", {"eng", "hr"})
    await store.set_synced_spaces("site-c", ["eng"])
    assert await store.synced_spaces("site-b") == {"eng", "hr"}
    await store.set_synced_spaces("site-b", {"hr", "ops"})
    assert await store.synced_spaces("site-b") == {"hr", "ops"}
    assert await store.synced_spaces("site-c") == {"eng"}
    await store.set_synced_spaces("site-c", [])
    assert await store.synced_spaces("site-c") == frozenset()


# -- the migration files --


def test_migrations_render_for_each_backend() -> None:
    migrations = available_migrations()
    assert [m.version for m in migrations] == list(range(1, SCHEMA_VERSION + 1))
    first = migrations[0]
    assert "INTEGER PRIMARY KEY AUTOINCREMENT" in first.render(SQLITE)
    assert "bigserial PRIMARY KEY" in first.render(POSTGRES)
    for migration in migrations:
        for dialect in (SQLITE, POSTGRES):
            assert "{" not in migration.render(dialect)
            assert all(statement.endswith(";") for statement in migration.statements(dialect))
    assert len(first.statements(SQLITE)) == 3


def test_a_bad_migration_file_is_refused() -> None:
    with pytest.raises(StoreError, match="unknown placeholder"):
        Migration(9, "0009_typo.sql", "CREATE TABLE t (x {blub});").render(SQLITE)
    with pytest.raises(StoreError, match="lacks its ';'"):
        Migration(9, "0009_open.sql", "CREATE TABLE t (x int);\nCREATE TABLE u (y int)").statements(SQLITE)
    assert [m.version for m in pending(available_migrations(), [1])] == list(range(2, SCHEMA_VERSION + 1))
    with pytest.raises(StoreError, match="newer than this server"):
        pending(available_migrations(), range(1, SCHEMA_VERSION + 2))


# -- SQLite only: schema upgrades from files the released versions made --

# The schema of the first release (version 1), as it created it.
SQLITE_VERSION_1 = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS updates (
    seq  INTEGER PRIMARY KEY AUTOINCREMENT,
    doc  TEXT NOT NULL,
    data BLOB NOT NULL,
    at   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS updates_doc_seq ON updates (doc, seq);
CREATE TABLE IF NOT EXISTS snapshots (
    doc         TEXT PRIMARY KEY,
    data        BLOB NOT NULL,
    through_seq INTEGER NOT NULL,
    at          REAL NOT NULL
);
INSERT INTO schema_version (version) VALUES (1);
"""

# What version 2 (federation) added, as its release wrote it.
SQLITE_VERSION_2 = (
    SQLITE_VERSION_1.replace("VALUES (1)", "VALUES (2)")
    + """
ALTER TABLE updates ADD COLUMN origin TEXT NOT NULL DEFAULT '';
CREATE TABLE federation_cursors (
    peer      TEXT PRIMARY KEY,
    acked_seq INTEGER NOT NULL,
    at        REAL NOT NULL
);
"""
)


def schema_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT version FROM schema_version").fetchone()[0])
    finally:
        conn.close()


def old_sqlite_file(path: Path, schema: str, rows: list[tuple[bytes, str]]) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.executescript(schema)
        with conn:
            if "origin" in schema:
                conn.executemany("INSERT INTO updates (doc, data, origin, at) VALUES ('doc', ?, ?, 0)", rows)
            else:
                conn.executemany(
                    "INSERT INTO updates (doc, data, at) VALUES ('doc', ?, 0)", [(u,) for u, _ in rows]
                )
            if "federation_cursors" in schema:
                conn.execute("INSERT INTO federation_cursors VALUES ('site-b', 2, 0)")
    finally:
        conn.close()


async def test_a_version_1_sqlite_file_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    updates = typing_updates(7)
    old_sqlite_file(path, SQLITE_VERSION_1, [(u, "") for u in updates[:6]])
    store = SQLiteStore(path)
    await store.open()
    try:
        assert store.applied == list(range(2, SCHEMA_VERSION + 1))
        assert await store.last_seq() == 6
        assert [(row.seq, row.origin, row.author) for row in await whole_log(store)] == [
            (s, "", "") for s in range(1, 7)
        ]
        assert text_after_loading(await store.load("doc")) == "012345"
        await store.append([AppendRow("doc", updates[6], "site-b", "bob@site-b")])
        assert (await whole_log(store))[-1] == LogRow(7, "doc", updates[6], "site-b", "bob@site-b")
        await store.set_cursor("site-b", 4)
        assert await store.compact("doc", compact, keep_after=4) == 4
        assert text_after_loading(await store.load("doc")) == "0123456"
    finally:
        await store.close()
    assert schema_version(path) == SCHEMA_VERSION

    again = SQLiteStore(path)  # opening an upgraded file changes nothing
    await again.open()
    try:
        assert again.applied == []
        assert await again.get_cursor("site-b") == 4
        assert await again.log_length("doc") == 3
    finally:
        await again.close()
    assert schema_version(path) == SCHEMA_VERSION


async def test_a_version_2_sqlite_file_gets_authors(tmp_path: Path) -> None:
    path = tmp_path / "v2.sqlite3"
    updates = typing_updates(4)
    old_sqlite_file(path, SQLITE_VERSION_2, [(updates[0], ""), (updates[1], "site-b"), (updates[2], "")])
    store = SQLiteStore(path)
    await store.open()
    try:
        assert store.applied == list(range(3, SCHEMA_VERSION + 1))
        rows = await whole_log(store)
        assert [(row.origin, row.author) for row in rows] == [("", ""), ("site-b", ""), ("", "")]
        assert await store.get_cursor("site-b") == 2
        await store.append([AppendRow("doc", updates[3], LOCAL_ORIGIN, "ann@here")])
        assert (await whole_log(store))[-1].author == "ann@here"
        assert text_after_loading(await store.load("doc")) == "0123"
    finally:
        await store.close()
    assert schema_version(path) == SCHEMA_VERSION


async def test_a_sqlite_file_from_a_newer_release_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite3"
    store = SQLiteStore(path)
    await store.open()
    await store.close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    conn.close()
    with pytest.raises(StoreError, match="newer than this server"):
        await SQLiteStore(path).open()


async def test_quarantine_moves_every_stored_copy_of_an_update_out_of_its_document(store: Store) -> None:
    good, bad, other = typing_updates(3)
    await store.append(local("doc", [good, bad, bad]) + local("elsewhere", [bad]))
    assert await store.quarantine("doc", bad, "update rejected by the CRDT core") == 2
    assert (await store.load("doc")).updates == [good]
    assert (await store.load("elsewhere")).updates == [bad]  # another document's row stays
    assert await store.quarantine("doc", other, "not stored") == 0
    await store.compact("doc", compact)
    snapshot = (await store.load("doc")).snapshot
    assert snapshot is not None
    assert await store.quarantine("doc", snapshot, "the snapshot itself") == 1
    assert (await store.load("doc")).snapshot is None
