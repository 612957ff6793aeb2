"""Document names: one name, one document, whichever protocol; refused names get 4400."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from server.names import (
    BAD_REQUEST,
    MAX_NAME_BYTES,
    MAX_SESSION_BYTES,
    check_document_key,
    check_document_name,
    name_from_raw_path,
)
from server.socket_loop import ClientError


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        (b"/ws/notes", "notes"),
        (b"/ws/a%20b", "a b"),
        (b"/ws/caf%C3%A9", "café"),
        (b"/ws/caf\xc3\xa9", "café"),  # unencoded UTF-8 is the same name
        (b"/ws/space/page?token=x", "space/page"),
        (b"/ws/100%25", "100%"),
        (b"/ws/a+b", "a+b"),  # a path, not a form: + stays +
    ],
)
def test_y_websocket_path_is_percent_decoded(raw: bytes, name: str) -> None:
    assert name_from_raw_path(raw, b"/ws/") == name


def test_both_protocols_name_the_same_document() -> None:
    for name in ("a b", "café", "space/page 2", "日本語"):
        assert name_from_raw_path(b"/ws/" + quote(name).encode(), b"/ws/") == check_document_key(name)[0]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"/ws/", "missing"),
        (b"/ws/a%2", "percent"),
        (b"/ws/a%zz", "percent"),
        (b"/ws/%ff", "UTF-8"),
        (b"/ws/a%00b", "control"),
        (b"/ws/eng%2Fx", "encoded slash"),
        (b"/ws/eng/a%2f..", "encoded slash"),
        (b"/ws/a%7Fb", "control"),
        (b"/ws/a%C2%85b", "control"),  # C1 (NEL)
        (b"/ws/a%E2%80%AEb", "bidirectional"),  # RIGHT-TO-LEFT OVERRIDE
        (b"/ws/" + b"x" * (MAX_NAME_BYTES + 1), "longer than"),
        (b"/ws/" + b"%41" * (MAX_NAME_BYTES + 1), "longer than"),
        (b"/other/x", "path"),
    ],
)
def test_bad_paths_are_refused(raw: bytes, reason: str) -> None:
    with pytest.raises(ClientError) as refused:
        name_from_raw_path(raw, b"/ws/")
    assert refused.value.code == BAD_REQUEST and reason in refused.value.reason


@pytest.mark.parametrize(
    "name",
    [
        "tab\there",
        "del\x7f",
        "c1\x9b",
        "alm\u061c",
        "lrm\u200e",
        "rlo\u202e",
        "isolate\u2067",
        "line\u2028sep",
        "é" * (MAX_NAME_BYTES // 2 + 1),  # 1026 bytes in 513 characters
    ],
)
def test_bad_hocuspocus_names_are_refused(name: str) -> None:
    with pytest.raises(ClientError) as refused:
        check_document_name(name)
    assert refused.value.code == BAD_REQUEST


def test_session_suffix_is_checked_and_limited() -> None:
    assert check_document_key("doc") == ("doc", None)
    assert check_document_key("doc\0abc123") == ("doc", "abc123")
    for bad in ("doc\0" + "s" * (MAX_SESSION_BYTES + 1), "doc\0a\u202eb", "doc\0a\nb", "\0session"):
        with pytest.raises(ClientError):
            check_document_key(bad)
