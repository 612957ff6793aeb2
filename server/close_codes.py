"""Every WebSocket close code Samen sends, and why (RFC 6455 §7.4, Hocuspocus CloseEvents),
for client sockets and site links alike."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["CloseCode", "close_reason"]


class CloseCode(IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002  # a well-formed frame this side does not accept (unknown type, wrong direction)
    UNSUPPORTED_DATA = 1003  # a text frame: both protocols are binary
    INVALID_PAYLOAD = 1007  # bytes that do not decode (truncated, lengths past the end, bad update)
    POLICY_VIOLATION = 1008  # a refused update that cuts the client off; a site link that lies
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011  # e.g. the document could not be loaded
    SERVICE_RESTART = 1012  # graceful shutdown: reconnect (to another node)
    TRY_AGAIN_LATER = 1013  # the client could not keep up with its room
    # Hocuspocus's "reset": too much queued before authentication; providers reconnect.
    RESET_CONNECTION = 4205
    # 4400-4499 make y-websocket 3.1 stop reconnecting: retrying cannot succeed.
    BAD_REQUEST = 4400  # a bad document name
    UNAUTHORIZED = 4401  # no or invalid credentials; site links: the handshake failed
    FORBIDDEN = 4403  # no access to this document; site links: unknown site
    CONFLICT = 4409  # site links: another node of this site holds the link
    LINK_OUTDATED = 4426  # site links: the dialer speaks another link version (HTTP's 426)
    # Site links: a frame after the handshake failed its MAC check (forged, altered,
    # dropped, replayed or reordered between the sites). No HTTP analogue.
    LINK_INTEGRITY = 4460
    LINK_BLOCKED = 4503  # site links: switched off by the test hook


def close_reason(text: str) -> str:
    """Close reasons are limited to 123 bytes of UTF-8."""
    data = text.encode("utf-8")
    if len(data) <= 123:
        return text
    return data[:120].decode("utf-8", "ignore") + "..."
