"""The document store port: an append-only update log per document plus snapshots.

Contract (every backend, checked by one contract test suite, tests/server/test_store_contract.py):
- `append` writes a batch of (document, update) rows in ONE transaction: all or nothing.
  When it returns, the rows are durable.
- `load` returns the newest snapshot and every log row not merged into it, in append order.
  (A row may be both in the snapshot and in the log; applying an update twice is harmless.)
- `compact` merges the snapshot and log of one document into a new snapshot and deletes
  exactly the rows it merged, in one consistent transaction, under a per-document lock that
  holds across every node sharing the store. Rows appended meanwhile are kept.
- Driver errors come out as `StoreError`, or `StoreUnavailable` when a retry may succeed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["DocumentLog", "DocumentStore"]


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
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def load(self, name: str) -> DocumentLog: ...

    async def append(self, rows: Sequence[tuple[str, bytes]]) -> None: ...

    async def compact(self, name: str, merge: Callable[[list[bytes]], bytes]) -> int:
        """Replace the snapshot and log of `name` by `merge(snapshot + log)`; `merge` is CPU
        work and runs in a worker thread. Returns the number of log rows removed."""
        ...

    async def log_length(self, name: str) -> int: ...

    async def ping(self) -> None: ...
