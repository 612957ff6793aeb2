"""Site links travel over `wss://`: which peer URLs are allowed, and the TLS context the
dialing side verifies peers with.

The sealed channel (protocol/link_channel.py) already makes what crosses a link tamper-
evident; TLS adds confidentiality (documents, presence, names) and a second check of the
peer's identity. A `ws://` peer URL is refused when the peers file is read, unless
SAMEN_LINK_ALLOW_INSECURE allows it: `loopback` (tests on one machine) or `true`.
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
from collections.abc import Iterable
from urllib.parse import urlsplit

from ..errors import ConfigError

__all__ = ["INSECURE_CHOICES", "client_context", "insecure_refusal", "warn_if_insecure"]

log = logging.getLogger(__name__)

INSECURE_CHOICES = ("false", "loopback", "true")


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def insecure_refusal(url: str, allow_insecure: str) -> str | None:
    """Why the peer URL `url` is refused under SAMEN_LINK_ALLOW_INSECURE=`allow_insecure`,
    or None."""
    if url.startswith("wss://") or allow_insecure == "true":
        return None
    if not url.startswith("ws://"):
        return "needs a wss:// url"
    if allow_insecure == "loopback":
        if _is_loopback(url):
            return None
        return f"{url} is ws:// and not on the loopback (SAMEN_LINK_ALLOW_INSECURE=loopback)"
    return f"{url} is ws://: site links are wss:// (SAMEN_LINK_ALLOW_INSECURE allows ws:// for tests)"


def warn_if_insecure(urls: Iterable[str], allow_insecure: str) -> None:
    """Say loudly, at start, that links may go unencrypted."""
    if allow_insecure == "false":
        return
    plain = sorted(url for url in urls if url.startswith("ws://"))
    log.warning(
        "SAMEN_LINK_ALLOW_INSECURE=%s: site links over ws:// are allowed%s; they are not encrypted "
        "and the peer's address is not verified by TLS. Never in production",
        allow_insecure, f" ({', '.join(plain)})" if plain else " (none in the peers file now)",
    )  # fmt: skip


def client_context(ca_file: str) -> ssl.SSLContext:
    """The context wss:// peers are verified with: the CA bundle `ca_file`, or the system's
    CAs when it is empty. Raises `ConfigError` for a file that cannot be read as one."""
    try:
        return ssl.create_default_context(cafile=ca_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"SAMEN_LINK_CA_FILE={ca_file!r}: cannot read it as a CA bundle: {exc}") from exc
