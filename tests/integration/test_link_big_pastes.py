"""One big paste never stops replication: two ordinary clients of amsterdam paste 4 MB and
then 14 MB into a shared document; berlin gets both, with its default settings and with a
1 MiB message limit (the batches, and the 14 MB update itself, cross in pieces below the
limit berlin gave at the handshake), and amsterdam's backlog toward it returns to 0."""

from __future__ import annotations

from pathlib import Path

import pycrdt
import pytest

from clients.sync_client import SyncClient

from ..pg_cluster import PgCluster
from .federation import Federation

pytestmark = pytest.mark.integration

A, B = "amsterdam", "berlin"
MB = 1000 * 1000


def text_of(client: SyncClient) -> str:
    return str(client.doc.get("t", type=pycrdt.Text))


@pytest.mark.parametrize("berlin_limit", [None, 1048576], ids=["default", "1MiB"])
async def test_two_big_pastes_reach_the_other_site(
    tmp_path: Path, pg_cluster: PgCluster, berlin_limit: int | None
) -> None:
    async with Federation(tmp_path, pg_cluster, {A: 1, B: 1}, {"eng": [A, B]}) as fed:
        if berlin_limit is not None:
            node = fed[B].nodes[0]
            await node.stop()
            node.env["SAMEN_MAX_MESSAGE_SIZE"] = str(berlin_limit)
            await node.start()
        await fed[A].wait_link(B)
        url = fed[A].nodes[0].hocuspocus_url
        async with (
            SyncClient(url, "eng/paste", protocol="hocuspocus") as first,
            SyncClient(url, "eng/paste", protocol="hocuspocus") as second,
        ):
            await first.wait_synced()
            await second.wait_synced()
            first.doc.get("t", type=pycrdt.Text).insert(0, "a" * (4 * MB))
            await first.wait_acknowledged(60)
            await second.wait_for(lambda: len(text_of(second)) == 4 * MB, 60)
            second.doc.get("t", type=pycrdt.Text).insert(4 * MB, "b" * (14 * MB))
            await second.wait_acknowledged(60)
        async with SyncClient(fed[B].nodes[0].ws_url, "eng/paste") as on_b:
            await on_b.wait_for(lambda: len(text_of(on_b)) == 18 * MB, 120)
            assert text_of(on_b) == "a" * (4 * MB) + "b" * (14 * MB)
        await fed[A].wait_acknowledged_by(B, timeout=60)
        assert await fed[B].link_metric("samen_link_rejections_total", A) == 0
