"""Who may connect: limits per client address and per node, and the log line when they refuse.

Two layers share one `Admission`:
- Client WebSockets (`/ws/…`, `/hocuspocus`) are admitted by `SamenApp` before their endpoint
  runs: at most SAMEN_MAX_CONNECTIONS per node (lowered to fit the descriptor limit) and
  SAMEN_MAX_CONNECTIONS_PER_ADDRESS per client address. A refused upgrade gets an HTTP 503 or
  429 with Retry-After: the providers retry with their backoff.
- TCP connections (`listener.py`): every one is counted, and a connection that has no request
  in progress (it has not sent its headers yet, or sits idle between keep-alive requests) is
  *evictable*. When one address has too many of those, or the node nears its descriptor
  limit, the oldest evictable connection is closed to make room. So a flood of silent or
  trickling sockets cannot keep `/healthz` (or anyone else) out: a health check sends its
  request at once and is served; the flood's sockets are the ones that go.

Addresses in SAMEN_TRUSTED_PROXIES (a load balancer or reverse proxy, whose X-Forwarded-For
names the real client) are exempt from the per-address limits: behind a proxy that sends no
such header, every client has the proxy's address.
"""

from __future__ import annotations

import ipaddress
import logging
import resource
import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .errors import ConfigError
from .settings import Settings

__all__ = [
    "DESCRIPTOR_RESERVE",
    "EVICTABLE_PER_ADDRESS",
    "Admission",
    "Refusal",
    "RefusalLog",
    "TrustedNetworks",
    "descriptor_limit",
]

log = logging.getLogger(__name__)

# Descriptors kept free of client sockets: the store, Redis, the compaction worker's pipes,
# log files, and health checks arriving while the node is full.
DESCRIPTOR_RESERVE = 64
# Connections of one address with no request in progress; more evict the oldest of them.
EVICTABLE_PER_ADDRESS = 32
REFUSAL_LOG_INTERVAL = 10.0


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int  # the HTTP status of the refused upgrade
    reason: str  # the metric label
    message: str  # what the log line and the response body say


def descriptor_limit() -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


class TrustedNetworks:
    """`SAMEN_TRUSTED_PROXIES`: comma-separated addresses or CIDR networks, or `*`."""

    def __init__(self, spec: str) -> None:
        self.spec = spec.strip()
        self._all = self.spec == "*"
        self._networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        if not self._all:
            for part in filter(None, (p.strip() for p in self.spec.split(","))):
                try:
                    self._networks.append(ipaddress.ip_network(part, strict=False))
                except ValueError as exc:
                    raise ConfigError(
                        f"SAMEN_TRUSTED_PROXIES: {part!r} is not an address or network"
                    ) from exc

    def __contains__(self, host: str | None) -> bool:
        if self._all:
            return True
        if not host or not self._networks:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self._networks)


class RefusalLog:
    """At most one line per reason every `interval` seconds, saying how many it stood for:
    a flood of refusals must not become a flood of log lines."""

    def __init__(self, interval: float = REFUSAL_LOG_INTERVAL, clock: Callable[[], float] = time.monotonic):
        self._interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()

    def refused(self, reason: str, message: str) -> None:
        now = self._clock()
        last = self._last.get(reason)
        if last is not None and now - last < self._interval:
            self._suppressed[reason] += 1
            return
        self._last[reason] = now
        more = self._suppressed.pop(reason, 0)
        suffix = (
            f" ({more} more refused for this reason in the {now - last:.0f} s before)"
            if more and last is not None
            else ""
        )
        log.warning("%s%s", message, suffix)


class Admission:
    """The node's connection limits and counts (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        *,
        descriptors: int | None = None,
        refusal_log: RefusalLog | None = None,
    ) -> None:
        descriptors = descriptor_limit() if descriptors is None else descriptors
        # TCP connections the node keeps at most; WebSockets stop earlier, leaving as many
        # again for plain HTTP (health checks, metrics) when the node is full.
        self.tcp_limit = max(16, descriptors - DESCRIPTOR_RESERVE)
        self.max_connections = max(1, min(settings.max_connections, self.tcp_limit - DESCRIPTOR_RESERVE))
        self.max_per_address = settings.max_connections_per_address
        self.trusted = TrustedNetworks(settings.trusted_proxies)
        self.refused: Counter[str] = Counter()
        self._log = refusal_log or RefusalLog()
        self.websockets = 0
        self._by_address: Counter[str] = Counter()
        self.tcp_open = 0
        # Evictable TCP connections (key -> (address, evict)), oldest first, node-wide and per address.
        self._evictable: dict[Hashable, tuple[str, Callable[[], None]]] = {}
        self._evictable_by_address: dict[str, dict[Hashable, None]] = {}
        self._open: set[Hashable] = set()
        if self.max_connections < settings.max_connections:
            log.warning(
                "SAMEN_MAX_CONNECTIONS lowered from %d to %d to fit the descriptor limit (%d)",
                settings.max_connections,
                self.max_connections,
                descriptors,
            )

    def refuse(self, reason: str, message: str) -> None:
        self.refused[reason] += 1
        self._log.refused(reason, message)

    def metric_families(self) -> Iterator[Metric]:
        refused = CounterMetricFamily(
            "samen_connections_refused",
            "Connections refused or closed by the admission limits",
            labels=["reason"],
        )
        for reason, count in sorted(self.refused.items()):
            refused.add_metric([reason], count)
        yield refused
        yield GaugeMetricFamily(
            "samen_tcp_connections", "Open TCP connections (all kinds)", value=self.tcp_open
        )
        yield GaugeMetricFamily(
            "samen_connection_limit", "Client WebSockets this node accepts", value=self.max_connections
        )

    # -- client WebSockets ----------------------------------------------------------------

    def admit_websocket(self, address: str | None) -> Refusal | None:
        """Count a client WebSocket in, or say why not. Pair with `release_websocket`."""
        host = address or ""
        if self.websockets >= self.max_connections:
            refusal = Refusal(503, "node_full", f"node full: {self.websockets} client connections")
            self.refuse(
                refusal.reason,
                f"refused a WebSocket from {host}: {self.websockets} client connections on this node "
                f"(SAMEN_MAX_CONNECTIONS={self.max_connections})",
            )
            return refusal
        if (
            self.max_per_address
            and host not in self.trusted
            and self._by_address[host] >= self.max_per_address
        ):
            refusal = Refusal(429, "per_address", f"{self.max_per_address} connections from your address")
            self.refuse(
                refusal.reason,
                f"refused a WebSocket from {host}: {self._by_address[host]} client connections from "
                f"this address (SAMEN_MAX_CONNECTIONS_PER_ADDRESS={self.max_per_address})",
            )
            return refusal
        self.websockets += 1
        self._by_address[host] += 1
        return None

    def release_websocket(self, address: str | None) -> None:
        host = address or ""
        self.websockets -= 1
        self._by_address[host] -= 1
        if self._by_address[host] <= 0:
            del self._by_address[host]

    # -- TCP connections (listener.py) -------------------------------------------------------

    def tcp_opened(self, key: Hashable, address: str, evict: Callable[[], None]) -> bool:
        """A new TCP connection, evictable until it starts a request. False: close it now
        (the node is at its limit and there is nothing to evict)."""
        if self.tcp_open >= self.tcp_limit and not self._evict_oldest(None, "descriptors", address):
            self.refuse(
                "descriptors",
                f"refused a TCP connection from {address}: {self.tcp_open} open, near the descriptor "
                f"limit and none idle to close",
            )
            return False
        self.tcp_open += 1
        self._open.add(key)
        self.tcp_idle(key, address, evict)
        return True

    def tcp_idle(self, key: Hashable, address: str, evict: Callable[[], None]) -> None:
        """No request in progress on `key`: it may be closed to make room."""
        if key not in self._open or key in self._evictable:
            return
        if address not in self.trusted:
            mine = self._evictable_by_address.setdefault(address, {})
            if len(mine) >= EVICTABLE_PER_ADDRESS:
                self._evict_oldest(address, "idle_per_address", address)
            mine = self._evictable_by_address.setdefault(address, {})
            mine[key] = None
        self._evictable[key] = (address, evict)

    def tcp_busy(self, key: Hashable) -> None:
        """A request (or a WebSocket) is in progress on `key`: never evicted."""
        entry = self._evictable.pop(key, None)
        if entry is not None:
            mine = self._evictable_by_address.get(entry[0])
            if mine is not None:
                mine.pop(key, None)
                if not mine:
                    del self._evictable_by_address[entry[0]]

    def tcp_closed(self, key: Hashable) -> None:
        if key in self._open:
            self._open.discard(key)
            self.tcp_busy(key)
            self.tcp_open -= 1

    def _evict_oldest(self, address: str | None, reason: str, newcomer: str) -> bool:
        if address is None:
            key = next(iter(self._evictable), None)
        else:
            key = next(iter(self._evictable_by_address.get(address, {})), None)
        if key is None:
            return False
        victim, evict = self._evictable[key]
        self.tcp_busy(key)
        self.refuse(
            reason,
            f"closed an idle TCP connection from {victim} to make room for one from {newcomer} "
            + (
                "(descriptor limit)"
                if address is None
                else f"({EVICTABLE_PER_ADDRESS} idle from that address)"
            ),
        )
        evict()
        return True
