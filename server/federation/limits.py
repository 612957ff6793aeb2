"""What a peer site (or a stranger dialing this one) may make this node hold or do, and how
what they send is shown in the log.

Every string a peer or a stranger chose (site ids in a HELLO, document names, authors,
refusal reasons) goes into the log through `shown`: escaped (repr: no control characters,
no fake log lines) and cut to a few hundred characters, whatever its size on the wire.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["MAX_AUTHOR_CHARS", "LinkLimits", "bad_author", "shown"]

MIB = 1024 * 1024
MAX_AUTHOR_CHARS = 256  # "name@site"; the people domain keeps names far shorter
_SHOWN_CHARS = 120
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def shown(text: str | bytes, limit: int = _SHOWN_CHARS) -> str:
    """`text` for a log line: at most `limit` characters of it, escaped, with its full
    length when it was cut."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def bad_author(author: str) -> str | None:
    """Why `author` (a batch entry's principal id) is refused, or None."""
    if len(author) > MAX_AUTHOR_CHARS:
        return f"author longer than {MAX_AUTHOR_CHARS} characters"
    if _CONTROL.search(author):
        return "author contains control characters"
    return None


@dataclass(frozen=True, slots=True)
class LinkLimits:
    """Bounds on what one peer site makes this node hold or do (the settings table in the
    README names them)."""

    # The largest update of a log batch (one client's update at the origin): a client here
    # may send no more (SAMEN_MAX_MESSAGE_SIZE's default). Answers and inventories carry
    # whole documents and are bounded by the link's message limit instead.
    max_update: int = 16 * MIB
    # Bytes queued for the peer before it read them. WANT answers are refused above it
    # ("busy"); far above it the peer is not reading and the link is closed.
    send_budget: int = 32 * MIB
    # Presence from one peer: client ids held (all documents), bytes of one state, and
    # accepted entries per second with bursts of two seconds' worth.
    presence_clients: int = 2000
    presence_state_bytes: int = 16 * 1024
    presence_rate: float = 200.0
    presence_documents: int = 1000
    # Seconds the peer may stay behind without acknowledging anything before the link
    # counts as stuck (a WARNING, samen_link_stuck, a /readyz problem).
    stuck_after: float = 60.0
