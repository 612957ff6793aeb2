"""The document store port: an append-only update log per document plus snapshots.

Contract (every backend, checked by one contract test suite):
- `append` writes a batch of (document, update) rows in ONE transaction: all or nothing.
  When it returns, the rows are durable.
- `load` returns the newest snapshot and the log rows after it, in append order.
- `replace_with_snapshot` stores a snapshot that covers the log up to `through_seq` and
  deletes those rows, in one transaction; rows appended meanwhile stay.
- `compaction_lock` serialises compactions of one document (across nodes, where the backend
  is shared).
- Driver errors come out as `StoreError` / `StoreUnavailable`.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
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

    async def replace_with_snapshot(self, name: str, snapshot: bytes, through_seq: int) -> int: ...

    def compaction_lock(self, name: str) -> AbstractAsyncContextManager[None]: ...

    async def log_length(self, name: str) -> int: ...

    async def ping(self) -> None: ...
