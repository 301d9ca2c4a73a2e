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
) -> Preview:
    """Render ``template`` (an email folder name and/or an SMS name) with a sample offer and products,
    as A/B ``variant`` (``campaign.variant``) when given."""
    member, member_from = find_member(member_id, warehouse)
    if locale:
        member = {**member, "locale": locale}
    renderer = Renderer(templates_dir)
    campaign = Campaign(name=f"preview_{template}", journey=template, step=template, variant=variant or "")
    currency = member.get("currency") or "USD"
    ctx = build_context(
        member,
        campaign,
        offer=sample_offer(currency),
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
    return Preview(member, member_from, email, sms)
