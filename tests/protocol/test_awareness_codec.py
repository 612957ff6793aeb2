"""Awareness updates: golden bytes of wire-protocols.md §2.3."""

from __future__ import annotations

import pytest

from protocol.awareness import AwarenessEntry, decode_awareness_update, encode_awareness_update
from protocol.errors import ProtocolError

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
