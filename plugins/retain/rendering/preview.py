"""``retain preview``: one template rendered for one member, as the send path would render it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retain import config
from retain.rendering.context import (
    SAMPLE_MEMBERS,
    SAMPLE_PRODUCTS,
    Campaign,
    build_context,
    sample_links,
    sample_offer,
    sample_tier_offer,
    warehouse_members,
)
from retain.rendering.environment import RenderedEmail, RenderedSms, Renderer


class MemberNotFound(LookupError):
    pass


@dataclass(frozen=True)
class Preview:
    member: dict[str, Any]
    member_from: str
    email: RenderedEmail | None
    sms: RenderedSms | None
    #: Whose offer the preview shows: "<campaign>'s offer for tier <tier>" (None in the context when that
    #: tier gets no offer), or "sample offer" when no campaign file sends the template with an offer.
    offer_from: str = "sample offer"


def find_member(member_id: int, warehouse: Path | None = None) -> tuple[dict[str, Any], str]:
    """The member from member_segments (read-only), else from the package's sample members."""
    wh = Path(warehouse) if warehouse is not None else config.warehouse_path()
    rows = warehouse_members(wh, member_id=member_id)
    if rows:
        return rows[0], f"warehouse {wh}"
    for row in SAMPLE_MEMBERS:
        if row["member_id"] == member_id:
            return dict(row), "sample members"
    known = ", ".join(str(m["member_id"]) for m in SAMPLE_MEMBERS)
    raise MemberNotFound(f"member {member_id} is neither in {wh} nor in the sample members ({known})")


def preview(
    template: str,
    member_id: int,
    *,
    locale: str | None = None,
    channel: str | None = None,
    variant: str | None = None,
    templates_dir: Path | None = None,
    warehouse: Path | None = None,
    campaigns_dir: Path | None = None,
) -> Preview:
    """Render ``template`` (an email folder name and/or an SMS name) with sample products and the offer the
    member's ``member_tier`` gets from the first campaign file sending the template with an offer (the
    tier's amount, the default, or no offer; ``sample_tier_offer``), else a sample offer; as A/B
    ``variant`` (``campaign.variant``) when given."""
    from retain.rendering.validation import template_offers

    member, member_from = find_member(member_id, warehouse)
    if locale:
        member = {**member, "locale": locale}
    renderer = Renderer(templates_dir)
    campaign = Campaign(name=f"preview_{template}", journey=template, step=template, variant=variant or "")
    currency = member.get("currency") or "USD"
    offers = template_offers(campaigns_dir)
    sent_with = [*offers.get(("email", template), []), *offers.get(("sms", template), [])]
    if channel in ("email", "sms"):
        sent_with = offers.get((channel, template), [])
    if sent_with:
        name, file_offer = sent_with[0]
        offer = sample_tier_offer(file_offer, member, name)
        offer_from = f"{name}'s offer for tier {member.get('member_tier')}"
    else:
        offer, offer_from = sample_offer(currency), "sample offer"
    ctx = build_context(
        member,
        campaign,
        offer=offer,
        products=[{**p, "currency": currency} for p in SAMPLE_PRODUCTS],
        links=sample_links(member_id),
    )
    root = renderer.templates_dir
    has_email = any(root.glob(f"**/email/{template}/subject.j2"))
    has_sms = any(root.glob(f"**/sms/{template}.j2"))
    if channel == "email" and not has_email or channel == "sms" and not has_sms or not (has_email or has_sms):
        raise FileNotFoundError(f"no {channel or 'email or sms'} template named {template!r} in {root}")
    email = renderer.render_email(template, ctx, campaign) if has_email and channel != "sms" else None
    sms = renderer.render_sms(template, ctx, campaign) if has_sms and channel != "email" else None
    return Preview(member, member_from, email, sms, offer_from)
