"""Products for a message, from the warehouse: best sellers in the member's category, complementary
products (the same category and the categories most often bought in the same orders), or the consumables
about to run out.

Built for the send loop: one read-only connection per process, a few aggregate queries once into TEMP tables
(best sellers per category, co-purchased categories, each member's latest category), then a cheap lookup
per member, memoised. Read-only DuckDB connections may hold TEMP tables, so nothing is written to the
warehouse.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import date, timedelta
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import duckdb

log = logging.getLogger(__name__)

PER_CATEGORY = 12
CACHED_MEMBERS = 4096  # members whose product list is kept (see Recommender.__init__)
CO_CATEGORIES = 2
_CLEAN_LINES = """
    SELECT i.member_id, i.order_id, i.product_id, i.quantity, i.ordered_at, p.category
    FROM int_order_items_validated i
    JOIN int_products_validated p ON p.product_id = i.product_id AND p.quarantine_reason IS NULL
    WHERE i.is_paid AND i.quarantine_reason IS NULL AND i.order_quarantine_reason IS NULL
"""


class Recommender:
    """``products(member_id, kind)`` -> template-ready product dicts (name, url, image_url, price,
    currency). ``kind``: recommended | cross_sell | replenishment | none."""

    def __init__(self, warehouse: Path, as_of: date, shop_url: str, per_message: int = 4) -> None:
        self.warehouse = Path(warehouse)
        self.as_of = as_of
        self.shop_url = shop_url.rstrip("/")
        self.per_message = per_message
        self._con: duckdb.DuckDBPyConnection | None = None
        self._ready = False
        # A member's list is asked for once per message (email and SMS of one batch, prepare's samples):
        # a few thousand recent members are enough, and the cache must not grow with the audience. The
        # product dicts themselves are shared (``_catalogue``: at most one per catalogue row).
        self._cached = lru_cache(maxsize=CACHED_MEMBERS)(self._products)
        self._catalogue: dict[tuple[Any, ...], Mapping[str, Any]] = {}
        self._fx: dict[str, Decimal] | None = None

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def _connect(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            self._con = duckdb.connect(str(self.warehouse), read_only=True)
        if not self._ready:
            since = self.as_of - timedelta(days=365)
            con = self._con
            con.execute(
                f"""
                CREATE OR REPLACE TEMP TABLE rec_best AS
                WITH sold AS (
                    SELECT l.category, l.product_id, sum(l.quantity) AS units
                    FROM ({_CLEAN_LINES}) l
                    WHERE CAST(l.ordered_at AS DATE) BETWEEN ? AND ?
                    GROUP BY ALL
                )
                SELECT s.category, s.product_id, p.product_name, p.price, p.currency,
                       row_number() OVER (PARTITION BY s.category ORDER BY s.units DESC, s.product_id) AS rn,
                       row_number() OVER (ORDER BY s.units DESC, s.product_id) AS overall_rn
                FROM sold s JOIN int_products_validated p USING (product_id)
                WHERE p.quarantine_reason IS NULL
                QUALIFY rn <= {PER_CATEGORY} OR overall_rn <= {PER_CATEGORY}
                """,
                [since, self.as_of],
            )
            con.execute(
                f"""
                CREATE OR REPLACE TEMP TABLE rec_co AS
                WITH pairs AS (
                    SELECT a.category AS category, b.category AS other, count(DISTINCT a.order_id) AS orders
                    FROM ({_CLEAN_LINES}) a JOIN ({_CLEAN_LINES}) b
                      ON a.order_id = b.order_id AND a.category <> b.category
                    GROUP BY ALL
                )
                SELECT category, other FROM pairs
                QUALIFY row_number() OVER (PARTITION BY category ORDER BY orders DESC, other)
                    <= {CO_CATEGORIES}
                """
            )
            con.execute(
                f"""
                CREATE OR REPLACE TEMP TABLE rec_member AS
                SELECT CAST(member_id AS VARCHAR) AS member_id, arg_max(category, ordered_at) AS category,
                       list(DISTINCT product_id) FILTER (WHERE ordered_at = last_at) AS last_products
                FROM (
                    SELECT *, max(ordered_at) OVER (PARTITION BY member_id) AS last_at
                    FROM ({_CLEAN_LINES})
                )
                GROUP BY member_id
                """
            )
            self._ready = True
        return self._con

    def products(self, member_id: str, kind: str, currency: str | None = None) -> list[dict[str, Any]]:
        """The member's products, priced in ``currency`` (the member's) through the warehouse's fx rates
        (``int_fx_rates_validated``: amount in base = amount x rate_to_base), so a product card shows the
        same currency as the offer. A currency without a valid rate keeps the catalogue's price."""
        if kind == "none" or self.per_message == 0:
            return []
        return [self._priced(p, currency) for p in self._cached(str(member_id), kind)]

    def _rates(self) -> dict[str, Decimal]:
        if self._fx is None:
            rows = self._connect().execute(
                "SELECT currency, rate_to_base FROM int_fx_rates_validated WHERE quarantine_reason IS NULL"
            )
            self._fx = {str(c): Decimal(str(r)) for c, r in rows.fetchall() if r}
        return self._fx

    def convert(self, amount: Decimal, source: str, target: str) -> Decimal | None:
        """``amount`` in ``source`` expressed in ``target`` through the base currency; None when either
        has no valid rate."""
        if source == target:
            return amount
        rates = self._rates()
        if source not in rates or target not in rates:
            return None
        return amount * rates[source] / rates[target]

    def _priced(self, product: Mapping[str, Any], currency: str | None) -> dict[str, Any]:
        out = dict(product)
        price, listed = out.get("price"), out.get("currency")
        if price is None or not currency or currency == listed:
            return out
        converted = self.convert(price, str(listed), currency)
        if converted is None:
            return out
        out["price"] = converted.quantize(Decimal("0.01"))
        out["currency"] = currency
        return out

    def _product(self, row: tuple[Any, ...]) -> Mapping[str, Any]:
        found = self._catalogue.get(row)
        if found is None:
            product_id, name, price, currency = row
            found = self._catalogue[row] = {
                "name": name,
                "url": f"{self.shop_url}/p/{quote(str(product_id))}",
                "image_url": f"{self.shop_url}/img/{quote(str(product_id))}.jpg",
                "price": Decimal(str(price)) if price is not None else None,
                "currency": currency,
            }
        return found

    def _products(self, member_id: str, kind: str) -> tuple[Mapping[str, Any], ...]:
        con = self._connect()
        n = self.per_message
        if kind == "replenishment":
            rows = con.execute(
                """
                SELECT r.product_id, p.product_name, p.price, p.currency
                FROM member_replenishments r JOIN int_products_validated p USING (product_id)
                WHERE CAST(r.member_id AS VARCHAR) = ? AND r.runs_out_on >= ? AND p.quarantine_reason IS NULL
                ORDER BY r.runs_out_on, r.product_id LIMIT ?
                """,
                [member_id, self.as_of, n],
            ).fetchall()
            return tuple(self._product(r) for r in rows)
        member = con.execute(
            "SELECT category, last_products FROM rec_member WHERE member_id = ?", [member_id]
        ).fetchone()
        category, bought = (member[0], member[1] or []) if member else (None, [])
        if kind == "cross_sell" and category is not None:
            # The same category and its most co-purchased ones, minus what the last order already had.
            rows = con.execute(
                """
                SELECT product_id, product_name, price, currency FROM rec_best
                WHERE rn <= ? AND (category = ? OR category IN (SELECT other FROM rec_co WHERE category = ?))
                  AND NOT list_contains(?, product_id)
                ORDER BY rn, category = ? DESC, product_id LIMIT ?
                """,
                [PER_CATEGORY, category, category, list(bought), category, n],
            ).fetchall()
        else:
            rows = con.execute(
                """
                SELECT product_id, product_name, price, currency FROM rec_best
                WHERE (category = ? AND rn <= ?) OR overall_rn <= ?
                ORDER BY category IS NOT DISTINCT FROM ? DESC, coalesce(rn, 99), overall_rn LIMIT ?
                """,
                [category, PER_CATEGORY, PER_CATEGORY, category, n],
            ).fetchall()
        seen: set[Any] = set()
        out = []
        for r in rows:
            if r[0] not in seen:
                seen.add(r[0])
                out.append(self._product(r))
        return tuple(out)
