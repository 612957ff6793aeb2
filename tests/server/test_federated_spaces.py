"""The federated spaces of a node: the scope follows the store, the before_apply hook refuses
what the roles do not allow (and, after a revocation, the revoked author's updates until the
roles are read again), and a membership whose signature does not verify is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from crdt.document import Document
from protocol.backplane import Revocation
from protocol.sitelink import Membership
from server.db import Database
from server.domain.space_federation import SpaceFederation
from server.domain.space_service import OPERATOR, SpaceService
from server.domain.spaces import SpaceRole
from server.federation.identity import create_identity
from server.federation.membership import FederatedSpaces
from server.federation.peers import Peer, ReplicationScope
from server.hooks import Refused, UpdateContext
from server.origins import ClientOrigin, SiteOrigin

from .domain.test_space_federation import Directory
from .domain.test_spaces import Recorder

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


def context(author: str, site: str = "berlin", document: str = "eng/page") -> UpdateContext:
    return UpdateContext(document, b"", SiteOrigin(site, author), Document(), None, None)


async def test_the_hook_and_the_scope_follow_the_store(database: Database, tmp_path: Path) -> None:
    recorder = Recorder()
    spaces = SpaceService(database, Directory("amsterdam"), recorder.audit, recorder.feed)
    federation = SpaceFederation(spaces, "amsterdam")
    scope = ReplicationScope({"legacy": frozenset({"oslo"})})
    shared = FederatedSpaces(federation, create_identity("amsterdam", tmp_path / "a.pem"), scope)
    await spaces.create(OPERATOR, "eng", "Engineering")
    await federation.share(OPERATOR, "eng", "berlin")
    await spaces.add_member(OPERATOR, "eng", "ed@berlin", SpaceRole.EDITOR)
    await spaces.add_member(OPERATOR, "eng", "vi@berlin", SpaceRole.VIEWER)
    assert await shared.refresh() == {"berlin"}  # berlin's link must send eng whole
    assert scope.spaces == {"legacy": frozenset({"oslo"}), "eng": frozenset({"berlin"})}

    shared.check_update(context("ed@berlin"))
    shared.check_update(UpdateContext("eng/page", b"", ClientOrigin(object(), "x"), None, None, None))
    for author, reason in (
        ("vi@berlin", "not_writer"),
        ("ed@amsterdam", "foreign_author"),
        ("", "no_author"),
    ):
        with pytest.raises(Refused, match=reason):
            shared.check_update(context(author))
    # A revocation: refused until the roles are read again (fail closed), then as they are.
    shared.on_revocation(Revocation(principal="ed@berlin", prefix="eng/"))
    with pytest.raises(Refused, match="checking"):
        shared.check_update(context("ed@berlin"))
    assert await shared.refresh() == set()
    shared.check_update(context("ed@berlin"))
    await spaces.remove_member(OPERATOR, "eng", "ed@berlin")
    await shared.refresh()
    with pytest.raises(Refused, match="not_writer"):
        shared.check_update(context("ed@berlin"))
    assert dict(shared.updates_refused) == {
        "not_writer": 2,
        "foreign_author": 1,
        "no_author": 1,
        "checking": 1,
    }

    # A membership that does not verify with the sender's key is refused, nothing applied.
    berlin = create_identity("berlin", tmp_path / "b.pem")
    peer = Peer("berlin", ("ws://127.0.0.1:9/federation",), berlin.public_key)
    await shared.receive(peer, Membership(b"anything", b"\x00" * 64))
    assert dict(shared.memberships_refused) == {"bad_signature": 1}
    await federation.share(OPERATOR, "eng", "berlin", shared=False)
    await shared.refresh()
    assert scope.spaces == {"legacy": frozenset({"oslo"})}  # no longer federated
