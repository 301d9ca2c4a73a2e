"""Arms by salted hashes: deterministic, independent, in the configured shares."""

from __future__ import annotations

from collections import Counter

from retain.campaigns.assignment import assign, in_global_control, pick_variant, unit
from retain.campaigns.models import Campaign, Settings, Variant

IDS = [str(1_000_000 + i) for i in range(100_000)]
SETTINGS = Settings()


def campaign(name: str = "spring", **kw) -> Campaign:
    data = {"name": name, "description": "d", "channels": {"email": "win_back"}, **kw}
    return Campaign.model_validate(data)


def test_assignment_is_deterministic_across_calls_and_campaign_objects() -> None:
    c = campaign(holdout_share=0.1, variants=[{"name": "a", "weight": 1}, {"name": "b", "weight": 1}])
    first = [assign(c, m, SETTINGS) for m in IDS[:5000]]
    again = [
        assign(
            campaign(holdout_share=0.1, variants=[{"name": "a", "weight": 1}, {"name": "b", "weight": 1}]),
            m,
            SETTINGS,
        )
        for m in IDS[:5000]
    ]
    assert first == again


def test_shares_hold_on_100k_members() -> None:
    c = campaign(
        holdout_share=0.1,
        variants=[{"name": "a", "weight": 3}, {"name": "b", "weight": 1}],
    )
    arms = Counter()
    for m in IDS:
        a = assign(c, m, SETTINGS)
        arms[a.skip_reason or a.variant.name] += 1
    n = len(IDS)
    assert abs(arms["global_control"] / n - 0.05) < 0.003
    treated = n - arms["global_control"]
    assert abs(arms["holdout"] / treated - 0.10) < 0.005
    assert abs(arms["a"] / (arms["a"] + arms["b"]) - 0.75) < 0.01


def test_global_control_is_the_same_members_in_every_campaign_and_journey() -> None:
    control = {m for m in IDS if in_global_control(m, SETTINGS)}
    for name in ("spring", "welcome", "win_back"):
        c = campaign(name)
        chosen = {m for m in IDS if assign(c, m, SETTINGS).skip_reason == "global_control"}
        assert chosen == control
    # ... and a transactional message is not marketing: the control group still gets it.
    tx = campaign("receipt", frequency_cap_class="transactional")
    assert all(assign(tx, m, SETTINGS).skip_reason is None for m in list(control)[:200])


def test_holdout_and_variant_depend_on_the_campaign_but_pilot_and_holdout_are_independent() -> None:
    a, b = campaign("one", holdout_share=0.2), campaign("two", holdout_share=0.2)
    held_a = {m for m in IDS[:20000] if assign(a, m, SETTINGS).skip_reason == "holdout"}
    held_b = {m for m in IDS[:20000] if assign(b, m, SETTINGS).skip_reason == "holdout"}
    overlap = len(held_a & held_b) / len(held_a)
    assert 0.15 < overlap < 0.25  # independent draws: about 20% of one holdout is in the other
    pilot = [m for m in IDS[:50000] if assign(a, m, SETTINGS, pilot_share=0.1).skip_reason != "not_in_pilot"]
    pilot = [m for m in pilot if assign(a, m, SETTINGS).skip_reason != "global_control"]
    held = sum(assign(a, m, SETTINGS, pilot_share=0.1).skip_reason == "holdout" for m in pilot)
    assert abs(held / len(pilot) - 0.2) < 0.03  # the pilot slice has its own 20% holdout


def test_unit_draws_are_uniform_and_variant_weights_respected() -> None:
    draws = [unit("x", "salt", m) for m in IDS[:20000]]
    assert min(draws) >= 0 and max(draws) < 1
    deciles = Counter(int(d * 10) for d in draws)
    assert all(abs(n - 2000) < 200 for n in deciles.values())
    variants = [Variant(name="a", weight=1), Variant(name="b", weight=0.0001 + 1)]
    picks = Counter(pick_variant("c", m, variants).name for m in IDS[:20000])
    assert abs(picks["a"] / 20000 - 0.5) < 0.02
