"""The fault injector on its own: proportions, seeds, the token bucket, run-time changes."""

from __future__ import annotations

import time

import pytest

from retain.testing.faults import FaultInjector, Faults, Outcome


def draws(inj: FaultInjector, n: int) -> list[Outcome]:
    return [inj.decide() for _ in range(n)]


def test_same_seed_same_faults_in_sequence():
    knobs = dict(error_rate=0.1, throttle_rate=0.05, timeout_rate=0.05, seed=3)
    assert draws(FaultInjector(Faults(**knobs)), 500) == draws(FaultInjector(Faults(**knobs)), 500)
    assert draws(FaultInjector(Faults(**{**knobs, "seed": 4})), 500) != draws(
        FaultInjector(Faults(**knobs)), 500
    )


def test_shares_match_the_settings():
    inj = FaultInjector(Faults(error_rate=0.1, throttle_rate=0.2, timeout_rate=0.05, seed=1))
    out = draws(inj, 5000)
    share = lambda *o: sum(x in o for x in out) / len(out)  # noqa: E731
    assert share(Outcome.ERROR_500, Outcome.ERROR_503) == pytest.approx(0.1, abs=0.02)
    assert share(Outcome.THROTTLED) == pytest.approx(0.2, abs=0.02)
    assert share(Outcome.TIMEOUT) == pytest.approx(0.05, abs=0.015)
    assert inj.counts[Outcome.OK] == out.count(Outcome.OK)


def test_token_bucket_allows_burst_then_refills_at_the_rate():
    inj = FaultInjector(Faults(rate_limit_per_s=50, burst=10))
    first = draws(inj, 15)
    assert first.count(Outcome.OK) == 10 and first.count(Outcome.RATE_LIMITED) == 5
    assert inj.rate_limit_headers()["X-RateLimit-Remaining"] == "0"
    t = time.monotonic()
    time.sleep(0.1)  # ~5 tokens back
    refilled = draws(inj, 10).count(Outcome.OK)
    assert 4 <= refilled <= min(10, int((time.monotonic() - t) * 50) + 1)


def test_knobs_change_at_run_time_and_unknown_knobs_are_refused():
    inj = FaultInjector()
    assert set(draws(inj, 50)) == {Outcome.OK}
    inj.update(error_rate=1.0)
    assert Outcome.OK not in draws(inj, 50)
    inj.update(error_rate=0.0, rate_limit_per_s=1, burst=1)
    assert draws(inj, 2) == [Outcome.OK, Outcome.RATE_LIMITED]
    with pytest.raises(AttributeError):
        inj.update(eror_rate=0.5)
