from __future__ import annotations

import pytest

from protocol.backplane import (
    BackplaneKind,
    BackplaneMessage,
    SiteUpdate,
    decode_backplane,
    decode_site_presence,
    decode_site_update,
    encode_backplane,
    encode_site_presence,
    encode_site_update,
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


def test_site_update_carries_its_origin_and_author() -> None:
    payload = encode_site_update("amsterdam", b"\x00\x00", "ann@amsterdam")
    assert decode_site_update(payload) == SiteUpdate("amsterdam", b"\x00\x00", "ann@amsterdam")
    # From a node of the previous release: no author.
    old = bytes.fromhex("09") + b"amsterdam" + bytes.fromhex("02 00 00")
    assert decode_site_update(old) == SiteUpdate("amsterdam", b"\x00\x00", "")
    with pytest.raises(ProtocolError):
        decode_site_update(payload + b"\x00")


def test_site_presence_roundtrip() -> None:
    payload = encode_site_presence("eng/page", b"\x01\x02")
    assert decode_site_presence(payload) == ("eng/page", b"\x01\x02")
    with pytest.raises(ProtocolError):
        decode_site_presence(payload + b"x")
