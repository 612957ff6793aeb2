"""lib0 binary encoding (the primitives under every Yjs wire message).

varUint: 7 bits per byte, least significant group first, high bit = "more follows".
varUint8Array: varUint length, then the bytes. varString: varUint8Array of the UTF-8 text,
so the length counts bytes, not characters (pycrdt's own Encoder gets this wrong).
"""

from __future__ import annotations

from .errors import ProtocolError

__all__ = ["MAX_VAR_UINT", "Decoder", "Encoder", "var_string", "var_uint", "var_uint8array"]

# lib0 numbers are JavaScript numbers: integers are exact up to 2^53 - 1, 8 varint bytes.
MAX_VAR_UINT = (1 << 53) - 1
_MAX_VAR_UINT_BYTES = 8


def var_uint(n: int, limit: int = MAX_VAR_UINT) -> bytes:
    """`limit` as in `Decoder.read_var_uint`: what the receiver is known to accept."""
    if n < 0 or n > limit:
        raise ValueError(f"varUint out of range: {n}")
    out = bytearray()
    while n > 0x7F:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    out.append(n)
    return bytes(out)


def var_uint8array(data: bytes) -> bytes:
    return var_uint(len(data)) + data


def var_string(text: str) -> bytes:
    return var_uint8array(text.encode("utf-8"))


class Encoder:
    """Appends lib0 values to a buffer; `to_bytes()` returns the message."""

    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write_var_uint(self, n: int, limit: int = MAX_VAR_UINT) -> Encoder:
        self._parts.append(var_uint(n, limit))
        return self

    def write_var_uint8array(self, data: bytes) -> Encoder:
        self._parts.append(var_uint8array(data))
        return self

    def write_var_string(self, text: str) -> Encoder:
        self._parts.append(var_string(text))
        return self

    def write_raw(self, data: bytes) -> Encoder:
        self._parts.append(data)
        return self

    def to_bytes(self) -> bytes:
        return b"".join(self._parts)


class Decoder:
    """Reads lib0 values from untrusted bytes; any malformation raises `ProtocolError`."""

    __slots__ = ("_data", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self._data = data
        self.pos = pos

    @property
    def remaining(self) -> int:
        return len(self._data) - self.pos

    def at_end(self) -> bool:
        return self.pos >= len(self._data)

    def read_var_uint(self, limit: int = MAX_VAR_UINT) -> int:
        """`limit` may be raised to what an 8-byte varUint holds (2^56 - 1): y-protocols sends
        an awareness clock of 2^53 after it saw 2^53 - 1, and that must still decode."""
        data, pos = self._data, self.pos
        value = 0
        shift = 0
        for i in range(_MAX_VAR_UINT_BYTES):
            if pos + i >= len(data):
                raise ProtocolError("unexpected end of data in varUint")
            byte = data[pos + i]
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                if value > limit:
                    if limit == MAX_VAR_UINT:
                        raise ProtocolError("varUint larger than 2^53-1")
                    raise ProtocolError(f"varUint larger than {limit}")
                self.pos = pos + i + 1
                return value
            shift += 7
        raise ProtocolError("varUint longer than 8 bytes")

    def read_bytes(self, length: int) -> bytes:
        end = self.pos + length
        if end > len(self._data):
            raise ProtocolError(f"length {length} runs past the end of the data")
        chunk = self._data[self.pos : end]
        self.pos = end
        return bytes(chunk)

    def read_var_uint8array(self) -> bytes:
        return self.read_bytes(self.read_var_uint())

    def read_var_string(self) -> str:
        raw = self.read_var_uint8array()
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError("string is not valid UTF-8") from exc

    def read_rest(self) -> bytes:
        chunk = bytes(self._data[self.pos :])
        self.pos = len(self._data)
        return chunk

    def expect_end(self, what: str) -> None:
        if not self.at_end():
            raise ProtocolError(f"{self.remaining} trailing bytes after {what}")
