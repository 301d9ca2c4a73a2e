"""Campaign files (``campaigns/<name>.yml``) as pydantic models, and their checks against the warehouse.

A file is checked in two passes, and every problem of both is reported with the file, the field path and
the reason (``CampaignFileError``):

1. structure (pydantic, ``extra="forbid"``): types, ranges, value shapes of each filter operator;
2. references: the audience model is an allowed mart, every filter column is one of its real columns (from
   the warehouse when it can be opened, else from the mart's dbt yml), a filter that compares an enumerated
   column (an ``accepted_values`` test in the mart's yml) with literal values uses accepted values only, a
   named segment is a known value of a segment column, every template exists under ``templates/``.

Filters are data (column, operator, value), never SQL: ``retain.campaigns.audience`` turns them into a query
with identifiers taken only from the checked column list and values only as bound parameters.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, time
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SLUG = r"^[a-z][a-z0-9_]{0,62}$"
_SLUG_RE = re.compile(SLUG)
#: Marts an audience may read. One row per member (member_segments) or per member x product.
AUDIENCE_MODELS: tuple[str, ...] = ("member_segments", "member_replenishments")
#: Columns whose accepted values are "named segments" (``audience.segment: dormant``).
SEGMENT_COLUMNS: tuple[str, ...] = ("rfm_segment", "lifecycle_stage", "member_tier", "clv_tier")
TIERS = ("super", "senior", "ordinary")
CHANNEL_NAMES = ("email", "sms")
#: The transitions a journey can be entered on (columns versioned by the member_segment_history snapshot).
HISTORY_COLUMNS = ("rfm_segment", "lifecycle_stage", "member_tier")

Op = Literal[
    "eq",
    "ne",
    "in",
    "not_in",
    "gt",
    "gte",
    "lt",
    "lte",
    "between",
    "is_null",
    "not_null",
    "within_days",
    "days_ago",
]
Scalar = str | int | float | bool | date
Share = Annotated[float, Field(ge=0, le=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Filter(_Strict):
    """``column op value``. ``within_days N``: the date/timestamp column is on one of the N days up to the
    as-of date (0 = that day); ``days_ago N``: it is exactly N days before it."""

    column: str = Field(pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    op: Op
    value: Any = None

    @model_validator(mode="after")
    def _value_fits_op(self) -> Filter:
        op, value = self.op, self.value
        if op in ("is_null", "not_null"):
            if value is not None:
                raise ValueError(f"{op} takes no value")
        elif op in ("in", "not_in"):
            if not isinstance(value, list) or not value:
                raise ValueError(f"{op} needs a non-empty list of values")
            if not all(_is_scalar(v) for v in value):
                raise ValueError(f"{op} values must be strings, numbers, booleans or dates")
        elif op == "between":
            if not isinstance(value, list) or len(value) != 2 or not all(_is_scalar(v) for v in value):
                raise ValueError("between needs a list of two values [low, high]")
        elif op in ("within_days", "days_ago"):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{op} needs a whole number of days >= 0")
        elif not _is_scalar(value):
            raise ValueError(f"{op} needs one value (string, number, boolean or date)")
        return self


def _is_scalar(value: Any) -> bool:
    return value is not None and isinstance(value, str | int | float | bool | date)


class Audience(_Strict):
    model: str = "member_segments"
    segment: str | None = None
    filters: list[Filter] = []


class TierOffer(_Strict):
    amount: Decimal = Field(gt=0)
    threshold: Decimal = Field(default=Decimal(0), ge=0)


class CodeRule(_Strict):
    """One code per member: ``<prefix>-<length hex chars of a hash of member and campaign>``."""

    prefix: str = Field(pattern=r"^[A-Z0-9]{1,12}$")
    length: int = Field(default=8, ge=6, le=16)


class Offer(_Strict):
    """A coupon: a fixed ``code`` or a per-member ``code_rule``; amount and threshold by member tier (tiers
    not listed get ``default``, or no offer); valid ``expiry_days`` days. With ``currency`` the amounts
    are in that currency and a member who pays in another gets them converted at the warehouse's fx
    rates, rounded to whole units; without it they are read as the member's own currency."""

    code: str | None = Field(default=None, pattern=r"^[A-Z0-9_-]{3,32}$")
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    code_rule: CodeRule | None = None
    by_tier: dict[Literal["super", "senior", "ordinary"], TierOffer] = {}
    default: TierOffer | None = None
    expiry_days: int = Field(default=14, ge=1, le=365)

    @model_validator(mode="after")
    def _one_code_and_some_amount(self) -> Offer:
        if (self.code is None) == (self.code_rule is None):
            raise ValueError("give exactly one of code (a fixed coupon code) or code_rule (one per member)")
        if not self.by_tier and self.default is None:
            raise ValueError("give by_tier amounts, a default amount, or both")
        return self

    def terms_for(self, tier: object) -> TierOffer | None:
        """The member tier's amount and threshold, else the default, else None (no offer)."""
        return self.by_tier.get(tier) if tier in self.by_tier else self.default  # type: ignore[call-overload]

    def code_for(self, campaign: str, member_id: object) -> str:
        """The fixed code, or the member's own code of ``code_rule`` (a hash of campaign and member)."""
        if self.code is not None:
            return self.code
        rule = self.code_rule
        assert rule is not None  # the validator requires code or code_rule
        digest = hashlib.sha256(f"coupon\x1f{campaign}\x1f{member_id}".encode()).hexdigest()
        return f"{rule.prefix}-{digest[: rule.length].upper()}"


class Window(_Strict):
    """A time-of-day range in the member's time zone (wraps midnight when start > end)."""

    start: time
    end: time

    @model_validator(mode="after")
    def _not_empty(self) -> Window:
        if self.start == self.end:
            raise ValueError("start and end are equal: the window would be empty")
        return self


class QuietHoursSpec(_Strict):
    email: Window | None = None
    sms: Window | None = Field(default_factory=lambda: Window(start=time(21, 0), end=time(9, 0)))


class FrequencyCapSpec(_Strict):
    per_day: int = Field(default=1, ge=1)
    per_7_days: int = Field(default=3, ge=1)


Channels = dict[Literal["email", "sms"], str]


class Variant(_Strict):
    """An A/B arm: a share of the audience by ``weight``; may override the templates (a subject test is two
    templates that differ in ``subject.j2``) or the offer."""

    name: str = Field(pattern=SLUG)
    weight: float = Field(gt=0)
    channels: Channels | None = None
    offer: Offer | None = None
    no_offer: bool = False

    @model_validator(mode="after")
    def _offer_xor_no_offer(self) -> Variant:
        if self.no_offer and self.offer is not None:
            raise ValueError("give offer or no_offer, not both")
        return self


class DateAnchor(_Strict):
    column: str = Field(pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    offset_days: int = Field(default=0, ge=-3650, le=3650)


class DateEntry(_Strict):
    """Entered on the earliest of the anchor dates (each a date column plus ``offset_days``)."""

    type: Literal["date"]
    anchors: list[DateAnchor] = Field(min_length=1)


class BirthdayEntry(_Strict):
    """Entered on the member's birthday in their own time zone (29 February: 28 February in other years)."""

    type: Literal["birthday"]
    column: str = "birth_date"


class TransitionEntry(_Strict):
    """Entered when ``member_segment_history`` shows the column changing to one of ``to`` (from one of
    ``from_values`` when given); entered on the as-of date of the run that saw the change."""

    type: Literal["transition"]
    column: Literal["rfm_segment", "lifecycle_stage", "member_tier"]
    to: list[str] = Field(min_length=1)
    from_values: list[str] | None = Field(default=None, alias="from")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


Entry = Annotated[DateEntry | BirthdayEntry | TransitionEntry, Field(discriminator="type")]


class Exit(_Strict):
    """A member leaves the journey (later steps skip them, reason ``exited``) when converted (a paid order
    after the entry day) or when any of ``filters`` holds."""

    converted: bool = False
    filters: list[Filter] = []


class Reentry(_Strict):
    """``never``: one entry per member, ever; ``after_days``: not within ``days`` of a previous entry's
    message; ``always``: every time the entry criteria hold."""

    rule: Literal["never", "after_days", "always"] = "after_days"
    days: int | None = Field(default=None, ge=1, le=3650)

    @model_validator(mode="after")
    def _days_iff_after_days(self) -> Reentry:
        if (self.rule == "after_days") != (self.days is not None):
            raise ValueError("days is required with rule after_days and only then")
        return self


class Step(_Strict):
    name: str = Field(pattern=SLUG)
    delay_days: int = Field(default=0, ge=0, le=365)
    channels: Channels | None = None
    offer: Offer | None = None
    no_offer: bool = False


class Campaign(_Strict):
    name: str = Field(pattern=SLUG)
    description: str = Field(min_length=1)
    kind: Literal["manual", "journey"] = "manual"
    audience: Audience = Audience()
    channels: Channels | None = None
    channel_strategy: Literal["first_contactable", "all"] = "first_contactable"
    offer: Offer | None = None
    products: Literal["none", "recommended", "cross_sell", "replenishment"] = "recommended"
    variants: list[Variant] = []
    holdout_share: float = Field(default=0.0, ge=0, le=0.5)
    pilot_share: float | None = Field(default=None, gt=0, lt=1)
    frequency_cap_class: Literal["marketing", "transactional"] = "marketing"
    frequency_cap: FrequencyCapSpec | None = None
    priority: int = Field(default=50, ge=0, le=1000)
    send_window: Window | None = None
    quiet_hours: QuietHoursSpec = QuietHoursSpec()
    attribution_window_days: int = Field(default=7, ge=1, le=90)
    start_date: date | None = None
    end_date: date | None = None
    max_sms_segments: int = Field(default=2, ge=1, le=10)
    default_locale: str = Field(default="en-US", pattern=r"^[a-z]{2,3}(-[A-Z]{2})?$")
    # journeys only
    entry: Entry | None = None
    exit: Exit = Exit()
    reentry: Reentry = Reentry(rule="never")
    catch_up_days: int = Field(default=1, ge=0, le=14)
    steps: list[Step] = []

    @field_validator("variants")
    @classmethod
    def _unique_variant_names(cls, variants: list[Variant]) -> list[Variant]:
        names = [v.name for v in variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names must be unique: {names}")
        if len(variants) == 1:
            raise ValueError("one variant is no test: give two or more, or none")
        return variants

    @field_validator("steps")
    @classmethod
    def _unique_step_names(cls, steps: list[Step]) -> list[Step]:
        names = [s.name for s in steps]
        if len(set(names)) != len(names):
            raise ValueError(f"step names must be unique: {names}")
        return steps

    @model_validator(mode="after")
    def _kind_rules(self) -> Campaign:
        if self.start_date and self.end_date and self.end_date < self.start_date:
            raise ValueError("end_date is before start_date")
        if self.frequency_cap_class == "transactional" and self.frequency_cap is not None:
            raise ValueError("a transactional campaign has no frequency cap: remove frequency_cap")
        if self.send_window is not None and "quiet_hours" in self.model_fields_set:
            raise ValueError("give send_window or quiet_hours, not both (a send window sets the quiet hours)")
        if self.kind == "journey":
            if self.entry is None:
                raise ValueError("a journey needs entry (how members enter it)")
            if not self.steps:
                raise ValueError("a journey needs at least one step")
            for step in self.steps:
                if not (step.channels or self.channels):
                    raise ValueError(f"step {step.name} has no channels and the journey has no default")
        else:
            if self.steps or self.entry is not None:
                raise ValueError("entry and steps are for kind: journey")
            if not self.channels:
                raise ValueError("channels: give at least one of email / sms with its template")
        return self

    # -- what the runner reads -------------------------------------------------------------------

    @property
    def ledger_name(self) -> str:
        """The campaign name in the ledger: the file name, ``journey:<name>`` for journeys."""
        return f"journey:{self.name}" if self.kind == "journey" else self.name

    @property
    def is_marketing(self) -> bool:
        return self.frequency_cap_class == "marketing"

    def step_list(self) -> list[Step]:
        """Manual campaigns have one implicit step, ``message``."""
        return self.steps if self.kind == "journey" else [Step(name="message")]

    def channels_for(self, step: Step, variant: Variant | None = None) -> dict[str, str]:
        base = dict(step.channels or self.channels or {})
        if variant is not None and variant.channels:
            base.update(variant.channels)
        return base

    def offer_for(self, step: Step, variant: Variant | None = None) -> Offer | None:
        if variant is not None and (variant.no_offer or variant.offer is not None):
            return None if variant.no_offer else variant.offer
        if step.no_offer:
            return None
        return step.offer or self.offer

    def effective_quiet_hours(self) -> dict[str, Window | None]:
        if self.send_window is not None:
            closed = Window(start=self.send_window.end, end=self.send_window.start)
            return {"email": closed, "sms": closed}
        return {"email": self.quiet_hours.email, "sms": self.quiet_hours.sms}

    def all_filters(self) -> list[tuple[str, str, Filter]]:
        """Every filter with its field path and the mart it is evaluated on, for the column checks: audience
        filters on the audience model, exit filters on member_segments (as ``retain.campaigns.audience``
        builds them)."""
        out = [(f"audience.filters.{i}", self.audience.model, f) for i, f in enumerate(self.audience.filters)]
        out += [(f"exit.filters.{i}", "member_segments", f) for i, f in enumerate(self.exit.filters)]
        return out

    def all_templates(self) -> list[tuple[str, str, str]]:
        """(field path, channel, template) for every template the file names."""
        out: list[tuple[str, str, str]] = []
        for ch, tpl in (self.channels or {}).items():
            out.append((f"channels.{ch}", ch, tpl))
        for i, step in enumerate(self.steps):
            for ch, tpl in (step.channels or {}).items():
                out.append((f"steps.{i}.channels.{ch}", ch, tpl))
        for i, variant in enumerate(self.variants):
            for ch, tpl in (variant.channels or {}).items():
                out.append((f"variants.{i}.channels.{ch}", ch, tpl))
        return out


# --------------------------------------------------------------------------------------------------
# Errors


@dataclass(frozen=True)
class Problem:
    path: str  # dotted field path, "" for the whole file
    reason: str

    def __str__(self) -> str:
        return f"{self.path or '(file)'}: {self.reason}"


@dataclass
class CampaignFileError(Exception):
    """A campaign file that cannot be used: every problem, each with its field path and reason."""

    file: Path
    problems: list[Problem] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"{self.file}: {len(self.problems)} problem(s)"]
        lines += [f"  {self.file.name}: {p}" for p in self.problems]
        return "\n".join(lines)


def _loc(loc: Iterable[Any]) -> str:
    return ".".join(str(part) for part in loc if not str(part).startswith(("function-", "tagged-union")))


# --------------------------------------------------------------------------------------------------
# Catalog: what columns each allowed mart has, and the named segments


@dataclass(frozen=True)
class Catalog:
    """Columns (name -> DuckDB type, or None when only the dbt yml was read) per allowed audience model,
    the named segments (value -> column), and the enumerated columns' accepted values per model (from the
    ``accepted_values`` data tests of the mart's dbt yml, whichever source the columns came from).
    ``source`` says where the columns came from."""

    columns: Mapping[str, Mapping[str, str | None]]
    segments: Mapping[str, str]
    source: str
    accepted: Mapping[str, Mapping[str, tuple[Any, ...]]] = field(default_factory=dict)

    def model_columns(self, model: str) -> Mapping[str, str | None]:
        return self.columns.get(model, {})

    def accepted_values(self, model: str, column: str) -> tuple[Any, ...] | None:
        """The values the mart's yml accepts in ``column`` (None: not an enumerated column)."""
        return self.accepted.get(model, {}).get(column)


def _accepted_values(column: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """The ``accepted_values`` of a dbt yml column: dbt 1.10+ ``{arguments: {values: [...]}}`` or the older
    ``{values: [...]}`` directly, under ``data_tests`` (or the older ``tests``)."""
    for key in ("data_tests", "tests"):
        for test in column.get(key) or []:
            if isinstance(test, dict) and isinstance(test.get("accepted_values"), dict):
                spec = test["accepted_values"]
                values = (spec.get("arguments") or {}).get("values", spec.get("values"))
                if isinstance(values, list) and values:
                    return tuple(values)
    return None


def _yml_catalog(
    dbt_project_dir: Path,
) -> tuple[dict[str, dict[str, str | None]], dict[str, str], dict[str, dict[str, tuple[Any, ...]]]]:
    columns: dict[str, dict[str, str | None]] = {}
    segments: dict[str, str] = {}
    accepted: dict[str, dict[str, tuple[Any, ...]]] = {}
    for model in AUDIENCE_MODELS:
        path = dbt_project_dir / "models" / "marts" / f"{model}.yml"
        if not path.is_file():
            continue
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for entry in doc.get("models", []):
            if entry.get("name") != model:
                continue
            cols = columns.setdefault(model, {})
            for col in entry.get("columns", []):
                cols[col["name"]] = None
                values = _accepted_values(col)
                if values is None:
                    continue
                accepted.setdefault(model, {})[col["name"]] = values
                if model == "member_segments" and col["name"] in SEGMENT_COLUMNS:
                    for value in values:
                        segments[str(value)] = col["name"]
    return columns, segments, accepted


def load_catalog(*, use_warehouse: bool = True, warehouse: Path | None = None) -> Catalog:
    """The audience models' columns: the warehouse's real columns and types when ``use_warehouse`` and the
    file opens read-only, else the dbt yml of each mart (DAG parsing never opens the warehouse)."""
    from retain import config

    columns, segments, accepted = _yml_catalog(config.dbt_project_dir())
    if not use_warehouse:
        return Catalog(columns, segments, "dbt yml", accepted)
    path = warehouse or config.warehouse_path()
    if not path.is_file():
        return Catalog(columns, segments, "dbt yml", accepted)
    import duckdb

    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error:
        return Catalog(columns, segments, "dbt yml", accepted)
    try:
        rows = con.execute(
            "select table_name, column_name, data_type from information_schema.columns "
            "where table_schema = 'main' and table_name in (select unnest(?::varchar[]))",
            [list(AUDIENCE_MODELS)],
        ).fetchall()
    finally:
        con.close()
    real: dict[str, dict[str, str | None]] = {}
    for table, column, dtype in rows:
        real.setdefault(table, {})[column] = dtype
    if not real:
        return Catalog(columns, segments, "dbt yml", accepted)
    merged = {m: real.get(m, columns.get(m, {})) for m in AUDIENCE_MODELS if m in real or m in columns}
    return Catalog(merged, segments, f"warehouse {path.name}", accepted)


# --------------------------------------------------------------------------------------------------
# Loading and checking

_TEMPORAL = ("DATE", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "TIMESTAMP_NS", "TIMESTAMP_S", "TIMESTAMP_MS")


def _is_temporal(name: str, dtype: str | None) -> bool:
    if dtype is not None:
        return dtype.upper() in _TEMPORAL
    return name.endswith(("_at", "_date", "_on"))


#: Operators that compare the column with literal values for (in)equality: on an enumerated column every
#: value must be an accepted one (a typo would otherwise just match nobody, or everybody for ne/not_in).
_LITERAL_OPS = ("eq", "ne", "in", "not_in")


def _value_key(value: Any) -> str:
    """Compare filter values with yml values as the SQL would: ``5``, ``5.0`` and ``"5"`` alike."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _check_filter(
    path: str, flt: Filter, cols: Mapping[str, str | None], model: str, catalog: Catalog
) -> list[Problem]:
    if flt.column not in cols:
        known = ", ".join(sorted(cols)) or "none"
        return [Problem(f"{path}.column", f"{flt.column!r} is not a column of {model} (columns: {known})")]
    if flt.op in ("within_days", "days_ago") and not _is_temporal(flt.column, cols[flt.column]):
        return [Problem(f"{path}.op", f"{flt.op} needs a date or timestamp column; {flt.column} is not one")]
    allowed = catalog.accepted_values(model, flt.column)
    if allowed is not None and flt.op in _LITERAL_OPS:
        keys = {_value_key(v) for v in allowed}
        values = flt.value if isinstance(flt.value, list) else [flt.value]
        bad = [v for v in values if _value_key(v) not in keys]
        if bad:
            listed = ", ".join(repr(v) for v in bad)
            verb = "is not an accepted value" if len(bad) == 1 else "are not accepted values"
            return [
                Problem(
                    f"{path}.value",
                    f"{listed} {verb} of {model}.{flt.column} "
                    f"(accepted: {', '.join(str(v) for v in allowed)})",
                )
            ]
    return []


def check_references(
    campaign: Campaign, catalog: Catalog, templates_dir: Path | None = None
) -> list[Problem]:
    """Problems with what the file refers to: model, columns, segment, templates, journey anchors."""
    from retain import config

    problems: list[Problem] = []
    model = campaign.audience.model
    if model not in AUDIENCE_MODELS:
        allowed = ", ".join(AUDIENCE_MODELS)
        problems.append(Problem("audience.model", f"{model!r} is not an audience model (allowed: {allowed})"))
        cols: Mapping[str, str | None] = {}
    else:
        cols = catalog.model_columns(model)
        if not cols:
            problems.append(Problem("audience.model", f"no columns known for {model} ({catalog.source})"))
    for path, filter_model, flt in campaign.all_filters():
        filter_cols = cols if filter_model == model else catalog.model_columns(filter_model)
        if filter_cols:
            problems += _check_filter(path, flt, filter_cols, filter_model, catalog)
    seg = campaign.audience.segment
    if seg is not None and seg not in catalog.segments:
        known = ", ".join(sorted(catalog.segments))
        problems.append(Problem("audience.segment", f"{seg!r} is not a named segment (known: {known})"))
    entry = campaign.entry
    member_cols = catalog.model_columns("member_segments")
    if isinstance(entry, DateEntry):
        for i, anchor in enumerate(entry.anchors):
            if anchor.column not in member_cols or not _is_temporal(
                anchor.column, member_cols[anchor.column]
            ):
                problems.append(
                    Problem(
                        f"entry.anchors.{i}.column",
                        f"{anchor.column!r} is not a date column of member_segments",
                    )
                )
    elif isinstance(entry, BirthdayEntry) and entry.column not in member_cols:
        problems.append(Problem("entry.column", f"{entry.column!r} is not a column of member_segments"))
    elif isinstance(entry, TransitionEntry):
        valid = {v for v, c in catalog.segments.items() if c == entry.column}
        for key, values in (("to", entry.to), ("from", entry.from_values or [])):
            for value in values:
                if valid and value not in valid:
                    problems.append(
                        Problem(
                            f"entry.{key}", f"{value!r} is not a value of {entry.column} ({sorted(valid)})"
                        )
                    )
    tdir = templates_dir or config.templates_dir()
    for path, channel, template in campaign.all_templates():
        found = (
            (tdir / "email" / template / "subject.j2").is_file()
            if channel == "email"
            else (tdir / "sms" / f"{template}.j2").is_file()
        )
        if not found:
            where = f"email/{template}/" if channel == "email" else f"sms/{template}.j2"
            problems.append(Problem(path, f"template {template!r} not found ({where} under {tdir})"))
    return problems


def parse_campaign(path: Path, catalog: Catalog | None = None, templates_dir: Path | None = None) -> Campaign:
    """Read and check one file; raise ``CampaignFileError`` listing every problem."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise CampaignFileError(path, [Problem("", f"cannot read YAML: {exc}")]) from None
    if not isinstance(raw, dict):
        raise CampaignFileError(path, [Problem("", "the file must be a mapping of fields")])
    stem = path.stem
    problems: list[Problem] = []
    if not _SLUG_RE.match(stem):
        problems.append(Problem("", f"file name {stem!r} must be lower-case letters, digits and _"))
    if "name" in raw and raw["name"] != stem:
        problems.append(Problem("name", f"{raw['name']!r} differs from the file name {stem!r}"))
    data = {**raw, "name": stem}
    try:
        campaign = Campaign.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(Problem(_loc(err["loc"]), msg))
        raise CampaignFileError(path, problems) from None
    problems += check_references(campaign, catalog or load_catalog(), templates_dir)
    if problems:
        raise CampaignFileError(path, problems)
    return campaign


def campaign_files(directory: Path | None = None) -> list[Path]:
    """``*.yml`` / ``*.yaml`` in the campaigns folder; names starting with ``_`` are settings."""
    from retain import config

    folder = directory or config.campaigns_dir()
    if not folder.is_dir():
        return []
    files = [*folder.glob("*.yml"), *folder.glob("*.yaml")]
    return sorted(p for p in files if not p.name.startswith("_"))


@dataclass
class LoadResult:
    campaigns: dict[str, Campaign]
    errors: list[CampaignFileError]


def load_all(
    directory: Path | None = None, *, catalog: Catalog | None = None, templates_dir: Path | None = None
) -> LoadResult:
    """Every campaign file, checked; bad files are collected, not raised."""
    catalog = catalog or load_catalog()
    result = LoadResult({}, [])
    for path in campaign_files(directory):
        try:
            campaign = parse_campaign(path, catalog, templates_dir)
        except CampaignFileError as exc:
            result.errors.append(exc)
            continue
        if campaign.name in result.campaigns:
            result.errors.append(CampaignFileError(path, [Problem("name", "another file has this name")]))
            continue
        result.campaigns[campaign.name] = campaign
    return result


def load_campaign(name: str, directory: Path | None = None, *, catalog: Catalog | None = None) -> Campaign:
    """One campaign by name (``spring_sale`` or ``campaigns/spring_sale.yml``)."""
    from retain import config

    candidate = Path(name)
    if candidate.suffix in (".yml", ".yaml") and candidate.is_file():
        return parse_campaign(candidate, catalog)
    folder = directory or config.campaigns_dir()
    for suffix in (".yml", ".yaml"):
        path = folder / f"{name}{suffix}"
        if path.is_file():
            return parse_campaign(path, catalog)
    known = ", ".join(p.stem for p in campaign_files(folder)) or "none"
    raise CampaignFileError(folder / f"{name}.yml", [Problem("", f"no such campaign file (known: {known})")])


# --------------------------------------------------------------------------------------------------
# Settings shared by every campaign: campaigns/_settings.yml

SETTINGS_FILE = "_settings.yml"


class Settings(_Strict):
    """``global_control_share`` of all members (chosen by a hash of the member id and
    ``global_control_salt`` only, so the same members in every campaign) are never contacted by marketing;
    ``shop_url`` is the base of product, unsubscribe and preference links."""

    global_control_share: float = Field(default=0.05, ge=0, le=0.5)
    global_control_salt: str = Field(default="retain-global-control-v1", min_length=8)
    shop_url: str = Field(default="https://shop.example.com", pattern=r"^https?://[^\s/]+(/[^\s]*)?$")
    link_secret_env: str = "RETAIN_LINK_SECRET"
    products_per_message: int = Field(default=4, ge=0, le=12)


def load_settings(directory: Path | None = None) -> Settings:
    """``_settings.yml`` in the campaigns folder (defaults when absent); bad values raise
    ``CampaignFileError``."""
    from retain import config

    path = (directory or config.campaigns_dir()) / SETTINGS_FILE
    if not path.is_file():
        return Settings()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return Settings.model_validate(raw)
    except yaml.YAMLError as exc:
        raise CampaignFileError(path, [Problem("", f"cannot read YAML: {exc}")]) from None
    except ValidationError as exc:
        problems = [Problem(_loc(e["loc"]), e["msg"].removeprefix("Value error, ")) for e in exc.errors()]
        raise CampaignFileError(path, problems) from None
