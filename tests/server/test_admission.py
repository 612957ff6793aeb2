"""Admission: WebSockets per node and per address, evictable idle TCP connections, one log line
per kind of refusal, and the settings that drive them."""

from __future__ import annotations

import logging

import pytest

from server.admission import DESCRIPTOR_RESERVE, EVICTABLE_PER_ADDRESS, Admission, RefusalLog, TrustedNetworks
from server.errors import ConfigError
from server.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def admission(**settings: object) -> Admission:
    return Admission(Settings(trusted_proxies="", **settings), descriptors=100_000)  # type: ignore[arg-type]


def test_websockets_per_address_and_per_node() -> None:
    gate = admission(max_connections=5, max_connections_per_address=2)
    assert gate.admit_websocket("10.0.0.1") is None
    assert gate.admit_websocket("10.0.0.1") is None
    refusal = gate.admit_websocket("10.0.0.1")
    assert refusal is not None and refusal.status == 429 and refusal.reason == "per_address"
    for host in ("10.0.0.2", "10.0.0.2", "10.0.0.3"):
        assert gate.admit_websocket(host) is None
    refusal = gate.admit_websocket("10.0.0.4")
    assert refusal is not None and refusal.status == 503 and refusal.reason == "node_full"
    gate.release_websocket("10.0.0.1")
    assert gate.admit_websocket("10.0.0.1") is None
    assert gate.refused == {"per_address": 1, "node_full": 1}


def test_trusted_proxies_and_zero_are_exempt_from_the_per_address_limit() -> None:
    gate = Admission(
        Settings(max_connections_per_address=1, trusted_proxies="10.1.0.0/16, ::1"), descriptors=10_000
    )
    for _ in range(3):
        assert gate.admit_websocket("10.1.2.3") is None
        assert gate.admit_websocket("::1") is None
    assert gate.admit_websocket("10.2.0.1") is None
    assert gate.admit_websocket("10.2.0.1") is not None
    unlimited = admission(max_connections_per_address=0)
    assert all(unlimited.admit_websocket("10.0.0.1") is None for _ in range(500))


def test_connection_limit_fits_the_descriptor_limit() -> None:
    gate = Admission(Settings(max_connections=10_000), descriptors=1024)
    assert gate.tcp_limit == 1024 - DESCRIPTOR_RESERVE
    assert gate.max_connections == gate.tcp_limit - DESCRIPTOR_RESERVE


def test_idle_connections_of_one_address_are_evicted_oldest_first() -> None:
    gate = admission()
    evicted: list[int] = []
    for key in range(EVICTABLE_PER_ADDRESS + 3):
        assert gate.tcp_opened(key, "10.0.0.9", lambda key=key: evicted.append(key))  # type: ignore[misc]
    assert evicted == [0, 1, 2]
    # A connection with a request in progress is never evicted; one of another address is not either.
    gate.tcp_busy(3)
    gate.tcp_opened("other", "10.0.0.8", lambda: evicted.append(-1))
    gate.tcp_opened("next", "10.0.0.9", lambda: None)  # 32 idle again: no eviction yet
    assert evicted == [0, 1, 2]
    gate.tcp_opened("next2", "10.0.0.9", lambda: None)
    assert evicted == [0, 1, 2, 4]
    assert gate.refused["idle_per_address"] == 4


def test_near_the_descriptor_limit_the_oldest_idle_connection_makes_room() -> None:
    gate = Admission(Settings(trusted_proxies="*"), descriptors=DESCRIPTOR_RESERVE + 20)
    evicted: list[int] = []
    for key in range(20):
        assert gate.tcp_opened(key, f"10.0.0.{key}", lambda key=key: evicted.append(key))  # type: ignore[misc]
    for key in range(20):
        gate.tcp_busy(key) if key != 7 else None
    assert gate.tcp_opened("healthz", "10.9.9.9", lambda: None)  # room is made
    assert evicted == [7]
    gate.tcp_closed(7)
    gate.tcp_busy("healthz")
    assert not gate.tcp_opened("more", "10.9.9.9", lambda: None)  # nothing idle left to close
    assert gate.refused == {"descriptors": 2}  # one eviction, one refusal
    gate.tcp_closed("healthz")
    assert gate.tcp_opened("later", "10.9.9.9", lambda: None)


def test_closed_connections_are_forgotten() -> None:
    gate = admission()
    gate.tcp_opened("a", "10.0.0.1", lambda: None)
    gate.tcp_closed("a")
    gate.tcp_closed("a")  # idempotent: uvicorn may report it from both protocols
    gate.tcp_idle("a", "10.0.0.1", lambda: None)  # too late: ignored
    assert gate.tcp_open == 0


def test_one_log_line_per_reason_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    log = RefusalLog(interval=10, clock=clock)
    with caplog.at_level(logging.WARNING, logger="server.admission"):
        for _ in range(1000):
            log.refused("per_address", "refused a WebSocket from 10.0.0.1")
        log.refused("node_full", "node full")
        clock.now = 11
        log.refused("per_address", "refused a WebSocket from 10.0.0.1")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "refused a WebSocket from 10.0.0.1",
        "node full",
        "refused a WebSocket from 10.0.0.1 (999 more refused for this reason in the 11 s before)",
    ]


def test_trusted_networks() -> None:
    networks = TrustedNetworks("127.0.0.1, 10.0.0.0/8,fd00::/8")
    assert "127.0.0.1" in networks and "10.200.0.1" in networks and "fd00::1" in networks
    assert "192.168.0.1" not in networks and None not in networks and "not-an-ip" not in networks
    assert "1.2.3.4" in TrustedNetworks("*")
    assert "127.0.0.1" not in TrustedNetworks("")
    with pytest.raises(ConfigError):
        TrustedNetworks("10.0.0.0/33")


def test_limit_settings_are_validated() -> None:
    assert Settings.from_env({}).send_budget == 4 * 1024 * 1024
    for env in (
        {"SAMEN_SEND_BUDGET": "1000"},
        {"SAMEN_AWARENESS_MAX_ENTRIES": "0"},
        {"SAMEN_MAX_CONNECTIONS_PER_ADDRESS": "-1"},
        {"SAMEN_HANDSHAKE_TIMEOUT": "0"},
        {"SAMEN_TRUSTED_PROXIES": "nonsense/1"},
    ):
        with pytest.raises(ConfigError):
            Settings.from_env(env)


def test_the_old_message_count_setting_is_refused_not_ignored() -> None:
    with pytest.raises(ConfigError, match="SAMEN_SEND_BUDGET"):
        Settings.from_env({"SAMEN_SEND_QUEUE_LIMIT": "4096"})
