"""The ``retain`` command: one entry point for the chores people run by hand around the pipeline.

Commands stay thin: the work lives in importable modules (``retain.datagen``, ``retain.segments``) so DAG
tasks and tests call the same code the CLI does.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from retain import config, datagen, segments
from retain.campaigns.cli import campaigns_app, runs_command, send_command
from retain.measurement_cli import demo_app, ledger_app, report

app = typer.Typer(
    help="Retain: lifecycle marketing automation on Airflow and dbt.",
    no_args_is_help=True,
    add_completion=False,
)
data_app = typer.Typer(help="Landing data: generate realistic sample files.", no_args_is_help=True)
segments_app = typer.Typer(help="Inspect the member segments in the warehouse.", no_args_is_help=True)
templates_app = typer.Typer(help="Email and SMS templates (docs/templates.md).", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(segments_app, name="segments")
app.add_typer(templates_app, name="templates")
app.add_typer(campaigns_app, name="campaigns")
app.command("send")(send_command)
app.command("runs")(runs_command)
app.add_typer(ledger_app, name="ledger")
app.add_typer(demo_app, name="demo")
app.command("report")(report)


_DEBUG = {"on": False}


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show the full traceback of an error.")] = False,
) -> None:
    """Retain: lifecycle marketing automation on Airflow and dbt."""
    _DEBUG["on"] = debug


def run() -> None:
    """The ``retain`` entry point: an unavailable ledger is one line naming it (exit 3), not a traceback,
    unless ``--debug``."""
    from retain.ledger.store import LedgerUnavailable

    try:
        app()
    except LedgerUnavailable as exc:
        if _DEBUG["on"]:
            raise
        typer.echo(f"error: {exc}", err=True)
        sys.exit(3)


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


@templates_app.command("validate")
def templates_validate(
    templates_dir: Annotated[
        Path | None, typer.Option(help="Templates folder. Default: RETAIN_TEMPLATES_DIR, else templates/.")
    ] = None,
    max_sms_segments: Annotated[int, typer.Option(min=1, help="Fail any SMS longer than this.")] = 2,
) -> None:
    """Render every template for every shipped locale against sample members; exit 1 on any problem."""
    from retain.rendering import check_templates

    report = check_templates(templates_dir, max_sms_segments=max_sms_segments)
    typer.echo(report.table())
    if not report.ok:
        typer.echo(f"\n{len(report.problems)} problem(s):", err=True)
        for problem in report.problems:
            typer.echo(f"  {problem}", err=True)
        raise typer.Exit(code=1)
    typer.echo("\nAll templates valid.")


@app.command("preview")
def preview(
    template: Annotated[
        str, typer.Argument(help="Journey name, e.g. birthday (email/<name>/, sms/<name>.j2).")
    ],
    member: Annotated[int, typer.Option(help="member_id from member_segments (or a sample member).")],
    locale: Annotated[str | None, typer.Option(help="Render as this locale instead of the member's.")] = None,
    channel: Annotated[str | None, typer.Option(help="email or sms. Default: both that exist.")] = None,
    variant: Annotated[str | None, typer.Option(help="A/B variant name (campaign.variant), e.g. b.")] = None,
    out: Annotated[Path | None, typer.Option(help="Write the email HTML here.")] = None,
    templates_dir: Annotated[Path | None, typer.Option(help="Templates folder.")] = None,
) -> None:
    """Print one member's subject, text part and SMS; write the HTML to --out."""
    from retain.rendering import preview as rendering_preview

    if channel not in (None, "email", "sms"):
        raise typer.BadParameter("--channel must be email or sms")
    try:
        result = rendering_preview.preview(
            template, member, locale=locale, channel=channel, variant=variant, templates_dir=templates_dir
        )
    except Exception as exc:  # noqa: BLE001 - a preview reports any failure as a message, exit 1
        typer.echo(f"{type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(code=1) from exc
    typer.echo(f"member {member} ({result.member.get('locale')}, from {result.member_from})")
    if result.email:
        email = result.email
        typer.echo(f"\n== email {template}  ({', '.join(email.sources)})")
        typer.echo(f"Subject: {email.subject}\n\n{email.text}")
        if out is not None:
            out.write_text(email.html, encoding="utf-8")
            typer.echo(f"\nHTML ({len(email.html):,} chars) written to {out}")
        else:
            typer.echo(f"\nHTML: {len(email.html):,} chars (use --out FILE to write it)")
    if result.sms:
        sms = result.sms
        typer.echo(f"\n== sms {template}  ({sms.source}; {sms.encoding}, {sms.segments} segment(s))")
        typer.echo(sms.text)


if __name__ == "__main__":
    run()
