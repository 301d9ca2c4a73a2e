"""One message: the template context (member row + the campaign layer's offer/products/links), the
rendered content, its hash for the ledger, and the channel's outgoing message."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from retain.channels.base import Outgoing, OutgoingEmail, OutgoingSms
from retain.channels.base import content_hash as hash_content
from retain.dispatch.types import ContextFor, DispatchSpec, Recipient
from retain.rendering import Campaign, Renderer, build_context

CONTEXT_KEYS = ("offer", "products", "links", "brand")


@dataclass(frozen=True)
class RenderedMessage:
    channel: str
    subject: str
    html: str
    text: str
    unsubscribe: str | None
    #: the context it was rendered from (shared mode tokenises it instead of building it again)
    context: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def content_hash(self) -> str:
        """sha256 of what was sent (subject, HTML, text): stored on the ledger row."""
        return hash_content(self.subject, self.html, self.text)

    def preview(self) -> dict[str, Any]:
        if self.channel == "email":
            return {"subject": self.subject, "text": self.text, "html_chars": len(self.html)}
        return {"text": self.text}


def campaign_for(spec: DispatchSpec, journey_step: str, variant: str | None = None) -> Campaign:
    return Campaign(
        name=spec.campaign,
        journey=spec.journey,
        step=journey_step,
        variant=variant or "",
        default_locale=spec.default_locale,
        max_sms_segments=spec.max_sms_segments,
        marketing=spec.is_marketing,
    )


def message_context(
    spec: DispatchSpec,
    recipient: Recipient,
    member: Mapping[str, Any],
    context_for: ContextFor | None,
) -> dict[str, Any]:
    """The template context of one message: the member row and the campaign layer's offer, products,
    links and brand (``context_for``)."""
    extra = dict(context_for(member, recipient)) if context_for is not None else {}
    unknown = set(extra) - set(CONTEXT_KEYS)
    if unknown:
        raise ValueError(f"context_for returned keys outside {CONTEXT_KEYS}: {sorted(unknown)}")
    if spec.brand and "brand" not in extra:
        extra["brand"] = spec.brand
    return build_context(member, campaign_for(spec, recipient.journey_step, recipient.variant), **extra)


def render_message(
    renderer: Renderer,
    spec: DispatchSpec,
    recipient: Recipient,
    member: Mapping[str, Any],
    context_for: ContextFor | None,
) -> RenderedMessage:
    campaign = campaign_for(spec, recipient.journey_step, recipient.variant)
    ctx = message_context(spec, recipient, member, context_for)
    if recipient.channel == "email":
        email = renderer.render_email(recipient.template, ctx, campaign)
        return RenderedMessage(
            "email", email.subject, email.html, email.text, ctx["links"].get("unsubscribe"), ctx
        )
    sms = renderer.render_sms(recipient.template, ctx, campaign)
    return RenderedMessage("sms", "", "", sms.text, None, ctx)


def outgoing(
    spec: DispatchSpec,
    delivery_id: int,
    idempotency_key: str,
    address: str,
    message: RenderedMessage,
    is_test: bool,
) -> Outgoing:
    if message.channel == "email":
        headers = {}
        if message.unsubscribe:
            headers["List-Unsubscribe"] = f"<{message.unsubscribe}>"
            headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        return OutgoingEmail(
            delivery_id=delivery_id,
            campaign=spec.campaign,
            to=address,
            subject=message.subject,
            html=message.html,
            text=message.text,
            from_email=spec.from_email,
            from_name=spec.from_name,
            custom_args={
                "delivery_id": str(delivery_id),
                "campaign_id": spec.campaign,
                "idempotency_key": idempotency_key,
            },
            categories=(spec.campaign[:255],),
            headers=headers,
            is_test=is_test,
        )
    return OutgoingSms(
        delivery_id=delivery_id, campaign=spec.campaign, to=address, body=message.text, is_test=is_test
    )
