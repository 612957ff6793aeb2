"""A store in memory: both ports of ports.py, run by the same contract suite as SQLite and
PostgreSQL. For tests of the layers above the store (rooms, sessions, federation) without a
database; nothing survives the process.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from ..errors import StoreError
from .ports import AppendRow, CatchupPlan, DocumentLog, KeptRow, LogRow, catchup_rows

__all__ = ["MemoryStore"]


@dataclass(frozen=True, slots=True)
class _Snapshot:
    data: bytes
    through_seq: int


class MemoryStore:
    def __init__(self) -> None:
        self._open = False
        self._log: dict[int, LogRow] = {}  # by seq; dicts keep insertion (= seq) order
        self._levels: dict[int, int] = {}  # by seq: catch-up rows only (the others are 0)
        self._in_snapshot: set[int] = set()  # seqs of log rows merged into their snapshot
        self._last_seq = 0
        self._snapshots: dict[str, _Snapshot] = {}
        self._cursors: dict[str, int] = {}
        self._synced: dict[str, frozenset[str]] = {}
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}  # (lock, users)
        self.quarantined: list[tuple[str, bytes, str]] = []

    async def open(self) -> None:
        self._open = True

    async def close(self) -> None:
        self._open = False

    async def ping(self) -> None:
        self._ready()

    def _ready(self) -> None:
        if not self._open:
            raise StoreError("the memory store is not open")

    async def append(self, rows: Sequence[AppendRow]) -> None:
        self._ready()
        for row in rows:
            self._last_seq += 1
            self._log[self._last_seq] = LogRow(self._last_seq, row.doc, row.update, row.origin, row.author)

    async def load(self, name: str) -> DocumentLog:
        self._ready()
        snapshot = self._snapshots.get(name)
        rows = [row for row in self._log.values() if row.doc == name]
        through = snapshot.through_seq if snapshot is not None else 0
        return DocumentLog(
            name,
            snapshot.data if snapshot is not None else None,
            [row.update for row in rows],
            rows[-1].seq if rows else through,
        )

    async def quarantine(self, name: str, update: bytes, reason: str) -> int:
        self._ready()
        bad = [seq for seq, row in self._log.items() if row.doc == name and row.update == update]
        for seq in bad:
            self._forget(seq)
        snapshot = self._snapshots.get(name)
        if snapshot is not None and snapshot.data == update:
            del self._snapshots[name]
            bad.append(0)
            # The rows kept in the log are all that is left of them: merged at the next compaction.
            self._in_snapshot.difference_update(seq for seq, row in self._log.items() if row.doc == name)
        self.quarantined.extend((name, update, reason) for _ in bad)
        return len(bad)

    async def log_length(self, name: str) -> int:
        self._ready()
        return sum(1 for row in self._log.values() if row.doc == name)

    async def compact(
        self, name: str, merge: Callable[[list[bytes]], bytes], keep_after: int | None = None
    ) -> int:
        async with self._locked(name):
            return await self._compact_locked(name, merge, keep_after)

    @asynccontextmanager
    async def _locked(self, name: str) -> AsyncIterator[None]:
        """The per-document compaction lock."""
        lock, users = self._locks.get(name, (asyncio.Lock(), 0))
        self._locks[name] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[name]
            if users == 1:  # the last user: drop the lock so the table stays small
                del self._locks[name]
            else:
                self._locks[name] = (lock, users - 1)

    async def _compact_locked(
        self, name: str, merge: Callable[[list[bytes]], bytes], keep_after: int | None
    ) -> int:
        snapshot = self._snapshots.get(name)
        # Rows in the snapshot already (kept for a peer) are not merged again.
        fresh = [row for row in self._log.values() if row.doc == name and row.seq not in self._in_snapshot]
        if fresh:
            updates = [row.update for row in fresh]
            merged = await asyncio.to_thread(merge, [snapshot.data, *updates] if snapshot else updates)
            self._ready()
            through = max(fresh[-1].seq, snapshot.through_seq if snapshot else 0)
            self._snapshots[name] = _Snapshot(merged, through)
            self._in_snapshot.update(row.seq for row in fresh)
        # Rows after `keep_after` are in the snapshot and stay in the log as well.
        merged_rows = [
            seq
            for seq, row in self._log.items()
            if row.doc == name and seq in self._in_snapshot and (keep_after is None or seq <= keep_after)
        ]
        for seq in merged_rows:
            self._forget(seq)
        return len(merged_rows)

    def _forget(self, seq: int) -> None:
        del self._log[seq]
        self._levels.pop(seq, None)
        self._in_snapshot.discard(seq)

    async def merge_kept_rows(
        self, name: str, merge: Callable[[list[bytes]], bytes], after: int, plan: CatchupPlan
    ) -> int:
        async with self._locked(name):
            kept = [
                KeptRow(row.seq, row.origin, row.author, self._levels.get(row.seq, 0))
                for row in self._log.values()
                if row.doc == name and row.seq > after and row.seq in self._in_snapshot
            ]
            catchup = catchup_rows(kept, plan(kept))
            merged = [
                await asyncio.to_thread(merge, [self._log[seq].update for seq in row.seqs]) for row in catchup
            ]
            self._ready()
            replaced = 0
            for row, update in zip(catchup, merged, strict=True):
                if any(seq not in self._log for seq in row.seqs):
                    continue  # quarantined meanwhile: that row must not come back
                replaced += len(row.seqs)
                for seq in row.seqs:
                    self._forget(seq)
                await self.append([AppendRow(name, update, row.origin, row.author)])
                self._levels[self._last_seq] = row.level
                self._in_snapshot.add(self._last_seq)  # made of rows in the snapshot
            return replaced

    async def rows_after(self, seq: int) -> int:
        self._ready()
        return sum(1 for row_seq in self._log if row_seq > seq)

    async def read_log_after(self, seq: int, limit: int) -> list[LogRow]:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        self._ready()
        rows: list[LogRow] = []
        for row_seq, row in self._log.items():  # a scan: fine for tests
            if row_seq > seq:
                rows.append(row)
                if len(rows) == limit:
                    break
        return rows

    async def last_seq(self) -> int:
        self._ready()
        return self._last_seq

    async def get_cursor(self, peer: str) -> int:
        self._ready()
        return self._cursors.get(peer, 0)

    async def set_cursor(self, peer: str, seq: int) -> None:
        self._ready()
        self._cursors[peer] = max(self._cursors.get(peer, 0), seq)

    async def list_documents(self, prefix: str, after: str, limit: int) -> list[str]:
        self._ready()
        names = set(self._snapshots) | {row.doc for row in self._log.values()}
        return sorted(n for n in names if n.startswith(prefix) and n > after)[:limit]

    async def synced_spaces(self, peer: str) -> frozenset[str]:
        self._ready()
        return self._synced.get(peer, frozenset())

    async def set_synced_spaces(self, peer: str, spaces: Collection[str]) -> None:
        self._ready()
        self._synced[peer] = frozenset(spaces)
