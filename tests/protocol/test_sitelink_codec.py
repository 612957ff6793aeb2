from __future__ import annotations

import pytest

from protocol.errors import ProtocolError, UnknownMessageType
from protocol.sitelink import (
    Ack,
    Auth,
    Batch,
    BatchBody,
    Challenge,
    Hello,
    InventoryAck,
    InventoryDone,
    Presence,
    Refused,
    Want,
    Welcome,
    decode_batch_body,
    decode_link_message,
    encode_batch_body,
    encode_link_message,
    handshake_payload,
)

MESSAGES = [
    Hello("samen-link/1", "site-a", "site-b", b"\x01" * 32),
    Challenge(b"\x02" * 32, b"\x03" * 64),
    Auth(b"\x04" * 64),
    Welcome(),
    Batch(b"body", b"\x05" * 64),
    Ack(12345),
    Presence("eng/page", b"\x01\x01\x01\x02{}"),
    Want("eng/page", b"\x00"),
    Refused("hr/salaries", "space not shared with this site"),
    InventoryDone(991, ("eng", "ops")),
    InventoryAck(991, ("eng",)),
    InventoryDone(0, ()),
]


@pytest.mark.parametrize("message", MESSAGES, ids=[type(m).__name__ for m in MESSAGES])
def test_roundtrip(message: object) -> None:
    assert decode_link_message(encode_link_message(message)) == message  # type: ignore[arg-type]


def test_batch_body_roundtrip_and_golden() -> None:
    body = BatchBody("site-a", 7, 9, (("eng/p", b"\x00\x00"), ("eng/q", b"\x01")))
    data = encode_batch_body(body)
    assert data.startswith(bytes.fromhex("0d") + b"samen-batch/1" + bytes.fromhex("06") + b"site-a")
    assert decode_batch_body(data) == body


def test_handshake_payload_separates_roles() -> None:
    dial = handshake_payload("dial", "a", "b", b"n1", b"n2")
    accept = handshake_payload("accept", "a", "b", b"n1", b"n2")
    assert dial != accept and dial != handshake_payload("dial", "a", "b", b"n2", b"n1")


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ("", ProtocolError),
        ("63", UnknownMessageType),
        ("06 01 00", ProtocolError),
        ("02 05 00", ProtocolError),
        ("0a 05 09 03 65 6e 67", ProtocolError),  # INVENTORY_DONE claiming 9 spaces, holding 1
    ],
)
def test_malformed_frames(data: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        decode_link_message(bytes.fromhex(data))


def test_malformed_batch_bodies() -> None:
    with pytest.raises(ProtocolError):
        decode_batch_body(b"\x03abc")
    reversed_range = encode_batch_body(BatchBody("a", 1, 1, ())).replace(b"a\x01\x01", b"a\x05\x01")
    with pytest.raises(ProtocolError):
        decode_batch_body(reversed_range)
