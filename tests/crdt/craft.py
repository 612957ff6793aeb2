"""Hand-made Yjs v1 updates for tests: exactly the bytes a hostile client could send."""

from __future__ import annotations

from crdt.lib0_strict import var_uint as v

__all__ = ["any_array", "deleted", "gc", "group", "item", "skip", "string", "update", "v", "vs"]


def vs(text: str) -> bytes:
    """varString (byte length + UTF-8)."""
    raw = text.encode()
    return v(len(raw)) + raw


def update(
    *groups: bytes, deletes: dict[int, list[tuple[int, int]]] | None = None, ngroups: int | None = None
) -> bytes:
    """Struct groups (from `group`) then a delete set {client: [(clock, length)]}."""
    out = v(len(groups) if ngroups is None else ngroups) + b"".join(groups)
    deletes = deletes or {}
    out += v(len(deletes))
    for client, ranges in deletes.items():
        out += v(client) + v(len(ranges)) + b"".join(v(c) + v(n) for c, n in ranges)
    return out


def group(client: int, clock: int, *structs: bytes, count: int | None = None) -> bytes:
    return v(len(structs) if count is None else count) + v(client) + v(clock) + b"".join(structs)


def gc(length: int) -> bytes:
    return b"\x00" + v(length)


def skip(length: int) -> bytes:
    return b"\x0a" + v(length)


def item(
    content_ref: int,
    content: bytes,
    *,
    origin: tuple[int, int] | None = None,
    right: tuple[int, int] | None = None,
    root: str | None = "t",
    parent: tuple[int, int] | None = None,
    key: str | None = None,
    info_extra: int = 0,
) -> bytes:
    """An Item struct; parent fields are written only without origins, as Yjs does."""
    info = (
        content_ref
        | (0x80 if origin else 0)
        | (0x40 if right else 0)
        | (0x20 if key is not None else 0)
        | info_extra
    )
    out = bytes([info])
    if origin:
        out += v(origin[0]) + v(origin[1])
    if right:
        out += v(right[0]) + v(right[1])
    if not origin and not right:
        out += (b"\x00" + v(parent[0]) + v(parent[1])) if parent else (b"\x01" + vs(root or ""))
        if key is not None:
            out += vs(key)
    return out + content


def string(text: str, **kwargs: object) -> bytes:
    return item(4, vs(text), **kwargs)  # type: ignore[arg-type]


def deleted(length: int, **kwargs: object) -> bytes:
    return item(1, v(length), **kwargs)  # type: ignore[arg-type]


def any_array(*encoded_values: bytes, count: int | None = None, **kwargs: object) -> bytes:
    """Any content (ref 8) with already encoded lib0 Any values."""
    return item(8, v(len(encoded_values) if count is None else count) + b"".join(encoded_values), **kwargs)  # type: ignore[arg-type]
