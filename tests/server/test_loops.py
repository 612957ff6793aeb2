"""The loop helpers: backoff delays and waiting for work without losing a wake-up."""

from __future__ import annotations

import asyncio

import pytest

from server.loops import Backoff, wait_for_work


def test_backoff_doubles_up_to_its_maximum_and_resets() -> None:
    backoff = Backoff(0.1, 1.0, jitter=0.5, rng=lambda: 0.5)  # the middle of the jitter range
    assert [backoff.next_delay() for _ in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert backoff.failures == 6
    backoff.reset()
    assert backoff.failures == 0 and backoff.next_delay() == pytest.approx(0.1)


def test_backoff_jitter_spreads_each_delay() -> None:
    low, high = (
        Backoff(1.0, 8.0, jitter=0.25, rng=lambda: 0.0),
        Backoff(1.0, 8.0, jitter=0.25, rng=lambda: 1.0),
    )
    assert (low.next_delay(), high.next_delay()) == pytest.approx((0.75, 1.25))
    assert Backoff(5.0, 1.0, rng=lambda: 0.5).next_delay() == pytest.approx(1.0)  # initial capped
    with pytest.raises(ValueError):
        Backoff(0.0, 1.0)


async def test_wait_for_work_returns_at_once_if_ready_and_wakes_on_the_event() -> None:
    event = asyncio.Event()
    queue: list[int] = [1]
    await asyncio.wait_for(wait_for_work(event, lambda: bool(queue)), 1)  # no event needed
    queue.clear()
    event.set()  # a stale wake-up: cleared, the wait goes on
    waiting = asyncio.create_task(wait_for_work(event, lambda: bool(queue)))
    await asyncio.sleep(0)
    assert not waiting.done() and not event.is_set()
    queue.append(2)
    event.set()
    await asyncio.wait_for(waiting, 1)
