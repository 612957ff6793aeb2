"""A Samen site for tests: several real `samen serve` processes sharing one PostgreSQL
database and one Redis, like a site behind a load balancer."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from .server_process import SamenServer

__all__ = ["SamenSite", "eventually", "metric_value"]


def metric_value(exposition: str, name: str, labels: str = "") -> float:
    """The value of one sample in a Prometheus text exposition (0 if absent)."""
    pattern = re.compile(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", re.MULTILINE)
    match = pattern.search(exposition)
    return float(match.group(1)) if match else 0.0


class SamenSite:
    def __init__(
        self,
        workdir: Path,
        *,
        nodes: int,
        database_url: str,
        redis_url: str,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.prefix = f"test-{uuid.uuid4().hex[:8]}:"
        self.database_url = database_url
        self.redis_url = redis_url
        self.nodes = [
            SamenServer(
                workdir / f"node{i}",
                env={
                    "SAMEN_DATABASE_URL": database_url,
                    "SAMEN_REDIS_URL": redis_url,
                    "SAMEN_REDIS_PREFIX": self.prefix,
                    "SAMEN_NODE_ID": f"node{i}",
                    "SAMEN_DEBUG_HOOKS": "1",
                    **(extra_env or {}),
                },
            )
            for i in range(1, nodes + 1)
        ]

    async def __aenter__(self) -> SamenSite:
        # One after the other: the first applies the migrations, the others find them done
        # (they would also cope when started together: migrations take a lock).
        for node in self.nodes:
            await node.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await asyncio.gather(*(node.stop() for node in self.nodes if node.running))

    async def metrics(self, index: int) -> str:
        async with httpx.AsyncClient(trust_env=False, timeout=5) as http:
            response = await http.get(f"{self.nodes[index].http_url}/metrics")
            response.raise_for_status()
            return response.text

    async def metric(self, index: int, name: str, labels: str = "") -> float:
        return metric_value(await self.metrics(index), name, labels)

    async def drop_next_backplane_updates(self, index: int, count: int = 1) -> None:
        async with httpx.AsyncClient(trust_env=False, timeout=5) as http:
            url = f"{self.nodes[index].http_url}/debug/drop-backplane-updates"
            response = await http.post(url, params={"count": count})
            response.raise_for_status()

    async def ready(self, index: int) -> tuple[int, dict[str, Any]]:
        async with httpx.AsyncClient(trust_env=False, timeout=5) as http:
            response = await http.get(f"{self.nodes[index].http_url}/readyz")
            return response.status_code, response.json()

    async def wait_ready_status(self, index: int, status: int, timeout: float = 30) -> dict[str, Any]:
        """Wait until node `index` answers /readyz with `status`; returns the body."""
        body: dict[str, Any] = {}

        async def check() -> bool:
            nonlocal body
            code, body = await self.ready(index)
            return code == status

        await eventually(check, timeout, f"node {index + 1} /readyz answers {status}")
        return body


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    """Wait for state that can only be observed by asking (a row count, a readiness probe):
    ask again with a growing pause until `check()` holds, or fail after `timeout`."""
    delay = 0.02
    try:
        async with asyncio.timeout(timeout):
            while not await check():
                await asyncio.sleep(delay)  # nothing to wait on but the answer
                delay = min(delay * 2, 0.5)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout}s waiting for: {what}") from None
