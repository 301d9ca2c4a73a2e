"""Sample members carry the warehouse's real tiers, and validation and preview render a campaign's offer as
each tier gets it (issue 11 part 10: the samples' gold/silver/bronze never took a by-tier offer)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from retain import config
from retain.campaigns.models import Offer
from retain.rendering import check_templates
from retain.rendering.context import SAMPLE_MEMBERS, sample_tier_offer
from retain.rendering.environment import Renderer
from retain.rendering.preview import preview
from retain.rendering.validation import template_offers

ROOT = config.project_root()
MEMBER_SEGMENTS_YML = ROOT / "dbt_project" / "models" / "marts" / "member_segments.yml"


def accepted_values() -> dict[str, list]:
    """Each member_segments column's accepted_values, read from the dbt yml (either syntax)."""
    doc = yaml.safe_load(MEMBER_SEGMENTS_YML.read_text(encoding="utf-8"))
    model = next(m for m in doc["models"] if m["name"] == "member_segments")
    found = {}
    for col in model["columns"]:
        for test in col.get("data_tests") or col.get("tests") or []:
            if isinstance(test, dict) and "accepted_values" in test:
                spec = test["accepted_values"]
                found[col["name"]] = (spec.get("arguments") or spec)["values"]
    return found


def test_sample_members_have_exactly_the_warehouse_tiers():
    tiers = accepted_values()["member_tier"]
    assert {m["member_tier"] for m in SAMPLE_MEMBERS} == set(tiers)


def test_sample_members_enumerations_are_accepted_values():
    accepted = accepted_values()
    for member in SAMPLE_MEMBERS:
        for column, values in accepted.items():
            if column in member and member[column] is not None:
                assert member[column] in values, (member["member_id"], column, member[column])


def test_every_tier_an_offer_names_is_a_warehouse_tier():
    assert set(Offer.model_fields["by_tier"].annotation.__args__[0].__args__) == set(
        accepted_values()["member_tier"]
    )


OFFER = Offer.model_validate(
    {
        "code_rule": {"prefix": "SALE"},
        "by_tier": {"super": {"amount": 80, "threshold": 300}, "senior": {"amount": 60, "threshold": 0}},
        "currency": "CNY",
        "expiry_days": 10,
    }
)


def test_sample_tier_offer_takes_the_members_tier():
    by_tier = {m["member_tier"]: sample_tier_offer(OFFER, m, "sale") for m in SAMPLE_MEMBERS}
    assert by_tier["super"]["amount"] == Decimal(80) and by_tier["super"]["threshold"] == Decimal(300)
    assert by_tier["senior"]["amount"] == Decimal(60) and by_tier["senior"]["threshold"] is None
    assert by_tier["ordinary"] is None  # no default: that tier gets no offer
    assert by_tier["super"]["code"].startswith("SALE-") and len(by_tier["super"]["code"]) == 13
    assert by_tier["super"]["currency"] == "CNY"
    with_default = OFFER.model_copy(update={"default": OFFER.by_tier["senior"].model_copy()})
    ordinary = next(m for m in SAMPLE_MEMBERS if m["member_tier"] == "ordinary")
    assert sample_tier_offer(with_default, ordinary, "sale")["amount"] == Decimal(60)


LAYOUT = {
    "layouts/base_email.html.j2": "<html><body>{% block content %}{% endblock %}"
    '<a href="{{ links.unsubscribe }}">unsubscribe</a></body></html>',
    "layouts/base_email.text.j2": "{% block content %}{% endblock %}\nUnsubscribe: {{ links.unsubscribe }}",
}
BODY = "{% block content %}x{% endblock %}"
SUBJECT = "{% if offer %}{{ number(offer.amount) }} off{% else %}a thank-you{% endif %}"
CAMPAIGN = """
description: a by-tier offer
channels: {email: sale}
offer:
  code_rule: {prefix: SALE}
  by_tier:
    super: {amount: 80, threshold: 300}
    senior: {amount: 60, threshold: 300}
  default: {amount: 40, threshold: 300}
"""


@pytest.fixture
def tiered(make_templates, tmp_path: Path, monkeypatch) -> Path:
    root = make_templates(
        {
            **LAYOUT,
            "email/sale/subject.j2": SUBJECT,
            "email/sale/html.j2": '{% extends "layouts/base_email.html.j2" %}' + BODY,
            "email/sale/text.j2": '{% extends "layouts/base_email.text.j2" %}' + BODY,
        }
    )
    campaigns = tmp_path / "campaigns"
    campaigns.mkdir()
    (campaigns / "sale.yml").write_text(CAMPAIGN, encoding="utf-8")
    (campaigns / "broken.yml").write_text("description: [", encoding="utf-8")  # left to campaigns validate
    monkeypatch.setenv("RETAIN_CAMPAIGNS_DIR", str(campaigns))
    return root


def _subjects_by_tier(monkeypatch) -> dict[str, set[str]]:
    seen: dict[str, set[str]] = {}
    render_email = Renderer.render_email

    def spy(self, name, ctx, campaign):
        email = render_email(self, name, ctx, campaign)
        seen.setdefault(ctx["member"]["member_tier"], set()).add(email.subject)
        return email

    monkeypatch.setattr(Renderer, "render_email", spy)
    return seen


def test_validation_renders_each_tiers_amount(tiered, monkeypatch):
    seen = _subjects_by_tier(monkeypatch)
    report = check_templates(tiered, members=SAMPLE_MEMBERS)
    assert report.ok, report.problems
    # Each tier renders its own amount (besides the generic sample offer, 10, and no offer at all).
    assert seen == {
        "super": {"80 off", "10 off", "a thank-you"},
        "senior": {"60 off", "10 off", "a thank-you"},
        "ordinary": {"40 off", "10 off", "a thank-you"},
    }


def test_validation_fails_on_a_mistake_only_one_tiers_offer_reaches(tiered, monkeypatch):
    # Only the super tier's offer is 80: its branch has an unguarded error no other sample takes.
    subject = tiered / "email" / "sale" / "subject.j2"
    subject.write_text("{% if offer and offer.amount == 80 %}{{ 1 / 0 }}{% endif %}" + SUBJECT, "utf-8")
    problems = check_templates(tiered, members=SAMPLE_MEMBERS).problems
    assert problems and all("for tier super" in (p.sample or "") for p in problems)
    assert check_templates(tiered, members=SAMPLE_MEMBERS, offers={}).ok  # without the campaign's offer


def test_shipped_spring_sale_validates_with_each_tiers_amount(monkeypatch):
    monkeypatch.setenv("RETAIN_CAMPAIGNS_DIR", str(ROOT / "campaigns"))
    spring = yaml.safe_load((ROOT / "campaigns" / "spring_sale.yml").read_text(encoding="utf-8"))["offer"]
    amounts = {
        tier: str(spring["by_tier"].get(tier, spring["default"])["amount"])
        for tier in accepted_values()["member_tier"]
    }
    seen = _subjects_by_tier(monkeypatch)
    members = [m for m in SAMPLE_MEMBERS if m["locale"] == "en-US"] + [
        {**m, "locale": "en-US"} for m in SAMPLE_MEMBERS if m["locale"] != "en-US"
    ]
    report = check_templates(ROOT / "templates", members=members)
    assert report.ok, report.problems
    for tier, amount in amounts.items():
        assert any(f"CN¥{amount}.00 off" in s for s in seen[tier]), (tier, seen[tier])


def test_template_offers_lists_each_template_a_campaign_sends_with_an_offer():
    offers = template_offers(ROOT / "campaigns")
    assert [name for name, _ in offers[("email", "spring_sale")]] == ["spring_sale"]
    assert ("email", "cross_sell") not in offers  # cross_sell has no offer
    assert [name for name, _ in offers[("email", "welcome_day0")]] == ["welcome"]
    assert ("email", "welcome_day3") not in offers  # only day0 carries the welcome coupon


def test_preview_shows_the_members_tier_offer(tiered, tmp_path):
    missing = tmp_path / "none.duckdb"
    by_member = {m["member_tier"]: m["member_id"] for m in SAMPLE_MEMBERS}
    for tier, amount in (("super", "80"), ("senior", "60"), ("ordinary", "40")):
        result = preview("sale", by_member[tier], channel="email", templates_dir=tiered, warehouse=missing)
        assert result.email.subject == f"{amount} off"
        assert result.offer_from == f"sale's offer for tier {tier}"


def test_preview_of_a_tier_without_an_offer_shows_none(tiered, tmp_path):
    campaigns = Path(config.campaigns_dir())
    (campaigns / "sale.yml").write_text(CAMPAIGN.replace("  default: {amount: 40, threshold: 300}\n", ""))
    ordinary = next(m["member_id"] for m in SAMPLE_MEMBERS if m["member_tier"] == "ordinary")
    result = preview("sale", ordinary, templates_dir=tiered, warehouse=tmp_path / "none.duckdb")
    assert result.email.subject == "a thank-you"


def test_preview_of_a_template_no_campaign_sends_keeps_the_sample_offer(tiered, tmp_path):
    result = preview(
        "sale", 1000001, templates_dir=tiered, warehouse=tmp_path / "none.duckdb", campaigns_dir=tmp_path
    )
    assert result.offer_from == "sample offer" and result.email.subject == "10 off"
