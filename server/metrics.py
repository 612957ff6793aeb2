"""`GET /metrics` in the Prometheus text format.

The hot path only bumps plain integers on `Counters`; everything is turned into metric
families when Prometheus scrapes, from the live objects of one app (no global registry).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "Counters", "MetricsRegistry"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(slots=True)
class Counters:
    """Monotonic counts and live gauges bumped by the server as things happen."""

    connections_ywebsocket: int = 0
    connections_hocuspocus: int = 0
    updates_from_clients: int = 0
    updates_from_nodes: int = 0
    updates_from_sites: int = 0
    updates_to_clients: int = 0
    awareness_to_clients: int = 0
    slow_clients_closed: int = 0
    bad_input_closes: int = 0
    # Updates and connections refused, by why (read_only, foreign_client_id, no_access, ...).
    refusals: dict[str, int] = field(default_factory=dict)

    def refused(self, kind: str) -> None:
        self.refusals[kind] = self.refusals.get(kind, 0) + 1


class MetricsRegistry:
    """One app's metrics: the counters, a store-latency histogram and live gauges."""

    def __init__(self) -> None:
        self.counters = Counters()
        self.registry = CollectorRegistry(auto_describe=True)
        self.store_write_seconds = Histogram(
            "samen_store_write_seconds",
            "Time to commit one group of updates to the store",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self._live: list[Callable[[], Iterator[Metric]]] = []
        self.registry.register(_LiveCollector(self))

    def add_live(self, families: Callable[[], Iterator[Metric]]) -> None:
        """Register a function that yields metric families read at scrape time."""
        self._live.append(families)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _LiveCollector(Collector):
    def __init__(self, metrics: MetricsRegistry) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        c = self._metrics.counters
        connections = GaugeMetricFamily("samen_connections", "Open client connections", labels=["protocol"])
        connections.add_metric(["y-websocket"], c.connections_ywebsocket)
        connections.add_metric(["hocuspocus"], c.connections_hocuspocus)
        yield connections
        updates_in = CounterMetricFamily("samen_updates_in", "Document updates applied", labels=["source"])
        updates_in.add_metric(["client"], c.updates_from_clients)
        updates_in.add_metric(["node"], c.updates_from_nodes)
        updates_in.add_metric(["site"], c.updates_from_sites)
        yield updates_in
        yield CounterMetricFamily(
            "samen_updates_out", "Update frames queued to clients", value=c.updates_to_clients
        )
        yield CounterMetricFamily(
            "samen_awareness_out", "Presence frames queued to clients", value=c.awareness_to_clients
        )
        yield CounterMetricFamily(
            "samen_slow_clients_closed",
            "Clients closed because they fell behind",
            value=c.slow_clients_closed,
        )
        yield CounterMetricFamily(
            "samen_bad_input_closes", "Connections closed for malformed input", value=c.bad_input_closes
        )
        refused = CounterMetricFamily(
            "samen_refused", "Updates and connections refused, by reason", labels=["reason"]
        )
        for kind, count in sorted(c.refusals.items()):
            refused.add_metric([kind], count)
        yield refused
        for families in self._metrics._live:
            yield from families()
