"""The `samen` command line: settings from flags and environment, `samen migrate`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from server.errors import ConfigError
from server.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def run_samen(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )


def test_settings_precedence_defaults_env_flags() -> None:
    env = {"SAMEN_PORT": "9001", "SAMEN_DEBUG_HOOKS": "yes", "SAMEN_DATA_DIR": "/srv/samen"}
    settings = Settings.from_env(env, port=9002)
    assert settings.port == 9002 and settings.debug_hooks is True and str(settings.data_dir) == "/srv/samen"
    assert Settings.from_env({}).port == 8000


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SAMEN_PORT": "eighty"}, "SAMEN_PORT"),
        ({"SAMEN_PORT": "70000"}, "SAMEN_PORT"),
        ({"SAMEN_DATABASE_URL": "mysql://x"}, "SAMEN_DATABASE_URL"),
        ({"SAMEN_REDIS_URL": "http://x"}, "SAMEN_REDIS_URL"),
        ({"SAMEN_DEBUG_HOOKS": "maybe"}, "SAMEN_DEBUG_HOOKS"),
    ],
)
def test_bad_settings_name_the_setting(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_serve_refuses_bad_settings_with_a_message() -> None:
    result = run_samen("serve", "--port", "0")
    assert result.returncode == 2 and "SAMEN_PORT" in result.stderr


def test_migrate_applies_then_finds_nothing(pg_dsn: str) -> None:
    first = run_samen("migrate", "--database-url", pg_dsn)
    assert first.returncode == 0, first.stderr
    assert "applied migrations: 1" in first.stdout
    second = run_samen("migrate", "--database-url", pg_dsn)
    assert second.returncode == 0 and "up to date" in second.stdout


def test_migrate_needs_a_database() -> None:
    result = run_samen("migrate", env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2 and "SAMEN_DATABASE_URL" in result.stderr
