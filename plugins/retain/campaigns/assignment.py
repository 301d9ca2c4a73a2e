"""Who is in which arm: global control, pilot slice, holdout and variant, by salted hashes of the member.

Every draw is ``sha256(purpose, salt, member_id)`` read as a number in [0, 1): deterministic (the same
member lands in the same arm on every re-run and every machine), independent between purposes (being in
the pilot says nothing about being in the holdout), and needs no state. The global control group's hash
uses only the member and a global salt, so it is the same members for every campaign and journey.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from retain.campaigns.models import Campaign, Settings, Variant

_SCALE = float(1 << 60)


def unit(purpose: str, salt: str, member_id: str) -> float:
    """A uniform number in [0, 1) from the hash of purpose, salt and member id."""
    digest = hashlib.sha256(f"{purpose}\x1f{salt}\x1f{member_id}".encode()).digest()
    return (int.from_bytes(digest[:8], "big") >> 4) / _SCALE


def in_global_control(member_id: str, settings: Settings) -> bool:
    return unit("global_control", settings.global_control_salt, member_id) < settings.global_control_share


def in_share(purpose: str, campaign: str, member_id: str, share: float) -> bool:
    return share > 0 and unit(purpose, campaign, member_id) < share


def pick_variant(campaign: str, member_id: str, variants: Sequence[Variant]) -> Variant | None:
    """The variant whose cumulative weight band holds the member's draw; None when there are no variants."""
    if not variants:
        return None
    total = sum(v.weight for v in variants)
    point = unit("variant", campaign, member_id) * total
    acc = 0.0
    for variant in variants:
        acc += variant.weight
        if point < acc:
            return variant
    return variants[-1]


@dataclass(frozen=True)
class Assignment:
    variant: Variant | None
    skip_reason: str | None  # global_control | not_in_pilot | holdout | None


def assign(
    campaign: Campaign, member_id: str, settings: Settings, *, pilot_share: float | None = None
) -> Assignment:
    """The member's arm. Order: global control (marketing only), pilot slice, holdout, variant. The hashes
    key on the campaign's name, so every step of a journey puts the member in the same arm."""
    key = campaign.name
    if campaign.is_marketing and in_global_control(member_id, settings):
        return Assignment(None, "global_control")
    if pilot_share is not None and not in_share("pilot", key, member_id, pilot_share):
        return Assignment(None, "not_in_pilot")
    if in_share("holdout", key, member_id, campaign.holdout_share):
        return Assignment(None, "holdout")
    return Assignment(pick_variant(key, member_id, campaign.variants), None)
