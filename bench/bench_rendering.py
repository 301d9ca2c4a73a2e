"""Rendering throughput on one core: complete emails (subject + CSS-inlined HTML + text, UTM links) and SMS
per second from member_segments-like rows, against the floor of a bare ``Template.render`` of the same
templates (a stock, unsandboxed ``jinja2.Environment`` reading the same CSS-inlined sources with the same
filters; no UTM, no checks, none of Retain's environment changes).

    .venv/bin/python bench/bench_rendering.py [--members 20000] [--templates DIR] [--journey welcome]

Shipped templates: ``--templates templates --journey win_back``. The machine's load average is printed
before and after: other work on the machine slows every rate here, so measure when it is quiet.

Default templates: tests/rendering/fixtures/templates (a layout with a <style> block, a 4-product card loop,
a coupon partial, money formatting). Results go to docs/benchmarks.md ("Rendering").
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import time
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

from jinja2 import Environment, StrictUndefined  # noqa: E402

from retain.rendering import Campaign, Renderer, build_context  # noqa: E402
from retain.rendering.css import is_html_template  # noqa: E402
from retain.rendering.environment import FILTERS, InliningLoader, _finalize  # noqa: E402

LOCALES = [  # (locale, currency, country, share) roughly as datagen produces them
    ("zh-CN", "CNY", "CN", 0.38),
    ("en-US", "USD", "US", 0.18),
    ("ja-JP", "JPY", "JP", 0.10),
    ("de-DE", "EUR", "DE", 0.10),
    ("en-GB", "GBP", "GB", 0.08),
    ("fr-FR", "EUR", "FR", 0.08),
    ("en-SG", "SGD", "SG", 0.08),
]
FIRST = ["Emma", "Liam", "磊", "美咲", "Felix", "Freya", "Chloé", "Wei", None, "Jürgen", "<b>Zoë</b>"]
LAST = ["Johnson", "宋", "松本", "Fischer", "Walker", "Martin", "Tan", None]
PRICES = [Decimal(p) for p in ("19.90", "29.90", "45.00", "59.00", "120.00", "9.50", "1200", "75.25")]


def member_rows(n: int, seed: int = 7) -> list[dict]:
    rnd = random.Random(seed)
    weights = [share for *_, share in LOCALES]
    rows = []
    for i in range(n):
        locale, currency, country, _ = rnd.choices(LOCALES, weights)[0]
        frequency = rnd.randint(0, 20)
        monetary = Decimal(rnd.randint(0, 300_000)) / 100 if frequency else Decimal(0)
        rows.append(
            {
                "member_id": 1_000_000 + i,
                "first_name": rnd.choice(FIRST),
                "last_name": rnd.choice(LAST),
                "locale": locale,
                "country": country,
                "timezone": "UTC",
                "currency": currency,
                "member_tier": rnd.choice(["ordinary", "senior", "super"]),
                "lifecycle_stage": rnd.choice(["new", "active", "at_risk", "lapsed"]),
                "rfm_segment": rnd.choice(["champions", "loyal", "at_risk", None]),
                "clv_tier": rnd.choice(["low", "medium", "high"]),
                "birth_date": date(1960, 1, 1) + timedelta(days=rnd.randint(0, 15_000)),
                "last_order_at": datetime(2026, 6, 1) - timedelta(hours=rnd.randint(0, 20_000)),
                "next_replenish_at": None,
                "aov": (monetary / frequency).quantize(Decimal("0.01")) if frequency else None,
                "monetary": monetary,
                "frequency": frequency,
                # member_segments has more columns; build_context keeps only the contract's.
                "email": f"m{i}@example.com",
                "spend_365d": monetary,
            }
        )
    return rows


def contexts(rows: list[dict], campaign: Campaign) -> list[dict]:
    rnd = random.Random(11)
    out = []
    for row in rows:
        currency = row["currency"]
        products = [
            {
                "name": f"Product {k}",
                "url": f"https://shop.example.com/p/{k}?ref=rec",
                "image_url": f"https://cdn.example.com/img/{k}.jpg",
                "price": rnd.choice(PRICES),
                "currency": currency,
            }
            for k in rnd.sample(range(40), 4)
        ]
        offer = {
            "code": "SPRING10",
            "amount": Decimal(10),
            "threshold": Decimal(50),
            "currency": currency,
            "expires_at": date(2026, 7, 31),
        }
        links = {
            "unsubscribe": f"https://shop.example.com/u/{row['member_id']}?t=x",
            "preferences": f"https://shop.example.com/prefs/{row['member_id']}?t=x",
            "view_in_browser": f"https://shop.example.com/v/{row['member_id']}",
            "shop": "https://shop.example.com/?src=mail#top",
        }
        out.append(build_context(row, campaign, offer=offer, products=products, links=links))
    return out


def rate(fn, items) -> tuple[float, float]:
    """Items per wall-clock second and per CPU second of this process (the second is what one core does
    even when other work shares the machine; on a quiet machine the two agree)."""
    start, cpu_start = time.perf_counter(), time.process_time()
    for item in items:
        fn(item)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return len(items) / seconds, len(items) / cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=20_000)
    parser.add_argument("--templates", type=Path, default=ROOT / "tests/rendering/fixtures/templates")
    parser.add_argument("--journey", default="welcome")
    args = parser.parse_args()

    load_before = os.getloadavg()
    campaign = Campaign(name="spring_welcome", journey=args.journey, step="day0")
    rows = member_rows(args.members)
    t0 = time.perf_counter()
    ctxs = contexts(rows, campaign)
    build_s = time.perf_counter() - t0

    renderer = Renderer(args.templates)
    t0 = time.perf_counter()
    renderer.render_email(args.journey, ctxs[0], campaign)  # compile + inline CSS, once per template
    renderer.render_sms(args.journey, ctxs[0], campaign)
    first_ms = (time.perf_counter() - t0) * 1000
    for ctx in ctxs[:2000]:  # warm the formatting caches as a real run does after its first members
        renderer.render_email(args.journey, ctx, campaign)

    # The floor: a stock Environment rendering the same (already inlined) sources with the same filters.
    # InliningLoader is the CSS step only: Retain's own loader also routes hrefs through the UTM filter.
    plain = Environment(
        loader=InliningLoader(args.templates),
        undefined=StrictUndefined,
        autoescape=is_html_template,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    plain.filters.update(FILTERS)
    plain.globals.update(FILTERS)  # as in Retain's environment: money(...) as a function too
    names = [
        renderer.resolve(f"email/{args.journey}/{part}", "en-US")
        for part in ("subject.j2", "html.j2", "text.j2")
    ]
    sms_name = renderer.resolve(f"sms/{args.journey}.j2", "en-US")
    floor_templates = [plain.get_template(n) for n in names]
    floor_sms = plain.get_template(sms_name)

    def floor_email(ctx: dict) -> None:
        for template in floor_templates:
            template.render(ctx)

    # The same three renders in Retain's own sandboxed environment: what the per-message extras cost.
    own_templates = [renderer.env.get_template(n) for n in names]

    def own_render(ctx: dict) -> None:
        for template in own_templates:
            template.render(ctx)

    results: dict[str, float] = {}
    cpu_results: dict[str, float] = {}
    for label, fn in (
        ("email", lambda c: renderer.render_email(args.journey, c, campaign)),
        ("email floor", floor_email),
        ("email sandboxed render only", own_render),
        ("sms", lambda c: renderer.render_sms(args.journey, c, campaign)),
        ("sms floor", floor_sms.render),
    ):
        runs = [rate(fn, ctxs) for _ in range(3)]
        results[label] = max(r[0] for r in runs)
        cpu_results[label] = max(r[1] for r in runs)

    sample = renderer.render_email(args.journey, ctxs[1], campaign)
    print(
        f"python {platform.python_version()}, {os.cpu_count()} cpu(s), {args.members:,} members, "
        f"templates {args.templates}"
    )
    load_after = os.getloadavg()
    print(
        f"load average (1/5/15 min) before: {' '.join(f'{x:.2f}' for x in load_before)}, "
        f"after: {' '.join(f'{x:.2f}' for x in load_after)}"
    )
    print(f"context build: {args.members / build_s:,.0f} contexts/s (not in the rates below)")
    print(f"first message (compile + CSS inline of every template used): {first_ms:.1f} ms")
    print(f"email HTML size: {len(sample.html):,} chars, text {len(sample.text):,} chars")

    def line(label: str, key: str, floor: str | None = None, note: str = "") -> None:
        wall, cpu = results[key], cpu_results[key]
        ratio = f"{wall / results[floor]:.2f}x / {cpu / cpu_results[floor]:.2f}x" if floor else ""
        print(f"{label:<48} {wall:>9,.0f} {cpu:>9,.0f}   {ratio:<15} {note}")

    print(f"{'per second, best of 3 passes':<48} {'wall':>9} {'cpu':>9}   vs floor (wall / cpu)")
    line("emails (subject + inlined HTML + text, UTM)", "email", "email floor")
    line("  floor: bare Template.render of the 3 parts", "email floor", "email floor")
    line(
        "  the 3 renders alone in Retain's sandbox",
        "email sandboxed render only",
        note="(no UTM pairs, no clean-up)",
    )
    line("SMS (render, UTM, segments, opt-out check)", "sms", "sms floor")
    line("  floor: bare Template.render", "sms floor", "sms floor")


if __name__ == "__main__":
    main()
