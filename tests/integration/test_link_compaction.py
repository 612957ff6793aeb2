"""Rows kept for a peer during a 20,000-edit partition stay bounded while it lasts (merged
into catch-up rows), reach the peer whole, and are compacted as soon as it acknowledged them,
not only after the threshold's worth of new appends (issue 14, acceptance 5)."""

from __future__ import annotations

import math
from pathlib import Path

import asyncpg
import pycrdt
import pytest

from clients.sync_client import SyncClient
from server.compaction import CATCHUP_FAN_IN

from ..pg_cluster import PgCluster
from .federation import FederatedSite, Federation
from .site import eventually

pytestmark = pytest.mark.integration

A, B = "amsterdam", "berlin"
EDITS = 20_000
BATCH = 1000  # edits written before waiting for their acknowledgements: the client's queue stays short
COMPACT_AFTER = 100
# Kept at most: the threshold's worth as appended, and per author (one here) and size class
# at most CATCHUP_FAN_IN catch-up rows (server/compaction.py).
MOST_KEPT = COMPACT_AFTER + CATCHUP_FAN_IN * (1 + math.ceil(math.log(EDITS / COMPACT_AFTER, CATCHUP_FAN_IN)))


async def _rows(site: FederatedSite, doc: str) -> int:
    connection = await asyncpg.connect(site.database_url)
    try:
        return int(await connection.fetchval("SELECT count(*) FROM updates WHERE doc = $1", doc))
    finally:
        await connection.close()


async def test_rows_kept_for_a_peer_are_compacted_once_it_acknowledged_them(
    tmp_path: Path, pg_cluster: PgCluster
) -> None:
    env = {"SAMEN_COMPACT_AFTER": str(COMPACT_AFTER)}
    async with Federation(tmp_path, pg_cluster, {A: 1, B: 1}, {"eng": [A, B]}, env=env) as fed:
        await fed[A].wait_link(B)
        await fed[A].block(B)
        await fed[A].wait_link(B, up=False)
        async with SyncClient(fed[A].nodes[0].hocuspocus_url, "eng/long", protocol="hocuspocus") as on_a:
            await on_a.wait_synced()
            shared = on_a.doc.get("t", type=pycrdt.Text)
            for start in range(0, EDITS, BATCH):
                for i in range(start, start + BATCH):
                    shared += f"<{i}>"  # one update each, all kept for berlin
                await on_a.wait_acknowledged(60)
        kept: list[int] = []

        async def rows_kept() -> bool:
            kept[:] = [await _rows(fed[A], "eng/long")]
            return 0 < kept[0] <= MOST_KEPT

        # 20,000 rows kept for berlin, merged into catch-up rows while the partition lasts.
        await eventually(rows_kept, 30, f"at most {MOST_KEPT} rows kept for berlin")
        assert await fed[A].metric("samen_compaction_catchup_merges_total") >= 1
        await fed[A].unblock(B)
        await fed[A].wait_acknowledged_by(B, timeout=60)
        # No more appends: only the acknowledgement can trigger this compaction.
        await eventually(lambda: _none_left(fed[A]), 30, f"the kept rows ({kept}) compacted")
        async with SyncClient(fed[B].nodes[0].ws_url, "eng/long") as on_b:
            await on_b.wait_for(lambda: str(on_b.doc.get("t", type=pycrdt.Text)).count("<") == EDITS, 60)


async def _none_left(site: FederatedSite) -> bool:
    return await _rows(site, "eng/long") == 0
