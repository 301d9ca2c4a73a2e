"""What the campaign layer hands the dispatcher: a spec for the run and one ``Recipient`` per intended
message. The dispatcher (``retain.dispatch``) owns the ledger, the pre-send checks, rendering and the
channel calls; the campaign layer (``retain.campaigns``) owns audiences, offers, variants and arbitration.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import time
from typing import Any


@dataclass(frozen=True)
class QuietHours:
    """No send between ``start`` and ``end`` in the member's time zone (wraps midnight when start > end).
    A message that falls inside is deferred to ``end`` (ledger ``not_before``), never dropped."""

    start: time
    end: time


@dataclass(frozen=True)
class FrequencyCap:
    """Marketing messages per member across all campaigns: at most ``per_day`` in the member's current
    day and ``per_7_days`` in the trailing 7 days (sent rows in the ledger, any campaign)."""

    per_day: int = 1
    per_7_days: int = 3


@dataclass(frozen=True)
class CircuitBreaker:
    """Pause the run (leaving the rest queued, run status ``paused`` with the reason) once at least
    ``min_count`` messages were attempted and the failed share or bounced share exceeds its limit."""

    min_count: int = 200
    max_failure_share: float = 0.10
    max_bounce_share: float = 0.05


@dataclass(frozen=True)
class StepTemplates:
    """The templates for one journey step / campaign message: a name under templates/email and/or
    templates/sms (see docs/templates.md)."""

    email: str | None = None
    sms: str | None = None


@dataclass(frozen=True)
class DispatchSpec:
    campaign: str  # ledger campaign name: a campaign file name or "journey:<name>"
    journey: str = ""
    is_marketing: bool = True
    default_locale: str = "en-US"
    max_sms_segments: int = 2
    from_email: str = "news@shop.example.com"
    from_name: str = "Retain Shop"
    frequency_cap: FrequencyCap | None = field(default_factory=FrequencyCap)  # None: exempt (transactional)
    quiet_hours: Mapping[str, QuietHours | None] = field(
        default_factory=lambda: {"sms": QuietHours(time(21, 0), time(9, 0)), "email": None}
    )
    circuit_breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    # messages per second per channel; None = the channel's default (SMS: 1/s per long code)
    rate_per_s: Mapping[str, float | None] = field(default_factory=dict)
    batch_size: int = 500
    # Added by the dispatcher: the templates the run will use, validated before anything is enqueued
    # (journey_step -> templates). A recipient naming a template not declared here is validated when
    # first seen; if it is broken the run is paused and prepare() raises (docs/dispatch.md).
    steps: Mapping[str, StepTemplates] = field(default_factory=dict)
    templates_dir: str | None = None  # None: retain.config.templates_dir()
    brand: Mapping[str, str] | None = None  # overrides rendering.context.DEFAULT_BRAND


@dataclass(frozen=True)
class Recipient:
    """One intended message. ``skip_reason`` set by the campaign layer (holdout, global_control,
    arbitration, not_in_pilot, exited...) still gets a ledger row, so it can be measured."""

    member_id: str
    journey_step: str
    channel: str  # "email" | "sms"
    template: str  # template name for that channel (e.g. "win_back")
    variant: str | None = None
    skip_reason: str | None = None
    is_test: bool = False
    # one contact per (campaign, step, member, channel, scope) across runs, enforced by the ledger's unique
    # index: "" for a manual campaign, the entry day for a journey; None: per logical date only
    contact_scope: str | None = None


# The campaign layer's per-message content: (member_segments row, recipient) -> extra template context
# (offer, products, links, brand), merged by retain.rendering.build_context. Pure and deterministic.
ContextFor = Callable[[Mapping[str, Any], Recipient], Mapping[str, Any]]


# Test sends (campaign_send's "test recipients", `retain send --test-recipient`): a Recipient with
# is_test=True and member_id "test:<first 12 hex of the address hash>", rendered with a sample member of
# the campaign's default locale; the address itself is handed to prepare() and deliver() as
# ``test_addresses`` {member_id: address} and never stored (the ledger keeps the hash).
