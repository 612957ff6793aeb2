from __future__ import annotations

import pytest

from protocol.errors import ProtocolError, UnknownMessageType
from protocol.sitelink import (
    MIN_FRAME_LIMIT,
    Ack,
    Auth,
    Batch,
    BatchBody,
    BatchEntry,
    Challenge,
    Hello,
    InventoryAck,
    InventoryDone,
    Membership,
    Presence,
    Reassembler,
    Refused,
    Want,
    Welcome,
    decode_batch_body,
    decode_link_message,
    encode_batch_body,
    encode_link_message,
    fragments,
    handshake_payload,
)
from protocol.space_membership import MembershipBody, decode_membership_body, encode_membership_body

MESSAGES = [
    Hello("samen-link/1", "site-a", "site-b", b"\x01" * 32),
    Challenge(b"\x02" * 32, b"\x07" * 32, b"\x03" * 64, 16 * 1024 * 1024),
    Auth(b"\x08" * 32, b"\x04" * 64, 64 * 1024 * 1024),
    Welcome(),
    Batch(b"body", b"\x05" * 64),
    Ack(12345),
    Presence("eng/page", b"\x01\x01\x01\x02{}"),
    Want("eng/page", b"\x00"),
    Refused("hr/salaries", "space not shared with this site"),
    InventoryDone(991, ("eng", "ops")),
    Membership(b"signed", b"\x06" * 64),
    InventoryAck(991, ("eng",)),
    InventoryDone(0, ()),
]


@pytest.mark.parametrize("message", MESSAGES, ids=[type(m).__name__ for m in MESSAGES])
def test_roundtrip(message: object) -> None:
    assert decode_link_message(encode_link_message(message)) == message  # type: ignore[arg-type]


def test_batch_body_roundtrip_and_golden() -> None:
    entries = (BatchEntry("eng/p", "ann@site-a", b"\x00\x00"), BatchEntry("eng/q", "", b"\x01"))
    body = BatchBody("site-a", 7, 9, entries)
    data = encode_batch_body(body)
    assert data == (
        bytes.fromhex("0d") + b"samen-batch/2" + bytes.fromhex("06") + b"site-a" + bytes.fromhex("07 09 02")
        + bytes.fromhex("05") + b"eng/p" + bytes.fromhex("0a") + b"ann@site-a" + bytes.fromhex("02 00 00")
        + bytes.fromhex("05") + b"eng/q" + bytes.fromhex("00") + bytes.fromhex("01 01")
    )  # fmt: skip
    assert decode_batch_body(data) == body
    assert decode_batch_body(data).entries[0].author == "ann@site-a"


def test_a_version_1_batch_body_is_refused() -> None:
    # What a samen-batch/1 peer signed: entries without authors. Never read as version 2.
    old = (
        bytes.fromhex("0d")
        + b"samen-batch/1"
        + bytes.fromhex("01")
        + b"a"
        + bytes.fromhex("01 01 01 01 70 01 00")
    )
    with pytest.raises(ProtocolError, match="not a samen-batch/2 body"):
        decode_batch_body(old)


def test_handshake_payload_separates_roles_and_binds_the_frame_limit_and_the_keys() -> None:
    dial = handshake_payload("dial", "a", "b", b"n1", b"n2", 65536, b"ka", b"kd")
    accept = handshake_payload("accept", "a", "b", b"n1", b"n2", 65536, b"ka", b"kd")
    assert dial != accept and dial != handshake_payload("dial", "a", "b", b"n2", b"n1", 65536, b"ka", b"kd")
    assert dial != handshake_payload("dial", "a", "b", b"n1", b"n2", 65537, b"ka", b"kd")
    # The ephemeral keys are signed: a relay cannot swap in its own.
    assert dial != handshake_payload("dial", "a", "b", b"n1", b"n2", 65536, b"kx", b"kd")
    assert dial != handshake_payload("dial", "a", "b", b"n1", b"n2", 65536, b"ka", b"kx")
    assert b"samen-link/3" in dial


def test_the_hello_layout_is_the_same_in_every_version() -> None:
    # What a samen-link/2 site sends first; a samen-link/3 site reads it to refuse it by name.
    old = bytes.fromhex("01 0c") + b"samen-link/2" + bytes.fromhex("01") + b"a" + bytes.fromhex("01") + b"b"
    old += bytes.fromhex("02 09 09")
    assert decode_link_message(old) == Hello("samen-link/2", "a", "b", b"\x09\x09")


def test_a_large_message_is_fragmented_and_reassembled() -> None:
    message = encode_link_message(Want("eng/big", bytes(range(256)) * 1000))  # 256 kB
    frames = list(fragments(message, MIN_FRAME_LIMIT))
    assert len(frames) == 4 and all(len(frame) <= MIN_FRAME_LIMIT for frame in frames)
    reassembler = Reassembler(limit=len(message))
    assert [reassembler.feed(frame) for frame in frames[:-1]] == [None] * 3
    assert reassembler.assembling == 3 * (MIN_FRAME_LIMIT - 16)  # the pieces so far
    assert reassembler.feed(frames[-1]) == message and reassembler.assembling == 0
    small = encode_link_message(Ack(1))
    assert list(fragments(small, MIN_FRAME_LIMIT)) == [small] and reassembler.feed(small) == small


def test_fragments_are_bounded_and_never_interleaved() -> None:
    frames = list(fragments(encode_link_message(Want("eng/big", b"\x00" * 200_000)), MIN_FRAME_LIMIT))
    with pytest.raises(ProtocolError, match="larger than"):
        too_small = Reassembler(limit=100_000)
        for frame in frames:
            too_small.feed(frame)
    interleaved = Reassembler(limit=1 << 20)
    interleaved.feed(frames[0])
    with pytest.raises(ProtocolError, match="inside a fragmented"):
        interleaved.feed(encode_link_message(Ack(1)))
    with pytest.raises(ProtocolError):
        Reassembler(limit=1 << 20).feed(bytes.fromhex("0c 02 00"))  # a flag that is neither 0 nor 1
    with pytest.raises(ValueError):
        list(fragments(b"x" * 2000, 1000))  # below any limit a peer may ask for


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


def test_membership_body_roundtrip_and_malformed() -> None:
    body = MembershipBody(
        "amsterdam", "eng", 7, "Engineering", "we build", "request", "secret", True, "viewer",
        ("berlin", "lyon"), (("alice@berlin", "editor"), ("ann@amsterdam", "admin")),
    )  # fmt: skip
    data = encode_membership_body(body)
    assert decode_membership_body(data) == body
    for bad in (data[:-1], data + b"\x00", b"\x0dsamen-space/2" + data[14:], b""):
        with pytest.raises(ProtocolError):
            decode_membership_body(bad)
    empty = MembershipBody("a", "b", 0, "", "", "", "", False, "", (), ())
    huge = encode_membership_body(empty)[:-1] + b"\xff\xff\x03"  # a million members claimed
    with pytest.raises(ProtocolError, match="more members"):
        decode_membership_body(huge)
