"""Acceptance 8 for pages on a real Samen process (SAMEN_AUTH=required, over real sockets): a
move into its own subtree, changes in an archived space, over-long titles, Markdown bombs
(10,000 nested lists, a 50 MiB body) and unknown ids each get a 4xx JSON error with a code,
and nothing changed: the pages table (read from the node's database) and the pages'
content are as they were."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.domain.space_service import OPERATOR
from server.domain.spaces import JoinPolicy, SpaceRole

from .intranet import intranet
from .server_process import SamenServer

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[SamenServer, dict[str, str], Path]]:
    data = tmp_path / "data"
    async with intranet(data) as net:
        await net.add_people({"ann": "member", "root": "admin"})
        await net.spaces.create(OPERATOR, "eng", "Engineering", join_policy=JoinPolicy.INVITE)
        await net.spaces.add_member(OPERATOR, "eng", "ann", SpaceRole.EDITOR)
        await net.spaces.add_member(OPERATOR, "eng", "root", SpaceRole.ADMIN)
        tokens = dict(net.tokens)
    async with SamenServer(data, env={"SAMEN_AUTH": "required"}) as running:
        yield running, tokens, data


async def state(data: Path, client: httpx.AsyncClient, ids: list[str]) -> tuple[Any, ...]:
    async with intranet(data) as net:
        rows = await net.rows("pages")
    contents = [(await client.get(f"/api/v1/pages/{i}/content")).text for i in ids]
    return rows, contents


def error_of(response: httpx.Response) -> tuple[int, str]:
    body = response.json()
    assert set(body) == {"error"} and body["error"]["message"], body
    return response.status_code, body["error"]["code"]


async def test_bad_page_input_is_a_4xx_json_error_and_changes_nothing(
    server: tuple[SamenServer, dict[str, str], Path],
) -> None:
    samen, tokens, data = server
    headers = {"Authorization": f"Bearer {tokens['ann']}"}
    async with httpx.AsyncClient(
        base_url=samen.http_url, headers=headers, trust_env=False, timeout=60
    ) as ann:
        new = "/api/v1/spaces/eng/pages"
        a = (await ann.post(new, json={"title": "A", "markdown": "# kept\n"})).json()
        b = (await ann.post(new, json={"title": "B", "parent": a["id"]})).json()
        c = (await ann.post(new, json={"title": "C", "parent": b["id"]})).json()
        ids = [a["id"], b["id"], c["id"]]
        before = await state(data, ann, ids)
        markdown = {"Content-Type": "text/markdown"}
        content = f"/api/v1/pages/{a['id']}/content"
        bomb = "- " * 10_000 + "x\n"
        cases = [
            (ann.patch(f"/api/v1/pages/{a['id']}", json={"parent": c["id"]}), (409, "move_into_subtree")),
            (ann.patch(f"/api/v1/pages/{a['id']}", json={"title": "t" * 201}), (422, "invalid_request")),
            (ann.post(new, json={"title": "t" * 201}), (422, "invalid_request")),
            (ann.post(new, json={"title": "x", "markdown": bomb}), (422, "markdown_too_deep")),
            (ann.put(content, content=bomb, headers=markdown), (422, "markdown_too_deep")),
            (ann.put(content, content=b"x" * (50 * MiB), headers=markdown), (413, "body_too_large")),
            (ann.get("/api/v1/pages/nosuchpage000000"), (404, "page_not_found")),
            (ann.patch("/api/v1/pages/nosuchpage000000", json={"title": "x"}), (404, "page_not_found")),
            (ann.put("/api/v1/pages/nosuchpage000000/content", content="x", headers=markdown),
             (404, "page_not_found")),
        ]  # fmt: skip
        for request, expected in cases:
            assert error_of(await request) == expected
        assert await state(data, ann, ids) == before

        root = {"Authorization": f"Bearer {tokens['root']}"}
        assert (await ann.post("/api/v1/spaces/eng/archive", headers=root)).status_code == 200
        before = await state(data, ann, ids)
        for request in (
            ann.post(new, json={"title": "x"}),
            ann.patch(f"/api/v1/pages/{b['id']}", json={"parent": None}),
            ann.delete(f"/api/v1/pages/{c['id']}", headers=root),
            ann.put(content, content="changed\n", headers=markdown),
        ):
            assert error_of(await request) == (409, "space_archived")
        assert await state(data, ann, ids) == before
