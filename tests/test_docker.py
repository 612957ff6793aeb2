"""docker/: no Docker engine runs here, so check that the compose file parses and names only
services, files and settings that exist (a renamed setting would otherwise rot silently)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import yaml

from server.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
SETTINGS = {f"SAMEN_{f.name.upper()}" for f in dataclasses.fields(Settings)}


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    return data


def test_compose_services_and_dependencies_exist() -> None:
    services = compose()["services"]
    assert {"postgres", "redis", "migrate", "samen1", "samen2", "samen3", "lb"} <= set(services)
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown service {dependency}"
        build = service.get("build")
        if build:
            assert (DOCKER / build["context"] / build["dockerfile"]).resolve().is_file(), name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DOCKER / source).exists(), f"{name} mounts missing {source}"


def test_compose_sets_only_real_settings() -> None:
    for name, service in compose()["services"].items():
        for key in service.get("environment", {}):
            if key.startswith("SAMEN_"):
                assert key in SETTINGS, f"{name} sets unknown setting {key}"
    nodes = [s for n, s in compose()["services"].items() if n.startswith("samen")]
    assert len({s["environment"]["SAMEN_NODE_ID"] for s in nodes}) == 3
    for node in nodes:
        env = node["environment"]
        assert env["SAMEN_DATABASE_URL"].startswith("postgresql://") and env["SAMEN_REDIS_URL"].startswith(
            "redis://"
        )
        Settings.from_env({k: str(v) for k, v in env.items()})  # every value parses


def test_load_balancer_targets_the_nodes() -> None:
    config = (DOCKER / "haproxy.cfg").read_text()
    targets = set(re.findall(r"^\s*server \S+ (\w+):8000", config, re.MULTILINE))
    assert targets == {n for n in compose()["services"] if n.startswith("samen")}
    assert "GET /readyz" in config


def test_dockerfile_runs_existing_commands() -> None:
    dockerfile = (DOCKER / "Dockerfile").read_text()
    for copied in re.findall(r"^COPY (\S+)", dockerfile, re.MULTILINE):
        assert (ROOT / copied).exists(), copied
    assert 'CMD ["samen", "serve"]' in dockerfile
    assert compose()["services"]["migrate"]["command"] == ["samen", "migrate"]
    for key in re.findall(r"(SAMEN_\w+)=", dockerfile):
        assert key in SETTINGS, key
