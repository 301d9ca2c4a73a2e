"""CLI commands of the measurement side: `retain ledger sync`, `retain report`, `retain demo events`.

Thin wrappers: the work lives in ``retain.ledger.export``, ``retain.report`` and ``retain.testing.events``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from retain import config

ledger_app = typer.Typer(
    help="The delivery ledger (docs/ledger.md, docs/measurement.md).", no_args_is_help=True
)
demo_app = typer.Typer(help="Demo helpers: simulated provider events and conversions.", no_args_is_help=True)


def _open_ledger(url: str | None):
    from retain.ledger import Ledger

    return Ledger.open(url)


@ledger_app.command("sync")
def ledger_sync(
    warehouse: Annotated[
        Path | None, typer.Option(help="DuckDB warehouse. Default: RETAIN_WAREHOUSE (data/warehouse.duckdb).")
    ] = None,
    ledger_url: Annotated[
        str | None,
        typer.Option(help="Ledger URL. Default: RETAIN_LEDGER_URL, the retain_ledger connection or SQLite."),
    ] = None,
    lookback_minutes: Annotated[
        float, typer.Option(min=0, help="Re-read rows changed this long before the last copied change.")
    ] = 10.0,
    lock_timeout: Annotated[
        float, typer.Option(min=0, help="Seconds to wait for the warehouse write lock.")
    ] = 30.0,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="The warehouse holds another ledger's copy: drop it (all of raw_ledger), copy this one.",
        ),
    ] = False,
) -> None:
    """Copy what changed in the ledger into the warehouse (schema raw_ledger) for the dbt marts.

    A warehouse holds one ledger's copy: a sync from another ledger is refused (exit 1) unless --replace."""
    from retain.ledger.export import LedgerMismatch, SyncDefinitionError, WarehouseBusy, sync_to_warehouse

    target = warehouse or config.warehouse_path()
    ledger = _open_ledger(ledger_url)
    try:
        report = sync_to_warehouse(
            ledger,
            target,
            lookback=timedelta(minutes=lookback_minutes),
            lock_timeout=lock_timeout,
            replace=replace,
        )
    except (WarehouseBusy, SyncDefinitionError, LedgerMismatch) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(code=1) from exc
    finally:
        ledger.close()
    typer.echo("\n".join(report.lines()))


def report(
    campaign: Annotated[str, typer.Argument(help="Campaign name (journeys: journey:<name>).")],
    run: Annotated[str | None, typer.Option(help="Only this run (Airflow run id or ledger run id).")] = None,
    warehouse: Annotated[
        Path | None, typer.Option(help="DuckDB warehouse. Default: RETAIN_WAREHOUSE.")
    ] = None,
) -> None:
    """Print campaign_performance for a campaign: per run and variant, with lift over the holdout."""
    from retain.report import ReportUnavailable, load_performance, render_report

    try:
        perf = load_performance(warehouse or config.warehouse_path(), campaign, run)
    except ReportUnavailable as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(code=1) from exc
    typer.echo(render_report(perf))


def _has_runs(ledger, campaign: str) -> bool:  # noqa: ANN001 - retain.ledger.Ledger, imported lazily
    from sqlalchemy import select

    from retain.ledger.models import CampaignRun

    with ledger.engine.connect() as conn:
        found = conn.execute(select(CampaignRun.id).where(CampaignRun.campaign == campaign).limit(1)).first()
    return found is not None


@demo_app.command("events")
def demo_events(
    campaign: Annotated[str, typer.Argument(help="Campaign whose sent messages get provider events.")],
    run: Annotated[str | None, typer.Option(help="Only this run (Airflow run id).")] = None,
    seed: Annotated[int, typer.Option(min=0, help="Same seed, same events.")] = 0,
    conversions: Annotated[
        bool, typer.Option(help="Also append simulated paid orders to the landing orders.parquet.")
    ] = True,
    treated_rate: Annotated[float, typer.Option(min=0, max=1, help="Share of sent members who buy.")] = 0.09,
    holdout_rate: Annotated[
        float, typer.Option(min=0, max=1, help="Share of holdout members who buy.")
    ] = 0.05,
    until: Annotated[
        datetime | None,
        typer.Option(help="Latest simulated order time (UTC). Default: end of the run's as-of day."),
    ] = None,
    ledger_url: Annotated[
        str | None, typer.Option(help="Ledger URL. Default: as `retain ledger sync`.")
    ] = None,
) -> None:
    """Simulate provider events (delivered, bounces, opens, clicks, unsubscribes) and conversions."""
    from datetime import UTC

    from retain.testing.events import simulate_conversions, simulate_events

    ledger = _open_ledger(ledger_url)
    try:
        try:
            events = simulate_events(ledger, campaign, run_id=run, seed=seed)
        except ValueError as exc:
            if _has_runs(ledger, campaign):  # it ran but sent nothing (all skipped or deferred): not an error
                typer.echo(f"{campaign}: nothing sent yet, no events to simulate")
                return
            typer.echo(str(exc), err=True)
            raise typer.Exit(code=1) from exc
        counts = ", ".join(f"{k} {v:,}" for k, v in sorted(events.events.items()))
        typer.echo(
            f"{campaign}: events for {events.deliveries:,} sent messages ({counts}); "
            f"{events.new_events:,} new, {events.suppressions:,} suppressions added"
        )
        if conversions:
            conv = simulate_conversions(
                ledger,
                campaign,
                config.landing_dir(),
                run_id=run,
                seed=seed,
                treated_rate=treated_rate,
                holdout_rate=holdout_rate,
                until=until.replace(tzinfo=UTC) if until else None,
            )
            typer.echo(
                f"{campaign}: {conv.orders_added - conv.holdout_orders_added:,} paid orders added for "
                f"{conv.members:,} sent members, {conv.holdout_orders_added:,} for {conv.holdout_members:,} "
                f"holdout members ({conv.already_present:,} already there, {conv.no_time_left:,} with no "
                f"time left in the window) to {config.landing_dir() / 'orders.parquet'}"
            )
    finally:
        ledger.close()
