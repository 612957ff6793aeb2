"""Acceptance 3: threads with the real npm clients (y-websocket and @hocuspocus/provider) on a
real server with authentication required.

- An honest post, reply, edit, reaction and delete, each from a real client, reach every other
  client live (both protocols), and REST reads the same thread.
- A client that posts as someone else, edits another's message, sets another's reaction or
  rewrites `created` is refused (Hocuspocus: SyncStatus false; y-websocket: the server's
  SyncStep1 again), on each protocol; afterwards the thread is unchanged on every other
  client, on a client that connects later, in REST and in the store. The refused client's
  own copy keeps what it did (the server never writes into a client's copy).

No timed assertions: after the refusals, an honest message is posted; every client sees it
only after anything sent before it, so a refused change that had been relayed would show.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from itertools import count
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.domain.space_service import OPERATOR
from server.domain.spaces import SpaceRole

from .intranet import intranet
from .server_process import SamenServer
from .yjs_driver import (
    Client,
    ClientKind,
    Op,
    Snapshot,
    YjsDriver,
    array_push,
    doc_state,
    map_delete,
    map_set,
    text_insert,
    wait_all,
    y_map,
    y_text,
)

pytestmark = pytest.mark.integration

PEOPLE = ("ann", "bob", "cat", "dan")
ROOT = "messages"
_ids = count(1)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[SamenServer, dict[str, str]]]:
    data = tmp_path / "data"
    async with intranet(data) as net:
        await net.add_people({name: "member" for name in PEOPLE})
        await net.spaces.create(OPERATOR, "eng", "Engineering")
        for name in PEOPLE:
            await net.spaces.add_member(OPERATOR, "eng", name, SpaceRole.EDITOR)
        tokens = dict(net.tokens)
    async with SamenServer(data, env={"SAMEN_AUTH": "required"}) as samen:
        yield samen, tokens


@pytest.fixture
async def driver() -> AsyncIterator[YjsDriver]:
    async with YjsDriver() as d:
        yield d


class Room:
    """One thread, its REST handle and the real clients on it."""

    def __init__(
        self, samen: SamenServer, tokens: dict[str, str], driver: YjsDriver, http: httpx.AsyncClient
    ):
        self.samen, self.tokens, self.driver, self.http = samen, tokens, driver, http
        self.thread: dict[str, Any] = {}

    async def start(self) -> None:
        response = await self.http.post(
            "/api/v1/spaces/eng/threads", json={"title": "Lunch"}, headers=self.auth("ann")
        )
        assert response.status_code == 201, response.text
        self.thread = response.json()

    @property
    def doc(self) -> str:
        return str(self.thread["document"])

    def auth(self, name: str) -> dict[str, str]:
        return {"authorization": f"Bearer {self.tokens[name]}"}

    async def join(self, name: str, kind: ClientKind) -> Client:
        cid = f"{name}-{kind}-{next(_ids)}"
        if kind == "y-websocket":
            client = await self.driver.connect(
                cid,
                kind,
                self.samen.ws_url,
                [self.doc],
                params={"token": self.tokens[name]},
                roots=[f"array:{ROOT}"],
            )
        else:
            client = await self.driver.connect(
                cid,
                kind,
                self.samen.hocuspocus_url,
                [self.doc],
                token=self.tokens[name],
                roots=[f"array:{ROOT}"],
            )
        await client.wait_synced()
        return client

    async def rest_messages(self) -> list[dict[str, Any]]:
        response = await self.http.get(f"/api/v1/threads/{self.thread['id']}", headers=self.auth("cat"))
        assert response.status_code == 200, response.text
        messages: list[dict[str, Any]] = response.json()["messages"]
        return messages


def messages_of(snapshot: Snapshot, doc: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = doc_state(snapshot, doc)["other"][f"array:{ROOT}"]
    return found


def summary(messages: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What a reader sees of each message (the same from a Yjs client and from REST)."""
    return [
        (m["id"], m["author"], m.get("parent"), m["body"], m.get("edited") is not None, m["deleted"],
         dict(sorted(m["reactions"].items())))
        for m in messages
    ]  # fmt: skip


def message(mid: str, author: str, body: str, **extra: Any) -> dict[str, Any]:
    fields = {"id": mid, "author": author, "created": time.time() * 1000, "body": y_text(body),
              "deleted": False, "reactions": y_map({}), **extra}  # fmt: skip
    return y_map(fields)


def post(mid: str, author: str, body: str, **extra: Any) -> Op:
    return array_push([message(mid, author, body, **extra)], name=ROOT)


def at(index: int, *rest: str | int) -> list[str | int]:
    return [index, *rest]


async def converge(
    clients: list[Client], doc: str, check: Callable[[list[tuple[Any, ...]]], bool], what: str
) -> None:
    await wait_all(clients, lambda s: check(summary(messages_of(s, doc))), what=what)


@pytest.fixture
async def room(server: tuple[SamenServer, dict[str, str]], driver: YjsDriver) -> AsyncIterator[Room]:
    samen, tokens = server
    async with httpx.AsyncClient(base_url=samen.http_url, trust_env=False) as http:
        r = Room(samen, tokens, driver, http)
        await r.start()
        yield r


async def test_honest_posts_replies_edits_reactions_and_deletes_reach_everyone_live(room: Room) -> None:
    ann = await room.join("ann", "y-websocket")
    bob = await room.join("bob", "hocuspocus-v4")
    cat = await room.join("cat", "hocuspocus-v2")
    dan = await room.join("dan", "y-websocket")
    everyone = [ann, bob, cat, dan]
    doc = room.doc

    steps: list[tuple[Client, list[Op], list[tuple[Any, ...]]]] = [
        (ann, [post("m1", "ann@local", "lunch at noon?")],
         [("m1", "ann@local", None, "lunch at noon?", False, False, {})]),
        (bob, [post("m2", "bob@local", "1pm?", parent="m1")],
         [("m1", "ann@local", None, "lunch at noon?", False, False, {}),
          ("m2", "bob@local", "m1", "1pm?", False, False, {})]),
        (ann, [text_insert(" or 1pm", 13, ROOT, path=at(0, "body")),
               map_set("edited", time.time() * 1000, ROOT, path=at(0))],
         [("m1", "ann@local", None, "lunch at noon or 1pm?", True, False, {}),
          ("m2", "bob@local", "m1", "1pm?", False, False, {})]),
        (cat, [map_set("cat@local", "👍", ROOT, path=at(0, "reactions"))],
         [("m1", "ann@local", None, "lunch at noon or 1pm?", True, False, {"cat@local": "👍"}),
          ("m2", "bob@local", "m1", "1pm?", False, False, {})]),
        (dan, [map_set("dan@local", "🎉", ROOT, path=at(1, "reactions"))],
         [("m1", "ann@local", None, "lunch at noon or 1pm?", True, False, {"cat@local": "👍"}),
          ("m2", "bob@local", "m1", "1pm?", False, False, {"dan@local": "🎉"})]),
        (cat, [map_delete("cat@local", ROOT, path=at(0, "reactions")),
               map_set("cat@local", "❤️", ROOT, path=at(1, "reactions"))],
         [("m1", "ann@local", None, "lunch at noon or 1pm?", True, False, {}),
          ("m2", "bob@local", "m1", "1pm?", False, False, {"cat@local": "❤️", "dan@local": "🎉"})]),
        (bob, [map_set("deleted", True, ROOT, path=at(1))],
         [("m1", "ann@local", None, "lunch at noon or 1pm?", True, False, {}),
          ("m2", "bob@local", "m1", "1pm?", False, True, {"cat@local": "❤️", "dan@local": "🎉"})]),
    ]  # fmt: skip
    for number, (who, ops, want) in enumerate(steps, 1):
        await who.edit(doc, ops)
        await converge(everyone, doc, lambda got, want=want: got == want, f"step {number} reaches everyone")
    assert all(doc_state(c.state, doc)["syncRefused"] in (None, 0) for c in everyone)
    assert all(doc_state(c.state, doc)["syncStep1s"] in (None, 1) for c in everyone)  # no resync
    assert summary(await room.rest_messages()) == steps[-1][2]


FORBIDDEN: list[tuple[str, str, Callable[[], list[Op]], str]] = [
    # (who, what, the ops, the refusal's metric label)
    ("bob", "posts as ann", lambda: [post(f"x{next(_ids)}", "ann@local", "it is me, ann")],
     "thread_not_author"),
    ("bob", "edits ann's message", lambda: [text_insert("bob says: ", 0, ROOT, path=at(0, "body"))],
     "thread_not_author"),
    ("bob", "sets ann's reaction", lambda: [map_set("ann@local", "👎", ROOT, path=at(0, "reactions"))],
     "thread_not_yours"),
    ("ann", "rewrites created", lambda: [map_set("created", 0, ROOT, path=at(0))], "thread_immutable"),
]  # fmt: skip


async def test_forbidden_changes_are_refused_and_the_thread_stays_unchanged_everywhere(room: Room) -> None:
    doc = room.doc
    ann = await room.join("ann", "y-websocket")
    bob = await room.join("bob", "hocuspocus-v4")
    await ann.edit(doc, [post("m1", "ann@local", "lunch?")])
    await bob.wait_for(lambda s: len(messages_of(s, doc)) == 1, what="ann's message")  # m2 goes after it
    await bob.edit(doc, [post("m2", "bob@local", "yes", parent="m1")])
    watchers = [ann, bob, await room.join("cat", "y-websocket"), await room.join("dan", "hocuspocus-v3")]
    before = [
        ("m1", "ann@local", None, "lunch?", False, False, {}),
        ("m2", "bob@local", "m1", "yes", False, False, {}),
    ]
    await converge(watchers, doc, lambda got: got == before, "both messages everywhere")
    raw = messages_of(ann.state, doc)  # every field, `created` included

    for who, what, ops, _kind in FORBIDDEN:
        for kind in ("y-websocket", "hocuspocus-v4"):
            offender = await room.join(who, kind)
            await offender.edit(doc, ops())
            if kind == "y-websocket":
                told = await offender.wait_for(
                    lambda s: doc_state(s, doc)["syncStep1s"] >= 2, what=f"{what}: resynced"
                )
            else:
                told = await offender.wait_for(
                    lambda s: doc_state(s, doc)["syncRefused"] >= 1, what=f"{what}: refused"
                )
            state = doc_state(told, doc)
            assert state["status"] == "connected" and state["closeCode"] is None, (what, kind)
            # Its own copy keeps the change: nothing tells a Yjs client to undo a local edit.
            assert messages_of(told, doc) != raw, (what, kind)
            await offender.disconnect()

    # An honest message after all of them: once everyone has it, they have all the server sent.
    await ann.edit(doc, [post("m3", "ann@local", "so: noon")])
    after = [*before, ("m3", "ann@local", None, "so: noon", False, False, {})]
    late = await room.join("cat", "hocuspocus-v4")
    await converge(
        [*watchers, late], doc, lambda got: got == after, "the honest message, and nothing refused"
    )
    assert summary(await room.rest_messages()) == after
    metrics = (await room.http.get("/metrics")).text
    for _who, _what, _ops, label in FORBIDDEN:  # counted, by reason (y-websocket's resync answer too)
        assert f'samen_refused_total{{reason="{label}"}}' in metrics, label
    assert "Traceback" not in room.samen.log_text()
