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
) -> None:
    """Run a campaign or journey now, through the same code path as the campaign_send DAG."""
    from datetime import UTC, datetime

    from retain.campaigns.models import CampaignFileError
    from retain.campaigns.runner import CampaignNotRunnable, RunRequest, send

    now = datetime.now(UTC)
    rid = run_id or f"cli{'_dry' if dry_run else ''}__{now:%Y%m%dT%H%M%S}"
    request = RunRequest(
        campaign=campaign,
        run_id=rid,
        dry_run=dry_run,
        limit=limit,
        pilot_share=pilot,
        test_recipients=tuple(test_recipient or ()),
    )
    if run_id is not None:
        request = _resume(request, campaign, run_id)
    try:
        result = send(request)
    except (CampaignFileError, CampaignNotRunnable, ValueError, LookupError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(code=1) from exc
    typer.echo(result.outcome.table())
    if result.delivered is not None:
        d = result.delivered
        typer.echo(f"\ndelivered by {d.worker_id}: {dict(d.counts)}; skipped at send {dict(d.skipped)}")
        if d.paused:
            typer.echo(f"run paused: {d.paused_reason}", err=True)
            raise typer.Exit(code=2)
        if d.next_not_before is not None:
            typer.echo(
                f"deferred messages are due from {d.next_not_before:%Y-%m-%d %H:%M} UTC: "
                f"run `retain send {campaign} --run-id {rid}` again then"
            )
    elif dry_run:
        typer.echo("\ndry run: nothing was sent.")


def _resume(request, campaign: str, run_id: str):  # noqa: ANN001, ANN202 - RunRequest, imported lazily
    """A given ``--run-id`` that exists keeps its logical date (so its idempotency keys are found again)."""
    from dataclasses import replace

    from retain.campaigns.models import load_campaign
    from retain.campaigns.runner import find_run
    from retain.ledger import Ledger

    ledger = Ledger.open()
    try:
        run = find_run(ledger, load_campaign(campaign).ledger_name, run_id)
    except LookupError:
        return request
    finally:
        ledger.close()
    return replace(request, logical_date=run.logical_date)
