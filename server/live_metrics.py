"""The metric families read from the live objects of a node when Prometheus scrapes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from .app import Services

__all__ = ["node_metrics"]


def node_metrics(services: Services) -> Iterator[Metric]:
    writer, backplane, rooms = services.writer, services.backplane, services.rooms
    yield GaugeMetricFamily("samen_rooms_open", "Documents open on this node", value=len(rooms.rooms))
    yield CounterMetricFamily("samen_room_loads", "Documents loaded from the store", value=rooms.loads)
    yield GaugeMetricFamily(
        "samen_store_queue_depth", "Updates waiting to be written", value=writer.queue_depth
    )
    yield CounterMetricFamily("samen_store_rows_written", "Update rows committed", value=writer.rows_written)
    yield CounterMetricFamily(
        "samen_store_write_failures", "Failed store writes (retried)", value=writer.failures
    )
    yield CounterMetricFamily(
        "samen_compactions", "Logs merged into snapshots", value=services.compactor.compactions
    )
    stats = backplane.stats
    yield GaugeMetricFamily(
        "samen_backplane_connected", "1 if the backplane is up", value=int(backplane.connected)
    )
    yield CounterMetricFamily("samen_backplane_published", "Messages published", value=stats.published)
    yield CounterMetricFamily("samen_backplane_received", "Messages received", value=stats.received)
    yield CounterMetricFamily(
        "samen_backplane_publish_failures", "Messages lost to publish errors", value=stats.publish_failures
    )
    yield CounterMetricFamily("samen_backplane_reconnects", "Backplane reconnections", value=stats.reconnects)
    yield CounterMetricFamily(
        "samen_quarantined_updates",
        "Stored updates set aside because they could not be applied (alarm: see the log)",
        value=rooms.quarantined,
    )
    yield CounterMetricFamily(
        "samen_gap_repairs", "Documents repaired after missed messages", value=rooms.gap_repairs
    )
    unconfirmed = sum(room.unconfirmed for room in rooms.rooms.values())
    yield GaugeMetricFamily(
        "samen_unconfirmed_remote_updates",
        "Updates from other nodes not yet confirmed durable",
        value=unconfirmed,
    )
    registry = services.registry
    yield GaugeMetricFamily("samen_sessions", "Client sessions (socket × document) open", value=len(registry))
    yield CounterMetricFamily(
        "samen_revocations", "Revocations checked on this node", value=registry.revocations
    )
    yield CounterMetricFamily(
        "samen_sessions_revoked",
        "Sessions closed or downgraded by a revocation",
        value=registry.sessions_closed + registry.sessions_downgraded,
    )
    feed = services.hooks.feed
    yield GaugeMetricFamily(
        "samen_change_feed_depth", "Durable changes waiting for observers", value=feed.depth
    )
    yield CounterMetricFamily(
        "samen_change_observer_failures", "on_change observers that raised", value=feed.failures
    )
    dropped = CounterMetricFamily(
        "samen_awareness_dropped",
        "Awareness entries dropped (not the owner, or over a limit)",
        labels=["reason"],
    )
    for reason, count in sorted(services.awareness_drops.items()):
        dropped.add_metric([reason], count)
    yield dropped
