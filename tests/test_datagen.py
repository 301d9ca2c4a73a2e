"""The sample-data generator keeps the landing contract, is reproducible, and looks like real shop data."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import duckdb
import pytest

from retain import datagen
from tests.conftest import AS_OF, SMALL_MEMBERS, SMALL_SEED, landing_connection

ROOT = Path(__file__).resolve().parents[1]

CLEAN_EMAIL = r"^[a-z0-9._%+-]+@[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}$"
PHONE_PATTERNS = {
    "CN": r"^(\+861[3-9]\d{9}|1[3-9]\d \d{4} \d{4})$",
    "US": r"^(\+1[2-9]\d{2}[2-9]\d{6}|\([2-9]\d{2}\) [2-9]\d{2}-\d{4})$",
    "DE": r"^(\+491[5-7]\d{9}|01[5-7]\d \d{8})$",
    "JP": r"^(\+81[789]0\d{8}|0[789]0-\d{4}-\d{4})$",
    "GB": r"^(\+447\d{9}|07\d{3} \d{6})$",
    "FR": r"^(\+33[67]\d{8}|0[67]( \d{2}){4})$",
    "SG": r"^(\+65[89]\d{7}|[89]\d{3} \d{4})$",
}
CONSUMABLE = {"skincare", "haircare", "supplements", "baby", "pet_food", "coffee"}

# Rows a staging layer would keep: one row per id, valid contact data, sane amounts, known currencies, past.
CLEAN_MEMBERS = f"""
    SELECT * FROM members
    WHERE member_id IN (SELECT member_id FROM members GROUP BY member_id HAVING count(*) = 1)
      AND regexp_full_match(email, '{CLEAN_EMAIL}')
      AND phone NOT IN {datagen.MALFORMED_PHONES!r}
"""
CLEAN_ORDERS = f"""
    SELECT * FROM orders
    WHERE order_id IN (SELECT order_id FROM orders GROUP BY order_id HAVING count(*) = 1)
      AND amount >= 0 AND ordered_at < DATE '{AS_OF}'
      AND currency IN (SELECT currency FROM fx_rates)
"""


def _contract() -> dict[str, list[tuple[str, str]]]:
    """Files -> [(column, type)] parsed from docs/data-contract.md, so the test follows the document."""
    contract: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in (ROOT / "docs" / "data-contract.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not re.fullmatch(r"[A-Z]+", cells[2]):
            continue
        current = cells[0] or current
        for column in cells[1].split(","):
            contract.setdefault(current, []).append((column.strip(), cells[2]))
    return contract


def _row_hashes(landing: Path) -> dict[str, tuple[int, str]]:
    con = landing_connection(landing)
    try:
        return {
            name: con.execute(
                f"SELECT count(*), md5(string_agg(md5(t::VARCHAR), '' ORDER BY file_row_number)) "
                f"FROM read_parquet('{landing / name}.parquet', file_row_number = true) t"
            ).fetchone()
            for name in datagen.FILES
        }
    finally:
        con.close()


def test_writes_exactly_the_contract_files_with_its_columns_and_types(small_landing: Path) -> None:
    contract = _contract()
    assert set(contract) == set(datagen.FILES)
    assert sorted(p.name for p in small_landing.iterdir()) == sorted(f"{n}.parquet" for n in datagen.FILES)
    con = landing_connection(small_landing)
    for name, columns in contract.items():
        described = con.execute(f"DESCRIBE {name}").fetchall()
        assert [(row[0], row[1]) for row in described] == columns, name
        assert con.execute(f"SELECT count(*) FROM {name}").fetchone()[0] > 0, name


def test_same_seed_members_and_as_of_give_identical_rows(small_landing: Path, tmp_path: Path) -> None:
    datagen.generate(tmp_path, SMALL_MEMBERS, seed=SMALL_SEED, as_of=AS_OF)
    assert _row_hashes(tmp_path) == _row_hashes(small_landing)


def test_a_different_seed_gives_different_data(small_landing: Path, tmp_path: Path) -> None:
    datagen.generate(tmp_path, SMALL_MEMBERS, seed=SMALL_SEED + 1, as_of=AS_OF)
    ours, theirs = _row_hashes(small_landing), _row_hashes(tmp_path)
    for name in ("members", "orders", "order_items", "events", "products"):
        assert ours[name] != theirs[name], name
    assert ours["fx_rates"] == theirs["fx_rates"]  # fixed reference rates, not random


def test_rerun_replaces_files_atomically_without_leaving_temporaries(tmp_path: Path) -> None:
    first = datagen.generate(tmp_path, 300, seed=1, as_of=AS_OF)
    second = datagen.generate(tmp_path, 600, seed=1, as_of=AS_OF)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}.parquet" for n in datagen.FILES)
    con = landing_connection(tmp_path)
    assert con.execute("SELECT count(*) FROM members").fetchone()[0] == second.row_counts["members"]
    assert second.row_counts["members"] > first.row_counts["members"]


def test_dirty_rows_have_the_documented_exact_counts(landing_db) -> None:
    def q(sql: str) -> int:
        return landing_db.execute(sql).fetchone()[0]

    members = q("SELECT count(DISTINCT member_id) FROM members")
    orders = q("SELECT count(DISTINCT order_id) FROM orders")
    events = q("SELECT count(*) FROM events")
    found = {
        "duplicate members": q("SELECT count(*) - count(DISTINCT member_id) FROM members"),
        "null emails": q("SELECT count(*) FROM members WHERE email IS NULL"),
        "malformed emails": q(
            f"SELECT count(*) FROM members WHERE NOT regexp_full_match(email, '{CLEAN_EMAIL}')"
        ),
        "unparseable phones": q(f"SELECT count(*) FROM members WHERE phone IN {datagen.MALFORMED_PHONES!r}"),
        "duplicate orders": q("SELECT count(*) - count(DISTINCT order_id) FROM orders"),
        "negative amounts": q("SELECT count(*) FROM orders WHERE amount < 0"),
        "future orders": q(f"SELECT count(*) FROM orders WHERE ordered_at >= DATE '{AS_OF}'"),
        "unknown currencies": q(
            "SELECT count(*) FROM orders WHERE currency NOT IN (SELECT currency FROM fx_rates)"
        ),
        "future events": q(f"SELECT count(*) FROM events WHERE occurred_at >= DATE '{AS_OF}'"),
    }
    count = datagen.dirty_count
    expected = {
        "duplicate members": count(datagen.DUPLICATE_MEMBER_SHARE, members),
        "null emails": count(datagen.NULL_EMAIL_SHARE, members),
        "malformed emails": count(datagen.MALFORMED_EMAIL_SHARE, members),
        "unparseable phones": count(datagen.UNPARSEABLE_PHONE_SHARE, members),
        "duplicate orders": count(datagen.DUPLICATE_ORDER_SHARE, orders),
        "negative amounts": count(datagen.NEGATIVE_AMOUNT_SHARE, orders),
        "future orders": count(datagen.FUTURE_ORDER_SHARE, orders),
        "unknown currencies": count(datagen.UNKNOWN_CURRENCY_SHARE, orders),
        "future events": count(datagen.FUTURE_EVENT_SHARE, events),
    }
    assert members == SMALL_MEMBERS
    assert found == expected
    assert min(expected.values()) >= 1  # every kind is present even in a small test set


def test_future_timestamps_are_clearly_in_the_future(landing_db) -> None:
    earliest = landing_db.execute(
        f"SELECT min(ordered_at) FROM orders WHERE ordered_at >= DATE '{AS_OF}'"
    ).fetchone()[0]
    assert earliest.date() >= date(2026, 7, 2)


def test_duplicate_member_rows_describe_the_same_person(landing_db) -> None:
    differing = landing_db.execute(
        """
        SELECT count(*) FROM (
            SELECT member_id FROM members GROUP BY member_id
            HAVING count(*) > 1 AND (count(DISTINCT email) > 1 OR count(DISTINCT signed_up_at) > 1
                                     OR count(DISTINCT country) > 1 OR count(DISTINCT last_name) > 1)
        )
        """
    ).fetchone()[0]
    assert differing == 0


def test_clean_orders_never_precede_the_member_sign_up(landing_db) -> None:
    early = landing_db.execute(
        f"""
        SELECT count(*) FROM ({CLEAN_ORDERS}) o
        JOIN (SELECT DISTINCT member_id, signed_up_at FROM members) m USING (member_id)
        WHERE o.ordered_at <= m.signed_up_at
        """
    ).fetchone()[0]
    orphans = landing_db.execute(
        "SELECT count(*) FROM orders WHERE member_id NOT IN (SELECT member_id FROM members)"
    ).fetchone()[0]
    assert (early, orphans) == (0, 0)


def test_clean_rows_lie_within_three_years_before_as_of(landing_db) -> None:
    start = datagen.history_start(AS_OF)
    (sign_min, sign_max), (order_min, order_max), (event_max,) = (
        landing_db.execute("SELECT min(signed_up_at), max(signed_up_at) FROM members").fetchone(),
        landing_db.execute(f"SELECT min(ordered_at), max(ordered_at) FROM ({CLEAN_ORDERS})").fetchone(),
        landing_db.execute(
            f"SELECT max(occurred_at) FROM events WHERE occurred_at < DATE '{AS_OF}' + 1"
        ).fetchone(),
    )
    assert (sign_min.date() - start).days <= 31 and sign_max.date() < AS_OF
    assert order_min.date() >= start and order_max.date() < AS_OF
    assert event_max.date() < AS_OF


def test_clean_order_currencies_have_fx_rates_and_match_the_member(landing_db) -> None:
    mismatched = landing_db.execute(
        f"""
        SELECT count(*) FROM ({CLEAN_ORDERS}) o
        JOIN (SELECT DISTINCT member_id, currency FROM members) m USING (member_id)
        WHERE o.currency <> m.currency OR o.currency NOT IN (SELECT currency FROM fx_rates)
        """
    ).fetchone()[0]
    assert mismatched == 0


def test_fx_rates_have_one_plausible_row_per_currency_with_cny_as_base(landing_db) -> None:
    rates = dict(landing_db.execute("SELECT currency, rate_to_base FROM fx_rates").fetchall())
    assert rates == {"CNY": 1.0, "USD": 7.2, "EUR": 7.8, "JPY": 0.048, "GBP": 9.1, "SGD": 5.3}
    member_currencies = {r[0] for r in landing_db.execute("SELECT DISTINCT currency FROM members").fetchall()}
    assert member_currencies == set(rates)


def test_every_country_has_a_consistent_locale_timezone_and_currency(landing_db) -> None:
    seen = landing_db.execute(
        "SELECT country, list(DISTINCT locale), list(DISTINCT currency), list(DISTINCT timezone) "
        "FROM members GROUP BY country"
    ).fetchall()
    expected = {m.country: m for m in datagen.MARKETS}
    assert {row[0] for row in seen} == set(expected) >= {"CN", "US", "DE", "JP", "GB", "FR", "SG"}
    for country, locales, currencies, zones in seen:
        market = expected[country]
        assert locales == [market.locale] and currencies == [market.currency], country
        assert set(zones) <= {z[0] for z in market.zones}, country
        assert market.locale.endswith("-" + country)


def test_clean_phones_and_emails_look_valid_for_the_country(landing_db) -> None:
    for country, pattern in PHONE_PATTERNS.items():
        bad = landing_db.execute(
            f"SELECT list(phone) FROM ({CLEAN_MEMBERS}) "
            "WHERE country = ? AND NOT regexp_full_match(phone, ?)",
            [country, pattern],
        ).fetchone()[0]
        assert not bad, (country, bad[:5])
    both_formats = landing_db.execute(
        f"SELECT count(*) FILTER (WHERE phone LIKE '+%'), count(*) FILTER (WHERE phone NOT LIKE '+%') "
        f"FROM ({CLEAN_MEMBERS})"
    ).fetchone()
    assert min(both_formats) > 0


def test_member_attributes_have_realistic_shares(landing_db) -> None:
    email_opt_in, sms_opt_in, no_birth, min_age, max_age = landing_db.execute(
        f"""
        SELECT avg(email_opt_in::INT), avg(sms_opt_in::INT), avg((birth_date IS NULL)::INT),
               min(date_diff('year', birth_date, DATE '{AS_OF}')),
               max(date_diff('year', birth_date, DATE '{AS_OF}'))
        FROM members
        """
    ).fetchone()
    assert 0.75 < email_opt_in < 0.85 and 0.55 < sms_opt_in < 0.65
    assert 0.02 < no_birth < 0.12
    assert min_age >= 18 and max_age <= 76  # date_diff counts year boundaries, not birthdays
    genders = {r[0] for r in landing_db.execute("SELECT DISTINCT gender FROM members").fetchall()}
    assert genders == {"female", "male", "other", "unknown"}


def test_orders_are_skewed_with_prospects_and_a_long_tail(landing_db) -> None:
    mean, median, p99, prospects = landing_db.execute(
        """
        WITH n AS (
            SELECT m.member_id, count(o.order_id) AS n
            FROM (SELECT DISTINCT member_id FROM members) m LEFT JOIN orders o USING (member_id)
            GROUP BY ALL
        )
        SELECT avg(n), median(n), quantile_disc(n, 0.99), avg((n = 0)::INT) FROM n
        """
    ).fetchone()
    assert 6 <= mean <= 14
    assert median <= 3
    assert p99 >= 5 * mean
    assert 0.1 < prospects < 0.35


def test_order_statuses_items_and_amounts_are_consistent(landing_db) -> None:
    shares = dict(
        landing_db.execute(
            "SELECT status, count(*) / sum(count(*)) OVER () FROM orders GROUP BY status"
        ).fetchall()
    )
    assert set(shares) == {"paid", "refunded", "cancelled"}
    assert 0.03 < shares["refunded"] < 0.07 and 0.015 < shares["cancelled"] < 0.045
    items_per_order, worst_gap = landing_db.execute(
        """
        SELECT avg(n), max(abs(abs(o.amount) - s)) FROM orders o
        JOIN (SELECT order_id, count(*) AS n, sum(quantity * unit_price) AS s FROM order_items GROUP BY 1)
            USING (order_id)
        """
    ).fetchone()
    assert 1.3 < items_per_order < 2.0
    assert worst_gap < 0.01
    assert (
        landing_db.execute(
            "SELECT count(*) FROM orders WHERE order_id NOT IN (SELECT order_id FROM order_items)"
        ).fetchone()[0]
        == 0
    )


def test_prices_follow_the_currency(landing_db) -> None:
    medians = dict(
        landing_db.execute(f"SELECT currency, median(amount) FROM ({CLEAN_ORDERS}) GROUP BY 1").fetchall()
    )
    assert 10 < medians["JPY"] / medians["CNY"] < 40
    assert 4 < medians["CNY"] / medians["USD"] < 15
    jpy_fraction = landing_db.execute(
        "SELECT count(*) FROM order_items i JOIN orders o USING (order_id) "
        "WHERE o.currency = 'JPY' AND i.unit_price <> round(i.unit_price)"
    ).fetchone()[0]
    assert jpy_fraction == 0


def test_products_have_categories_and_consumption_days_only_when_consumable(landing_db) -> None:
    rows = landing_db.execute(
        "SELECT category, count(*), count(consumption_days), list(DISTINCT consumption_days), "
        "count(DISTINCT name), min(price) FROM products GROUP BY category"
    ).fetchall()
    assert {r[0] for r in rows} >= CONSUMABLE | {"apparel", "electronics", "home"}
    for category, n, with_days, days, names, min_price in rows:
        assert names == n and min_price > 0, category
        if category in CONSUMABLE:
            assert with_days == n and set(days) <= {30, 45, 60, 90}, category
        else:
            assert with_days == 0, category
    assert datagen.product_count(SMALL_MEMBERS) == 200 and datagen.product_count(1_000_000) == 2000


def test_events_have_realistic_types_and_searches_have_no_product(landing_db) -> None:
    shares = dict(
        landing_db.execute(
            "SELECT event_type, count(*) / sum(count(*)) OVER () FROM events GROUP BY 1"
        ).fetchall()
    )
    assert set(shares) == {"view", "favorite", "add_to_cart", "search", "share", "review"}
    assert shares["view"] == max(shares.values()) and shares["review"] < 0.1
    bad_products = landing_db.execute(
        "SELECT count(*) FROM events WHERE (event_type = 'search') <> (product_id IS NULL) "
        "OR (product_id IS NOT NULL AND product_id NOT IN (SELECT product_id FROM products))"
    ).fetchone()[0]
    per_member = landing_db.execute("SELECT count(*) / count(DISTINCT member_id) FROM events").fetchone()[0]
    assert bad_products == 0 and per_member >= 3


@pytest.mark.parametrize("members", [0, -5])
def test_rejects_a_non_positive_member_count(tmp_path: Path, members: int) -> None:
    with pytest.raises(ValueError):
        datagen.generate(tmp_path, members)


def test_dirty_rows_are_the_lowest_hashes_whatever_the_candidate_threshold() -> None:
    con = duckdb.connect()
    datagen._macros(con, seed=5)
    con.execute("CREATE TABLE t AS SELECT range AS i FROM range(20000)")
    datagen._pick_dirty(con, "picked", "t", "i", rows=20000, wanted=37)
    full_sort = con.execute(
        "SELECT i, row_number() OVER (ORDER BY rh(i, 'picked'), i) - 1 AS r FROM t QUALIFY r < 37 ORDER BY r"
    ).fetchall()
    picked = con.execute("SELECT k, slot FROM picked ORDER BY slot").fetchall()
    assert picked == full_sort
    gaps = {b[0] - a[0] for a, b in zip(sorted(picked), sorted(picked)[1:], strict=False)}
    assert len(gaps) > 30  # scattered through the file, not evenly strided
