"""Token bucket: a channel never sends faster than its configured rate.

Each ``acquire`` reserves its tokens at once (the balance may go negative) and then sleeps outside the
lock until they are due, so concurrent senders are served in arrival order and the long-run rate is exact:
``n`` messages after a full bucket take ``(n - burst) / rate`` seconds. The clock and sleep are
injectable so tests run on a fake clock.

Twilio sends at most 1 message per second from one long code (US/Canada 10DLC and toll-free numbers
have their own, higher, registered throughputs): that is the SMS default unless a rate is configured.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

#: Twilio's queueing rate for one long code, messages per second.
SMS_LONG_CODE_RATE_PER_S = 1.0


class TokenBucket:
    def __init__(
        self,
        rate_per_s: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not rate_per_s or rate_per_s <= 0:
            raise ValueError(
                f"throttle rate must be a positive number of messages per second, not {rate_per_s!r}"
            )
        burst = max(1.0, rate_per_s) if burst is None else burst  # below 1 msg/s: one message at a time
        if burst < 1:
            raise ValueError(f"throttle burst must be at least 1 message, not {burst!r}")
        self.rate = float(rate_per_s)
        self.burst = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = self.burst
        self._stamp = clock()

    def _refill(self, now: float) -> None:
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def reserve(self, n: float = 1) -> float:
        """Take ``n`` tokens now; returns how long the caller must wait before using them."""
        if n <= 0:
            return 0.0
        with self._lock:
            self._refill(self._clock())
            self._tokens -= n
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def acquire(self, n: float = 1) -> float:
        """Block until ``n`` tokens are ours; returns the seconds waited."""
        wait = self.reserve(n)
        if wait > 0:
            self._sleep(wait)
        return wait

    def try_acquire(self, n: float = 1) -> bool:
        """Take ``n`` tokens only if they are available now."""
        with self._lock:
            self._refill(self._clock())
            if self._tokens >= n:
                self._tokens -= n
                return True
            return False

    def __repr__(self) -> str:
        return f"TokenBucket(rate_per_s={self.rate}, burst={self.burst})"
