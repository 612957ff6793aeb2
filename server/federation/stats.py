"""What a node knows of each link, and the /metrics families made of it."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

__all__ = ["LinkStats", "link_metric_families"]


@dataclass(slots=True)
class LinkStats:
    up: bool = False
    acked_seq: int = 0
    sent_seq: int = 0
    log_seq: int = 0
    behind_since: float | None = None  # monotonic time the peer fell behind this site's log
    updates_sent: int = 0
    updates_received: int = 0
    batches_rejected: int = 0
    integrity_failures: int = 0  # links ended by a frame whose MAC did not verify
    certificate_failures: int = 0  # dials refused because the peer's TLS certificate did not verify
    entries_refused: int = 0
    invalid_updates: int = 0  # refused because they do not validate or integrate
    wants_refused_busy: int = 0
    presence_dropped: int = 0  # presence entries (or whole updates) over the per-peer limits
    refusals_received: int = 0
    inventory_documents_sent: int = 0
    inventory_failures: int = 0
    kept_rows: int = 0  # log rows after the peer's cursor: what compaction keeps for it
    progress_at: float = field(default_factory=time.monotonic)  # the peer last caught up or acked
    stuck: bool = False  # behind, and no acknowledgement for STUCK_AFTER seconds
    stalls: int = 0  # times it became stuck
    sessions_without_progress: int = 0  # in a row: links that ended before acknowledging anything

    @property
    def backlog(self) -> int:
        """Rows of this site's log the peer has not acknowledged (all documents)."""
        return max(0, self.log_seq - self.acked_seq)

    @property
    def lag_seconds(self) -> float:
        """How long the peer has been behind (0 when it has acknowledged everything)."""
        return 0.0 if self.behind_since is None else time.monotonic() - self.behind_since

    def observe(self, log_seq: int = 0, acked_seq: int = 0) -> None:
        """Take in what is known of the log and the peer's cursor (never moving back)."""
        self.log_seq = max(self.log_seq, log_seq)
        if acked_seq > self.acked_seq:
            self.progress_at = time.monotonic()
            self.sessions_without_progress = 0
        self.acked_seq = max(self.acked_seq, acked_seq)
        if self.backlog == 0:
            self.progress_at = time.monotonic()
            self.behind_since = None
        elif self.behind_since is None:
            self.behind_since = time.monotonic()


# (name, help, kind, value of one peer's stats)
_FAMILIES: tuple[tuple[str, str, type[GaugeMetricFamily] | type[CounterMetricFamily], str], ...] = (
    ("samen_link_up", "1 while this node holds a live link to the peer", GaugeMetricFamily, "up"),
    (
        "samen_link_backlog_rows",
        "Log rows the peer has not acknowledged (site-wide)",
        GaugeMetricFamily,
        "backlog",
    ),
    (
        "samen_link_lag_seconds",
        "How long the peer has been behind this site's log",
        GaugeMetricFamily,
        "lag_seconds",
    ),
    (
        "samen_link_kept_rows",
        "Log rows kept for the peer (after its cursor; catch-up merges bound them)",
        GaugeMetricFamily,
        "kept_rows",
    ),
    (
        "samen_link_stuck",
        "1 while the peer is behind and has acknowledged nothing for a while (see the log)",
        GaugeMetricFamily,
        "stuck",
    ),
    ("samen_link_stalls", "Times the link to the peer got stuck", CounterMetricFamily, "stalls"),
    ("samen_link_updates_sent", "Updates sent to the peer", CounterMetricFamily, "updates_sent"),
    (
        "samen_link_updates_received",
        "Updates accepted from the peer",
        CounterMetricFamily,
        "updates_received",
    ),
    (
        "samen_link_rejections",
        "Forged or malformed batches from the peer",
        CounterMetricFamily,
        "batches_rejected",
    ),
    (
        "samen_link_integrity_failures",
        "Links ended because a frame failed its MAC check (tampered with between the sites)",
        CounterMetricFamily,
        "integrity_failures",
    ),
    (
        "samen_link_certificate_failures",
        "Dials refused because the peer's TLS certificate did not verify (SAMEN_LINK_CA_FILE)",
        CounterMetricFamily,
        "certificate_failures",
    ),
    (
        "samen_link_refused",
        "Entries or requests refused (outside the shared spaces, bad names, too big, invalid)",
        CounterMetricFamily,
        "entries_refused",
    ),
    (
        "samen_link_invalid_updates",
        "Updates from the peer refused because they do not validate or integrate (never stored)",
        CounterMetricFamily,
        "invalid_updates",
    ),
    (
        "samen_link_wants_refused_busy",
        "Requests of the peer refused because it had too much unread",
        CounterMetricFamily,
        "wants_refused_busy",
    ),
    (
        "samen_link_presence_dropped",
        "Presence entries from the peer dropped (over the per-peer limits, or not its own)",
        CounterMetricFamily,
        "presence_dropped",
    ),
    (
        "samen_link_refused_by_peer",
        "Entries or requests the peer refused",
        CounterMetricFamily,
        "refusals_received",
    ),
    (
        "samen_link_inventory_documents_sent",
        "Documents sent whole to the peer (spaces newly shared with it)",
        CounterMetricFamily,
        "inventory_documents_sent",
    ),
    (
        "samen_link_inventory_failures",
        "Documents of an inventory that could not be read, so not sent",
        CounterMetricFamily,
        "inventory_failures",
    ),
)


def link_metric_families(stats: Mapping[str, LinkStats]) -> Iterator[Metric]:
    for name, help_text, kind, attribute in _FAMILIES:
        family = kind(name, help_text, labels=["peer"])
        for peer, peer_stats in sorted(stats.items()):
            family.add_metric([peer], float(getattr(peer_stats, attribute)))
        yield family
