"""Awareness updates: golden bytes of wire-protocols.md §2.3, clocks up to 2^53, limits."""

from __future__ import annotations

import pytest

from protocol.awareness import (
    MAX_CLOCK,
    AwarenessEntry,
    AwarenessLimitExceeded,
    RawAwarenessEntry,
    decode_awareness_update,
    decode_raw_awareness_update,
    encode_awareness_update,
    validate_entry,
)
from protocol.errors import ProtocolError
from protocol.lib0 import var_uint

USER_A = '{"user":{"name":"A"}}'

GOLDEN = [
    ("client 1 clock 0 {}", [AwarenessEntry(1, 0, "{}")], "01 01 00 02 7b 7d"),
    ("client 1 clock 1 user A", [AwarenessEntry(1, 1, USER_A)], "01 01 01 15" + USER_A.encode().hex()),
    ("removal of client 1", [AwarenessEntry(1, 1, "null")], "01 01 01 04 6e 75 6c 6c"),
    (
        "raw UTF-8 state",
        [AwarenessEntry(1, 2, '{"user":{"name":"é"}}')],
        "01 01 02 16" + '{"user":{"name":"é"}}'.encode().hex(),
    ),
    ("big client id", [AwarenessEntry(3141592653, 0, "{}")], "01 cd cc 83 da 0b 00 02 7b 7d"),
]


@pytest.mark.parametrize(("what", "entries", "golden"), GOLDEN, ids=[g[0] for g in GOLDEN])
def test_golden(what: str, entries: list[AwarenessEntry], golden: str) -> None:
    data = bytes.fromhex(golden)
    assert encode_awareness_update(entries) == data
    assert decode_awareness_update(data) == entries


def test_removal_is_recognised_even_padded() -> None:
    [entry] = decode_awareness_update(bytes.fromhex("01 01 01 06") + b" null ")
    assert entry.is_removal


@pytest.mark.parametrize(
    "data",
    [
        "01 01 01 03" + b"{x}".hex(),  # not JSON: every client would choke on it
        "05 01 01",  # claims more entries than it has bytes
        "01 01 01 15 7b",  # state runs past the end
        "01 01 00 02 7b 7d 00",  # trailing byte
    ],
)
def test_malformed(data: str) -> None:
    with pytest.raises(ProtocolError):
        decode_awareness_update(bytes.fromhex(data))


def test_clock_two_to_the_53_round_trips() -> None:
    # What y-protocols sends after it saw 2^53 - 1 (lib0 writes it in eight bytes).
    data = bytes.fromhex("01 01 80 80 80 80 80 80 80 10 02 7b 7d")
    assert decode_awareness_update(data) == [AwarenessEntry(1, MAX_CLOCK, "{}")]
    assert encode_awareness_update([AwarenessEntry(1, MAX_CLOCK, "{}")]) == data


def test_client_id_is_still_limited_to_53_bits() -> None:
    with pytest.raises(ProtocolError):
        decode_awareness_update(bytes.fromhex("01 80 80 80 80 80 80 80 10 01 02 7b 7d"))


def test_raw_decode_checks_the_count_before_reading_entries() -> None:
    claim = var_uint(1000) + b"\xff" * 3000  # plausible count, garbage entries
    with pytest.raises(AwarenessLimitExceeded) as refused:
        decode_raw_awareness_update(claim, max_entries=999)
    assert refused.value.what == "entries"
    with pytest.raises(ProtocolError):  # without the limit, the garbage is found
        decode_raw_awareness_update(claim)
    # A count the bytes cannot hold stays malformed, limit or not.
    with pytest.raises(ProtocolError) as lie:
        decode_raw_awareness_update(var_uint(1000) + b"\x00" * 10, max_entries=10)
    assert not isinstance(lie.value, AwarenessLimitExceeded)


def test_raw_decode_checks_state_size_before_reading_it() -> None:
    data = encode_awareness_update([AwarenessEntry(1, 1, '{"a":"' + "x" * 100 + '"}')])
    with pytest.raises(AwarenessLimitExceeded) as refused:
        decode_raw_awareness_update(data, max_state_bytes=64)
    assert refused.value.what == "state_size"
    assert len(decode_raw_awareness_update(data, max_state_bytes=1024)) == 1


def test_raw_entries_are_validated_on_demand() -> None:
    [good, bad, removal] = decode_raw_awareness_update(
        bytes.fromhex("03")
        + bytes.fromhex("01 01 02 7b 7d")
        + bytes.fromhex("02 01 02 7b 78")
        + bytes.fromhex("03 01 06")
        + b" null "
    )
    assert validate_entry(good) == AwarenessEntry(1, 1, "{}")
    with pytest.raises(ProtocolError):
        validate_entry(bad)
    assert removal.is_removal and validate_entry(removal) == AwarenessEntry(3, 1, "null")
    with pytest.raises(ProtocolError):
        validate_entry(RawAwarenessEntry(4, 1, b'"\xff"'))
