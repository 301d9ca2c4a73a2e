"""Campaign files: every problem is reported with the file, the field path and the reason."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from retain.campaigns.models import (
    CampaignFileError,
    _yml_catalog,
    load_all,
    load_catalog,
    parse_campaign,
)
from retain.cli import app

ROOT = Path(__file__).resolve().parents[2]
GOOD = """
description: test
channels: {email: win_back}
audience:
  filters:
    - {column: lifecycle_stage, op: in, value: [at_risk]}
"""


@pytest.fixture
def catalog():
    return load_catalog(use_warehouse=False)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.yml"
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path, catalog) -> dict[str, str]:
    with pytest.raises(CampaignFileError) as info:
        parse_campaign(path, catalog)
    assert info.value.file == path
    return {p.path: p.reason for p in info.value.problems}


def test_shipped_campaign_files_are_valid(catalog) -> None:
    result = load_all(ROOT / "campaigns", catalog=catalog)
    assert result.errors == []
    journeys = {n for n, c in result.campaigns.items() if c.kind == "journey"}
    assert journeys == {
        "welcome",
        "cross_sell",
        "replenishment",
        "win_back",
        "tier_upgrade",
        "birthday",
        "dormant_care",
    }
    assert [s.delay_days for s in result.campaigns["welcome"].steps] == [0, 3, 7]


def test_unknown_column_names_the_field_and_lists_the_real_columns(tmp_path: Path, catalog) -> None:
    path = write(tmp_path, "bad_col", GOOD.replace("lifecycle_stage", "lifecycle"))
    problems = problems_of(path, catalog)
    reason = problems["audience.filters.0.column"]
    assert "'lifecycle' is not a column of member_segments" in reason and "lifecycle_stage" in reason


def test_every_problem_is_reported_at_once(tmp_path: Path, catalog) -> None:
    text = """
description: test
channels: {email: no_such_template}
holdout_share: 0.9
surprise: 1
audience:
  model: orders
  filters:
    - {column: aov, op: between, value: [1]}
"""
    problems = problems_of(write(tmp_path, "many", text), catalog)
    assert "surprise" in problems and "Extra inputs are not permitted" in problems["surprise"]
    assert "holdout_share" in problems
    assert "between needs a list of two values" in problems["audience.filters.0"]
    text = text.replace("holdout_share: 0.9\n", "").replace("surprise: 1\n", "").replace("[1]", "[1, 2]")
    problems = problems_of(write(tmp_path, "refs", text), catalog)
    assert "'orders' is not an audience model" in problems["audience.model"]
    assert "template 'no_such_template' not found" in problems["channels.email"]


def test_name_must_match_file_and_ops_must_fit_columns(tmp_path: Path, catalog) -> None:
    text = GOOD.replace(
        "value: [at_risk]}", "value: [at_risk]}\n    - {column: country, op: within_days, value: 3}"
    )
    problems = problems_of(write(tmp_path, "ops", "name: other\n" + text), catalog)
    assert "differs from the file name 'ops'" in problems["name"]
    assert "within_days needs a date or timestamp column" in problems["audience.filters.1.op"]


def test_journey_rules(tmp_path: Path, catalog) -> None:
    text = """
description: j
kind: journey
entry: {type: transition, column: member_tier, to: [platinum]}
reentry: {rule: after_days}
steps: [{name: one}]
"""
    problems = problems_of(write(tmp_path, "j", text), catalog)
    assert "days is required with rule after_days" in problems["reentry"]
    problems = problems_of(write(tmp_path, "j2", text.replace("reentry: {rule: after_days}\n", "")), catalog)
    assert "step one has no channels" in problems[""]
    text2 = text.replace("reentry: {rule: after_days}\n", "channels: {sms: win_back}\n")
    problems = problems_of(write(tmp_path, "j3", text2), catalog)
    assert "'platinum' is not a value of member_tier" in problems["entry.to"]


LIFECYCLE = "prospect, reactivated, new, loyal, active, at_risk, dormant, churned"


def test_misspelled_filter_value_names_the_value_and_the_accepted_ones(tmp_path: Path, catalog) -> None:
    problems = problems_of(write(tmp_path, "typo", GOOD.replace("[at_risk]", "[dormant, at_rsik]")), catalog)
    assert problems == {
        "audience.filters.0.value": "'at_rsik' is not an accepted value of member_segments.lifecycle_stage "
        f"(accepted: {LIFECYCLE})"
    }


def test_correct_filter_values_pass(tmp_path: Path, catalog) -> None:
    text = GOOD + (
        "    - {column: member_tier, op: ne, value: ordinary}\n"
        "    - {column: r_score, op: in, value: [4, 5]}\n"
        "    - {column: r_score, op: gte, value: 0}\n"  # an order comparison, not a membership test
        "    - {column: age_band, op: eq, value: '18_24'}\n"
        "    - {column: country, op: eq, value: XX}\n"  # not an enumerated column
    )
    campaign = parse_campaign(write(tmp_path, "fine", text), catalog)
    assert len(campaign.audience.filters) == 6


@pytest.mark.parametrize(
    ("flt", "reason"),
    [
        ("{column: member_tier, op: eq, value: gold}", "'gold' is not an accepted value of"),
        ("{column: member_tier, op: ne, value: Super}", "'Super' is not an accepted value of"),
        (
            "{column: clv_tier, op: not_in, value: [hi, low, medium]}",
            "'hi', 'medium' are not accepted values",
        ),
        ("{column: r_score, op: eq, value: 6}", "6 is not an accepted value of member_segments.r_score"),
    ],
)
def test_every_literal_op_is_checked(tmp_path: Path, catalog, flt: str, reason: str) -> None:
    problems = problems_of(write(tmp_path, "ops", GOOD + f"    - {flt}\n"), catalog)
    assert list(problems) == ["audience.filters.1.value"]
    assert reason in problems["audience.filters.1.value"]
    assert "(accepted: " in problems["audience.filters.1.value"]


JOURNEY = """
description: j
kind: journey
audience: {model: member_replenishments, filters: [{column: is_upcoming, op: eq, value: true}]}
entry: {type: date, anchors: [{column: last_order_at, offset_days: 7}]}
exit:
  filters:
    - {column: lifecycle_stage, op: ne, value: dormant}
channels: {email: win_back}
steps: [{name: one}]
"""


def test_exit_filters_are_checked_on_member_segments(tmp_path: Path, catalog) -> None:
    # Exit filters read member_segments (retain.campaigns.audience), whatever the audience model.
    assert parse_campaign(write(tmp_path, "j", JOURNEY), catalog).exit.filters[0].value == "dormant"
    problems = problems_of(
        write(tmp_path, "j2", JOURNEY.replace("value: dormant", "value: dormnat")), catalog
    )
    assert problems == {
        "exit.filters.0.value": "'dormnat' is not an accepted value of member_segments.lifecycle_stage "
        f"(accepted: {LIFECYCLE})"
    }


def test_accepted_values_come_from_the_warehouse_catalog_too(tmp_path: Path) -> None:
    import duckdb

    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("create table member_segments (member_id bigint, lifecycle_stage varchar)")
    catalog = load_catalog(warehouse=path)
    assert catalog.source == "warehouse warehouse.duckdb"
    assert parse_campaign(write(tmp_path, "ok", GOOD), catalog)
    problems = problems_of(write(tmp_path, "typo", GOOD.replace("at_risk", "at_rsik")), catalog)
    assert "'at_rsik' is not an accepted value" in problems["audience.filters.0.value"]


def test_accepted_values_in_either_yml_syntax(tmp_path: Path) -> None:
    marts = tmp_path / "models" / "marts"
    marts.mkdir(parents=True)
    (marts / "member_segments.yml").write_text(
        """
models:
  - name: member_segments
    columns:
      - name: member_tier
        data_tests:
          - not_null
          - accepted_values:
              arguments:
                values: [super, senior, ordinary]
      - name: clv_tier
        tests:
          - accepted_values:
              values: [high, low]
      - name: country
""",
        encoding="utf-8",
    )
    columns, segments, accepted = _yml_catalog(tmp_path)
    assert accepted == {
        "member_segments": {"member_tier": ("super", "senior", "ordinary"), "clv_tier": ("high", "low")}
    }
    assert segments["senior"] == "member_tier" and segments["low"] == "clv_tier"
    assert set(columns["member_segments"]) == {"member_tier", "clv_tier", "country"}


def test_cli_validate_names_the_file_field_and_value(tmp_path: Path) -> None:
    write(tmp_path, "typo", GOOD.replace("at_risk", "at_rsik"))
    result = CliRunner().invoke(app, ["campaigns", "validate", "--dir", str(tmp_path), "--offline"])
    assert result.exit_code == 1
    assert "typo.yml: audience.filters.0.value: 'at_rsik' is not an accepted value" in result.output
    assert f"(accepted: {LIFECYCLE})" in result.output


def test_cli_validate_fails_listing_every_bad_file(tmp_path: Path) -> None:
    for path in (ROOT / "campaigns").glob("*.yml"):
        shutil.copy(path, tmp_path / path.name)
    write(tmp_path, "broken_one", GOOD.replace("win_back", "nope"))
    write(tmp_path, "broken_two", "description: x\nchannels: {email: win_back}\npriority: high\n")
    result = CliRunner().invoke(app, ["campaigns", "validate", "--dir", str(tmp_path), "--offline"])
    assert result.exit_code == 1
    out = result.output
    assert "2 invalid file(s)" in out
    assert "broken_one.yml: channels.email: template 'nope' not found" in out
    assert "broken_two.yml: priority: Input should be a valid integer" in out
    assert "ok   spring_sale" in out


def test_cli_validate_passes_on_the_shipped_files() -> None:
    result = CliRunner().invoke(app, ["campaigns", "validate", "--dir", str(ROOT / "campaigns"), "--offline"])
    assert result.exit_code == 0, result.output
    assert "All 8 campaign file(s) valid." in result.output
