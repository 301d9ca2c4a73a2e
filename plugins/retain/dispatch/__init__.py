"""Dispatch: pre-send checks, the ledger loop, rendering and channel calls (docs/dispatch.md).

report = prepare(ledger, spec, run_id, logical_date, recipients, members=MemberSource.from_warehouse())
deliver(ledger, spec, report.run, channels={"email": ..., "sms": ...}, members=..., context_for=...,
        worker_id="campaign_send.dispatch.3")
"""

from retain.dispatch.deliver import DeliverReport, channels_for, deliver, reconcile_in_doubt, resume_run
from retain.dispatch.members import DictMembers, MemberSource, WarehouseMembers
from retain.dispatch.prepare import (
    PrepareReport,
    TemplateProblem,
    member_id_for_test_address,
    prepare,
    sample_member,
)
from retain.dispatch.types import (
    CircuitBreaker,
    ContextFor,
    DispatchSpec,
    FrequencyCap,
    QuietHours,
    Recipient,
    StepTemplates,
)

__all__ = [
    "CircuitBreaker",
    "ContextFor",
    "DeliverReport",
    "DictMembers",
    "DispatchSpec",
    "FrequencyCap",
    "MemberSource",
    "PrepareReport",
    "QuietHours",
    "Recipient",
    "StepTemplates",
    "TemplateProblem",
    "WarehouseMembers",
    "channels_for",
    "deliver",
    "prepare",
    "reconcile_in_doubt",
    "resume_run",
    "sample_member",
    "member_id_for_test_address",
]
