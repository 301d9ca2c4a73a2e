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
