"""Reading a thread document as JSON, and the update that posts one message (pure: no I/O).

What REST shows of a thread and what a server-side post writes, following the wire contract
of `thread_rules.py`. Reading is lenient: a value of the wrong type (which the validator
never lets a client write, but a document from before it may hold) reads as absent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pycrdt

__all__ = ["message_update", "read_messages"]

ROOT = "messages"


def read_messages(ydoc: pycrdt.Doc[Any]) -> list[dict[str, Any]]:
    """Every message of the thread, in the array's order, as plain JSON values."""
    messages = ydoc.get(ROOT, type=pycrdt.Array)
    out = []
    for value in messages.to_py() or ():
        if isinstance(value, dict):
            out.append(_message(value))
    return out


def _message(raw: Mapping[str, Any]) -> dict[str, Any]:
    reactions = raw.get("reactions")
    return {
        "id": _string(raw.get("id")) or "",
        "author": _string(raw.get("author")) or "",
        "created": _number(raw.get("created")),
        "parent": _string(raw.get("parent")),
        "body": _string(raw.get("body")) or "",
        "edited": _number(raw.get("edited")),
        "deleted": raw.get("deleted") is True,
        "reactions": {k: v for k, v in reactions.items() if isinstance(v, str)}
        if isinstance(reactions, dict)
        else {},
        "hidden": raw.get("hidden") is True,
    }


def _string(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def message_update(full_state: bytes, message: Mapping[str, Any]) -> bytes:
    """The update that appends `message` ({id, author, created, body, parent?}) to the
    thread whose whole state is `full_state`. It is made in a copy of the document (new
    client id): a server post costs one copy of the thread, fine for REST and bots."""
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    doc.apply_update(full_state)
    before = doc.get_state()
    fields: dict[str, Any] = {
        "id": message["id"],
        "author": message["author"],
        "created": float(message["created"]),
        "body": pycrdt.Text(message["body"]),
        "deleted": False,
        "reactions": pycrdt.Map(),
    }
    if message.get("parent") is not None:
        fields["parent"] = message["parent"]
    doc.get(ROOT, type=pycrdt.Array).append(pycrdt.Map(fields))
    return doc.get_update(before)
