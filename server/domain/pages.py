"""Pages, the wiki of a space: the model, page ids and document names.

A page has a server-made id, a title and a place in its space's tree (a parent, '' at the
top, and a position key among its siblings, see positions.py). Its content is the Yjs
document `<space>/page/<id>`; the tree of a space is mirrored, for clients, in the Yjs
document `<space>/index` that only the server writes. A deleted page goes to the space's
trash with the pages under it; it can be restored until the purge (after
`SAMEN_TRASH_RETENTION_DAYS`) removes it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from enum import Enum

from ..hooks import Refused, UpdateContext
from ..origins import ClientOrigin
from .errors import DomainError
from .spaces import MAX_TITLE

__all__ = [
    "ID_ALPHABET",
    "ID_LENGTH",
    "MAX_PAGE_TITLE",
    "DocumentKind",
    "Page",
    "PageError",
    "check_page_title",
    "document_kind",
    "index_document",
    "is_page_id",
    "new_page_id",
    "page_document",
    "refuse_client_index_writes",
]

MAX_PAGE_TITLE = MAX_TITLE
ID_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
ID_LENGTH = 16  # 82 bits: ids cannot be guessed; fixed length, so no id is another's prefix


class PageError(DomainError):
    """A refused page operation; `status` is its HTTP status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(code, message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Page:
    id: str
    space: str
    title: str
    parent: str = ""  # '' at the top of the tree
    position: str = ""
    created_by: str = ""
    created_at: float = 0.0
    updated_by: str = ""
    updated_at: float = 0.0
    deleted_at: float | None = None
    deleted_by: str = ""
    deleted_root: str = ""

    @property
    def document(self) -> str:
        return page_document(self.space, self.id)

    @property
    def deleted(self) -> bool:
        return self.deleted_at is not None


def new_page_id() -> str:
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_LENGTH))


def is_page_id(value: str) -> bool:
    return len(value) == ID_LENGTH and all(c in ID_ALPHABET for c in value)


def page_document(space: str, page_id: str) -> str:
    return f"{space}/page/{page_id}"


def index_document(space: str) -> str:
    return f"{space}/index"


class DocumentKind(Enum):
    PAGE = "page"  # <space>/page/<id>: exists only while the page is live
    INDEX = "index"  # <space>/index: the page tree, written by the server only
    RESERVED = "reserved"  # <space>/page/... in any other shape: never a document
    OTHER = "other"  # any other name in a space


def document_kind(document: str) -> tuple[DocumentKind, str]:
    """What a (canonical) document name is, and the page id for PAGE ('' otherwise)."""
    _space, _, rest = document.partition("/")
    if rest == "index":
        return DocumentKind.INDEX, ""
    kind, sep, page_id = rest.partition("/")
    if kind != "page" or not sep:  # `<space>/page` alone is an ordinary name
        return DocumentKind.OTHER, ""
    if is_page_id(page_id):
        return DocumentKind.PAGE, page_id
    return DocumentKind.RESERVED, ""


def check_page_title(title: str) -> str:
    if len(title) > MAX_PAGE_TITLE:
        raise PageError(422, "invalid_title", f"a title has at most {MAX_PAGE_TITLE} characters")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in title):
        raise PageError(422, "invalid_title", "a title may not hold control characters")
    if not title.strip():
        raise PageError(422, "invalid_title", "a title may not be empty")
    return title


def refuse_client_index_writes(context: UpdateContext) -> None:
    """A `before_apply` hook: no client writes a page tree, whatever its grant (the
    authorizer already caps it at READ; this holds with SAMEN_AUTH=off too). The client is
    cut off: its later updates would build on the refused one."""
    if (
        isinstance(context.origin, ClientOrigin)
        and document_kind(context.document_name)[0] is DocumentKind.INDEX
    ):
        raise Refused("the page tree is written by the server only", kind="read_only", cut_off=True)
