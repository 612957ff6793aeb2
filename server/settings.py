"""One settings object, read from environment variables and overridden by CLI flags.

Nothing reads the environment at import time: `Settings.from_env()` is called by the CLI
(or a test) and the result is passed down explicitly.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = ["SETTINGS_HELP", "Settings"]

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = field(default_factory=lambda: Path("./data"))
    max_message_size: int = 16 * MIB
    ws_compression: bool = False
    ping_interval: float = 30.0
    ping_timeout: float = 30.0
    awareness_timeout: float = 30.0
    compact_after: int = 500
    send_budget: int = 4 * MIB
    max_documents_per_socket: int = 1000
    awareness_max_entries: int = 100
    awareness_max_clients: int = 8
    awareness_max_state_bytes: int = 16 * 1024
    awareness_rate: float = 20.0
    max_connections: int = 10000
    max_connections_per_address: int = 200
    trusted_proxies: str = "127.0.0.1"
    handshake_timeout: float = 10.0
    first_message_timeout: float = 60.0
    sqlite_synchronous: str = "FULL"
    shutdown_timeout: float = 30.0
    log_level: str = "info"
    database_url: str = ""
    redis_url: str = ""
    redis_prefix: str = "samen:"
    node_id: str = ""
    debug_hooks: bool = False
    site_id: str = ""
    site_key: str = ""
    peers_file: str = ""
    link_max_update: int = 16 * MIB
    link_send_budget: int = 32 * MIB
    link_presence_clients: int = 2000
    link_stuck_after: float = 60.0
    link_allow_insecure: str = "false"
    link_ca_file: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    auth: str = "required"
    allowed_origins: str = ""
    public_url: str = ""
    session_idle_timeout: float = 12 * 3600.0
    session_max_age: float = 14 * 86400.0
    signin_max_failures: int = 10
    signin_window: float = 60.0
    oidc_issuer: str = ""
    oidc_client_id: str = ""
    oidc_client_secret: str = ""
    oidc_scopes: str = "openid profile email"
    oidc_groups_claim: str = "groups"
    oidc_default_role: str = "member"
    anonymous_read: bool = False
    trash_retention_days: float = 30.0
    thread_clock_tolerance: float = 300.0

    @property
    def auth_required(self) -> bool:
        return self.auth == "required"

    @property
    def site(self) -> str:
        """The site part of person ids ("name@site"): the federation site id, or "local"."""
        return self.site_id or "local"

    @property
    def origins(self) -> tuple[str, ...]:
        return tuple(o.strip().rstrip("/") for o in self.allowed_origins.split(",") if o.strip())

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then `SAMEN_*` environment variables, then non-None `overrides`."""
        env = os.environ if env is None else env
        for old, new in _REPLACED.items():
            if env.get(old):
                raise ConfigError(f"{old} was replaced by {new}")
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(f"SAMEN_{f.name.upper()}")
            if raw is not None and raw != "":
                values[f.name] = _parse(f.name, f.type, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            settings = cls(**values)
        except TypeError as exc:
            raise ConfigError(str(exc)) from exc
        settings.validate()
        return settings

    def validate(self) -> None:
        if not 0 < self.port < 65536:
            raise ConfigError(f"SAMEN_PORT must be 1-65535, not {self.port}")
        if self.max_message_size < 1024:
            raise ConfigError("SAMEN_MAX_MESSAGE_SIZE must be at least 1024 bytes")
        if self.sqlite_synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise ConfigError("SAMEN_SQLITE_SYNCHRONOUS must be OFF, NORMAL, FULL or EXTRA")
        for name in (
            "ping_interval",
            "ping_timeout",
            "awareness_timeout",
            "shutdown_timeout",
            "awareness_rate",
            "handshake_timeout",
            "first_message_timeout",
            "link_stuck_after",
            "thread_clock_tolerance",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"SAMEN_{name.upper()} must be positive")
        if self.database_url and not self.database_url.startswith(("postgresql://", "postgres://")):
            raise ConfigError("SAMEN_DATABASE_URL must be a postgresql:// URL (leave it empty for SQLite)")
        if self.redis_url and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError("SAMEN_REDIS_URL must be a redis:// URL (leave it empty for one node)")
        if self.site_id and not (self.site_key and self.peers_file):
            raise ConfigError("SAMEN_SITE_ID needs SAMEN_SITE_KEY and SAMEN_PEERS_FILE")
        if self.link_allow_insecure not in {"false", "loopback", "true"}:
            raise ConfigError("SAMEN_LINK_ALLOW_INSECURE must be false, loopback or true")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("SAMEN_TLS_CERT and SAMEN_TLS_KEY go together")
        for name in (
            "compact_after",
            "max_documents_per_socket",
            "awareness_max_entries",
            "awareness_max_clients",
            "max_connections",
            "link_presence_clients",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"SAMEN_{name.upper()} must be at least 1")
        if self.trash_retention_days < 0:
            raise ConfigError("SAMEN_TRASH_RETENTION_DAYS must be 0 (purge at once) or more")
        if self.max_connections_per_address < 0:
            raise ConfigError("SAMEN_MAX_CONNECTIONS_PER_ADDRESS must be 0 (no limit) or more")
        # A budget below one awareness state or a small update would close honest clients.
        if self.link_max_update < 1024 or self.link_send_budget < MIB:
            raise ConfigError("SAMEN_LINK_MAX_UPDATE must be at least 1024, SAMEN_LINK_SEND_BUDGET 1048576")
        if self.send_budget < 64 * 1024:
            raise ConfigError("SAMEN_SEND_BUDGET must be at least 65536 bytes")
        if self.awareness_max_state_bytes < 256:
            raise ConfigError("SAMEN_AWARENESS_MAX_STATE_BYTES must be at least 256")
        from .admission import TrustedNetworks  # (admission imports this module)

        TrustedNetworks(self.trusted_proxies)  # raises ConfigError for a malformed entry
        self._validate_auth()

    def _validate_auth(self) -> None:
        if self.auth not in {"required", "off"}:
            raise ConfigError("SAMEN_AUTH must be required or off")
        for origin in self.origins:
            if not _ORIGIN.match(origin):
                raise ConfigError(
                    f"SAMEN_ALLOWED_ORIGINS: {origin!r} is not an origin like https://intranet.example"
                )
        if self.public_url and not _ORIGIN.match(self.public_url.rstrip("/")):
            raise ConfigError("SAMEN_PUBLIC_URL must be an origin like https://intranet.example")
        for name in ("session_idle_timeout", "session_max_age", "signin_window"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"SAMEN_{name.upper()} must be positive")
        if self.signin_max_failures < 1:
            raise ConfigError("SAMEN_SIGNIN_MAX_FAILURES must be at least 1")
        if self.oidc_issuer:
            if not self.oidc_client_id:
                raise ConfigError("SAMEN_OIDC_ISSUER needs SAMEN_OIDC_CLIENT_ID")
            if not (self.oidc_issuer.startswith("https://") or _LOOPBACK_HTTP.match(self.oidc_issuer)):
                raise ConfigError("SAMEN_OIDC_ISSUER must be an https:// URL (http:// only on the loopback)")
        if self.oidc_default_role not in {"admin", "community-manager", "member", "guest"}:
            raise ConfigError("SAMEN_OIDC_DEFAULT_ROLE must be admin, community-manager, member or guest")


_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.\[\]:-]+$")
_LOOPBACK_HTTP = re.compile(r"^http://(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?(/|$)")


def _parse(name: str, annotation: object, raw: str) -> Any:
    kind = str(annotation)
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "Path":
            return Path(raw)
        if kind == "bool":
            if raw.lower() in {"1", "true", "yes", "on"}:
                return True
            if raw.lower() in {"0", "false", "no", "off"}:
                return False
            raise ValueError(raw)
    except ValueError as exc:
        raise ConfigError(f"SAMEN_{name.upper()}={raw!r} is not a valid {kind}") from exc
    return raw


# Settings that were renamed: naming the old one is an error, so it is not silently ignored.
_REPLACED = {
    "SAMEN_SEND_QUEUE_LIMIT": "SAMEN_SEND_BUDGET (bytes, not messages; default 4194304)",
}

# Shown by `samen serve --help` and mirrored in the README's settings table.
SETTINGS_HELP: dict[str, str] = {
    "host": "address to listen on",
    "port": "TCP port to listen on",
    "data_dir": "folder of the embedded SQLite store",
    "max_message_size": "largest WebSocket message accepted, in bytes (larger: close 1009)",
    "ws_compression": "offer permessage-deflate to clients (costs CPU and ~40 KiB per connection)",
    "ping_interval": "seconds between WebSocket pings to each client",
    "ping_timeout": "seconds to wait for a pong before closing the connection",
    "awareness_timeout": "seconds after which a presence state that was not renewed is dropped",
    "compact_after": "log entries of a document after which it is compacted into a snapshot",
    "send_budget": (
        "bytes waiting to be sent to one client (96 more per message) before it is disconnected"
        " (1013); one message larger than this may wait besides"
    ),
    "max_documents_per_socket": "documents one Hocuspocus socket may open",
    "awareness_max_entries": "entries in one awareness update from a client; more: the update is dropped",
    "awareness_max_clients": "awareness client ids one connection (one Hocuspocus document) may hold",
    "awareness_max_state_bytes": "bytes of one awareness state; larger: dropped",
    "awareness_rate": (
        "awareness changes accepted per second from one connection, with bursts of two seconds' worth;"
        " more: held back (the latest one is relayed within 3 s)"
    ),
    "max_connections": (
        "client WebSockets this node accepts (lowered to fit the descriptor limit); more: HTTP 503"
    ),
    "max_connections_per_address": "client WebSockets from one address (0: no limit); more: HTTP 429",
    "trusted_proxies": (
        "proxies whose X-Forwarded-For/-Proto are believed (addresses or CIDRs, comma-separated,"
        " or *); exempt from the per-address limits"
    ),
    "handshake_timeout": "seconds a new connection may take to send its complete request headers",
    "first_message_timeout": "seconds a client WebSocket may stay open before it sends its first message",
    "sqlite_synchronous": "SQLite synchronous mode: FULL survives power loss, NORMAL only crashes",
    "shutdown_timeout": "seconds a graceful stop waits for pending writes",
    "log_level": "debug, info, warning or error",
    "database_url": "PostgreSQL URL (postgresql://user@host/db); empty: SQLite in the data folder",
    "redis_url": "Redis URL for fan-out between the nodes of a site; empty: this node alone",
    "redis_prefix": "prefix of every Redis channel, so several sites or tests can share a Redis",
    "node_id": "this node's name on the backplane and in logs; empty: host name and process id",
    "debug_hooks": "enable /debug/* test hooks (never in production)",
    "site_id": "this site's id for federation (see `samen site init`); empty: no federation",
    "site_key": "path of this site's private Ed25519 key (PEM), made by `samen site init`",
    "peers_file": "path of the peers file (TOML): peer sites, their keys and the spaces shared",
    "link_max_update": "largest update a peer site may send in its log (larger: refused, logged, counted)",
    "link_send_budget": (
        "bytes queued for a peer site that it has not read; above it its requests are refused (busy),"
        " at twice that the link is closed"
    ),
    "link_stuck_after": (
        "seconds a peer site may stay behind, acknowledging nothing, before its link counts as stuck"
    ),
    "link_presence_clients": "presence client ids one peer site may hold on this site (all documents)",
    "link_allow_insecure": (
        "allow ws:// peer urls: false (wss:// only), loopback (ws:// to 127.0.0.1/::1/localhost: tests)"
        " or true; a WARNING at start when allowed"
    ),
    "link_ca_file": "CA bundle (PEM) to verify wss:// peers' certificates with; empty: the system CAs",
    "tls_cert": "certificate chain (PEM) to serve HTTPS/wss:// with; empty: plain HTTP (behind a TLS proxy)",
    "tls_key": "private key (PEM) of SAMEN_TLS_CERT",
    "auth": "required: every client signs in; off: anyone may read and write everything (development only)",
    "allowed_origins": "other origins whose pages may use a cookie session (comma-separated)",
    "public_url": "the origin browsers reach Samen at (https://intranet.example); empty: from each request",
    "session_idle_timeout": "seconds a browser session lives without being used",
    "session_max_age": "seconds a browser session lives at most after sign-in",
    "signin_max_failures": "failed sign-ins per account and per address within the window before 429",
    "signin_window": "seconds over which failed sign-ins are counted",
    "oidc_issuer": "OpenID Connect issuer URL of the identity provider; empty: no IdP sign-in",
    "oidc_client_id": "client id of Samen at the identity provider",
    "oidc_client_secret": "client secret of Samen at the identity provider",
    "oidc_scopes": "scopes asked of the identity provider",
    "oidc_groups_claim": "ID token claim that lists the person's groups",
    "oidc_default_role": "site role of a person first signing in through the identity provider",
    "anonymous_read": "let clients without credentials read (never write) listed open spaces",
    "trash_retention_days": "days a deleted page stays in its space's trash (restorable) before it is purged",
    "thread_clock_tolerance": "seconds a new thread message's `created` may differ from the server's clock",
}
