"""The ``retain`` command: one entry point for the chores people run by hand around the pipeline.

Commands stay thin: the work lives in importable modules (``retain.datagen``, ``retain.segments``) so DAG
tasks and tests call the same code the CLI does.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from retain import config, datagen, segments

app = typer.Typer(
    help="Retain: lifecycle marketing automation on Airflow and dbt.",
    no_args_is_help=True,
    add_completion=False,
)
data_app = typer.Typer(help="Landing data: generate realistic sample files.", no_args_is_help=True)
segments_app = typer.Typer(help="Inspect the member segments in the warehouse.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(segments_app, name="segments")


@app.callback()
def main() -> None:
    """Retain: lifecycle marketing automation on Airflow and dbt."""


@data_app.command("generate")
def data_generate(
    members: Annotated[
        int, typer.Option(min=1, help="Number of members (orders are ~10x, events ~11x).")
    ] = 20_000,
    seed: Annotated[
        int, typer.Option(min=0, max=2**63 - 1, help="Same seed, members and as-of give identical files.")
    ] = 42,
    as_of: Annotated[
        datetime | None,
        typer.Option(
            formats=["%Y-%m-%d"],
            help="The data set's 'now' (YYYY-MM-DD); history spans 3 years before it. Default: today UTC.",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Output folder. Default: the landing folder (RETAIN_LANDING_DIR, data/landing)."),
    ] = None,
) -> None:
    """Write the six landing parquet files of docs/data-contract.md, including a few dirty rows."""
    out_dir = out if out is not None else config.landing_dir()
    result = datagen.generate(out_dir, members, seed=seed, as_of=as_of.date() if as_of else None)
    typer.echo(
        f"Wrote {len(result.row_counts)} files to {result.out_dir} in {result.seconds:.1f} s "
        f"(members={result.members:,}, seed={result.seed}, as-of={result.as_of.isoformat()})"
    )
    width = max(len(f"{name}.parquet") for name in result.row_counts)
    for name, rows in result.row_counts.items():
        typer.echo(f"  {name + '.parquet':<{width}}  {rows:>12,} rows")


@segments_app.command("summary")
def segments_summary() -> None:
    """Members and shares per RFM segment, lifecycle stage, tier and CLV tier."""
    try:
        summary = segments.load_summary(config.warehouse_path())
    except segments.SegmentsUnavailable as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(code=1) from exc
    typer.echo(segments.render_summary(summary))


if __name__ == "__main__":
    app()
