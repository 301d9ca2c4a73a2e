"""spring_sale's A/B test is of two subjects in one template: each variant the file declares renders its
own subject, and the recipient's variant (set by the campaign layer) is what the renderer sees."""

from __future__ import annotations

import pytest

from retain import config
from retain.campaigns.models import load_all
from retain.dispatch.render import render_message
from retain.dispatch.types import DispatchSpec, Recipient
from retain.rendering import Renderer
from retain.rendering.context import SAMPLE_MEMBERS, sample_links, sample_offer

URGENT = ("Ends ", "Last days", "Nur bis", "Letzte Tage", "截止", "最后几天")


@pytest.fixture(scope="module")
def spring_sale():
    loaded = load_all(config.project_root() / "campaigns")
    assert not loaded.errors, loaded.errors
    return loaded.campaigns["spring_sale"]


def _context_for(row, recipient):
    currency = row.get("currency") or "USD"
    return {"offer": sample_offer(currency), "links": sample_links(row["member_id"])}


def _render(variant: str | None, template: str, row: dict) -> str:
    spec = DispatchSpec(campaign="spring_sale")
    recipient = Recipient(str(row["member_id"]), "message", "email", template, variant=variant)
    renderer = Renderer(config.project_root() / "templates")
    return render_message(renderer, spec, recipient, row, _context_for).subject


@pytest.mark.parametrize("row", SAMPLE_MEMBERS, ids=lambda r: r["locale"])
def test_spring_sale_variants_render_different_subjects(spring_sale, row):
    step = spring_sale.step_list()[0]
    subjects = {}
    for variant in spring_sale.variants:
        template = spring_sale.channels_for(step, variant)["email"]
        assert template == "spring_sale"  # one template, the variant decides the subject
        subjects[variant.name] = _render(variant.name, template, row)
    assert set(subjects) == {"a", "b"}
    assert subjects["a"] != subjects["b"]
    assert any(u in subjects["b"] for u in URGENT), subjects
    assert not any(u in subjects["a"] for u in URGENT), subjects


def test_the_recipients_variant_reaches_the_renderer():
    row = next(m for m in SAMPLE_MEMBERS if m["locale"] == "en-US")
    a = _render("a", "spring_sale", row)
    b = _render("b", "spring_sale", row)
    assert a == "Emma, spring is here: $10.00 off your next order"
    assert b == "Ends July 31: your $10.00 spring coupon is waiting"
    # No variant (a campaign without an A/B test) takes the template's default branch.
    assert _render(None, "spring_sale", row) == a


def test_the_shared_sendgrid_path_keeps_the_recipients_variant():
    # Shared mode renders one message per group of identical ones from a tokenised context: the variant
    # must be in that context too, or every member of variant b would get variant a's subject.
    from retain.dispatch.shared import tokenised_context

    row = next(m for m in SAMPLE_MEMBERS if m["locale"] == "en-US")
    spec = DispatchSpec(campaign="spring_sale")
    for variant in ("a", "b"):
        recipient = Recipient(str(row["member_id"]), "message", "email", "spring_sale", variant=variant)
        ctx, _ = tokenised_context(spec, recipient, row, _context_for)
        assert ctx["campaign"]["variant"] == variant
