"""Failed sign-ins, counted per account and per address over a sliding window: past
`max_failures` within `window` seconds, further attempts are refused (429) without checking
the password, until the oldest failure leaves the window.

Kept in this node's memory: a site of N nodes behind a load balancer allows up to N times
as many guesses per account; the argon2 cost bounds their rate. Memory is bounded: at most
`max_keys` keys are tracked (the oldest dropped first), each with at most `max_failures`
timestamps.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

__all__ = ["SignInLimiter"]


class SignInLimiter:
    def __init__(
        self,
        max_failures: int,
        window: float,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self._clock = clock
        self._max_keys = max_keys
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str, now: float) -> deque[float] | None:
        failures = self._failures.get(key)
        if failures is None:
            return None
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return None
        return failures

    def retry_after(self, account: str, address: str) -> float:
        """0 if a sign-in may be tried now; else seconds until one may."""
        now = self._clock()
        wait = 0.0
        for key in (f"account:{account}", f"address:{address}"):
            failures = self._recent(key, now)
            if failures is not None and len(failures) >= self.max_failures:
                wait = max(wait, failures[0] + self.window - now)
        return wait

    def failed(self, account: str, address: str) -> None:
        now = self._clock()
        for key in (f"account:{account}", f"address:{address}"):
            failures = self._recent(key, now)
            if failures is None:
                failures = self._failures[key] = deque(maxlen=self.max_failures)
            failures.append(now)
            self._failures.move_to_end(key)
        while len(self._failures) > self._max_keys:
            self._failures.popitem(last=False)

    def succeeded(self, account: str) -> None:
        self._failures.pop(f"account:{account}", None)
