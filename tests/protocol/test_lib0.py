"""lib0 primitives against the golden values of wire-protocols.md §1."""

from __future__ import annotations

import pytest

from protocol.errors import ProtocolError
from protocol.lib0 import MAX_VAR_UINT, Decoder, var_string, var_uint, var_uint8array

VAR_UINTS = [
    (0, "00"),
    (1, "01"),
    (127, "7f"),
    (128, "80 01"),
    (300, "ac 02"),
    (16384, "80 80 01"),
    (2**32 - 1, "ff ff ff ff 0f"),
    (2**53 - 1, "ff ff ff ff ff ff ff 0f"),
    (3141592653, "cd cc 83 da 0b"),
]


@pytest.mark.parametrize(("value", "golden"), VAR_UINTS)
def test_var_uint_golden(value: int, golden: str) -> None:
    assert var_uint(value) == bytes.fromhex(golden)
    decoder = Decoder(bytes.fromhex(golden))
    assert decoder.read_var_uint() == value
    assert decoder.at_end()


def test_var_string_counts_utf8_bytes() -> None:
    assert var_string("") == bytes.fromhex("00")
    assert var_string("é") == bytes.fromhex("02 c3 a9")
    assert Decoder(bytes.fromhex("02 c3 a9")).read_var_string() == "é"


def test_var_uint8array() -> None:
    assert var_uint8array(b"\xde\xad") == bytes.fromhex("02 de ad")
    assert Decoder(bytes.fromhex("02 de ad")).read_var_uint8array() == b"\xde\xad"


@pytest.mark.parametrize(
    "data",
    [
        "",  # nothing at all
        "80",  # continuation bit with no next byte
        "ff ff",
        "80 80 80 80 80 80 80 80 01",  # nine bytes: longer than any 2^53 number
        "80 80 80 80 80 80 80 10",  # 2^53 exactly: past JavaScript's safe integers
    ],
)
def test_bad_var_uint_raises_protocol_error(data: str) -> None:
    with pytest.raises(ProtocolError):
        Decoder(bytes.fromhex(data)).read_var_uint()


def test_length_past_end_raises() -> None:
    with pytest.raises(ProtocolError, match="past the end"):
        Decoder(bytes.fromhex("05 01 02")).read_var_uint8array()
    with pytest.raises(ProtocolError):
        Decoder(var_uint(MAX_VAR_UINT) + b"x").read_var_uint8array()


def test_invalid_utf8_raises() -> None:
    with pytest.raises(ProtocolError, match="UTF-8"):
        Decoder(bytes.fromhex("02 c3 28")).read_var_string()


def test_encode_rejects_out_of_range() -> None:
    with pytest.raises(ValueError):
        var_uint(-1)
    with pytest.raises(ValueError):
        var_uint(MAX_VAR_UINT + 1)
