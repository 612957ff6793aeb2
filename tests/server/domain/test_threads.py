"""Threads in the store (SQLite and PostgreSQL): a thread's document is open only to those the
space lets in, and only if the thread exists in that space; starting one checks the role."""

from __future__ import annotations

import pytest

from server.auth.authorizer import SpaceAuthorizer
from server.auth.ports import Grant
from server.db import Database
from server.domain.errors import DomainError
from server.domain.page_store import PageStore
from server.domain.space_service import SpaceService
from server.domain.spaces import JoinPolicy, SpaceError, SpaceRole, Visibility
from server.domain.threads import ThreadService, thread_of

from .test_spaces import ADMIN, ANN, BOB, FakePeople, Recorder


@pytest.fixture
def spaces(database: Database) -> SpaceService:
    recorder = Recorder()
    return SpaceService(database, FakePeople(), recorder.audit, recorder.feed)


async def test_a_thread_document_is_open_only_if_the_thread_exists_there(
    spaces: SpaceService, database: Database
) -> None:
    threads = ThreadService(database, spaces, rooms=None)  # type: ignore[arg-type]  # no documents here
    await spaces.create(ADMIN, "eng", "Eng")
    await spaces.create(ADMIN, "sec", "Secret", join_policy=JoinPolicy.INVITE, visibility=Visibility.SECRET)
    await spaces.add_member(ADMIN, "eng", "ann", SpaceRole.EDITOR)
    await spaces.add_member(ADMIN, "sec", "ann", SpaceRole.EDITOR)
    talk = await threads.create(ANN, "eng", title="Talk")
    hidden = await threads.create(ANN, "sec", title="Hush", page="p1")
    assert (talk.document, thread_of(talk.document)) == (f"eng/thread/{talk.id}", ("eng", talk.id))
    authorizer = SpaceAuthorizer(spaces.store, PageStore(database), named={"thread": threads.store.exists})
    assert await authorizer.authorize(ANN, talk.document) == Grant.WRITE
    assert await authorizer.authorize(BOB, talk.document) == Grant.READ  # the open space's readers
    assert await authorizer.authorize(BOB, hidden.document) == Grant.NONE
    for name in [
        f"sec/thread/{talk.id}",
        "eng/thread/ffffffffffffffff",
        "eng/thread/nope",
        "nosuch/thread/x",
    ]:
        assert await authorizer.authorize(ANN, name) == Grant.NONE, name
    assert await authorizer.authorize(ANN, "eng/thread") == Grant.WRITE  # not a thread's name
    # Who may start one: editors; readers of an open space may not, nor those who cannot see it.
    with pytest.raises(SpaceError) as refused:
        await threads.create(BOB, "eng", title="Mine")
    assert refused.value.code == "forbidden"
    with pytest.raises(SpaceError) as refused:
        await threads.create(BOB, "sec", title="Mine")
    assert refused.value.code == "space_not_found"
    with pytest.raises(DomainError) as bad:
        await threads.create(ANN, "eng", title="")
    assert bad.value.code == "invalid_title"
    assert [t.id for t in await threads.in_space(BOB, "eng")] == [talk.id]
    assert await database.fetchval("SELECT count(*) FROM threads") == 2
