"""MemberSource: member rows by id from the DuckDB warehouse (read-only, batched) or from a dict."""

from __future__ import annotations

import duckdb
import pytest

from retain.dispatch import MemberSource


@pytest.fixture
def warehouse(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(
            "CREATE TABLE member_segments AS SELECT i AS member_id, 'm' || i || '@example.com' AS email, "
            "'+4915112345' || lpad(i::VARCHAR, 3, '0') AS phone_e164, i % 2 = 0 AS is_email_contactable, "
            "'Europe/Berlin' AS timezone FROM range(1, 1201) t(i)"
        )
    return path


def test_reads_rows_by_member_id_in_batches_read_only(warehouse):
    with MemberSource.from_warehouse(warehouse) as members:
        rows = members.get(["2", "3", "1200", "9999", "test:abc", "x"])
        assert sorted(rows) == ["1200", "2", "3"]
        assert rows["2"]["email"] == "m2@example.com" and rows["2"]["is_email_contactable"] is True
        assert rows["3"]["is_email_contactable"] is False
        assert len(members.get([str(i) for i in range(1, 1201)])) == 1200
        assert members.get([]) == {}
        # read-only: the same file can be opened read-only by another reader meanwhile
        other = duckdb.connect(str(warehouse), read_only=True)
        assert other.execute("SELECT count(*) FROM member_segments").fetchone() == (1200,)
        other.close()


def test_text_member_ids_work_too(tmp_path):
    path = tmp_path / "w.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE member_segments AS SELECT 'M' || i AS member_id FROM range(3) t(i)")
    with MemberSource.from_warehouse(path) as members:
        assert sorted(members.get(["M0", "M2", "M9"])) == ["M0", "M2"]


def test_missing_warehouse_or_table_is_a_clear_error(tmp_path, warehouse):
    with pytest.raises(FileNotFoundError, match="nowhere.duckdb not found"):
        MemberSource.from_warehouse(tmp_path / "nowhere.duckdb").get(["1"])
    with pytest.raises(duckdb.CatalogException, match="no_such_table"):
        MemberSource.from_warehouse(warehouse, table="no_such_table").get(["1"])
    with pytest.raises(ValueError, match="plain identifier"):
        MemberSource.from_warehouse(warehouse, table="x; DROP TABLE y")


def test_dict_source_for_tests():
    members = MemberSource.from_rows([{"member_id": 1, "email": "a@example.com"}])
    assert members.get(["1", "2"]) == {"1": {"member_id": 1, "email": "a@example.com"}}


def test_samples_for_template_validation_are_a_few_rows_per_locale(tmp_path):
    path = tmp_path / "w.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(
            "CREATE TABLE member_segments AS SELECT i AS member_id, "
            "CASE WHEN i % 7 = 0 THEN NULL ELSE 'N' || i END AS first_name, "
            "['en-US', 'de-DE', 'zh-CN'][1 + i % 3] AS locale FROM range(1, 1001) t(i)"
        )
    with MemberSource.from_warehouse(path) as members:
        rows = members.samples(per_locale=2)
    assert sorted(r["locale"] for r in rows[:6]) == ["de-DE", "de-DE", "en-US", "en-US", "zh-CN", "zh-CN"]
    assert len(rows) == 7 and rows[-1]["first_name"] is None
    assert len(MemberSource.from_rows([{"member_id": i, "locale": "en-US"} for i in range(5)]).samples()) == 2


def test_connection_is_reopened_periodically_and_reads_stay_correct(warehouse, monkeypatch):
    opened = []
    real_connect = duckdb.connect
    monkeypatch.setattr(duckdb, "connect", lambda *a, **kw: opened.append(a) or real_connect(*a, **kw))
    members = MemberSource.from_warehouse(warehouse)
    members.reopen_every = 2
    for start in range(1, 1201, 100):
        assert len(members.get([str(i) for i in range(start, start + 100)])) == 100
    members.close()
    assert len(opened) == 7  # a fresh connection (and buffer cache) every other batch of the 12


def test_lookups_start_no_threads(warehouse):
    """DuckDB 2.0 starts a worker and eight async I/O threads per open database by default; the member
    source reopens its connection every few dozen batches, and each new thread took a malloc arena that
    kept memory (the 1M-message run's RSS grew). Lookups run on the caller's thread alone."""
    import os

    def threads() -> int:
        return len(os.listdir("/proc/self/task"))

    before = threads()
    members = MemberSource.from_warehouse(warehouse)
    members.reopen_every = 2
    for start in range(1, 1201, 200):
        assert len(members.get([str(i) for i in range(start, start + 200)])) == 200
        assert threads() == before
    members.close()
