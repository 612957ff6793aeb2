"""The store's two ports: the document store (an append-only update log per document plus
snapshots) and the replication log (the same log read in seq order, and per-peer cursors).

A backend implements both in one class (`Store`); code that needs only one asks for it.
Every backend (memory, SQLite, PostgreSQL) runs one contract suite,
tests/server/test_store_contract.py.

Document store contract:
- `append` writes a batch of rows in ONE transaction: all or nothing. When it returns, the
  rows are durable.
- Every row records its `origin`: LOCAL_ORIGIN ("") for updates this site's own clients (or
  the server) made, otherwise the id of the peer site it was replicated from (federation
  sends a peer only local rows), and its `author`: the principal id ("name@site") of whoever
  made it, or SERVER_AUTHOR ("") for the server itself (a restore, merged content).
- `load` returns the newest snapshot and every log row not merged into it, in append order.
  (A row may be both in the snapshot and in the log; applying an update twice is harmless.)
- `compact` merges the snapshot and log of one document into a new snapshot and deletes
  exactly the rows it merged, in one consistent transaction, under a per-document lock that
  holds across every node sharing the store. Rows appended meanwhile are kept.
  `compact(..., keep_after=S)` merges as usual but leaves rows with seq > S in the log, so
  rows a peer site has not acknowledged yet can still be sent to it. A kept row is marked as
  in the snapshot and not merged again: a compaction reads the snapshot and the rows not in
  it only, so its work does not grow with the rows kept.
  `merge_kept_rows` merges kept rows into catch-up rows, as the compactor's plan says.
- `quarantine` moves a stored update that cannot be applied out of the document (kept in
  its own table for an operator), so one bad row never makes a document unloadable.

Replication log contract:
- Rows become visible in seq order: once `read_log_after` returned a row, no row with a
  lower seq can appear later (federation cursors rely on it).
- Per-peer cursors (`get_cursor`/`set_cursor`) record how far each peer site acknowledged
  the log; they only ever move forward.
- Per peer, the spaces it holds whole (`synced_spaces`): it was sent every document of them,
  so the log after its cursor is all it lacks; `list_documents` pages through a space.

Driver errors come out as `StoreError`, or `StoreUnavailable` when a retry may succeed.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

__all__ = [
    "LOCAL_ORIGIN",
    "SERVER_AUTHOR",
    "AppendRow",
    "CatchupPlan",
    "CatchupRow",
    "DocumentLog",
    "DocumentStore",
    "KeptRow",
    "LogRow",
    "ReplicationLog",
    "Store",
    "catchup_rows",
]

LOCAL_ORIGIN = ""
SERVER_AUTHOR = ""


class AppendRow(NamedTuple):
    doc: str
    update: bytes  # a v1 update
    origin: str = LOCAL_ORIGIN  # or the peer site it was replicated from
    author: str = SERVER_AUTHOR  # principal id ("name@site"), "" for the server


@dataclass(frozen=True, slots=True)
class LogRow:
    seq: int
    doc: str
    update: bytes
    origin: str
    author: str = SERVER_AUTHOR


class KeptRow(NamedTuple):
    """A log row as `merge_kept_rows` shows it to its plan (no data: the plan reads none)."""

    seq: int
    origin: str
    author: str
    level: int  # 0: as appended; n > 0: a catch-up row merged from rows of level n - 1 (or lower)


# Given the kept rows, in seq order: the groups of their seqs to merge, one catch-up row each.
CatchupPlan = Callable[[Sequence[KeptRow]], list[list[int]]]


class CatchupRow(NamedTuple):
    """One catch-up row to write: the rows it replaces (seq order) and what it records."""

    seqs: list[int]
    origin: str
    author: str
    level: int


@dataclass(frozen=True, slots=True)
class DocumentLog:
    name: str
    snapshot: bytes | None
    updates: list[bytes]
    # The sequence number of the last row in `updates` (or of the snapshot if none).
    last_seq: int

    def all_updates(self) -> list[bytes]:
        return [self.snapshot, *self.updates] if self.snapshot is not None else list(self.updates)


class DocumentStore(Protocol):
    """Documents: what rooms load and the writer and the compactor write."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None: ...

    async def load(self, name: str) -> DocumentLog: ...

    async def append(self, rows: Sequence[AppendRow]) -> None: ...

    async def compact(
        self, name: str, merge: Callable[[list[bytes]], bytes], keep_after: int | None = None
    ) -> int:
        """Replace the snapshot and log of `name` by `merge(snapshot + the log rows not in
        the snapshot yet)`; `merge` is CPU work and runs in a worker thread. Rows
        with seq > `keep_after` (if given) stay in the log as well; those already in the
        snapshot are not merged again, and once `keep_after` passes them they are deleted
        (also when no row is new). Returns the number of log rows removed."""
        ...

    async def merge_kept_rows(
        self, name: str, merge: Callable[[list[bytes]], bytes], after: int, plan: CatchupPlan
    ) -> int:
        """Under the compaction lock: `plan` gets the log rows of `name` with seq > `after`
        that are in the snapshot (`KeptRow`s, no data) and names groups of them; each group,
        all of one (origin, author), is replaced by one catch-up row (in the snapshot too),
        `merge` of the group's updates in seq order, of level (highest of the group) + 1,
        appended at the end of the log (fresh seqs, so every cursor still finds it), all in
        one transaction. Only the grouped rows' data is read. Returns the number of rows
        replaced (0: the plan named none). The rows compaction keeps for a peer that is
        behind stay bounded this way."""
        ...

    async def log_length(self, name: str) -> int: ...

    async def quarantine(self, name: str, update: bytes, reason: str) -> int:
        """Set aside every stored copy of `update` for `name` (log rows, or the snapshot if it
        is that update) into the quarantine table, in one transaction: a document whose
        stored update cannot be applied loads without it. Returns the copies moved."""
        ...


class ReplicationLog(Protocol):
    """The log as federation reads it: every document, in seq order, with cursors."""

    async def read_log_after(self, seq: int, limit: int) -> list[LogRow]:
        """Up to `limit` rows of every document with seq > `seq`, in seq order."""
        ...

    async def last_seq(self) -> int:
        """The highest seq ever appended (0 for an empty log)."""
        ...

    async def get_cursor(self, peer: str) -> int:
        """How far `peer` acknowledged this site's log (0 if never)."""
        ...

    async def set_cursor(self, peer: str, seq: int) -> None:
        """Record `peer`'s acknowledgement; a lower value than the stored one is ignored."""
        ...

    async def rows_after(self, seq: int) -> int:
        """How many log rows (all documents) have seq > `seq`: what is kept for a peer whose
        cursor is `seq`."""
        ...

    async def list_documents(self, prefix: str, after: str, limit: int) -> list[str]:
        """Up to `limit` names of documents with a snapshot or log rows that start with
        `prefix` and sort after `after`, in name order (page with the last name returned)."""
        ...

    async def synced_spaces(self, peer: str) -> frozenset[str]:
        """The spaces `peer` was sent whole and acknowledged (see `set_synced_spaces`)."""
        ...

    async def set_synced_spaces(self, peer: str, spaces: Collection[str]) -> None:
        """Replace the spaces recorded as held whole by `peer`."""
        ...


class Store(DocumentStore, ReplicationLog, Protocol):
    """What a backend implements: both ports over one database."""


def catchup_rows(kept: Sequence[KeptRow], groups: list[list[int]]) -> list[CatchupRow]:
    """The catch-up rows a plan's `groups` of `kept` make (see `merge_kept_rows`). Raises
    ValueError for a plan that names a row not kept, a row twice, or mixes origins or
    authors: a catch-up row records one of each."""
    by_seq = {row.seq: row for row in kept}
    seen: set[int] = set()
    rows: list[CatchupRow] = []
    for group in groups:
        if not group:
            continue
        if not seen.isdisjoint(group) or len(set(group)) != len(group):
            raise ValueError("a catch-up plan names a row twice")
        seen.update(group)
        try:
            members = [by_seq[seq] for seq in sorted(group)]
        except KeyError as exc:
            raise ValueError(f"a catch-up plan names row {exc.args[0]}, which is not kept") from None
        if len({(row.origin, row.author) for row in members}) != 1:
            raise ValueError("a catch-up plan groups rows of different origins or authors")
        first = members[0]
        level = max(row.level for row in members) + 1
        rows.append(CatchupRow([row.seq for row in members], first.origin, first.author, level))
    return rows
