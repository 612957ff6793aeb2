"""Strict lib0 readers for untrusted update bytes (the pieces under `update_format`).

Each takes the data and a position and returns (value, new position). Truncated input raises
IndexError, which the callers turn into one "truncated" error instead of checking every
index; everything else that is malformed raises `InvalidUpdate` with a reason safe to show a
peer. They are tuned for the hot path: plain functions, no objects, varUints unrolled.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

from .errors import InvalidUpdate

__all__ = [
    "MAX_ANY_DEPTH",
    "MAX_CLOCK_END",
    "MAX_UINT",
    "read_any",
    "read_id",
    "read_int",
    "read_json",
    "read_text",
    "read_uint",
    "var_uint",
]

# lib0 numbers are JavaScript numbers: integers are exact up to 2^53 - 1.
MAX_UINT = (1 << 53) - 1
# The largest exclusive end clock of a struct or delete range (see update_format).
MAX_CLOCK_END = (1 << 31) - 1
# Yrs decodes nested Any values recursively with no limit: deep nesting overflows its stack.
MAX_ANY_DEPTH = 64


def read_uint(data: bytes, pos: int) -> tuple[int, int]:
    """A lib0 varUint of at most 8 bytes and at most 2^53 - 1 (unrolled: client ids are
    4-5 bytes and a loop costs three times as much)."""
    b = data[pos]
    if b < 0x80:
        return b, pos + 1
    v = b & 0x7F
    b = data[pos + 1]
    if b < 0x80:
        return v | b << 7, pos + 2
    v |= (b & 0x7F) << 7
    b = data[pos + 2]
    if b < 0x80:
        return v | b << 14, pos + 3
    v |= (b & 0x7F) << 14
    b = data[pos + 3]
    if b < 0x80:
        return v | b << 21, pos + 4
    v |= (b & 0x7F) << 21
    b = data[pos + 4]
    if b < 0x80:
        return v | b << 28, pos + 5
    v |= (b & 0x7F) << 28
    b = data[pos + 5]
    if b < 0x80:
        return v | b << 35, pos + 6
    v |= (b & 0x7F) << 35
    b = data[pos + 6]
    if b < 0x80:
        return v | b << 42, pos + 7
    v |= (b & 0x7F) << 42
    b = data[pos + 7]
    if b < 0x10:  # bits 49-52: anything more is above 2^53 - 1
        return v | b << 49, pos + 8
    if b < 0x80:
        raise InvalidUpdate("varUint larger than 2^53-1")
    raise InvalidUpdate("varUint longer than 8 bytes")


def read_int(data: bytes, pos: int) -> tuple[int, int]:
    """A lib0 varInt (sign in bit 6 of the first byte), |value| <= 2^53 - 1 as lib0 allows."""
    byte = data[pos]
    value = byte & 0x3F
    negative = byte & 0x40
    pos += 1
    shift = 6
    while byte >= 0x80:
        if shift >= 55:
            raise InvalidUpdate("varInt longer than 8 bytes")
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        shift += 7
        pos += 1
    if value > MAX_UINT:
        raise InvalidUpdate("varInt out of range")
    return (-value if negative else value), pos


def read_text(data: bytes, pos: int) -> tuple[str, int]:
    """A lib0 varString: byte length, then UTF-8 that must be valid."""
    length, pos = read_uint(data, pos)
    end = pos + length
    if end > len(data):
        raise IndexError
    raw = data[pos:end]
    if raw.isascii():
        return raw.decode("ascii"), end
    try:
        return raw.decode("utf-8"), end
    except UnicodeDecodeError:
        raise InvalidUpdate("string is not valid UTF-8") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(name)


def _finite(text: str) -> float:
    # JSON.parse turns 1e999 into Infinity; Yrs (serde_json) refuses it: refuse it first.
    value = float(text)
    if value in (math.inf, -math.inf):
        raise ValueError(text)
    return value


def read_json(data: bytes, pos: int) -> tuple[Any, int]:
    """A varString holding JSON that JavaScript's JSON.parse accepts."""
    text, pos = read_text(data, pos)
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite), pos
    except (ValueError, RecursionError):
        raise InvalidUpdate("embedded JSON does not parse") from None


def read_any(data: bytes, pos: int, depth: int, keep: bool) -> tuple[Any, int]:
    """A lib0 Any value. With `keep`, returns a value that compares equal exactly when Yrs
    holds the same value (numbers as floats, NaN as a marker, maps as dicts); else None."""
    tag = data[pos]
    pos += 1
    if tag == 119:  # string
        text, pos = read_text(data, pos)
        return text, pos
    if tag == 125:  # varInt
        number, pos = read_int(data, pos)
        return (float(number) if keep else None), pos
    if tag == 126:
        return ("null",) if keep else None, pos
    if tag == 127:
        return ("undefined",) if keep else None, pos
    if tag == 120 or tag == 121:
        return tag == 120, pos
    if tag == 123 or tag == 124:  # float64 / float32, big-endian
        size = 8 if tag == 123 else 4
        if pos + size > len(data):
            raise IndexError
        value = None
        if keep:
            value = struct.unpack(">d" if size == 8 else ">f", data[pos : pos + size])[0]
            if value != value:
                value = ("nan",)
        return value, pos + size
    if tag == 122:  # BigInt64
        if pos + 8 > len(data):
            raise IndexError
        return (
            ("bigint", int.from_bytes(data[pos : pos + 8], "big", signed=True)) if keep else None
        ), pos + 8
    if tag == 116:  # Uint8Array
        length, pos = read_uint(data, pos)
        if pos + length > len(data):
            raise IndexError
        return (bytes(data[pos : pos + length]) if keep else None), pos + length
    if tag == 117 or tag == 118:  # array / object
        if depth >= MAX_ANY_DEPTH:
            raise InvalidUpdate("Any value nested too deeply")
        count, pos = read_uint(data, pos)
        # An element takes at least 1 byte, an object entry at least 2 (key length + tag).
        if count * (1 if tag == 117 else 2) > len(data) - pos:
            raise InvalidUpdate("Any count larger than the update")
        if tag == 117:
            items = []
            for _ in range(count):
                item, pos = read_any(data, pos, depth + 1, keep)
                items.append(item)
            return (tuple(items) if keep else None), pos
        entries = {}
        for _ in range(count):
            key, pos = read_text(data, pos)
            item, pos = read_any(data, pos, depth + 1, keep)
            entries[key] = item
        return (("map", entries) if keep else None), pos
    raise InvalidUpdate("unknown Any tag")


def read_id(data: bytes, pos: int) -> tuple[int, int, int]:
    client, pos = read_uint(data, pos)
    clock, pos = read_uint(data, pos)
    if clock >= MAX_CLOCK_END:
        raise InvalidUpdate("referenced clock out of range")
    return client, clock, pos


def var_uint(n: int) -> bytes:
    """The lib0 varUint encoding of `n` (0 <= n <= 2^53 - 1)."""
    out = bytearray()
    while n > 0x7F:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    out.append(n)
    return bytes(out)
