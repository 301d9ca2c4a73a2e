"""Airflow assets that Retain's dbt marts publish, named once so producers and consumers agree.

Journey DAGs schedule on these. They are plain data (no Airflow import at module import time is needed by
callers that only want the names), and ``mart_assets()`` builds the Airflow objects.
"""

from __future__ import annotations

#: Marts whose refresh other DAGs may schedule on.
PUBLISHED_MARTS: tuple[str, ...] = (
    "member_segments",
    "member_replenishments",
    "kpi_repurchase_rates",
    "kpi_new_member_retention",
    "kpi_churn_rate",
    "kpi_member_distribution",
)


def asset_uri(mart: str) -> str:
    """The URI of a mart's asset: the warehouse schema and table, under Retain's own scheme."""
    return f"retain://warehouse/main/{mart}"


def mart_assets(marts: tuple[str, ...] = PUBLISHED_MARTS) -> list:
    """Airflow ``Asset`` objects for the given marts (``member_segments`` first)."""
    from airflow.sdk import Asset

    return [Asset(name=f"retain.{mart}", uri=asset_uri(mart), group="retain-marts") for mart in marts]
