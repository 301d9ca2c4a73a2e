"""What the campaign_send and journeys DAG tasks do, without Airflow: the DAG files only wire these up.

Each function takes plain values (params, run id, dates) and returns JSON-able dicts for XCom. No address
ever goes into a return value or a log line: test recipients are re-read from the run's params by each
task that needs them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from retain.campaigns.models import (
    Campaign,
    load_all,
    load_campaign,
    load_catalog,
)
from retain.campaigns.runner import (
    RunRequest,
    deliver_campaign,
    find_run,
    prepare_campaign,
    shard_count,
)

log = logging.getLogger(__name__)


def parse_time_campaigns(kind: str | None = None) -> dict[str, Campaign]:
    """Every campaign file, checked against the dbt yml (DAG parsing never opens the warehouse). Any bad
    file raises ``CampaignFileError`` naming the file, field and reason: the DAG shows an import error and
    cannot run anything until the file is fixed."""
    result = load_all(catalog=load_catalog(use_warehouse=False))
    if len(result.errors) == 1:
        raise result.errors[0]
    if result.errors:
        raise CampaignFilesInvalid("\n".join(str(e) for e in result.errors))
    return {n: c for n, c in result.campaigns.items() if kind is None or c.kind == kind}


class CampaignFilesInvalid(ValueError):
    """Several campaign files are invalid: every file, field and reason."""


def campaign_choices() -> list[str]:
    """The drop-down of campaign_send: manual campaigns first, then journeys, each by name."""
    campaigns = parse_time_campaigns()
    manual = sorted(n for n, c in campaigns.items() if c.kind == "manual")
    journeys = sorted(n for n, c in campaigns.items() if c.kind == "journey")
    return manual + journeys


def journeys_by_priority() -> list[Campaign]:
    """Journeys, highest priority first (ties by name): the order their prepare tasks run in, so the
    ledger holds a higher-priority journey's rows before a lower one arbitrates against them."""
    return sorted(parse_time_campaigns("journey").values(), key=lambda c: (-c.priority, c.name))


# --------------------------------------------------------------------------------------------------


def validate(campaign: str) -> dict[str, Any]:
    """Check the file against the warehouse's real columns and the templates; raise with file/field/reason."""
    from retain.campaigns.runner import dispatch_spec
    from retain.dispatch.prepare import validate_spec_templates

    catalog = load_catalog()
    spec_campaign = load_campaign(campaign, catalog=catalog)
    validate_spec_templates(dispatch_spec(spec_campaign))
    log.info("campaign %s valid (columns from the %s)", campaign, catalog.source)
    return {"campaign": spec_campaign.name, "kind": spec_campaign.kind, "columns_from": catalog.source}


def _run_date(logical_date: datetime | None, run_after: datetime | None) -> datetime | None:
    when = logical_date or run_after
    return when.astimezone(UTC) if when is not None else None


def prepare(
    params: Mapping[str, Any],
    run_id: str,
    logical_date: datetime | None,
    *,
    journey_as_of: bool = False,
) -> dict[str, Any]:
    """Freeze the audience and enqueue (or count, for a dry run). Returns the summary and the shards."""
    campaign = params["campaign"]
    dry_run = bool(params.get("dry_run", True))
    # A journey sent from campaign_send keeps the journeys DAG's ledger date (the warehouse's as-of date),
    # so the two find each other's idempotency keys.
    journey_as_of = (
        journey_as_of or load_campaign(campaign, catalog=load_catalog(use_warehouse=False)).kind == "journey"
    )
    request = RunRequest(
        campaign=campaign,
        run_id=run_id,
        logical_date=None if journey_as_of else logical_date,
        dry_run=dry_run,
        limit=params.get("limit") or None,
        pilot_share=params.get("pilot_share"),
        test_recipients=tuple(params.get("test_recipients") or ()),
    )
    outcome = prepare_campaign(request)
    table = outcome.table()
    for line in table.splitlines():
        log.info("%s", line)
    summary = outcome.summary()
    queued = summary["queued"]
    shards = [] if dry_run or queued == 0 else list(range(shard_count(queued)))
    return {"campaign": outcome.campaign.name, "dry_run": dry_run, "summary": summary, "shards": shards}


def deliver(
    params: Mapping[str, Any], campaign: str, run_id: str, shard: int, shards: int = 1
) -> dict[str, Any]:
    """One delivery worker (a mapped task, ``shard`` of ``shards``): claims from the ledger until nothing
    is due, at 1/``shards`` of each channel's rate."""
    report = deliver_campaign(
        campaign,
        run_id,
        worker_id=f"{run_id}.shard{shard}",
        test_recipients=tuple(params.get("test_recipients") or ()),
        workers=shards,
    )
    out = report.as_dict()
    log.info("shard %s: %s", shard, json.dumps(out, default=str))
    if report.paused:
        raise RuntimeError(f"run paused by the circuit breaker: {report.paused_reason}")
    return out


def summarise(
    campaign: str, run_id: str, prepared: Mapping[str, Any] | None, reports_dir: Path | None = None
) -> dict[str, Any]:
    """The run's final counts from the ledger (status, skip reason, variant), logged and written as a
    Markdown report ``data/reports/campaign_send/<campaign>__<run_id>.md``; returned for XCom."""
    from retain.ledger import Ledger

    name = load_campaign(campaign, catalog=load_catalog(use_warehouse=False))
    ledger = Ledger.open()
    try:
        run = find_run(ledger, name.ledger_name, run_id)
        counts = ledger.run_summary(run)
        variants = ledger.variant_counts(run)
        state = ledger.run_state(run)
    finally:
        ledger.close()
    as_of = state["as_of_date"]
    paused = state["status"] == "paused"
    resume = resume_steps(name.name, name.ledger_name, run_id) if paused else None
    lines = [
        f"# {name.ledger_name}: {'dry run' if run.dry_run else 'run'} `{run_id}`",
        "",
        f"* logical date: {run.logical_date:%Y-%m-%d %H:%M} UTC; audience frozen as of {as_of}",
        f"* status: {state['status']}" + (f" ({state['paused_reason']})" if state["paused_reason"] else ""),
        f"* audience (member-steps): {((prepared or {}).get('summary') or {}).get('audience', 'n/a')}",
        "",
    ]
    if paused:
        by_status = counts["by_status"]
        lines += [
            f"**Paused**: {state['paused_reason'] or 'no reason recorded'}. Nothing more is sent until the"
            " run is resumed: "
            + ", ".join(f"{by_status.get(s, 0):,} {s}" for s in ("queued", "sending", "sent", "failed"))
            + ".",
            "",
            "To resume, once the cause is fixed:",
            "",
            *(f"* {step}" for step in resume or []),
            "",
        ]
    lines += [
        "| status | skip reason | messages |",
        "|---|---|---:|",
    ]
    for status, n in sorted(counts["by_status"].items()):
        if status == "skipped":
            for reason, m in sorted(counts["skip_reasons"].items()):
                lines.append(f"| skipped | {reason} | {m:,} |")
        else:
            lines.append(f"| {status} | | {n:,} |")
    lines += ["", "| variant | status | messages |", "|---|---|---:|"]
    for variant, statuses in sorted(variants.items()):
        for status, n in sorted(statuses.items()):
            lines.append(f"| {variant} | {status} | {n:,} |")
    text = "\n".join(lines) + "\n"
    folder = reports_dir or reports_root() / "campaign_send"
    folder.mkdir(parents=True, exist_ok=True)
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in f"{name.name}__{run_id}")
    path = folder / f"{safe}.md"
    path.write_text(text, encoding="utf-8")
    for line in lines:
        log.info("%s", line)
    log.info("summary written to %s", path)
    return {
        "campaign": name.ledger_name,
        "run_id": run_id,
        "dry_run": run.dry_run,
        "status": state["status"],
        "paused_reason": state["paused_reason"] if paused else None,
        "resume": resume,
        "by_status": counts["by_status"],
        "skip_reasons": counts["skip_reasons"],
        "by_variant": variants,
        "report": str(path),
    }


def resume_steps(campaign_file: str, ledger_name: str, run_id: str) -> list[str]:
    """The two ways to resume a paused run: from Airflow (lift the pause with ``Ledger.resume_run``, then
    clear the failed deliver tasks, which claim the rest), or in one step from a shell (``retain send
    --resume``, which lifts the pause and sends the rest in that shell's process)."""
    one_liner = (
        'python -c "from retain.ledger import Ledger; from retain.campaigns.runner import find_run; '
        f'led = Ledger.open(); led.resume_run(find_run(led, {ledger_name!r}, {run_id!r})); led.close()"'
    )
    return [
        "in Airflow: lift the pause (from the venv, with the workers' RETAIN_LEDGER_URL or retain_ledger"
        f" connection) `{one_liner}`, then clear this run's failed `deliver` tasks with their downstream"
        " tasks (the summary and the ledger export run again)",
        f"or from a shell, in one step: `retain send {campaign_file} --run-id {run_id} --resume` (lifts the"
        " pause, then sends the rest from that shell)",
    ]


def reports_root() -> Path:
    """Where run summaries go: ``RETAIN_REPORTS_DIR``, default ``data/reports`` in the checkout."""
    import os

    from retain import config

    raw = os.environ.get("RETAIN_REPORTS_DIR")
    return Path(raw).expanduser() if raw else config.project_root() / "data" / "reports"


def export_ledger() -> dict[str, Any]:
    """Copy the ledger into the warehouse (``retain.ledger.export.sync_to_warehouse``) for the dbt marts."""
    from retain import config
    from retain.ledger import Ledger
    from retain.ledger.export import sync_to_warehouse

    ledger = Ledger.open()
    try:
        report = sync_to_warehouse(ledger, config.warehouse_path())
    finally:
        ledger.close()
    out = {name: {"inserted": t.inserted, "updated": t.updated} for name, t in report.tables.items()}
    log.info("ledger copied to the warehouse: %s", out)
    return out
