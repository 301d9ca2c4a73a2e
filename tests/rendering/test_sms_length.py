"""Every shipped SMS fits 2 segments in every shipped locale for the longest names the shop's markets have
(``retain.datagen.MARKETS``, the names generated members get), so no journey needs a higher
``max_sms_segments``. A CJK or accented name (``博文``, ``Raphaël``) turns a German or English SMS into
UCS-2, where 2 segments hold 134 characters."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from retain import config, datagen
from retain.rendering import Campaign, Renderer, build_context
from retain.rendering.context import SAMPLE_MEMBERS, sample_links
from retain.rendering.validation import discover, shipped_locales, variant_literals

SHIPPED = config.project_root() / "templates"
SMS = discover(SHIPPED)[1] if SHIPPED.is_dir() else []
LOCALES = shipped_locales(SHIPPED) if SHIPPED.is_dir() else []


def _longest_names() -> list[tuple[str, str]]:
    """(currency, name): the three longest first names of each market."""
    out = []
    for market in datagen.MARKETS:
        names = [n.split("|")[0] for n in f"{market.female_names},{market.male_names}".split(",")]
        out += [(market.currency, n) for n in sorted(names, key=len)[-3:]]
    return out


def _variants(renderer: Renderer, name: str) -> list[str]:
    env = renderer.env
    found: set[str] = set()
    for path in env.list_templates(filter_func=lambda n: n.endswith(f"sms/{name}.j2")):
        found |= variant_literals(env.parse(env.loader.get_source(env, path)[0]))
    return ["", *sorted(found)]


def _offer(currency: str) -> dict:
    # The largest amounts the campaign files give (100 off, orders of 300) and the longest code a
    # code_rule makes (REFILL- plus 8 characters).
    return {
        "code": "REFILL-7F3K9Q2M",
        "amount": Decimal("100"),
        "threshold": Decimal("300"),
        "currency": currency,
        "expires_at": date(2026, 12, 31),
    }


def test_the_names_include_ones_that_force_ucs2():
    assert any(not n.isascii() and ord(max(n)) > 0x3000 for _, n in _longest_names())


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("name", SMS)
def test_shipped_sms_fits_two_segments_for_the_longest_names(name, locale):
    renderer = Renderer(SHIPPED)
    worst = (0, "")
    for variant in _variants(renderer, name):
        campaign = Campaign("c", journey=name, step=name, variant=variant, max_sms_segments=10)
        for currency, first_name in _longest_names():
            row = {**SAMPLE_MEMBERS[0], "locale": locale, "first_name": first_name, "currency": currency}
            for offer in (_offer(currency), None):
                ctx = build_context(row, campaign, offer=offer, links=sample_links(row["member_id"]))
                sms = renderer.render_sms(name, ctx, campaign)
                worst = max(worst, (sms.segments, sms.text))
    assert worst[0] <= 2, f"sms/{name}.j2 in {locale} needs {worst[0]} segments: {worst[1]}"
