"""y-websocket messages: golden bytes of wire-protocols.md §2, both directions."""

from __future__ import annotations

import pytest

from protocol import ywebsocket
from protocol.errors import ProtocolError, UnknownMessageType
from protocol.messages import AwarenessMessage, QueryAwareness, SyncStep1, SyncStep2, SyncUpdate
from protocol.ywebsocket import AuthPermissionDenied

HI_UPDATE = bytes.fromhex("01 01 01 00 04 01 01 74 02 68 69 00")
AWARENESS_A = bytes.fromhex("01 01 01 15") + b'{"user":{"name":"A"}}'

GOLDEN = [
    ("sync step 1, empty doc", SyncStep1(b"\x00"), "00 00 01 00"),
    ("sync step 2, empty doc", SyncStep2(b"\x00\x00"), "00 01 02 00 00"),
    ("update 'hi'", SyncUpdate(HI_UPDATE), "00 02 0c 01 01 01 00 04 01 01 74 02 68 69 00"),
    ("sync step 1 with SV", SyncStep1(bytes.fromhex("01 01 02")), "00 00 03 01 01 02"),
    ("sync step 2 reply", SyncStep2(HI_UPDATE), "00 01 0c 01 01 01 00 04 01 01 74 02 68 69 00"),
    ("update deleting h", SyncUpdate(bytes.fromhex("00 01 01 01 00 01")), "00 02 06 00 01 01 01 00 01"),
    ("auth denied 'no'", AuthPermissionDenied("no"), "02 00 02 6e 6f"),
    ("awareness", AwarenessMessage(AWARENESS_A), "01 19" + AWARENESS_A.hex()),
    ("query awareness", QueryAwareness(), "03"),
]


@pytest.mark.parametrize(("what", "message", "golden"), GOLDEN, ids=[g[0] for g in GOLDEN])
def test_golden_encode_and_decode(what: str, message: ywebsocket.YWebsocketMessage, golden: str) -> None:
    frame = bytes.fromhex(golden)
    assert ywebsocket.encode(message) == frame
    assert ywebsocket.decode(frame) == message


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        ("", ProtocolError),  # empty frame
        ("00", ProtocolError),  # sync without sub-type
        ("00 02", ProtocolError),  # update without length
        ("00 02 0c 01 01", ProtocolError),  # length past the end
        ("00 02 80 80 80 80 80 80 80 10", ProtocolError),  # a 2^53 length
        ("00 05 00", UnknownMessageType),  # unknown sync sub-type
        ("07", UnknownMessageType),  # unknown outer type
        ("02 01 00", UnknownMessageType),  # unknown auth sub-type
        ("00 00 01 00 ff", ProtocolError),  # trailing bytes: one message per frame
        ("01 05 01 02", ProtocolError),
    ],
)
def test_malformed_frames(frame: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        ywebsocket.decode(bytes.fromhex(frame))
