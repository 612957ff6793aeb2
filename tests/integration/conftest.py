from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from .server_process import SamenServer


@pytest.fixture
async def samen(tmp_path: Path) -> AsyncIterator[SamenServer]:
    """One real Samen server process on the embedded store, stopped after the test."""
    async with SamenServer(tmp_path / "data") as server:
        yield server
