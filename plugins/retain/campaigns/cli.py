"""``retain campaigns ...`` and ``retain send``: thin Typer commands over retain.campaigns."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

campaigns_app = typer.Typer(help="Campaign and journey files (docs/campaigns.md).", no_args_is_help=True)


@campaigns_app.command("validate")
def validate(
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="Campaigns folder. Default: RETAIN_CAMPAIGNS_DIR, else campaigns/."),
    ] = None,
    offline: Annotated[
        bool, typer.Option(help="Check columns against the dbt yml only, without opening the warehouse.")
    ] = False,
) -> None:
    """Check every campaign file; exit 1 listing every bad file with field and reason."""
    from retain.campaigns.models import CampaignFileError, load_all, load_catalog, load_settings

    catalog = load_catalog(use_warehouse=not offline)
    result = load_all(directory, catalog=catalog)
    errors = list(result.errors)
    try:
        load_settings(directory)
    except CampaignFileError as exc:
        errors.append(exc)
    for name, campaign in sorted(result.campaigns.items()):
        steps = ", ".join(s.name for s in campaign.step_list())
        typer.echo(f"ok   {name:<20} {campaign.kind:<8} priority {campaign.priority:<4} steps: {steps}")
    typer.echo(f"(columns checked against the {catalog.source})")
    if errors:
        typer.echo(f"\n{len(errors)} invalid file(s):", err=True)
        for exc in errors:
            typer.echo(str(exc), err=True)
        raise typer.Exit(code=1)
    if not result.campaigns:
        typer.echo("no campaign files found", err=True)
        raise typer.Exit(code=1)
    typer.echo(f"\nAll {len(result.campaigns)} campaign file(s) valid.")


@campaigns_app.command("list")
def list_campaigns(
    kind: Annotated[str | None, typer.Option(help="Only this kind: journey or manual.")] = None,
    names: Annotated[bool, typer.Option("--names", help="Names only, one per line (for scripts).")] = False,
) -> None:
    """Campaigns and journeys, highest priority first: the order the journeys DAG prepares them in."""
    from retain.campaigns.models import load_all, load_catalog

    if kind not in (None, "journey", "manual"):
        raise typer.BadParameter(f"--kind must be journey or manual, not {kind!r}")
    result = load_all(None, catalog=load_catalog(use_warehouse=False))
    if result.errors:
        for exc in result.errors:
            typer.echo(str(exc), err=True)
        raise typer.Exit(code=1)
    chosen = [c for c in result.campaigns.values() if kind is None or c.kind == kind]
    for campaign in sorted(chosen, key=lambda c: (-c.priority, c.name)):
        if names:
            typer.echo(campaign.name)
        else:
            about = " ".join(campaign.description.split())
            about = about if len(about) <= 72 else about[:71] + "…"
            typer.echo(f"{campaign.priority:>4}  {campaign.name:<16} {campaign.kind:<8} {about}")


def send_command(
    campaign: Annotated[str, typer.Argument(help="Campaign file name (campaigns/<name>.yml) or a path.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Freeze and count the audience, render samples; send nothing.")
    ] = False,
    limit: Annotated[int | None, typer.Option(min=1, help="Queue at most this many messages.")] = None,
    pilot: Annotated[
        float | None,
        typer.Option(
            min=0.0, max=1.0, help="Send only to this share (pilot); a later run sends to the rest."
        ),
    ] = None,
    test_recipient: Annotated[
        list[str] | None,
        typer.Option("--test-recipient", help="Send only to this address (repeatable), marked as a test."),
    ] = None,
    run_id: Annotated[
        str | None, typer.Option(help="Resume or retry this run (default: a new run id from the clock).")
    ] = None,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="With --run-id: lift the circuit breaker's pause, then send the rest."),
    ] = False,
) -> None:
    """Run a campaign or journey now, through the same code path as the campaign_send DAG."""
    from datetime import UTC, datetime

    from retain.campaigns.models import CampaignFileError
    from retain.campaigns.runner import CampaignNotRunnable, RunInProgress, RunRequest, send
    from retain.ledger import LedgerError

    # one clock reading for the run id and the logical date: two sends in one second are one run
    now = datetime.now(UTC).replace(microsecond=0)
    rid = run_id or f"cli{'_dry' if dry_run else ''}__{now:%Y%m%dT%H%M%S}"
    if resume and run_id is None:
        raise typer.BadParameter("--resume needs the --run-id of the paused run (retain runs lists them)")
    request = RunRequest(
        campaign=campaign,
        run_id=rid,
        dry_run=dry_run,
        limit=limit,
        pilot_share=pilot,
        test_recipients=tuple(test_recipient or ()),
        now=now,
    )
    if run_id is not None:
        request = _resume(request, campaign, run_id, lift_pause=resume)
    try:
        result = send(request)
    except (
        CampaignFileError,
        CampaignNotRunnable,
        RunInProgress,
        LedgerError,
        ValueError,
        LookupError,
    ) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(code=1) from exc
    typer.echo(result.outcome.table())
    if result.delivered is not None:
        d = result.delivered
        typer.echo(f"\ndelivered by {d.worker_id}: {dict(d.counts)}; skipped at send {dict(d.skipped)}")
        for line in d.held_elsewhere:
            typer.echo(line)
        if d.paused:
            typer.echo(
                f"run paused: {d.paused_reason}; once the cause is fixed: "
                f"retain send {campaign} --run-id {rid} --resume",
                err=True,
            )
            raise typer.Exit(code=2)
        if d.next_not_before is not None:
            typer.echo(
                f"deferred messages are due from {d.next_not_before:%Y-%m-%d %H:%M} UTC: "
                f"run `retain send {campaign} --run-id {rid}` again then"
            )
    elif dry_run:
        typer.echo("\ndry run: nothing was sent.")


def _resume(request, campaign: str, run_id: str, *, lift_pause: bool = False):  # noqa: ANN001, ANN202
    """A given ``--run-id`` that exists keeps its logical date (so its idempotency keys are found again);
    ``lift_pause`` lifts a circuit-breaker pause on it first."""
    from dataclasses import replace

    from retain.campaigns.models import load_campaign
    from retain.campaigns.runner import find_run
    from retain.ledger import Ledger

    ledger = Ledger.open()
    try:
        run = find_run(ledger, load_campaign(campaign).ledger_name, run_id)
        if lift_pause:
            state = ledger.run_state(run)
            if state["status"] == "paused":
                ledger.resume_run(run)
                typer.echo(f"run {run_id}: pause lifted (it was: {state['paused_reason']})")
    except LookupError:
        if lift_pause:
            raise typer.BadParameter(f"no run {run_id!r} of {campaign} in the ledger") from None
        return request
    finally:
        ledger.close()
    return replace(request, logical_date=run.logical_date, now=None)


def runs_command(
    campaign: Annotated[str, typer.Argument(help="Campaign file name (journeys by their name too).")],
    limit: Annotated[int, typer.Option(min=1, help="How many of the latest runs.")] = 20,
) -> None:
    """A campaign's runs, newest first: state (preparing, sending, paused, deferred, stalled, done,
    abandoned, dry run), counts, and what to do."""
    from retain.campaigns.models import CampaignFileError, load_campaign, load_catalog
    from retain.ledger import Ledger
    from retain.ledger.runs import overview

    try:
        file = campaign.removeprefix("journey:")  # the name retain report uses works too
        name = load_campaign(file, catalog=load_catalog(use_warehouse=False)).ledger_name
    except CampaignFileError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(code=1) from exc
    ledger = Ledger.open()
    try:
        states = overview(ledger, name, limit=limit)
    finally:
        ledger.close()
    if not states:
        typer.echo(f"no runs of {name} in the ledger")
        return
    typer.echo(f"{'run id':<34} {'started (UTC)':<17} {'state':<10} {'sent':>8} {'queued':>8} {'sending':>8}")
    for st in states:
        c = st.counts
        typer.echo(
            f"{st.run_id:<34} {st.started_at:%Y-%m-%d %H:%M} {st.state:<10} {c.get('sent', 0):>8,} "
            f"{c.get('queued', 0):>8,} {c.get('sending', 0):>8,}"
        )
        typer.echo(f"  {st.detail}")
