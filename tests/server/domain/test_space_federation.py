"""Federated spaces on SQLite and PostgreSQL: the home shares a space and signs its state,
a copy applies only its home's newer versions and asks for the revocations they imply; a
membership from anyone else, for a space not expected from the sender, or with invalid
values is refused and changes nothing. And the rule for updates from sites."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from protocol.backplane import Revocation
from server.db import Database, SQLiteDatabase
from server.domain.space_federation import (
    MembershipRefused,
    SharedSpace,
    SpaceFederation,
    UpdateRefusal,
    site_update_refusal,
)
from server.domain.space_service import OPERATOR, SpaceService
from server.domain.spaces import Space, SpaceError, SpaceRole

from .test_spaces import Recorder

HOME, COPY = "amsterdam", "berlin"


class Directory:
    """People of `site` by name; people of other sites as named."""

    def __init__(self, site: str) -> None:
        self.site = site

    async def person_id(self, name: str) -> str | None:
        return name if "@" in name else f"{name}@{self.site}"

    def local_name(self, person_id: str) -> str | None:
        name, _, site = person_id.rpartition("@")
        return name if site == self.site else None


@pytest.fixture
async def copy_db(tmp_path: Path) -> AsyncIterator[Database]:
    db = SQLiteDatabase(tmp_path / "berlin" / "samen.sqlite3")
    await db.open()
    try:
        yield db
    finally:
        await db.close()


def federation(db: Database, site: str, recorder: Recorder) -> SpaceFederation:
    return SpaceFederation(SpaceService(db, Directory(site), recorder.audit, recorder.feed), site)


async def tables(db: Database) -> dict[str, list[dict[str, Any]]]:
    names = ["spaces", "space_members", "space_member_log", "space_sites"]
    return {name: await db.fetch(f"SELECT * FROM {name} ORDER BY 1, 2") for name in names}


async def members(db: Database) -> dict[str, str]:
    return {r["person"]: r["role"] for r in await db.fetch("SELECT person, role FROM space_members")}


async def test_the_home_decides_and_a_copy_follows(database: Database, copy_db: Database) -> None:
    home_log, copy_log = Recorder(), Recorder()
    home, copy = federation(database, HOME, home_log), federation(copy_db, COPY, copy_log)
    spaces = SpaceService(database, Directory(HOME), home_log.audit, home_log.feed)
    await spaces.create(OPERATOR, "eng", "Engineering")
    # A person of berlin joins only once the space is shared with berlin.
    with pytest.raises(SpaceError, match="no such person"):
        await spaces.add_member(OPERATOR, "eng", "alice@berlin", SpaceRole.EDITOR)
    await home.share(OPERATOR, "eng", COPY)
    await spaces.add_member(OPERATOR, "eng", "ann", SpaceRole.ADMIN)
    await spaces.add_member(OPERATOR, "eng", "alice@berlin", SpaceRole.EDITOR)
    first = await home.membership("eng")
    assert first is not None and first.home == HOME and first.sites == (COPY,)
    assert dict(first.members) == {"alice@berlin": "editor", "ann@amsterdam": "admin"}

    # berlin's operator said eng is amsterdam's; only then does berlin take it.
    copy_spaces = SpaceService(copy_db, Directory(COPY), copy_log.audit, copy_log.feed)
    await copy_spaces.create(OPERATOR, "eng", "placeholder", home=HOME)
    applied = await copy.apply(first, HOME)
    assert applied is not None and applied.revocations == ()
    assert await members(copy_db) == {"alice@berlin": "editor", "ann@amsterdam": "admin"}
    space = await copy_spaces.store.space("eng")
    assert space is not None and space.title == "Engineering" and space.version == first.version
    # Nothing of it changes at the copy.
    with pytest.raises(SpaceError) as refused:
        await copy_spaces.add_member(OPERATOR, "eng", "bob", SpaceRole.EDITOR)
    assert refused.value.code == "space_not_home"

    await spaces.remove_member(OPERATOR, "eng", "alice@berlin")
    second = await home.membership("eng")
    assert second is not None and second.version > first.version
    applied = await copy.apply(second, HOME)
    assert applied is not None
    assert applied.revocations == (Revocation(principal="alice@berlin", prefix="eng/"),)
    assert copy_log.revocations == [Revocation(principal="alice@berlin", prefix="eng/")]
    assert await members(copy_db) == {"ann@amsterdam": "admin"}
    # The old version sent again changes nothing.
    before = await tables(copy_db)
    assert await copy.apply(first, HOME) is None
    assert await tables(copy_db) == before


async def test_forged_and_invalid_memberships_change_nothing(database: Database, copy_db: Database) -> None:
    home_log, copy_log = Recorder(), Recorder()
    home, copy = federation(database, HOME, home_log), federation(copy_db, COPY, copy_log)
    spaces = SpaceService(database, Directory(HOME), home_log.audit, home_log.feed)
    await spaces.create(OPERATOR, "eng", "Engineering")
    await spaces.create(OPERATOR, "ops", "Operations")
    await home.share(OPERATOR, "eng", COPY)
    await home.share(OPERATOR, "ops", COPY)
    good = await home.membership("eng")
    ops = await home.membership("ops")
    assert good is not None and ops is not None
    copy_spaces = SpaceService(copy_db, Directory(COPY), copy_log.audit, copy_log.feed)
    await copy_spaces.create(OPERATOR, "eng", "placeholder", home=HOME)
    await copy_spaces.create(OPERATOR, "own", "berlin's own")
    before = await tables(copy_db)
    forged = [
        (good, "lyon", "not_home"),  # relayed by another site
        (dataclasses.replace(good, home="lyon"), "lyon", "not_expected"),  # lyon claims eng
        (ops, HOME, "not_expected"),  # berlin never said it takes ops from amsterdam
        (dataclasses.replace(good, space="own", home=HOME), HOME, "not_expected"),  # berlin's own space
        (dataclasses.replace(good, members=(("mallory@lyon", "boss"),)), HOME, "invalid"),
        (dataclasses.replace(good, members=(("../x@lyon", "admin"),)), HOME, "invalid"),
        (dataclasses.replace(good, members=(("a@b", "admin"), ("a@b", "viewer"))), HOME, "invalid"),
        (dataclasses.replace(good, join_policy="anyone"), HOME, "invalid"),
        (dataclasses.replace(good, sites=("not a site",)), HOME, "invalid"),
    ]
    for body, sender, kind in forged:
        with pytest.raises(MembershipRefused) as refused:
            await copy.apply(body, sender)
        assert refused.value.kind == kind, (body, sender)
    assert await tables(copy_db) == before
    assert copy_log.revocations == []


SPACE = Space("eng", "Engineering", home=HOME)
SHARED = SharedSpace(
    SPACE,
    HOME,
    frozenset({COPY}),
    {"ed@berlin": SpaceRole.EDITOR, "vi@berlin": SpaceRole.VIEWER, "ed@amsterdam": SpaceRole.EDITOR},
)


@pytest.mark.parametrize(
    ("sender", "author", "refusal"),
    [
        (COPY, "ed@berlin", None),
        (COPY, "vi@berlin", UpdateRefusal.NOT_WRITER),
        (COPY, "nobody@berlin", UpdateRefusal.NOT_WRITER),
        (COPY, "ed@amsterdam", UpdateRefusal.FOREIGN_AUTHOR),  # berlin speaks for its people only
        (COPY, "ed", UpdateRefusal.FOREIGN_AUTHOR),
        (COPY, "", UpdateRefusal.NO_AUTHOR),  # merged content only from the home
        (HOME, "", None),
        (HOME, "admin@amsterdam", None),  # the home decides who of its people writes
        (HOME, "ed@berlin", UpdateRefusal.FOREIGN_AUTHOR),
    ],
)
def test_updates_from_sites(sender: str, author: str, refusal: UpdateRefusal | None) -> None:
    assert site_update_refusal(SHARED, sender, author) == refusal


def test_an_archived_space_takes_no_writes_from_its_sites() -> None:
    archived = dataclasses.replace(SHARED, space=dataclasses.replace(SPACE, archived=True))
    assert site_update_refusal(archived, COPY, "ed@berlin") == UpdateRefusal.NOT_WRITER
    assert site_update_refusal(None, COPY, "ed@berlin") is None  # the peers file's: site only
    assert site_update_refusal(None, COPY, "ed@amsterdam") == UpdateRefusal.FOREIGN_AUTHOR
