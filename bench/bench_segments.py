"""Benchmark: `dbt build` of the member marts against a hand-written DuckDB floor.

Target (the issue): 1M members / ~10M orders, a full `dbt build` of the member marts in <= 45 s on a
2-core machine and within 2.5x of one hand-written DuckDB query computing the same member_segments
columns (bench/member_segments_floor.sql).

    .venv/bin/python bench/bench_segments.py                     # 1M members, prints the table
    .venv/bin/python bench/bench_segments.py --reuse-data --repeat 3 --max-load 1.0 --record

Steps (each into a fresh warehouse file under --workdir; nothing is written into the repository except
docs/benchmarks.md with --record):

1. landing data: `retain data generate` (timed), unless --reuse-data finds the six files already there;
2. "member marts" = `dbt build --select +member_segments`: member_segments and everything upstream of it
   (the country_calling_codes seed, 6 staging views, the intermediate models, the member_replenishments
   mart) *with* the data and unit tests attached to those nodes, as `dbt build` runs them. The seed is
   an ancestor, so a separate `dbt seed` would only load it twice;
3. the whole project: plain `dbt build` (all models, KPI marts, dq_quarantine, the snapshot, all tests);
4. the floor: bench/member_segments_floor.sql, one `create table ... as` statement over the same files;
5. the check: floor vs dbt mart, row count and per-column mismatch counts (should all be 0).

Wall-clock times include dbt's start-up (process start, partial parse of the project, adapter
connection); dbt's own "elapsed" (from run_results.json) is printed next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import yaml

ROOT = Path(__file__).resolve().parent.parent
DBT_DIR = ROOT / "dbt_project"
FLOOR_SQL = Path(__file__).resolve().parent / "member_segments_floor.sql"
SEED_CSV = DBT_DIR / "seeds" / "country_calling_codes.csv"
DOC = ROOT / "docs" / "benchmarks.md"
FILES = ("members", "orders", "order_items", "products", "events", "fx_rates")

TARGET_SECONDS = 45.0
TARGET_RATIO = 2.5
MARTS_SELECTOR = "+member_segments"

# Columns of member_segments compared with a tolerance (amounts in the base currency).
AMOUNT_COLUMNS = ("monetary", "aov", "spend_30d", "spend_365d", "clv_12m")
KEY_COLUMNS = ("rfm_segment", "lifecycle_stage", "member_tier", "clv_tier", "r_score", "f_score", "m_score")

RESULTS_START = "<!-- bench-results:start -->"
RESULTS_END = "<!-- bench-results:end -->"


# ------------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------------
def venv_bin(name: str) -> str:
    """An executable of the running virtualenv (falls back to PATH)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else (shutil.which(name) or name)


def machine() -> dict[str, object]:
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "ram_gb": round(mem_kb / 1024 / 1024, 1),
        "load": os.getloadavg(),
        "cpu": platform.processor() or platform.machine(),
    }


def dbt_vars(overrides: dict[str, object]) -> dict[str, object]:
    """The project's vars (dbt_project.yml) with overrides applied, as dbt would see them."""
    project = yaml.safe_load((DBT_DIR / "dbt_project.yml").read_text())
    values = dict(project.get("vars") or {})
    values.update(overrides)
    return values


def render_floor(landing: Path, as_of: str, variables: dict[str, object]) -> str:
    """bench/member_segments_floor.sql with its {{ name }} placeholders filled in."""
    within, gap = variables["lifecycle_reactivated_within_days"], variables["lifecycle_reactivated_gap_days"]
    if float(within) > float(gap):
        raise SystemExit(
            f"{FLOOR_SQL.name} finds the 'reactivated' gap by a shortcut that needs "
            f"lifecycle_reactivated_within_days ({within}) <= lifecycle_reactivated_gap_days ({gap})"
        )
    window = variables.get("rfm_window_days")
    if window is None or str(window).strip().lower() in ("", "none", "null"):
        rfm_filter = "true"
    else:
        rfm_filter = f"days_ago < {int(window)}"
    values: dict[str, str] = {k: str(v) for k, v in variables.items() if v is not None}
    values.update(landing_dir=str(landing), seed_csv=str(SEED_CSV), as_of_date=as_of, rfm_filter=rfm_filter)
    text = FLOOR_SQL.read_text()

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise KeyError(f"{FLOOR_SQL.name}: no value for {{{{ {name} }}}}")
        return values[name]

    return re.sub(r"\{\{\s*(\w+)\s*\}\}", fill, text)


def connect(path: Path | str) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the settings of the dbt profile (dbt_project/profiles.yml)."""
    con = duckdb.connect(str(path))
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET preserve_insertion_order = false")
    return con


def fresh(path: Path) -> Path:
    for suffix in ("", ".wal"):
        p = Path(str(path) + suffix)
        if p.exists():
            p.unlink()
    return path


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wait_for_quiet(args: argparse.Namespace, step: str) -> float:
    """With --max-load, wait (up to --max-wait s) until the 1-minute load average is below it."""
    load = os.getloadavg()[0]
    if args.max_load is None or load < args.max_load:
        return load
    print(f"  waiting for load < {args.max_load} before {step} (now {load:.2f})", flush=True)
    deadline = time.monotonic() + args.max_wait
    while load >= args.max_load and time.monotonic() < deadline:
        time.sleep(5)
        load = os.getloadavg()[0]
    if load >= args.max_load:
        print(f"  gave up waiting: load {load:.2f}", flush=True)
    return load


@dataclass
class Timing:
    """One timed step: wall seconds, CPU seconds (all threads / the child process), load at start."""

    wall: float
    cpu: float
    load: float
    elapsed: float | None = None  # dbt's own elapsed_time (no process start-up / parse)
    results: dict = field(default_factory=dict)


def best(timings: list[Timing]) -> Timing:
    return min(timings, key=lambda t: t.wall)


def median(timings: list[Timing]) -> float:
    return statistics.median(t.wall for t in timings)


# ------------------------------------------------------------------------------------------------------
# steps
# ------------------------------------------------------------------------------------------------------
def landing_data(args: argparse.Namespace) -> tuple[Path, Timing | None]:
    landing = args.workdir / "landing" / f"m{args.members}-s{args.seed}-{args.as_of}"
    present = all((landing / f"{name}.parquet").exists() for name in FILES)
    if present and args.reuse_data:
        print(f"reusing landing data in {landing}")
        return landing, None
    landing.mkdir(parents=True, exist_ok=True)
    cmd = [
        venv_bin("retain"), "data", "generate", "--members", str(args.members), "--seed", str(args.seed),
        "--as-of", args.as_of, "--out", str(landing),
    ]  # fmt: skip
    load = wait_for_quiet(args, "generating")
    print("$ " + " ".join(cmd), flush=True)
    cpu0, started = children_cpu(), time.perf_counter()
    subprocess.run(cmd, check=True)
    return landing, Timing(time.perf_counter() - started, children_cpu() - cpu0, load)


def data_sizes(landing: Path) -> dict[str, int]:
    con = duckdb.connect()
    sizes = {}
    for name in FILES:
        path = landing / f"{name}.parquet"
        sizes[name] = con.execute(f"select count(*) from read_parquet('{path}')").fetchone()[0]
    sizes["bytes"] = sum((landing / f"{n}.parquet").stat().st_size for n in FILES)
    con.close()
    return sizes


def run_dbt(
    args: argparse.Namespace,
    command: list[str],
    landing: Path,
    warehouse: Path,
    label: str,
    variables: dict[str, object] | None = None,
    keep_warehouse: bool = False,
    target_name: str = "dbt-target",
) -> Timing:
    """Run one dbt command into `warehouse` (a fresh file unless keep_warehouse), as_of_date = args.as_of."""
    env = dict(os.environ)
    env.update(
        RETAIN_LANDING_DIR=str(landing),
        RETAIN_WAREHOUSE=str(warehouse if keep_warehouse else fresh(warehouse)),
        DBT_PROFILES_DIR=str(DBT_DIR),
        DBT_SEND_ANONYMOUS_USAGE_STATS="False",
        DO_NOT_TRACK="1",
    )
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    target = args.workdir / target_name
    cmd = [
        venv_bin("dbt"), *command, "--vars", json.dumps({"as_of_date": args.as_of, **(variables or {})}),
        "--target-path", str(target), "--log-path", str(args.workdir / "dbt-logs"),
    ]  # fmt: skip
    load = wait_for_quiet(args, label)
    print(f"$ {' '.join(cmd)}   [{label}, load {load:.2f}]", flush=True)
    log = args.workdir / f"dbt-{label}.log"
    results_path = target / "run_results.json"
    results_path.unlink(missing_ok=True)
    cpu0, started = children_cpu(), time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.run(cmd, cwd=DBT_DIR, env=env, stdout=out, stderr=subprocess.STDOUT)
    wall, cpu = time.perf_counter() - started, children_cpu() - cpu0
    if proc.returncode != 0:
        print(log.read_text()[-4000:])
        raise SystemExit(f"dbt {' '.join(command)} failed (exit {proc.returncode}); log: {log}")
    results = json.loads(results_path.read_text())
    shutil.copy(results_path, args.workdir / f"run_results-{label}.json")
    print(
        f"  {wall:.1f} s wall, {cpu:.1f} s CPU, dbt elapsed {results.get('elapsed_time', 0):.1f} s",
        flush=True,
    )
    return Timing(wall, cpu, load, float(results.get("elapsed_time") or 0.0), results)


def node_timings(results: dict) -> list[tuple[str, str, float]]:
    rows = []
    for r in results.get("results", []):
        uid = r["unique_id"]
        kind = uid.split(".")[0]
        name = uid.split(".")[-1] if kind != "unit_test" else ".".join(uid.split(".")[-2:])
        if kind == "test" and len(name) > 60:
            name = name[:57] + "..."
        rows.append((kind, name, float(r.get("execution_time") or 0.0)))
    return sorted(rows, key=lambda row: -row[2])


def run_floor(args: argparse.Namespace, landing: Path, variables: dict[str, object]) -> tuple[Timing, Path]:
    """The floor statement into a fresh DuckDB file (same settings as the dbt profile)."""
    sql = render_floor(landing, args.as_of, variables)
    db = fresh(args.workdir / "floor.duckdb")
    load = wait_for_quiet(args, "floor")
    print(f"$ duckdb {db} < bench/{FLOOR_SQL.name}   [floor, load {load:.2f}]", flush=True)
    cpu0, started = time.process_time(), time.perf_counter()
    con = connect(db)
    con.execute(sql)
    con.close()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu0
    print(f"  {wall:.1f} s wall, {cpu:.1f} s CPU", flush=True)
    return Timing(wall, cpu, load), db


def compare(floor_db: Path, dbt_db: Path) -> tuple[dict[str, int], int, int]:
    """Rows in floor / dbt and the mismatch count per member_segments column (full outer join)."""
    con = connect(floor_db)
    con.execute(f"ATTACH '{dbt_db}' AS dbt (READ_ONLY)")
    columns = [
        row[0]
        for row in con.execute(
            "select column_name from information_schema.columns "
            "where table_catalog = 'dbt' and table_name = 'member_segments' order by ordinal_position"
        ).fetchall()
    ]
    floor_cols = {
        row[0]
        for row in con.execute(
            "select column_name from information_schema.columns where table_name = 'member_segments_floor'"
        ).fetchall()
    }
    exprs = ["count(*) filter (where d.member_id is null or f.member_id is null) as member_id"]
    for col in columns:
        if col == "member_id":
            continue
        if col not in floor_cols:
            exprs.append(f"-1 as {col}")
        elif col in AMOUNT_COLUMNS:
            exprs.append(
                f"count(*) filter (where (d.{col} is null) <> (f.{col} is null) "
                f"or abs(d.{col} - f.{col}) > 0.01) as {col}"
            )
        else:
            exprs.append(f"count(*) filter (where d.{col} is distinct from f.{col}) as {col}")
    row = con.execute(
        f"select {', '.join(exprs)} from dbt.main.member_segments d "
        "full outer join member_segments_floor f on d.member_id = f.member_id"
    ).fetchone()
    mismatches = dict(zip(["member_id", *[c for c in columns if c != "member_id"]], row, strict=True))
    n_floor = con.execute("select count(*) from member_segments_floor").fetchone()[0]
    n_dbt = con.execute("select count(*) from dbt.main.member_segments").fetchone()[0]
    con.close()
    return mismatches, n_floor, n_dbt


# ------------------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------------------
RESULTS_HEADER = (
    "| date (UTC) | machine | load at start | members / orders / order items | generate | "
    "dbt build member marts: wall (dbt elapsed, CPU) | dbt build whole project: wall (dbt elapsed) | "
    "floor: wall (CPU) | ratio (best) | floor = dbt | result |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|"
)


def record(row: str, key: str, same_size: str) -> None:
    """Add this run's row to the results table of docs/benchmarks.md.

    A row of the same day and machine (`key`, the row's start) for the same data size is replaced.
    """
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    if RESULTS_START not in text:
        text = text.rstrip("\n") + f"\n\n{RESULTS_START}\n{RESULTS_HEADER}\n{RESULTS_END}\n"
    before, rest = text.split(RESULTS_START, 1)
    table, after = rest.split(RESULTS_END, 1)
    lines = [ln for ln in table.strip("\n").splitlines() if ln.strip()]
    body = [ln for ln in lines[2:] if not (ln.startswith(key) and same_size in ln)]
    table = "\n".join([*RESULTS_HEADER.splitlines(), *body, row])
    DOC.write_text(f"{before}{RESULTS_START}\n{table}\n{RESULTS_END}{after}")
    print(f"recorded in {DOC.relative_to(ROOT)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--as-of", default="2026-06-30", help="data set's as-of and dbt's as_of_date")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/retain-bench"))
    parser.add_argument("--reuse-data", action="store_true", help="reuse landing files already in --workdir")
    parser.add_argument("--repeat", type=int, default=1, help="time the member marts and the floor N times")
    parser.add_argument("--skip-full-build", action="store_true", help="skip the whole-project dbt build")
    parser.add_argument("--max-load", type=float, help="wait for a load average below this")
    parser.add_argument("--max-wait", type=float, default=300, help="seconds to wait for --max-load per step")
    parser.add_argument("--record", action="store_true", help="add the result to docs/benchmarks.md")
    parser.add_argument("--top", type=int, default=12, help="slowest dbt nodes to list")
    args = parser.parse_args(argv)
    date.fromisoformat(args.as_of)
    args.workdir = args.workdir.resolve()
    args.workdir.mkdir(parents=True, exist_ok=True)
    variables = dbt_vars({"as_of_date": args.as_of})
    render_floor(args.workdir, args.as_of, variables)  # fail early on a var the floor cannot follow

    box = machine()
    print(
        f"machine: {box['nproc']} cores, {box['ram_gb']} GB RAM; load average at start "
        f"{box['load'][0]:.2f} {box['load'][1]:.2f} {box['load'][2]:.2f}; duckdb {duckdb.__version__}",
        flush=True,
    )

    landing, generate = landing_data(args)
    sizes = data_sizes(landing)
    print(
        f"data: {sizes['members']:,} member rows, {sizes['orders']:,} orders, {sizes['order_items']:,} order "
        f"items, {sizes['events']:,} events ({sizes['bytes'] / 1e6:.0f} MB parquet)",
        flush=True,
    )

    marts_runs: list[Timing] = []
    floor_runs: list[Timing] = []
    marts_db = args.workdir / "marts.duckdb"
    for i in range(args.repeat):
        label = "marts" if args.repeat == 1 else f"marts-{i + 1}"
        marts_runs.append(run_dbt(args, ["build", "--select", MARTS_SELECTOR], landing, marts_db, label))
        timing, floor_db = run_floor(args, landing, variables)
        floor_runs.append(timing)
    full = None
    if not args.skip_full_build:
        full = run_dbt(args, ["build"], landing, args.workdir / "full.duckdb", "full")
    mismatches, n_floor, n_dbt = compare(floor_db, marts_db)

    marts, floor = best(marts_runs), best(floor_runs)
    ratio = marts.wall / floor.wall
    ok_time = marts.wall <= TARGET_SECONDS
    ok_ratio = ratio <= TARGET_RATIO
    # a column the floor lacks (-1) counts as a difference too
    total_mismatch = sum(abs(v) for v in mismatches.values()) + abs(n_floor - n_dbt)
    verdict = "PASS" if ok_time and ok_ratio and total_mismatch == 0 else "FAIL"

    # ---- where dbt spends its time ---------------------------------------------------------------------
    def by_kind(results: dict) -> str:
        totals: dict[str, tuple[int, float]] = {}
        for kind, _, seconds in node_timings(results):
            n, s = totals.get(kind, (0, 0.0))
            totals[kind] = (n + 1, s + seconds)
        ranked = sorted(totals.items(), key=lambda kv: -kv[1][1])
        return ", ".join(f"{n} {kind} {s:.1f} s" for kind, (n, s) in ranked)

    builds = (("dbt build --select " + MARTS_SELECTOR, marts), ("dbt build (whole project)", full))
    for title, timing in builds:
        if timing is None:
            continue
        print(f"\nslowest nodes of `{title}` (run_results.json execution_time; 2 threads run side by side):")
        for kind, name, seconds in node_timings(timing.results)[: args.top]:
            print(f"  {seconds:7.2f} s  {kind:<9} {name}")
        print(f"  sum by type: {by_kind(timing.results)}")

    # ---- equivalence -----------------------------------------------------------------------------------
    print(f"\nfloor vs dbt member_segments: {n_floor:,} vs {n_dbt:,} rows; rows that differ per column")
    print("(amounts within 0.01; -1 = column missing from the floor):")
    print("  key columns: " + ", ".join(f"{c} {mismatches.get(c, '?')}" for c in (*KEY_COLUMNS, "monetary")))
    others = {c: v for c, v in mismatches.items() if c not in KEY_COLUMNS and c != "monetary"}
    print("  other columns: " + ", ".join(f"{c} {v}" for c, v in others.items()))

    # ---- summary -----------------------------------------------------------------------------------------
    def runs(timings: list[Timing]) -> str:
        return "" if len(timings) == 1 else "   runs: " + ", ".join(f"{t.wall:.1f}" for t in timings)

    w = 46
    print(f"\n{'step':<{w}} {'wall s':>8} {'CPU s':>8} {'load':>6}")
    print("-" * (w + 26))
    if generate is None:
        print(f"{'generate landing data':<{w}} {'reused':>8}")
    else:
        g = generate
        print(f"{'generate landing data':<{w}} {g.wall:>8.1f} {g.cpu:>8.1f} {g.load:>6.2f}")
    print(
        f"{'dbt build member marts (' + MARTS_SELECTOR + ')':<{w}} {marts.wall:>8.1f} {marts.cpu:>8.1f} "
        f"{marts.load:>6.2f}{runs(marts_runs)}"
    )
    print(f"{'  dbt elapsed (without start-up and parse)':<{w}} {marts.elapsed:>8.1f}")
    if full is not None:
        label = "dbt build whole project (all tests)"
        print(f"{label:<{w}} {full.wall:>8.1f} {full.cpu:>8.1f} {full.load:>6.2f}")
        print(f"{'  dbt elapsed (without start-up and parse)':<{w}} {full.elapsed:>8.1f}")
    print(
        f"{'hand-written floor (one DuckDB statement)':<{w}} {floor.wall:>8.1f} {floor.cpu:>8.1f} "
        f"{floor.load:>6.2f}{runs(floor_runs)}"
    )
    print("-" * (w + 26))
    print(
        f"{'ratio member marts / floor (best wall)':<{w}} {ratio:>7.2f}x {marts.cpu / floor.cpu:>7.2f}x (CPU)"
    )
    if args.repeat > 1:
        median_ratio = median(marts_runs) / median(floor_runs)
        print(f"{'ratio of the medians (wall)':<{w}} {median_ratio:>7.2f}x")
    print(
        f"target: member marts <= {TARGET_SECONDS:.0f} s "
        f"{'PASS' if ok_time else 'FAIL'} ({marts.wall:.1f} s); "
        f"ratio <= {TARGET_RATIO}x {'PASS' if ok_ratio else 'FAIL'} ({ratio:.2f}x); "
        f"floor = dbt {'PASS' if total_mismatch == 0 else f'FAIL ({total_mismatch} differences)'}"
    )
    print(
        f"overall: {verdict}   (best of {args.repeat}; load average now {os.getloadavg()[0]:.2f} on "
        f"{box['nproc']} cores: other processes on the machine slow every step down)"
    )

    if args.record:
        today = datetime.now(UTC).strftime("%Y-%m-%d")
        machine_text = f"{box['nproc']} cores, {box['ram_gb']:.0f} GB"
        key = f"| {today} | {machine_text} | "
        size = f"{sizes['members']:,} / {sizes['orders']:,} / {sizes['order_items']:,}"
        gen = "reused" if generate is None else f"{generate.wall:.1f} s"
        full_text = "-" if full is None else f"{full.wall:.1f} s ({full.elapsed:.1f} s)"
        ratio_text = f"{ratio:.2f}x"
        if args.repeat > 1:
            ratio_text += f" (medians {median(marts_runs) / median(floor_runs):.2f}x)"

        def runs_text(timings: list[Timing]) -> str:
            if len(timings) == 1:
                return ""
            return "; best of " + ", ".join(f"{t.wall:.1f}" for t in timings)

        row = (
            f"{key}{box['load'][0]:.2f} | {size} | {gen} | "
            f"{marts.wall:.1f} s ({marts.elapsed:.1f} s, {marts.cpu:.1f} s){runs_text(marts_runs)} | "
            f"{full_text} | {floor.wall:.1f} s ({floor.cpu:.1f} s){runs_text(floor_runs)} | {ratio_text} | "
            f"{'yes' if total_mismatch == 0 else f'no ({total_mismatch})'} | {verdict} |"
        )
        record(row, key, f"| {size} |")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
