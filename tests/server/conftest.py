from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.store.ports import DocumentStore
from server.store.sqlite import SQLiteStore


@pytest.fixture(params=["sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[DocumentStore]:
    """Every backend of the DocumentStore port; the contract tests run against each."""
    backend: DocumentStore = SQLiteStore(tmp_path / "samen.sqlite3")
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()
