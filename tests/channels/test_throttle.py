from __future__ import annotations

import threading

import pytest

from retain.channels.throttle import TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)


def test_burst_is_free_then_one_token_per_interval():
    clock = FakeClock()
    bucket = TokenBucket(2.0, burst=3, clock=clock, sleep=clock.sleep)
    waits = [bucket.acquire() for _ in range(5)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3:] == pytest.approx([0.5, 1.0])  # reservations queue behind each other


def test_rate_over_time_matches_configuration():
    clock = FakeClock()
    bucket = TokenBucket(10.0, burst=1, clock=clock, sleep=lambda s: setattr(clock, "now", clock.now + s))
    start = clock.now
    for _ in range(1001):
        bucket.acquire()
    assert clock.now - start == pytest.approx(100.0)  # 1,000 intervals of 0.1 s after the first token


def test_tokens_refill_with_time_but_never_beyond_burst():
    clock = FakeClock()
    bucket = TokenBucket(1.0, burst=2, clock=clock, sleep=clock.sleep)
    assert bucket.try_acquire(2) and not bucket.try_acquire()
    clock.now += 60
    assert bucket.try_acquire(2) and not bucket.try_acquire()


def test_concurrent_acquirers_never_exceed_the_rate():
    clock = FakeClock()
    bucket = TokenBucket(5.0, burst=1, clock=clock, sleep=clock.sleep)
    threads = [threading.Thread(target=lambda: [bucket.acquire() for _ in range(25)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 100 tokens reserved at the same instant: 99 waits, spaced 0.2 s apart, none shared
    assert sorted(clock.sleeps) == pytest.approx([0.2 * i for i in range(1, 100)])


@pytest.mark.parametrize("rate, burst", [(0, None), (-1, None), (1, 0.5)])
def test_bad_configuration_is_refused(rate, burst):
    with pytest.raises(ValueError, match="throttle"):
        TokenBucket(rate, burst)


def test_a_rate_below_one_per_second_sends_one_message_every_interval():
    """A shard's share of Twilio's 1 msg/s (four shards: 0.25 msg/s): one at once, then one every 4 s."""
    clock = FakeClock()
    bucket = TokenBucket(0.25, clock=clock, sleep=clock.sleep)
    assert [bucket.acquire() for _ in range(3)] == pytest.approx([0.0, 4.0, 8.0])
