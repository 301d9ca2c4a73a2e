"""Member rows for the dispatcher, by member id: addresses, consent flags, time zone, locale and the
fields templates use. The ledger never stores addresses, so prepare() and deliver() both read them here,
deliver() at send time (an address changed or consent withdrawn since enqueue is honoured).
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

MEMBER_TABLE = "member_segments"


class MemberSource(abc.ABC):
    """``get(member_ids) -> {member_id: row}``; ids the source does not know are left out."""

    @abc.abstractmethod
    def get(self, member_ids: Sequence[str]) -> dict[str, Mapping[str, Any]]: ...

    @abc.abstractmethod
    def samples(self, per_locale: int = 2) -> list[Mapping[str, Any]]:
        """A few real rows per locale (and one without a first name) for template validation."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the warehouse connection."""

    def __enter__(self) -> MemberSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def from_warehouse(path: Path | str | None = None, *, table: str = MEMBER_TABLE) -> WarehouseMembers:
        return WarehouseMembers(path, table=table)

    @staticmethod
    def from_rows(rows: Mapping[str, Mapping[str, Any]] | Iterable[Mapping[str, Any]]) -> DictMembers:
        return DictMembers(rows)


class DictMembers(MemberSource):
    """In memory (tests, small audiences): a dict ``{member_id: row}`` or rows with a ``member_id``."""

    def __init__(self, rows: Mapping[str, Mapping[str, Any]] | Iterable[Mapping[str, Any]]) -> None:
        if isinstance(rows, Mapping):
            self.rows = {str(k): v for k, v in rows.items()}
        else:
            self.rows = {str(r["member_id"]): r for r in rows}

    def get(self, member_ids: Sequence[str]) -> dict[str, Mapping[str, Any]]:
        return {m: self.rows[m] for m in member_ids if m in self.rows}

    def samples(self, per_locale: int = 2) -> list[Mapping[str, Any]]:
        seen: dict[Any, int] = {}
        out = []
        for row in self.rows.values():
            if seen.get(row.get("locale"), 0) < per_locale:
                seen[row.get("locale")] = seen.get(row.get("locale"), 0) + 1
                out.append(row)
        return out


class WarehouseMembers(MemberSource):
    """``member_segments`` in the DuckDB warehouse, opened read-only (several task processes may read
    while none writes), one query per batch of ids. The connection is opened on first use and reopened
    every ``reopen_every`` queries: DuckDB keeps every block it has read in its buffer cache, so over a
    1M-member run the whole table would stay in memory (+30 MB; the dispatcher's memory must stay flat)."""

    def __init__(
        self, path: Path | str | None = None, *, table: str = MEMBER_TABLE, reopen_every: int = 50
    ) -> None:
        if path is None:
            from retain.config import warehouse_path

            path = warehouse_path()
        self.path = Path(path)
        if not table.replace("_", "").replace(".", "").isalnum():
            raise ValueError(f"member table name {table!r} must be a plain identifier")
        self.table = table
        self._con: Any = None
        self._int_ids = False
        self.reopen_every = reopen_every
        self._queries = 0

    def _connect(self) -> Any:
        if self._con is None:
            import duckdb

            if not self.path.is_file():
                raise FileNotFoundError(
                    f"warehouse {self.path} not found (RETAIN_WAREHOUSE); build the marts first"
                )
            # An in-memory database of its own that attaches the warehouse read-only: its settings are
            # its own (a second open of the file in this process with other settings is refused), and
            # closing it drops its buffer cache. One thread and no async I/O threads: a lookup by a few
            # hundred ids needs no parallelism, and DuckDB 2.0 otherwise starts ten threads per open;
            # with a reopen every ``reopen_every`` queries, each new thread took a glibc malloc arena
            # that kept a few MB (the dispatcher's RSS grew with the run).
            self._con = duckdb.connect(":memory:", config={"threads": 1, "async_threads": 0})
            self._con.execute("ATTACH ? AS warehouse (READ_ONLY)", [str(self.path)])
            self._con.execute("USE warehouse")
            types = dict(
                self._con.execute(f"SELECT column_name, column_type FROM (DESCRIBE {self.table})").fetchall()
            )
            if "member_id" not in types:
                raise ValueError(f"{self.path}: table {self.table} has no member_id column")
            self._int_ids = any(t in types["member_id"].upper() for t in ("INT", "DECIMAL"))
        return self._con

    def get(self, member_ids: Sequence[str]) -> dict[str, Mapping[str, Any]]:
        if not member_ids:
            return {}
        self._queries += 1
        if self._queries % self.reopen_every == 0:
            self.close()
        con = self._connect()
        if self._int_ids:
            ids: list[Any] = [int(m) for m in member_ids if m.isdigit()]
            if not ids:
                return {}
        else:
            ids = list(member_ids)
        rel = con.execute(f"SELECT * FROM {self.table} WHERE member_id IN (SELECT UNNEST(?))", [ids])
        names = [d[0] for d in rel.description]
        out: dict[str, Mapping[str, Any]] = {}
        for values in rel.fetchall():
            row = dict(zip(names, values, strict=True))
            out[str(row["member_id"])] = row
        return out

    def samples(self, per_locale: int = 2) -> list[Mapping[str, Any]]:
        """Per locale a ``LIMIT`` query (DuckDB stops early; no sort or window over the whole table, so
        memory does not grow with the audience), plus one row with a null first name when there is one."""
        con = self._connect()
        columns = {r[0] for r in con.execute(f"SELECT column_name FROM (DESCRIBE {self.table})").fetchall()}
        queries: list[tuple[str, list[Any]]] = []
        if "locale" in columns:
            locales = [r[0] for r in con.execute(f"SELECT DISTINCT locale FROM {self.table}").fetchall()]
            for locale in locales:
                if locale is None:
                    queries.append((f"SELECT * FROM {self.table} WHERE locale IS NULL LIMIT ?", [per_locale]))
                else:
                    queries.append(
                        (f"SELECT * FROM {self.table} WHERE locale = ? LIMIT ?", [locale, per_locale])
                    )
        else:
            queries.append((f"SELECT * FROM {self.table} LIMIT ?", [per_locale]))
        if "first_name" in columns:
            queries.append((f"SELECT * FROM {self.table} WHERE first_name IS NULL LIMIT 1", []))
        out: list[Mapping[str, Any]] = []
        for sql, params in queries:
            rel = con.execute(sql, params)
            names = [d[0] for d in rel.description]
            out += [dict(zip(names, values, strict=True)) for values in rel.fetchall()]
        return out

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None
