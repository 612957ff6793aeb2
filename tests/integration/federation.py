"""Federated sites for tests: each site its own Redis, its own PostgreSQL database, one or
more real `samen serve` nodes, a key made by `samen site init` and a peers file."""

from __future__ import annotations

import ssl
import subprocess
import sys
import uuid
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ..pg_cluster import PgCluster
from ..redis_server import RedisServer
from .server_process import REPO_ROOT, SamenServer, free_port
from .site import eventually, metric_value

__all__ = ["FederatedSite", "Federation", "SiteTls"]


@dataclass(frozen=True)
class SiteTls:
    """A site that serves wss:// itself: its certificate and key, and the CA that signed
    them (the other sites verify it with that CA, SAMEN_LINK_CA_FILE)."""

    cert: Path
    key: Path
    ca: Path


@dataclass
class FederatedSite:
    site_id: str
    workdir: Path
    ports: list[int]
    key_file: Path
    public_key: str = ""
    redis: RedisServer | None = None
    database_url: str = ""
    nodes: list[SamenServer] = field(default_factory=list)
    redis_prefix: str = field(default_factory=lambda: f"site-{uuid.uuid4().hex[:8]}:")
    tls: SiteTls | None = None
    # Where the other sites dial this one (a relay in front of it); None: its own ports.
    dialed_at: list[str] | None = None

    @property
    def urls(self) -> list[str]:
        scheme = "wss" if self.tls is not None else "ws"
        return [f"{scheme}://127.0.0.1:{port}/federation" for port in self.ports]

    @property
    def verify(self) -> ssl.SSLContext | bool:
        return ssl.create_default_context(cafile=self.tls.ca) if self.tls is not None else True

    async def metrics(self) -> list[str]:
        async with httpx.AsyncClient(trust_env=False, timeout=5, verify=self.verify) as http:
            return [(await http.get(f"{node.http_url}/metrics")).text for node in self.nodes if node.running]

    async def link_metric(self, name: str, peer: str) -> float:
        """Sum of a per-peer metric over the running nodes (only the holder has non-zero)."""
        return sum(metric_value(text, name, f'{{peer="{peer}"}}') for text in await self.metrics())

    async def metric(self, name: str) -> float:
        """Sum of an unlabelled metric over the running nodes."""
        return sum(metric_value(text, name) for text in await self.metrics())

    async def post_all(self, path: str, **params: str) -> None:
        async with httpx.AsyncClient(trust_env=False, timeout=10, verify=self.verify) as http:
            for node in self.nodes:
                if node.running:
                    response = await http.post(f"{node.http_url}{path}", params=params)
                    response.raise_for_status()

    async def block(self, peer: str) -> None:
        await self.post_all(f"/debug/links/{peer}/block")

    async def unblock(self, peer: str) -> None:
        await self.post_all(f"/debug/links/{peer}/unblock")

    async def wait_link(self, peer: str, up: bool = True, timeout: float = 30) -> None:
        async def check() -> bool:
            return (await self.link_metric("samen_link_up", peer) >= 1) == up

        await eventually(check, timeout, f"{self.site_id}: link to {peer} {'up' if up else 'down'}")

    async def wait_acknowledged_by(self, peer: str, timeout: float = 30) -> None:
        """Until `peer` has acknowledged every row of this site's log."""

        async def check() -> bool:
            texts = await self.metrics()
            up = sum(metric_value(t, "samen_link_up", f'{{peer="{peer}"}}') for t in texts)
            backlog = sum(metric_value(t, "samen_link_backlog_rows", f'{{peer="{peer}"}}') for t in texts)
            return up >= 1 and backlog == 0

        await eventually(check, timeout, f"{self.site_id}: {peer} acknowledged everything")


class Federation:
    """`spec` maps site id → number of nodes; `spaces` maps space → the sites sharing it.
    Extra peers (test-controlled fake sites) can be given as (site id, public key); `env`
    goes to every node."""

    def __init__(
        self,
        tmp_path: Path,
        pg_cluster: PgCluster,
        spec: dict[str, int],
        spaces: dict[str, list[str]],
        extra_peers: dict[str, str] | None = None,
        env: dict[str, str] | None = None,
        tls: dict[str, SiteTls] | None = None,
    ) -> None:
        self.tmp_path = tmp_path
        self.pg_cluster = pg_cluster
        self.spaces = spaces
        self.extra_peers = extra_peers or {}
        self.env = env or {}
        self.tls = tls or {}
        self.sites = {site_id: self._new_site(site_id, count) for site_id, count in spec.items()}
        self._stack = AsyncExitStack()

    def _new_site(self, site_id: str, nodes: int) -> FederatedSite:
        return FederatedSite(
            site_id,
            self.tmp_path / site_id,
            [free_port() for _ in range(nodes)],
            self.tmp_path / site_id / "site.pem",
            tls=self.tls.get(site_id),
        )

    def __getitem__(self, site_id: str) -> FederatedSite:
        return self.sites[site_id]

    async def __aenter__(self) -> Federation:
        await self._stack.__aenter__()
        try:
            for site in self.sites.values():
                await self._prepare(site)
            for site in self.sites.values():
                await self._start(site)
        except BaseException:
            await self._stack.__aexit__(None, None, None)
            raise
        return self

    async def _prepare(self, site: FederatedSite) -> None:
        site.workdir.mkdir(parents=True, exist_ok=True)
        site.public_key = site_init(site.site_id, site.key_file)
        site.redis = await self._stack.enter_async_context(RedisServer(site.workdir / "redis"))
        site.database_url = await self._stack.enter_async_context(self.pg_cluster.fresh_database())

    async def _start(self, site: FederatedSite) -> None:
        self._write_peers(site)
        site.nodes = [
            SamenServer(
                site.workdir / f"node{i}",
                self.node_env(site, i),
                port=port,
                tls_ca=site.tls.ca if site.tls is not None else None,
            )
            for i, port in enumerate(site.ports, start=1)
        ]
        for node in site.nodes:
            await node.start()
            self._stack.push_async_callback(_stop, node)

    async def add_site(self, site_id: str, nodes: int, spaces: dict[str, list[str]]) -> FederatedSite:
        """Add a site to the running federation, as operators do: the new site starts with
        a peers file naming the others, and the others get it in theirs and restart."""
        site = self.sites[site_id] = self._new_site(site_id, nodes)
        self.spaces = spaces
        await self._prepare(site)
        for other in self.sites.values():
            if other is not site:
                self._write_peers(other)
                for node in other.nodes:
                    if node.running:
                        await node.restart()
        await self._start(site)
        return site

    async def __aexit__(self, *exc: Any) -> None:
        await self._stack.__aexit__(*exc)

    def node_env(self, site: FederatedSite, index: int) -> dict[str, str]:
        assert site.redis is not None
        tls: dict[str, str] = {}
        if site.tls is not None:
            tls.update(SAMEN_TLS_CERT=str(site.tls.cert), SAMEN_TLS_KEY=str(site.tls.key))
        for other in self.sites.values():
            if other is not site and other.tls is not None:
                tls["SAMEN_LINK_CA_FILE"] = str(other.tls.ca)  # one test CA at a time
        return {
            "SAMEN_DATABASE_URL": site.database_url,
            "SAMEN_REDIS_URL": site.redis.url,
            "SAMEN_REDIS_PREFIX": site.redis_prefix,
            "SAMEN_NODE_ID": f"{site.site_id}{index}",
            "SAMEN_SITE_ID": site.site_id,
            "SAMEN_SITE_KEY": str(site.key_file),
            "SAMEN_PEERS_FILE": str(site.workdir / "peers.toml"),
            "SAMEN_DEBUG_HOOKS": "1",
            # The harness links sites over ws:// on 127.0.0.1 (test_link_relay.py: wss://).
            "SAMEN_LINK_ALLOW_INSECURE": "loopback",
            **tls,
            **self.env,
        }

    def _write_peers(self, site: FederatedSite) -> None:
        lines = []
        for other in self.sites.values():
            if other is not site:
                urls = ", ".join(f'"{u}"' for u in other.dialed_at or other.urls)
                lines += [
                    "[[peer]]",
                    f'id = "{other.site_id}"',
                    f"urls = [{urls}]",
                    f'public_key = "{other.public_key}"',
                    "",
                ]
        for fake, key in self.extra_peers.items():
            lines += [
                "[[peer]]",
                f'id = "{fake}"',
                'urls = ["ws://127.0.0.1:9/federation"]',
                f'public_key = "{key}"',
                "",
            ]
        lines.append("[spaces]")
        for space, members in self.spaces.items():
            if site.site_id in members:
                peers = ", ".join(f'"{m}"' for m in members if m != site.site_id)
                lines.append(f"{space} = [{peers}]")
        (site.workdir / "peers.toml").write_text("\n".join(lines) + "\n")


def site_init(site_id: str, key_file: Path) -> str:
    """Run `samen site init` and return the public key it printed."""
    result = subprocess.run(
        [sys.executable, "-m", "server", "site", "init", "--site-id", site_id, "--key-file", str(key_file)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    for line in result.stdout.splitlines():
        if line.startswith("public key: "):
            return line.removeprefix("public key: ").strip()
    raise AssertionError(f"no public key in `samen site init` output:\n{result.stdout}")


async def _stop(node: SamenServer) -> None:
    if node.running:
        await node.stop()
