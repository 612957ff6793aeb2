"""The two shapes the background loops here share: waiting for work, and backing off
after a failure.

    while True:
        await wait_for_work(self._wakeup, lambda: bool(self._queue))
        try:
            await write(self._queue.popleft())
        except StoreError:
            await backoff.wait()
        else:
            backoff.reset()

`wait_for_work` checks the condition before it sleeps and the producer sets the event after
it added work, so no wake-up is lost between "nothing to do" and "waiting".
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

__all__ = ["Backoff", "wait_for_work"]


async def wait_for_work(event: asyncio.Event, ready: Callable[[], bool]) -> None:
    """Return once `ready()` holds; sleep on `event` (set by whoever adds work) until then."""
    while not ready():
        event.clear()
        await event.wait()


class Backoff:
    """Jittered exponential delays: `initial` (at most `maximum`), then `factor` times longer
    each time up to `maximum`, each drawn from [delay × (1 - jitter), delay × (1 + jitter)]
    so that many nodes retrying the same thing spread out."""

    def __init__(
        self,
        initial: float = 0.05,
        maximum: float = 5.0,
        *,
        factor: float = 2.0,
        jitter: float = 0.5,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if initial <= 0 or maximum <= 0 or factor < 1 or not 0 <= jitter < 1:
            raise ValueError("Backoff needs initial, maximum > 0, factor >= 1, 0 <= jitter < 1")
        self._initial = initial = min(initial, maximum)
        self._maximum = maximum
        self._factor = factor
        self._jitter = jitter
        self._rng = rng
        self._delay = initial
        self.failures = 0  # in a row, since the last reset

    def next_delay(self) -> float:
        """The delay before the next attempt; each call makes the one after it longer."""
        delay = self._delay
        self._delay = min(self._delay * self._factor, self._maximum)
        self.failures += 1
        return delay * (1 - self._jitter + 2 * self._jitter * self._rng())

    async def wait(self) -> None:
        await asyncio.sleep(self.next_delay())

    def reset(self) -> None:
        """It worked: the next failure starts again from `initial`."""
        self._delay = self._initial
        self.failures = 0
