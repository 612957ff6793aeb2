"""Hocuspocus frames: golden bytes of wire-protocols.md §3.1, both directions."""

from __future__ import annotations

import pytest

from protocol import hocuspocus
from protocol.errors import ProtocolError, UnknownMessageType
from protocol.hocuspocus import (
    Authenticated,
    AuthToken,
    AuthTokenRequest,
    CloseDocument,
    HocuspocusFrame,
    PermissionDenied,
    Ping,
    Pong,
    Stateless,
    SyncStatus,
)
from protocol.messages import AwarenessMessage, QueryAwareness, SyncStep1, SyncStep2, SyncUpdate

DOC1 = "04 64 6f 63 31"
AWARENESS_A = bytes.fromhex("01 01 01 15") + b'{"user":{"name":"A"}}'

GOLDEN = [
    ("auth token v3", AuthToken("secret"), "02 00 06 73 65 63 72 65 74"),
    ("auth token v4", AuthToken("secret", "4.8.0"), "02 00 06 73 65 63 72 65 74 05 34 2e 38 2e 30"),
    ("null token v3", AuthToken(""), "02 00 00"),
    ("null token v4", AuthToken("", "4.8.0"), "02 00 00 05 34 2e 38 2e 30"),
    ("token request", AuthTokenRequest(), "02 00"),
    ("authenticated rw", Authenticated("read-write"), "02 02 0a 72 65 61 64 2d 77 72 69 74 65"),
    ("authenticated ro", Authenticated("readonly"), "02 02 08 72 65 61 64 6f 6e 6c 79"),
    ("permission denied", PermissionDenied(), "02 01 11" + b"permission-denied".hex()),
    ("sync step 1", SyncStep1(b"\x00"), "00 00 01 00"),
    ("sync step 2", SyncStep2(b"\x00\x00"), "00 01 02 00 00"),
    (
        "update hi",
        SyncUpdate(bytes.fromhex("01 01 01 00 04 01 01 74 02 68 69 00")),
        "00 02 0c 01 01 01 00 04 01 01 74 02 68 69 00",
    ),
    ("awareness", AwarenessMessage(AWARENESS_A), "01 19" + AWARENESS_A.hex()),
    ("query awareness", QueryAwareness(), "03"),
    ("sync status ok", SyncStatus(True), "08 01"),
    ("sync status rejected", SyncStatus(False), "08 00"),
    ("stateless", Stateless("ping!"), "05 05 70 69 6e 67 21"),
    ("close from client", CloseDocument(), "07"),
    ("close from server", CloseDocument("bye"), "07 03 62 79 65"),
]


@pytest.mark.parametrize(("what", "message", "body"), GOLDEN, ids=[g[0] for g in GOLDEN])
def test_golden_frames(what: str, message: hocuspocus.HocuspocusMessage, body: str) -> None:
    frame = bytes.fromhex(DOC1 + body)
    assert hocuspocus.encode_frame("doc1", message) == frame
    decoded = hocuspocus.decode_frame(frame)
    assert decoded == HocuspocusFrame("doc1", message)


def test_ping_pong_have_no_name() -> None:
    assert hocuspocus.decode_frame(b"\x09") == Ping()
    assert hocuspocus.decode_frame(b"\x0a") == Pong()
    assert hocuspocus.PING_FRAME == b"\x09" and hocuspocus.PONG_FRAME == b"\x0a"


def test_session_key_is_kept_and_split() -> None:
    key = "doc1\0session-7"
    frame = hocuspocus.encode_frame(key, SyncStep1(b"\x00"))
    decoded = hocuspocus.decode_frame(frame)
    assert isinstance(decoded, HocuspocusFrame)
    assert decoded.key == key
    assert decoded.document == "doc1"
    assert hocuspocus.split_document_key(key) == ("doc1", "session-7")
    assert hocuspocus.split_document_key("doc1") == ("doc1", None)


def test_document_name_length_counts_utf8_bytes() -> None:
    frame = hocuspocus.encode_frame("é", SyncStep1(b"\x00"))
    assert frame[:3] == bytes.fromhex("02 c3 a9")


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        ("", ProtocolError),
        ("04 64 6f", ProtocolError),  # name runs past the end
        (DOC1, ProtocolError),  # no message type
        (DOC1 + "09", UnknownMessageType),  # ping type inside a named frame
        (DOC1 + "04 00 00 01 00", UnknownMessageType),  # server-internal SyncReply
        (DOC1 + "06 00", UnknownMessageType),  # server-internal BroadcastStateless
        (DOC1 + "02 07", UnknownMessageType),  # unknown auth type
        (DOC1 + "08 02", ProtocolError),  # sync status neither 0 nor 1
        (DOC1 + "00 00 01 00 00", ProtocolError),  # trailing byte
        ("02 c3 28 00 00 01 00", ProtocolError),  # name is not UTF-8
        ("80 80 80 80 80 80 80 10", ProtocolError),  # 2^53 name length
    ],
)
def test_malformed_frames(frame: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        hocuspocus.decode_frame(bytes.fromhex(frame))
