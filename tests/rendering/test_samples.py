"""Where templates and sample members come from: RETAIN_TEMPLATES_DIR, the warehouse (read-only), fixtures."""

from __future__ import annotations

import duckdb

from retain import config
from retain.rendering import check_templates
from retain.rendering.context import warehouse_members

from .conftest import FIXTURE_TEMPLATES


def test_templates_dir_defaults_to_templates_and_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("RETAIN_TEMPLATES_DIR", raising=False)
    assert config.templates_dir() == config.project_root() / "templates"
    monkeypatch.setenv("RETAIN_TEMPLATES_DIR", str(tmp_path))
    assert config.templates_dir() == tmp_path


def _warehouse(path):
    con = duckdb.connect(str(path))
    con.execute(
        """
        create table member_segments as select * from (values
            (1, 'Ana', 'Silva', 'pt-BR', 'BRL', 'BR', 42.5::decimal(18, 2), 'super', 'x@example.com'),
            (2, null, null, 'zh-CN', 'CNY', 'CN', null, 'ordinary', null),
            (3, '<i>Kai</i>', 'Müller', 'de-DE', 'EUR', 'DE', 10.0::decimal(18, 2), 'senior', null)
        ) t(member_id, first_name, last_name, locale, currency, country, monetary, member_tier, email)
        """
    )
    con.close()


def test_sample_members_come_from_the_warehouse_read_only(tmp_path):
    path = tmp_path / "wh.duckdb"
    _warehouse(path)
    rows = warehouse_members(path)
    assert {r["member_id"] for r in rows} == {1, 2, 3}
    assert "email" not in rows[0]  # only contract fields are read
    assert warehouse_members(path, member_id=3)[0]["first_name"] == "<i>Kai</i>"
    report = check_templates(FIXTURE_TEMPLATES, warehouse=path)
    assert report.ok, report.problems
    assert report.samples_from == f"warehouse {path}"


def test_without_a_warehouse_the_fixture_members_are_used(tmp_path):
    report = check_templates(FIXTURE_TEMPLATES, warehouse=tmp_path / "missing.duckdb")
    assert report.ok and report.samples_from == "fixtures"


def test_warehouse_samples_hold_a_member_of_every_tier(tmp_path):
    # Two members per locale would be all ordinary here; the only senior and super members are added.
    path = tmp_path / "wh.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(
            """
            create table member_segments as
            select i as member_id, 'en-US' as locale,
                   case i when 90 then 'senior' when 95 then 'super' else 'ordinary' end as member_tier
            from range(1, 100) t(i)
            """
        )
    rows = warehouse_members(path, per_locale=2)
    assert sorted((r["member_id"], r["member_tier"]) for r in rows) == [
        (1, "ordinary"),
        (2, "ordinary"),
        (90, "senior"),
        (95, "super"),
    ]
