"""Acceptance 1: the permission matrix, over REST and both WebSocket endpoints with the real
npm providers (y-websocket, @hocuspocus/provider v4), on one real server.

Rows: who (a guest member holds the editor role, which counts as viewer). Columns:
- see      GET /api/v1/spaces/{slug} (and the slug in GET /api/v1/spaces)
- members  GET /api/v1/spaces/{slug}/members
- read     open `<space>/page` over y-websocket and over Hocuspocus
- edit     type into it: "ok" = stored; "ro" = read-only (Hocuspocus: scope readonly and
           SyncStatus false; y-websocket: the edit is never stored)
- manage   POST /api/v1/spaces/{slug}/members (add a person)
- approve  POST /api/v1/spaces/{slug}/join-requests/{id}/approve
- archive  POST /api/v1/spaces/{slug}/archive (then unarchive again)
Cells: "ok", an HTTP status (the JSON error code is checked too), or a WebSocket close code
(y-websocket closes with it; Hocuspocus answers PermissionDenied with the same reason).

The join requests exist in every space: each space starts on request, the requests are
made, then it gets its real policy and visibility (a pending request survives that).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pycrdt
import pytest

from server.domain.space_service import OPERATOR
from server.domain.spaces import JoinPolicy, SpaceRole, Visibility
from server.store.sqlite import SQLiteStore

from .intranet import SITE, intranet
from .server_process import SamenServer
from .yjs_driver import Client, YjsDriver, awareness_notes, doc_state, doc_text, text_insert

pytestmark = pytest.mark.integration

MATRIX = """
space    who                 see  members read  edit  manage approve archive
open     anonymous           401  401     4401  4401  401    401     401
open     guest               404  404     4403  4403  404    404     404
open     guest-editor        ok   ok      ok    ro    403    403     403
open     outsider            ok   ok      ok    ro    403    403     403
open     viewer              ok   ok      ok    ro    403    403     403
open     editor              ok   ok      ok    ok    403    403     403
open     moderator           ok   ok      ok    ok    403    403     403
open     space-admin         ok   ok      ok    ok    ok     ok      ok
open     community-manager   ok   ok      ok    ok    403    403     403
open     site-admin          ok   ok      ok    ok    ok     ok      ok
request  anonymous           401  401     4401  4401  401    401     401
request  guest               404  404     4403  4403  404    404     404
request  guest-editor        ok   ok      ok    ro    403    403     403
request  outsider            ok   403     4403  4403  403    403     403
request  viewer              ok   ok      ok    ro    403    403     403
request  editor              ok   ok      ok    ok    403    403     403
request  moderator           ok   ok      ok    ok    403    403     403
request  space-admin         ok   ok      ok    ok    ok     ok      ok
request  community-manager   ok   ok      ok    ok    403    403     403
request  site-admin          ok   ok      ok    ok    ok     ok      ok
invite   anonymous           401  401     4401  4401  401    401     401
invite   guest               404  404     4403  4403  404    404     404
invite   guest-editor        ok   ok      ok    ro    403    403     403
invite   outsider            ok   403     4403  4403  403    403     403
invite   viewer              ok   ok      ok    ro    403    403     403
invite   editor              ok   ok      ok    ok    403    403     403
invite   moderator           ok   ok      ok    ok    403    403     403
invite   space-admin         ok   ok      ok    ok    ok     ok      ok
invite   community-manager   ok   ok      ok    ok    403    403     403
invite   site-admin          ok   ok      ok    ok    ok     ok      ok
secret   anonymous           401  401     4401  4401  401    401     401
secret   guest               404  404     4403  4403  404    404     404
secret   guest-editor        ok   ok      ok    ro    403    403     403
secret   outsider            404  404     4403  4403  404    404     404
secret   viewer              ok   ok      ok    ro    403    403     403
secret   editor              ok   ok      ok    ok    403    403     403
secret   moderator           ok   ok      ok    ok    403    403     403
secret   space-admin         ok   ok      ok    ok    ok     ok      ok
secret   community-manager   ok   ok      ok    ok    403    403     403
secret   site-admin          ok   ok      ok    ok    ok     ok      ok
"""

SPACES = {
    "open": (JoinPolicy.OPEN, Visibility.LISTED),
    "request": (JoinPolicy.REQUEST, Visibility.LISTED),
    "invite": (JoinPolicy.INVITE, Visibility.LISTED),
    "secret": (JoinPolicy.INVITE, Visibility.SECRET),
}
SITE_ROLE = {
    "guest": "guest", "guest-editor": "guest", "outsider": "member", "viewer": "member", "editor": "member",
    "moderator": "member", "space-admin": "member", "community-manager": "community-manager",
    "site-admin": "admin",
}  # fmt: skip
SPACE_ROLE = {
    "guest-editor": SpaceRole.EDITOR, "viewer": SpaceRole.VIEWER, "editor": SpaceRole.EDITOR,
    "moderator": SpaceRole.MODERATOR, "space-admin": SpaceRole.ADMIN,
}  # fmt: skip
REST_CODES = {"403": "forbidden", "404": "space_not_found"}
NOSUCH = "nosuch"  # a space that does not exist: a secret one must look the same


def parse(table: str) -> dict[tuple[str, str], dict[str, str]]:
    lines = [line.split() for line in table.strip().splitlines()]
    header, rows = lines[0], lines[1:]
    return {(row[0], row[1]): dict(zip(header[2:], row[2:], strict=True)) for row in rows}


CELLS = parse(MATRIX)
WHO = list(dict.fromkeys(who for _space, who in CELLS))


def target(who: str, space: str) -> str:
    return f"t-{who}-{space}"


def requester(who: str, space: str) -> str:
    return f"r-{who}-{space}"


@pytest.fixture
async def server(
    tmp_path: Path,
) -> AsyncIterator[tuple[SamenServer, dict[str, str], dict[tuple[str, str], str]]]:
    """The server, each person's token, and the pending join request of each cell."""
    data = tmp_path / "data"
    requests: dict[tuple[str, str], str] = {}
    async with intranet(data) as net:
        await net.add_people({who: SITE_ROLE[who] for who in WHO if who != "anonymous"})
        cells = [(who, space) for who in WHO for space in SPACES]
        await net.add_people({target(*cell): "member" for cell in cells}, with_tokens=False)
        await net.add_people({requester(*cell): "member" for cell in cells}, with_tokens=False)
        for space in SPACES:
            await net.spaces.create(OPERATOR, space, space.title(), join_policy=JoinPolicy.REQUEST)
            for who, role in SPACE_ROLE.items():
                await net.spaces.add_member(OPERATOR, space, who, role)
            for who in WHO:
                joined = await net.spaces.admissions.join(net.principal(requester(who, space)), space)
                assert joined.request is not None
                requests[who, space] = joined.request.id
            policy, visibility = SPACES[space]
            await net.spaces.update(OPERATOR, space, join_policy=policy, visibility=visibility)
        tokens = dict(net.tokens)
    async with SamenServer(data, env={"SAMEN_AUTH": "required"}) as samen:
        yield samen, tokens, requests


# -- REST --------------------------------------------------------------------------------


async def rest_cell(
    http: httpx.AsyncClient, token: str | None, method: str, path: str, body: Any = None
) -> tuple[str, str]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    response = await http.request(method, path, headers=headers, json=body)
    if response.status_code < 300:
        return "ok", ""
    error = response.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    return str(response.status_code), error["code"]


def check_rest(outcomes: dict[tuple[str, str, str], tuple[str, str]]) -> None:
    wrong = []
    for (space, who, column), (got, code) in sorted(outcomes.items()):
        want = CELLS[space, who][column]
        if got != want or (want in REST_CODES and code != REST_CODES[want]):
            wrong.append(f"{space:8} {who:18} {column:8} want {want}, got {got} {code}")
    assert not wrong, "REST cells:\n" + "\n".join(wrong)


# -- WebSockets ---------------------------------------------------------------------------


def ywebsocket_outcome(state: dict[str, Any]) -> str | None:
    """ "ok", a close code, or None (not decided yet)."""
    if state["closeCode"] is not None:
        return str(state["closeCode"])
    return "ok" if state["synced"] and state["status"] == "connected" else None


def hocuspocus_outcome(state: dict[str, Any]) -> str | None:
    if state["authFailed"] is not None:
        return "refused"
    return "ok" if state["synced"] and state["authenticated"] else None


async def test_permission_matrix(
    server: tuple[SamenServer, dict[str, str], dict[tuple[str, str], str]], tmp_path: Path
) -> None:
    samen, tokens, requests = server
    docs = {space: f"{space}/page" for space in [*SPACES, NOSUCH]}
    async with (
        YjsDriver() as driver,
        httpx.AsyncClient(base_url=f"{samen.http_url}/api/v1", trust_env=False) as http,
    ):
        # Every WebSocket client at once: one y-websocket client per (who, space), one
        # Hocuspocus socket per person with all the documents on it.
        ys: dict[tuple[str, str], Client] = {}
        hs: dict[str, Client] = {}
        for who in WHO:
            token = tokens.get(who)
            params = {"token": token} if token else None
            for space, doc in docs.items():
                ys[who, space] = await driver.connect(f"y-{who}-{space}", "y-websocket", samen.ws_url, [doc],
                                                      params=params)  # fmt: skip
            hs[who] = await driver.connect(
                f"h-{who}", "hocuspocus-v4", samen.hocuspocus_url, list(docs.values()), token=token or ""
            )
        observers = {
            space: await driver.connect(
                f"obs-{space}",
                "y-websocket",
                samen.ws_url,
                [docs[space]],
                params={"token": tokens["site-admin"]},
            )
            for space in SPACES
        }

        def decided() -> bool:
            ready = [ywebsocket_outcome(doc_state(c.state, c.docs[0])) for c in ys.values()]
            ready += [hocuspocus_outcome(doc_state(h.state, d)) for h in hs.values() for d in docs.values()]
            ready += [ywebsocket_outcome(doc_state(o.state, o.docs[0])) for o in observers.values()]
            return all(outcome is not None for outcome in ready)

        await driver.wait_until(decided, timeout=60, what="every client allowed in or refused")

        # -- read (and what a space that does not exist looks like) ---------------------
        wrong = []
        for (space, who), cell in CELLS.items():
            y = doc_state(ys[who, space].state, docs[space])
            h = doc_state(hs[who].state, docs[space])
            got_y = ywebsocket_outcome(y)
            # The first denial: a provider that goes on sending for a denied document may be
            # told again, as anonymous (the frames after its auth message carry no token).
            got_h = "ok" if hocuspocus_outcome(h) == "ok" else h["authFailures"][0]
            want_h = "ok" if cell["read"] == "ok" else y["closeReason"]
            if got_y != cell["read"] or got_h != want_h or (got_y != "ok" and not want_h):
                wrong.append(f"{space:8} {who:18} read: want {cell['read']}, got y-websocket {got_y}, "
                             f"hocuspocus {got_h!r} (y-websocket reason {y['closeReason']!r})")  # fmt: skip
            if cell["see"] != "ok":
                # Secret or not, a space one may not see answers like one that does not exist.
                nosuch_y = doc_state(ys[who, NOSUCH].state, docs[NOSUCH])
                nosuch_h = doc_state(hs[who].state, docs[NOSUCH])
                if (y["closeCode"], y["closeReason"], h["authFailures"][0]) != (
                    nosuch_y["closeCode"], nosuch_y["closeReason"], nosuch_h["authFailures"][0],
                ):  # fmt: skip
                    wrong.append(f"{space:8} {who:18} differs from a space that does not exist")
        assert not wrong, "read cells:\n" + "\n".join(wrong)

        # -- edit ---------------------------------------------------------------------------
        edits = []
        for (space, who), cell in CELLS.items():
            if cell["read"] != "ok":
                continue
            doc = docs[space]
            edits.append(ys[who, space].edit(doc, [text_insert(f"<y-{who}>")]))
            edits.append(hs[who].edit(doc, [text_insert(f"<h-{who}>")]))
        await asyncio.gather(*edits)
        # y-websocket has no acknowledgement: a presence change sent after the edit, once
        # another client sees it, proves the server handled the edit (frames are in order).
        await asyncio.gather(*(
            ys[who, space].set_awareness(docs[space], {"note": f"after-{who}"})
            for (space, who), cell in CELLS.items() if cell["read"] == "ok"
        ))  # fmt: skip

        def edits_settled() -> bool:
            for (space, who), cell in CELLS.items():
                if cell["read"] != "ok":
                    continue
                doc, seen = docs[space], observers[space].state
                h = doc_state(hs[who].state, doc)
                if cell["edit"] == "ok" and (f"<y-{who}>" not in doc_text(seen, doc) or h["unsynced"] != 0):
                    return False
                if cell["edit"] == "ro" and (
                    f"after-{who}" not in awareness_notes(seen, doc) or h["syncRefused"] < 1
                ):
                    return False
            return True

        await driver.wait_until(edits_settled, timeout=60, what="every edit stored or refused")
        for (space, who), cell in CELLS.items():
            if cell["read"] == "ok":
                scope = doc_state(hs[who].state, docs[space])["scope"]
                assert scope == ("read-write" if cell["edit"] == "ok" else "readonly"), (space, who, scope)
        assert not driver.uncaught_errors()

        # -- REST: see, members, manage, approve (in parallel), then archive (one by one) ---
        outcomes: dict[tuple[str, str, str], tuple[str, str]] = {}

        async def run(space: str, who: str, column: str, method: str, path: str, body: Any = None) -> None:
            outcomes[space, who, column] = await rest_cell(http, tokens.get(who), method, path, body)

        calls = []
        for space, who in CELLS:
            request_id = requests[who, space]
            calls += [
                run(space, who, "see", "GET", f"/spaces/{space}"),
                run(space, who, "members", "GET", f"/spaces/{space}/members"),
                run(space, who, "manage", "POST", f"/spaces/{space}/members",
                    {"person": target(who, space), "role": "viewer"}),
                run(space, who, "approve", "POST", f"/spaces/{space}/join-requests/{request_id}/approve"),
            ]  # fmt: skip
        await asyncio.gather(*calls)
        for space, who in CELLS:
            await run(space, who, "archive", "POST", f"/spaces/{space}/archive")
            if outcomes[space, who, "archive"][0] == "ok":
                assert (await rest_cell(http, tokens[who], "POST", f"/spaces/{space}/unarchive"))[0] == "ok"
        check_rest(outcomes)

        # The list shows exactly the spaces one may see.
        for who in WHO:
            if who == "anonymous":
                response = await http.get("/spaces")
                assert response.status_code == 401 and response.json()["error"]["code"]
                continue
            response = await http.get("/spaces", headers={"authorization": f"Bearer {tokens[who]}"})
            listed = {s["slug"] for s in response.json()["spaces"]}
            assert listed == {space for space in SPACES if CELLS[space, who]["see"] == "ok"}, who

        # Refused cells changed nothing: exactly the allowed ones added members.
        async with intranet(samen.data_dir) as net:
            rows = await net.rows("space_members")
        added = {(r["space"], r["person"]) for r in rows if r["person"].startswith(("t-", "r-"))}
        allowed = {(s, f"{target(w, s)}@{SITE}") for (s, w), c in CELLS.items() if c["manage"] == "ok"}
        allowed |= {(s, f"{requester(w, s)}@{SITE}") for (s, w), c in CELLS.items() if c["approve"] == "ok"}
        assert added == allowed

    # What the store holds: the edits of the "ok" cells, none of the others.
    await samen.stop()
    store = SQLiteStore(samen.data_dir / "samen.sqlite3")
    await store.open()
    try:
        for space in SPACES:
            doc = pycrdt.Doc()
            for update in (await store.load(docs[space])).all_updates():
                doc.apply_update(update)
            text = str(doc.get("t", type=pycrdt.Text))
            for who in WHO:
                stored = CELLS[space, who]["edit"] == "ok"
                for marker in (f"<y-{who}>", f"<h-{who}>"):
                    assert (marker in text) == stored, (space, who, marker, text)
    finally:
        await store.close()
