from __future__ import annotations

import pytest

from protocol.backplane import (
    AuthoredUpdate,
    BackplaneKind,
    BackplaneMessage,
    Revocation,
    decode_backplane,
    decode_revocation,
    decode_site_presence,
    decode_update_payload,
    encode_backplane,
    encode_revocation,
    encode_site_presence,
    encode_update_payload,
)
from protocol.errors import ProtocolError

HI = bytes.fromhex("01 01 01 00 04 01 01 74 02 68 69 00")

MESSAGES = [
    BackplaneMessage("n1/ab12", 1, 0, BackplaneKind.UPDATE, HI),
    BackplaneMessage("n1/ab12", 2, 1, BackplaneKind.AWARENESS, b"\x01\x01\x01\x02{}"),
    BackplaneMessage("n2/ff00", 7, 5, BackplaneKind.SYNC_REQUEST, b"\x00"),
    BackplaneMessage("n2/ff00", 8, 5, BackplaneKind.SYNC_REPLY, b"\x00\x00", target="n1/ab12"),
    BackplaneMessage("é/1", 9, 9, BackplaneKind.HEARTBEAT),
]


@pytest.mark.parametrize("message", MESSAGES, ids=[m.kind.name for m in MESSAGES])
def test_roundtrip(message: BackplaneMessage) -> None:
    assert decode_backplane(encode_backplane(message)) == message


def test_golden_update() -> None:
    data = encode_backplane(MESSAGES[0])
    assert data == bytes.fromhex("07") + b"n1/ab12" + bytes.fromhex("01 00 00 0c") + HI


@pytest.mark.parametrize("data", ["", "01 61 01 00 09", "01 61 01 00 00 05 01", "01 61 01 00 04 00"])
def test_malformed(data: str) -> None:
    with pytest.raises(ProtocolError):
        decode_backplane(bytes.fromhex(data))


def test_an_update_carries_its_site_and_author() -> None:
    payload = encode_update_payload("amsterdam", "ann@amsterdam", b"\x00\x00")
    assert decode_update_payload(payload) == AuthoredUpdate("amsterdam", "ann@amsterdam", b"\x00\x00")
    assert payload == bytes.fromhex("09") + b"amsterdam" + bytes.fromhex(
        "0d"
    ) + b"ann@amsterdam" + bytes.fromhex("02 00 00")
    with pytest.raises(ProtocolError):
        decode_update_payload(payload + b"\x00")


def test_revocation_roundtrip() -> None:
    revocation = Revocation(principal="bob@paris", prefix="eng/")
    assert decode_revocation(encode_revocation(revocation)) == revocation
    with pytest.raises(ProtocolError):
        decode_revocation(encode_revocation(revocation) + b"x")


def test_site_presence_roundtrip() -> None:
    payload = encode_site_presence("eng/page", b"\x01\x02")
    assert decode_site_presence(payload) == ("eng/page", b"\x01\x02")
    with pytest.raises(ProtocolError):
        decode_site_presence(payload + b"x")
