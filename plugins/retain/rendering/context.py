"""The context contract: the only names and fields a template may use, and how a context is built.

docs/templates.md is the human version of ``CONTRACT``; keep the two in step. Validation checks every
template against it statically (so ``member.nonexistent`` is caught on a branch no sample takes) and by
rendering sample contexts built here, from the warehouse when there is one, from ``SAMPLE_MEMBERS`` otherwise.
Sample members carry the warehouse's real enumerations (``member_tier`` super/senior/ordinary, as
``member_segments.yml`` accepts), so a campaign's offer by tier (``sample_tier_offer``) renders each tier's
amount, or no offer for a tier the campaign gives none.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from retain.campaigns.models import Offer

MEMBER_FIELDS = frozenset(
    {
        "member_id",
        "first_name",
        "last_name",
        "locale",
        "country",
        "timezone",
        "currency",
        "member_tier",
        "lifecycle_stage",
        "rfm_segment",
        "clv_tier",
        "birth_date",
        "last_order_at",
        "next_replenish_at",
        "aov",
        "monetary",
        "frequency",
    }
)
CAMPAIGN_FIELDS = frozenset({"name", "journey", "step", "variant"})
OFFER_FIELDS = frozenset({"code", "amount", "threshold", "currency", "expires_at"})
PRODUCT_FIELDS = frozenset({"name", "url", "image_url", "price", "currency"})
LINK_FIELDS = frozenset({"unsubscribe", "preferences", "view_in_browser", "shop"})
BRAND_FIELDS = frozenset({"name", "logo_url", "postal_address", "support_email"})

# Top-level name -> allowed attributes (None: a list whose items have PRODUCT_FIELDS).
CONTRACT: dict[str, frozenset[str]] = {
    "member": MEMBER_FIELDS,
    "campaign": CAMPAIGN_FIELDS,
    "offer": OFFER_FIELDS,
    "links": LINK_FIELDS,
    "brand": BRAND_FIELDS,
    "products": PRODUCT_FIELDS,
}
LIST_NAMES = frozenset({"products"})
# Engine-provided, not for templates: the member's locale as the formatting filters read it.
LOCALE_KEY = "_locale"
# Engine-provided: the language of the template being rendered when it is not the member's (month and
# day names follow the words around them; numbers and money keep the member's conventions).
DATE_LOCALE_KEY = "_date_locale"


@dataclass(frozen=True)
class Campaign:
    """The campaign or journey step sending; ``name`` and ``step`` become utm_campaign / utm_content.
    ``variant`` is the recipient's A/B variant name ("" when the campaign has no variants)."""

    name: str
    journey: str = ""
    step: str = ""
    variant: str = ""
    default_locale: str = "en-US"
    max_sms_segments: int = 2
    marketing: bool = True

    def as_context(self) -> dict[str, str]:
        return {"name": self.name, "journey": self.journey, "step": self.step, "variant": self.variant}


DEFAULT_BRAND = {
    "name": "Retain Shop",
    "logo_url": "https://shop.example.com/static/logo.png",
    "postal_address": "1 Example Street, 10115 Berlin, Germany",
    "support_email": "help@shop.example.com",
}


def member_context(row: Mapping[str, Any]) -> dict[str, Any]:
    """Only the contract's member fields, missing ones as None (templates test them with ``if``)."""
    return {field: row.get(field) for field in MEMBER_FIELDS}


def build_context(
    member: Mapping[str, Any],
    campaign: Campaign,
    *,
    offer: Mapping[str, Any] | None = None,
    products: Iterable[Mapping[str, Any]] = (),
    links: Mapping[str, str] | None = None,
    brand: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One message's context. ``member`` may be a whole member_segments row: only contract fields pass."""
    m = member_context(member)
    return {
        "member": m,
        "campaign": campaign.as_context(),
        "offer": dict(offer) if offer else None,
        "products": [{field: p.get(field) for field in PRODUCT_FIELDS} for p in products],
        "links": {field: (links or {}).get(field) or "" for field in LINK_FIELDS},
        "brand": {**DEFAULT_BRAND, **(brand or {})},
        LOCALE_KEY: m.get("locale") or campaign.default_locale,
    }


# Fixture members used when there is no warehouse (and by tests): one per shipped locale plus edge cases.
# Enumerated fields hold values member_segments accepts (its dbt yml); between them the members cover every
# member_tier, so validation renders each tier's offer (tests/rendering/test_samples.py holds both).
SAMPLE_MEMBERS: list[dict[str, Any]] = [
    {
        "member_id": 1000001,
        "first_name": "Emma",
        "last_name": "Johnson",
        "locale": "en-US",
        "country": "US",
        "timezone": "America/New_York",
        "currency": "USD",
        "member_tier": "super",
        "lifecycle_stage": "active",
        "rfm_segment": "important_value",
        "clv_tier": "high",
        "birth_date": date(1990, 5, 17),
        "last_order_at": datetime(2026, 6, 1, 14, 30),
        "next_replenish_at": date(2026, 7, 9),
        "aov": Decimal("84.50"),
        "monetary": Decimal("1267.50"),
        "frequency": 15,
    },
    {
        "member_id": 1000011,
        "first_name": "磊",
        "last_name": "宋",
        "locale": "zh-CN",
        "country": "CN",
        "timezone": "Asia/Shanghai",
        "currency": "CNY",
        "member_tier": "senior",
        "lifecycle_stage": "at_risk",
        "rfm_segment": "important_retain",
        "clv_tier": "mid",
        "birth_date": date(1988, 11, 2),
        "last_order_at": datetime(2026, 2, 11, 9, 5),
        "next_replenish_at": None,
        "aov": Decimal("320.00"),
        "monetary": Decimal("1920.00"),
        "frequency": 6,
    },
    {
        "member_id": 1000002,
        "first_name": "Felix",
        "last_name": "Fischer",
        "locale": "de-DE",
        "country": "DE",
        "timezone": "Europe/Berlin",
        "currency": "EUR",
        "member_tier": "ordinary",
        "lifecycle_stage": "new",
        "rfm_segment": "general_develop",
        "clv_tier": "low",
        "birth_date": None,
        "last_order_at": datetime(2026, 6, 20, 18, 0),
        "next_replenish_at": date(2026, 7, 2),
        "aov": Decimal("42.00"),
        "monetary": Decimal("42.00"),
        "frequency": 1,
    },
    {
        # A prospect with no name, no orders and a locale without its own templates (falls back).
        "member_id": 1000010,
        "first_name": None,
        "last_name": None,
        "locale": "ja-JP",
        "country": "JP",
        "timezone": "Asia/Tokyo",
        "currency": "JPY",
        "member_tier": "ordinary",
        "lifecycle_stage": "prospect",
        "rfm_segment": None,
        "clv_tier": "low",
        "birth_date": None,
        "last_order_at": None,
        "next_replenish_at": None,
        "aov": None,
        "monetary": Decimal("0"),
        "frequency": 0,
    },
]

SAMPLE_PRODUCTS = [
    {
        "name": "Hydrating Face Cream 50 ml",
        "url": "https://shop.example.com/p/face-cream?ref=rec#reviews",
        "image_url": "https://cdn.example.com/img/face-cream.jpg",
        "price": Decimal("29.90"),
    },
    {
        "name": "Vitamin C Serum",
        "url": "https://shop.example.com/p/vitamin-c-serum",
        "image_url": "https://cdn.example.com/img/serum.jpg",
        "price": Decimal("45.00"),
    },
    {
        "name": "Gentle Cleanser <200 ml> & more",
        "url": "https://shop.example.com/p/cleanser",
        "image_url": "https://cdn.example.com/img/cleanser.jpg",
        "price": Decimal("1200"),
    },
]


def sample_offer(currency: str) -> dict[str, Any]:
    return {
        "code": "WELCOME10",
        "amount": Decimal("10"),
        "threshold": Decimal("50"),
        "currency": currency,
        "expires_at": date(2026, 7, 31),
    }


#: The as-of date of sample messages (offer expiry); the sample members' dates are around it.
SAMPLE_AS_OF = date(2026, 6, 30)


def sample_tier_offer(
    offer: Offer | None, member: Mapping[str, Any], campaign: str, as_of: date = SAMPLE_AS_OF
) -> dict[str, Any] | None:
    """A campaign file's offer as the sample ``member`` gets it: the amount and threshold of the member's
    ``member_tier`` (else the offer's default, else no offer), the fixed code or the member's code of the
    ``code_rule``, expiring ``expiry_days`` after ``as_of``. Samples have no fx rates: an offer that states
    its ``currency`` keeps its amounts in it (the send path converts them to the member's currency);
    without one the amounts are the member's currency, as in the send path."""
    if offer is None:
        return None
    terms = offer.terms_for(member.get("member_tier"))
    if terms is None:
        return None
    return {
        "code": offer.code_for(campaign, member.get("member_id")),
        "amount": terms.amount,
        "threshold": terms.threshold if terms.threshold > 0 else None,
        "currency": offer.currency or member.get("currency") or "USD",
        "expires_at": as_of + timedelta(days=offer.expiry_days),
    }


def sample_links(member_id: object) -> dict[str, str]:
    return {
        "unsubscribe": f"https://shop.example.com/u/{member_id}?t=abc123",
        "preferences": f"https://shop.example.com/prefs/{member_id}?t=abc123",
        "view_in_browser": f"https://shop.example.com/v/{member_id}",
        "shop": "https://shop.example.com/?src=mail#top",
    }


def sample_contexts(
    members: Iterable[Mapping[str, Any]],
    campaign: Campaign,
    offers: Iterable[tuple[str, Offer]] = (),
) -> Iterable[tuple[str, dict[str, Any]]]:
    """For each member: a full context (offer, three products) and a bare one (no offer, no products), so a
    template that uses ``offer.code`` without ``{% if offer %}`` fails validation, not a send; and one per
    ``(campaign name, offer)`` of the campaign files sending the template, with the member's tier's terms
    (``sample_tier_offer``; a tier without an offer is the bare context's case)."""
    offers = list(offers)
    for member in members:
        currency = member.get("currency") or "USD"
        products = [{**p, "currency": currency} for p in SAMPLE_PRODUCTS]
        links = sample_links(member.get("member_id"))
        label = f"member {member.get('member_id')}"
        yield (
            f"{label} with offer",
            build_context(member, campaign, offer=sample_offer(currency), products=products, links=links),
        )
        yield f"{label} without offer", build_context(member, campaign, links=links)
        for name, offer in offers:
            terms = sample_tier_offer(offer, member, name)
            if terms is not None:
                yield (
                    f"{label} with {name}'s offer for tier {member.get('member_tier')}",
                    build_context(member, campaign, offer=terms, products=products, links=links),
                )


def warehouse_members(
    warehouse: Path, *, per_locale: int = 2, member_id: int | None = None
) -> list[dict[str, Any]]:
    """Sample rows of member_segments, opened read-only: ``per_locale`` per locale, one with a null first
    name when there is one, and at least one member of each ``member_tier`` (so each tier's offer renders).
    Empty list when there is no warehouse or no table."""
    import duckdb

    if not Path(warehouse).is_file():
        return []
    try:
        con = duckdb.connect(str(warehouse), read_only=True)
    except duckdb.Error:
        return []
    try:
        columns = {
            row[0]
            for row in con.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE lower(table_name) = 'member_segments'"
            ).fetchall()
        }
        if not columns:
            return []
        wanted = sorted(MEMBER_FIELDS & columns)
        select = ", ".join(f'"{c}"' for c in wanted)
        if member_id is not None:
            sql = f"SELECT {select} FROM member_segments WHERE member_id = ?"
            rows = con.execute(sql, [member_id])
        else:
            order = "first_name IS NULL DESC, member_id" if "first_name" in columns else "member_id"
            by_tier = (
                "row_number() OVER (PARTITION BY member_tier ORDER BY member_id)"
                if "member_tier" in columns
                else "2"
            )
            sql = f"""
                SELECT {select} FROM (
                    SELECT *, row_number() OVER (PARTITION BY locale ORDER BY {order}) AS rn,
                           {by_tier} AS rn_tier
                    FROM member_segments
                ) WHERE rn <= ? OR rn_tier = 1 ORDER BY locale, member_id
            """
            rows = con.execute(sql, [per_locale])
        names = [d[0] for d in rows.description]
        return [dict(zip(names, row, strict=True)) for row in rows.fetchall()]
    except duckdb.Error:
        return []
    finally:
        con.close()
