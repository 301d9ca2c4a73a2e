"""Helpers for the rendering tests: the fixture templates and throw-away template folders."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from retain.rendering import Campaign, Renderer, build_context
from retain.rendering.context import SAMPLE_MEMBERS, SAMPLE_PRODUCTS, sample_links, sample_offer

FIXTURE_TEMPLATES = Path(__file__).parent / "fixtures" / "templates"


@pytest.fixture(scope="session")
def fixture_renderer() -> Renderer:
    return Renderer(FIXTURE_TEMPLATES)


@pytest.fixture
def campaign() -> Campaign:
    return Campaign(name="spring_welcome", journey="welcome", step="day0")


def member(locale: str = "en-US", **overrides) -> dict:
    base = (
        next(m for m in SAMPLE_MEMBERS if m["locale"] == locale)
        if any(m["locale"] == locale for m in SAMPLE_MEMBERS)
        else {**SAMPLE_MEMBERS[0], "locale": locale}
    )
    return {**base, **overrides}


def full_context(row: dict, campaign: Campaign) -> dict:
    currency = row.get("currency") or "USD"
    return build_context(
        row,
        campaign,
        offer=sample_offer(currency),
        products=[{**p, "currency": currency} for p in SAMPLE_PRODUCTS],
        links=sample_links(row["member_id"]),
    )


@pytest.fixture
def make_templates(tmp_path: Path) -> Callable[[dict[str, str]], Path]:
    """Write {relative path: source} into a fresh templates folder and return it."""

    def write(files: dict[str, str]) -> Path:
        root = tmp_path / "templates"
        for name, source in files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(source, encoding="utf-8")
        return root

    return write
