"""Fault injection shared by the local provider servers: latency, 5xx, 429, timeouts and a token bucket.

Every random draw comes from one seeded ``random.Random`` under a lock, so a run that sends its requests one
after another sees the same faults every time. With concurrent clients the *proportions* hold but which
request gets which fault depends on arrival order.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from enum import Enum


@dataclass
class Faults:
    """The knobs. Change them at run time through ``server.set_faults(...)`` (or assign fields directly).

    - ``latency_s``: added to every response (before anything else is decided).
    - ``error_rate``: share of requests answered 500 or 503 (half each, drawn from the seeded generator).
    - ``throttle_rate``: share of requests answered 429 as if a provider-side limit was hit.
    - ``timeout_rate``: share of requests that sleep ``timeout_s`` before answering normally, so a client
      whose timeout is shorter gives up. ``timeout_after_accept`` says whether such a message counts as
      received (True: the provider accepted it and only the answer was lost, as real providers may do).
    - ``rate_limit_per_s``: a real token bucket (capacity ``burst`` or one second's worth); requests over it
      get 429. ``None`` turns it off.
    """

    latency_s: float = 0.0
    error_rate: float = 0.0
    throttle_rate: float = 0.0
    timeout_rate: float = 0.0
    timeout_s: float = 1.0
    timeout_after_accept: bool = True
    rate_limit_per_s: float | None = None
    burst: int | None = None
    seed: int | None = 0


class Outcome(Enum):
    OK = "ok"
    ERROR_500 = "500"
    ERROR_503 = "503"
    THROTTLED = "429"
    RATE_LIMITED = "rate_limited"
    TIMEOUT = "timeout"


class FaultInjector:
    """Decides, per request, what fault (if any) applies. Thread-safe."""

    def __init__(self, faults: Faults | None = None) -> None:
        self.faults = faults or Faults()
        self._lock = threading.Lock()
        self._rng = random.Random(self.faults.seed)
        self._tokens: float = 0.0
        self._bucket_rate: float | None = None
        self._last = time.monotonic()
        self.counts: dict[Outcome, int] = {o: 0 for o in Outcome}

    def update(self, **changes: object) -> None:
        with self._lock:
            for name, value in changes.items():
                if not hasattr(self.faults, name):
                    raise AttributeError(f"unknown fault knob {name!r}")
                setattr(self.faults, name, value)
            if "seed" in changes:
                self._rng = random.Random(self.faults.seed)

    @property
    def capacity(self) -> float:
        f = self.faults
        if f.rate_limit_per_s is None:
            return 0.0
        return float(f.burst if f.burst is not None else max(1.0, f.rate_limit_per_s))

    def _take_token(self, now: float) -> bool:
        rate = self.faults.rate_limit_per_s
        if rate is None:
            return True
        if self._bucket_rate != rate:  # (re)configured: start full
            self._bucket_rate = rate
            self._tokens = self.capacity
            self._last = now
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def rate_limit_headers(self) -> dict[str, str]:
        """X-RateLimit-* as SendGrid documents them (Reset in epoch seconds), from the bucket's state."""
        f = self.faults
        now = time.time()
        if f.rate_limit_per_s is None:
            return {}
        with self._lock:
            remaining = int(self._tokens)
            missing = max(0.0, 1.0 - self._tokens)
        reset = int(now + missing / f.rate_limit_per_s) + 1
        return {
            "X-RateLimit-Limit": str(int(self.capacity)),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(reset),
        }

    def decide(self) -> Outcome:
        f = self.faults
        with self._lock:
            if not self._take_token(time.monotonic()):
                outcome = Outcome.RATE_LIMITED
            else:
                r = self._rng.random()
                if r < f.error_rate:
                    outcome = Outcome.ERROR_500 if self._rng.random() < 0.5 else Outcome.ERROR_503
                elif r < f.error_rate + f.throttle_rate:
                    outcome = Outcome.THROTTLED
                elif r < f.error_rate + f.throttle_rate + f.timeout_rate:
                    outcome = Outcome.TIMEOUT
                else:
                    outcome = Outcome.OK
            self.counts[outcome] += 1
        return outcome
