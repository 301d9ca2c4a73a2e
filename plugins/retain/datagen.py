"""Realistic, deterministic sample landing data, generated inside DuckDB so a million members take minutes.

Every random draw is ``hash(hash(key, seed, tag))`` mapped to [0, 1): no Python loop per row and no global
random state, so the same seed, member count and as-of date give the same rows (and, with the same DuckDB
version, the same parquet bytes) on any machine. The shapes (markets, categories, purchase rhythm, churn,
dirty rows) are documented in ``docs/data-generator.md``; change that document with the constants below.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb

# --------------------------------------------------------------------------------------------------------
# Dirty rows. Each share is of the clean rows of that file; the count is round-half-up(share * rows) and the
# rows are those with the smallest seeded hash, so counts are exact and kinds never overlap in one file.
# --------------------------------------------------------------------------------------------------------
DUPLICATE_MEMBER_SHARE = 0.002  # extra members rows repeating an existing member_id
NULL_EMAIL_SHARE = 0.01  # members whose email is null
MALFORMED_EMAIL_SHARE = 0.005  # members whose email is not an address ("x@y", no "@", "@@", no domain)
UNPARSEABLE_PHONE_SHARE = 0.005  # members whose phone is junk ("n/a", "12", "unknown", ...)
DUPLICATE_ORDER_SHARE = 0.001  # extra orders rows repeating an existing order (exact copies)
NEGATIVE_AMOUNT_SHARE = 0.001  # orders whose amount is negated
FUTURE_ORDER_SHARE = 0.001  # orders whose ordered_at is 2..365 days after as-of
UNKNOWN_CURRENCY_SHARE = 0.001  # orders whose currency has no fx_rates row ("XXX", "ABC", "ZZZ")
FUTURE_EVENT_SHARE = 0.001  # events whose occurred_at is 2..365 days after as-of

MALFORMED_PHONES = ("n/a", "12", "unknown", "-", "000", "call me", "+")
UNKNOWN_CURRENCIES = ("XXX", "ABC", "ZZZ")

# --------------------------------------------------------------------------------------------------------
# Behaviour. Tuned so that at any size members average ~10 orders, most have 0-3 and a few have hundreds.
# --------------------------------------------------------------------------------------------------------
HISTORY_YEARS = 3
BUYER_SHARE = 0.78  # the rest are prospects: signed up, browse, never order
ONE_TIME_SHARE = 0.28  # of buyers: buy once and churn
LOYAL_SHARE = 0.32  # of buyers: never churn; the remaining buyers churn after an exponential lifetime
CHURN_MEAN_DAYS = 400.0
POWER_CHURN_MEAN_DAYS = 900.0
POWER_BUYER_SHARE = 0.10  # of buyers: resellers / daigou with a ~5-day rhythm and bigger baskets
DEFAULT_CYCLE_DAYS = 60.0  # purchase rhythm when the favourite product is not consumable
POWER_CYCLE_DAYS = 5.0
CYCLE_SIGMA = 0.7
MAX_ORDERS_PER_MEMBER = 4000
MAX_EVENTS_PER_MEMBER = 4000
FX_RATES = {"CNY": 1.0, "USD": 7.2, "EUR": 7.8, "JPY": 0.048, "GBP": 9.1, "SGD": 5.3}
CURRENCY_DECIMALS = {"JPY": 0}  # others: 2
EVENT_TYPES = (  # share of events by type; shares sum to 1
    ("view", 0.55),
    ("search", 0.15),
    ("add_to_cart", 0.12),
    ("favorite", 0.09),
    ("share", 0.05),
    ("review", 0.04),
)
ORDER_STATUSES = (("refunded", 0.05), ("cancelled", 0.03), ("paid", 0.92))

MEMBER_ID_BASE = 1_000_000
ORDER_ID_BASE = 50_000_000
PRODUCT_ID_BASE = 10_000
EVENT_ID_BASE = 0

FILES = ("members", "orders", "order_items", "products", "events", "fx_rates")


@dataclass(frozen=True)
class Market:
    """One country the shop sells to; its members get this locale, currency, phone plan and names."""

    country: str
    locale: str
    currency: str
    weight: float
    #: (IANA zone, share of the market's members, standard UTC offset in hours, phone prefixes or ())
    zones: tuple[tuple[str, float, float, tuple[str, ...]], ...]
    dial_code: str
    mobile_prefixes: tuple[str, ...]
    subscriber_digits: int
    subscriber_first_digits: str
    email_domains: tuple[str, ...]
    #: comma-separated names, "display|ascii" where the ascii spelling (for emails) is not derivable
    female_names: str
    male_names: str
    last_names: str


MARKETS: tuple[Market, ...] = (
    Market(
        "CN",
        "zh-CN",
        "CNY",
        0.38,
        (("Asia/Shanghai", 1.0, 8, ()),),
        "86",
        ("130", "131", "135", "136", "137", "138", "139", "150", "151", "158", "177", "186", "188", "199"),
        8,
        "0123456789",
        ("163.com", "126.com", "qq.com", "sina.com", "foxmail.com"),
        "秀英|xiuying,桂英|guiying,丽|li,静|jing,敏|min,婷|ting,雪|xue,芳|fang,娜|na,晓燕|xiaoyan,"
        "欣怡|xinyi,梓涵|zihan,诗涵|shihan,雨萱|yuxuan,佳怡|jiayi,思琪|siqi,慧|hui,琳|lin,颖|ying,倩|qian",
        "伟|wei,强|qiang,磊|lei,军|jun,洋|yang,勇|yong,杰|jie,涛|tao,明|ming,超|chao,浩然|haoran,"
        "子轩|zixuan,宇轩|yuxuan,俊杰|junjie,博文|bowen,志强|zhiqiang,建华|jianhua,鹏|peng,辉|hui,鑫|xin",
        "王|wang,李|li,张|zhang,刘|liu,陈|chen,杨|yang,黄|huang,赵|zhao,吴|wu,周|zhou,徐|xu,孙|sun,"
        "马|ma,朱|zhu,胡|hu,郭|guo,何|he,高|gao,林|lin,罗|luo,郑|zheng,梁|liang,谢|xie,宋|song,唐|tang,"
        "韩|han,冯|feng,邓|deng,曹|cao,彭|peng",
    ),
    Market(
        "US",
        "en-US",
        "USD",
        0.17,
        (
            ("America/New_York", 0.48, -5, ("212", "646", "718", "617", "305", "404", "215")),
            ("America/Chicago", 0.24, -6, ("312", "773", "512", "469", "214", "713")),
            ("America/Denver", 0.06, -7, ("303", "720", "801")),
            ("America/Los_Angeles", 0.22, -8, ("213", "310", "415", "206", "702", "503")),
        ),
        "1",
        (),
        7,
        "23456789",
        ("gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "icloud.com", "aol.com"),
        "Emily,Olivia,Emma,Sophia,Ava,Isabella,Madison,Abigail,Elizabeth,Jessica,Ashley,Sarah,Jennifer,"
        "Amanda,Linda,Patricia,Mia,Harper,Chloe,Grace",
        "James,John,Robert,Michael,William,David,Richard,Joseph,Thomas,Christopher,Daniel,Matthew,"
        "Anthony,Joshua,Andrew,Ethan,Noah,Liam,Mason,Tyler",
        "Smith,Johnson,Williams,Brown,Jones,Garcia,Miller,Davis,Rodriguez,Martinez,Hernandez,Lopez,"
        "Wilson,Anderson,Thomas,Taylor,Moore,Jackson,Martin,Lee,Nguyen,Kim,Patel,Clark,O'Brien",
    ),
    Market(
        "DE",
        "de-DE",
        "EUR",
        0.10,
        (("Europe/Berlin", 1.0, 1, ()),),
        "49",
        ("151", "152", "157", "160", "162", "170", "171", "172", "173", "175", "176", "177", "178", "179"),
        8,
        "0123456789",
        ("gmx.de", "web.de", "gmail.com", "t-online.de", "outlook.de"),
        "Anna,Lea,Lena,Hannah,Sophie,Marie,Laura,Julia,Katharina,Sarah,Lisa,Johanna,Emma,Mia,Leonie,"
        "Sabine,Petra,Ursula,Monika,Claudia,Birgit,Jana",
        "Lukas,Leon,Jonas,Felix,Maximilian,Paul,Finn,Elias,Ben,Noah,Thomas,Michael,Andreas,Stefan,"
        "Jürgen,Klaus,Wolfgang,Uwe,Tobias,Sebastian,Jan,Tim",
        "Müller,Schmidt,Schneider,Fischer,Weber,Meyer,Wagner,Becker,Schulz,Hoffmann,Schäfer,Koch,Bauer,"
        "Richter,Klein,Wolf,Schröder,Neumann,Schwarz,Zimmermann,Braun,Krüger,Hofmann,Hartmann,Lange,"
        "Werner,Krause,Lehmann,Köhler,Weiß",
    ),
    Market(
        "JP",
        "ja-JP",
        "JPY",
        0.11,
        (("Asia/Tokyo", 1.0, 9, ()),),
        "81",
        ("90", "80", "70"),
        8,
        "0123456789",
        ("gmail.com", "yahoo.co.jp", "docomo.ne.jp", "icloud.com", "ezweb.ne.jp"),
        "陽菜|hina,結衣|yui,葵|aoi,さくら|sakura,美咲|misaki,優奈|yuna,愛|ai,由美子|yumiko,恵子|keiko,"
        "久美子|kumiko,真由美|mayumi,彩|aya,花子|hanako,明美|akemi,凛|rin,陽子|yoko",
        "翔太|shota,蓮|ren,大翔|hiroto,健太|kenta,拓也|takuya,大輔|daisuke,誠|makoto,浩|hiroshi,"
        "隆|takashi,健一|kenichi,悠真|yuma,陸|riku,直樹|naoki,翼|tsubasa,和也|kazuya,湊|minato",
        "佐藤|sato,鈴木|suzuki,高橋|takahashi,田中|tanaka,伊藤|ito,渡辺|watanabe,山本|yamamoto,"
        "中村|nakamura,小林|kobayashi,加藤|kato,吉田|yoshida,山田|yamada,佐々木|sasaki,山口|yamaguchi,"
        "松本|matsumoto,井上|inoue,木村|kimura,林|hayashi,清水|shimizu,斎藤|saito",
    ),
    Market(
        "GB",
        "en-GB",
        "GBP",
        0.09,
        (("Europe/London", 1.0, 0, ()),),
        "44",
        ("7400", "7500", "7700", "7723", "7800", "7900", "7911", "7956"),
        6,
        "0123456789",
        ("gmail.com", "hotmail.co.uk", "outlook.com", "btinternet.com", "yahoo.co.uk"),
        "Olivia,Amelia,Isla,Ava,Emily,Sophie,Charlotte,Jessica,Lucy,Hannah,Chloe,Ellie,Grace,Freya,"
        "Poppy,Sarah,Emma,Rebecca,Laura,Katie",
        "Oliver,Harry,George,Jack,Jacob,Charlie,Thomas,Oscar,William,James,Alfie,Joshua,Daniel,Samuel,"
        "Benjamin,Liam,Ryan,Callum,Jamie,Lewis",
        "Smith,Jones,Williams,Taylor,Brown,Davies,Evans,Wilson,Thomas,Johnson,Roberts,Robinson,Thompson,"
        "Wright,Walker,White,Edwards,Hughes,Green,Hall,Wood,Harris,Clarke,Patel,Khan",
    ),
    Market(
        "FR",
        "fr-FR",
        "EUR",
        0.07,
        (("Europe/Paris", 1.0, 1, ()),),
        "33",
        ("6", "7"),
        8,
        "0123456789",
        ("gmail.com", "orange.fr", "free.fr", "laposte.net", "hotmail.fr", "sfr.fr"),
        "Emma,Léa,Chloé,Manon,Camille,Inès,Jade,Louise,Sarah,Clara,Juliette,Lucie,Marie,Nathalie,"
        "Isabelle,Sylvie,Céline,Aurélie,Élodie,Margaux",
        "Lucas,Hugo,Louis,Gabriel,Arthur,Jules,Nathan,Thomas,Théo,Raphaël,Antoine,Nicolas,Julien,Pierre,"
        "Mathieu,Alexandre,Maxime,Romain,Clément,Baptiste",
        "Martin,Bernard,Dubois,Thomas,Robert,Richard,Petit,Durand,Leroy,Moreau,Simon,Laurent,Lefèvre,"
        "Michel,Garcia,David,Bertrand,Roux,Vincent,Fournier,Morel,Girard,André,Mercier,Dupont,Lambert,"
        "Bonnet,François",
    ),
    Market(
        "SG",
        "en-SG",
        "SGD",
        0.08,
        (("Asia/Singapore", 1.0, 8, ()),),
        "65",
        ("8", "9"),
        7,
        "0123456789",
        ("gmail.com", "hotmail.com", "yahoo.com.sg", "singnet.com.sg", "outlook.com"),
        "Wei Ling,Hui Min,Jia Hui,Xin Yi,Shu Fen,Mei Ling,Siti,Nur Aisyah,Priya,Kavitha,Rachel,Michelle,"
        "Charmaine,Nicole,Sarah,Grace",
        "Wei Jie,Jun Jie,Zhi Hao,Kai Wen,Jia Hao,Wei Ming,Muhammad,Ahmad,Arjun,Rajesh,Ryan,Marcus,"
        "Daniel,Jonathan,Benjamin,Joshua",
        "Tan,Lim,Lee,Ng,Ong,Wong,Goh,Chua,Chan,Koh,Teo,Ang,Yeo,Tay,Ho,Low,Toh,Sim,Rahman,Abdullah,"
        "Kumar,Pillai,Singh,Nair",
    ),
)


@dataclass(frozen=True)
class Category:
    """A product category; consumable ones have a consumption_days per variant (pack size)."""

    name: str
    weight: float
    base_price_cny: float
    brands: str  # comma-separated
    items: str  # comma-separated
    #: (label appended to the name, consumption_days or None, price multiplier)
    variants: tuple[tuple[str, int | None, float], ...]

    def brand_list(self) -> list[str]:
        return [b.strip() for b in self.brands.split(",")]

    def item_list(self) -> list[str]:
        return [i.strip() for i in self.items.split(",")]


CATEGORIES: tuple[Category, ...] = (
    Category(
        "skincare",
        0.18,
        260,
        "Lumière, Aqua Bloom, Sakura Lab, Nordic Skin, Pure Botanica, Dermacare, Jade Garden, Maison Rose, "
        "Seoul Glow, Alpine Dew",
        "Hydrating Serum, Gentle Foam Cleanser, Night Repair Cream, Daily Sunscreen SPF50, Essence Toner, "
        "Eye Cream, Vitamin C Serum, Clay Mask",
        (("30ml", 30, 0.7), ("50ml", 45, 1.0), ("100ml", 90, 1.7)),
    ),
    Category(
        "haircare",
        0.09,
        110,
        "Silk & Stone, Kiyomi, Herbal Path, Salon Pro, Black Ginger, Oceanic, Moroccan Gold, Fresh Roots",
        "Anti-Dandruff Shampoo, Repair Conditioner, Scalp Tonic, Argan Hair Oil, Volume Shampoo, "
        "Leave-in Cream",
        (("250ml", 30, 0.8), ("400ml", 45, 1.0), ("1L", 90, 2.0)),
    ),
    Category(
        "supplements",
        0.12,
        180,
        "VitaNova, Pure Balance, Swiss Alpha, Ocean Omega, Green Leaf, Daily Well, Kyoto Health, NutriCore",
        "Fish Oil Omega-3, Vitamin D3, Probiotic Complex, Collagen Peptides, Multivitamin, "
        "Magnesium Citrate, Lutein, Vitamin C 1000mg",
        (("30 capsules", 30, 0.6), ("60 capsules", 60, 1.0), ("90 capsules", 90, 1.4)),
    ),
    Category(
        "baby",
        0.09,
        160,
        "Little Cloud, Mamacare, Bébé Doux, Sunny Bear, Happy Sprout, Koala Kids",
        "Diapers Size 3, Diapers Size 4, Infant Formula Stage 2, Infant Formula Stage 3, Baby Wipes, "
        "Baby Lotion, Rice Cereal",
        (("Pack", 30, 1.0), ("Value Pack", 45, 1.4), ("Monthly Box", 60, 1.9)),
    ),
    Category(
        "pet_food",
        0.09,
        190,
        "Happy Paws, Wild Prairie, Feline Fine, Nordic Wolf, Green Farm, Tail Blazer",
        "Adult Dog Kibble, Puppy Kibble, Indoor Cat Food, Grain-Free Cat Food, Senior Dog Food, "
        "Salmon Cat Food",
        (("2kg", 30, 0.6), ("5kg", 60, 1.0), ("10kg", 90, 1.7)),
    ),
    Category(
        "coffee",
        0.08,
        95,
        "Yunnan Peak, Blue Mountain Co, Nordic Roast, Kyoto Drip, Café Lumière, Highland Beans",
        "Espresso Beans, Single-Origin Beans, Drip Bags, Cold Brew Grounds, House Blend Ground, Decaf Beans",
        (("250g", 30, 0.6), ("500g", 45, 1.0), ("1kg", 90, 1.8)),
    ),
    Category(
        "apparel",
        0.16,
        320,
        "Urban Thread, Maison Léa, Tokyo Basics, Northfield, Linen & Co, Stride",
        "Merino Sweater, Cotton T-Shirt, Down Jacket, Linen Shirt, Yoga Leggings, Denim Jeans, "
        "Cashmere Scarf, Running Shoes",
        (("Black", None, 1.0), ("Navy", None, 1.0), ("Grey", None, 1.0), ("Beige", None, 1.0)),
    ),
    Category(
        "electronics",
        0.08,
        900,
        "Voltix, Soundwave, Pixelon, Kumo, Nordtek, Zenbolt",
        "Wireless Earbuds, Smartwatch, Power Bank 20000mAh, Bluetooth Speaker, Electric Toothbrush, "
        "Hair Dryer, E-Reader, Smart Scale",
        (("Black", None, 1.0), ("White", None, 1.0), ("Pro", None, 1.6)),
    ),
    Category(
        "home",
        0.11,
        180,
        "Casa Verde, Nordhaus, Bamboo Lane, Stillwater, Oak & Ash, Lotus Living, Atelier Blanc",
        "Scented Candle, Linen Towel Set, Ceramic Mug Set, Storage Baskets, Cutting Board, Aroma Diffuser, "
        "Throw Blanket, Glass Food Containers",
        (("Sand", None, 1.0), ("Sage", None, 1.0), ("White", None, 1.0)),
    ),
)


@dataclass(frozen=True)
class GenerationResult:
    """What was written, so callers can report it without re-reading the files."""

    out_dir: Path
    members: int
    seed: int
    as_of: date
    row_counts: dict[str, int]
    seconds: float


def product_count(members: int) -> int:
    """Catalogue size: about one product per 500 members, kept within a shop-like 200..2000."""
    return min(2000, max(200, members // 500))


def history_start(as_of: date) -> date:
    """The first day of history: the same calendar day ``HISTORY_YEARS`` before as-of (Feb 29 -> 28)."""
    year = as_of.year - HISTORY_YEARS
    try:
        return as_of.replace(year=year)
    except ValueError:
        return as_of.replace(year=year, day=28)


def dirty_count(share: float, rows: int) -> int:
    """Exact number of dirty rows of one kind: round half up, so docs and tests can state it precisely."""
    return int(share * rows + 0.5)


def _ascii(name: str) -> str:
    for src, dst in zip("äöüßÄÖÜ", ("ae", "oe", "ue", "ss", "ae", "oe", "ue"), strict=True):
        name = name.replace(src, dst)
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return "".join(ch for ch in plain.lower() if ch.isalnum())


def _names(spec: str) -> list[dict[str, str]]:
    out = []
    for entry in spec.split(","):
        display, _, spelled = entry.strip().partition("|")
        out.append({"d": display, "a": spelled or _ascii(display)})
    return out


def _cumulative(weights: Iterable[float]) -> list[tuple[float, float]]:
    bounds, lo = [], 0.0
    weights = list(weights)
    total = sum(weights)
    for i, w in enumerate(weights):
        hi = 1.0 if i == len(weights) - 1 else lo + w / total
        bounds.append((lo, hi if i < len(weights) - 1 else 1.0 + 1e-9))
        lo = hi
    return bounds


def _sql_list(values: Sequence[str]) -> str:
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def _cumulative_case(expr: str, choices: Sequence[tuple[str, float]]) -> str:
    """A CASE mapping a uniform draw to labels with the given shares, inlined so DuckDB need not join."""
    if len(choices) == 1:
        return f"'{choices[0][0]}'"
    parts, acc = [], 0.0
    for label, share in choices[:-1]:
        acc += share
        parts.append(f"WHEN {expr} < {acc!r} THEN '{label}'")
    return f"CASE {' '.join(parts)} ELSE '{choices[-1][0]}' END"


def _zone_case(draw: str) -> str:
    """The member's IANA zone: the market's only zone, or one drawn by share where it has several."""
    whens = []
    for market in MARKETS:
        zones = [(zone, share) for zone, share, _, _ in market.zones]
        whens.append(f"WHEN '{market.country}' THEN {_cumulative_case(draw, zones)}")
    return f"CASE country {' '.join(whens)} END"


def _load_reference(con: duckdb.DuckDBPyConnection, products: int) -> None:
    con.execute(
        """CREATE TABLE markets (country VARCHAR, locale VARCHAR, currency VARCHAR, dial_code VARCHAR,
           prefixes VARCHAR[], sub_digits INTEGER, sub_first VARCHAR[], domains VARCHAR[],
           female STRUCT(d VARCHAR, a VARCHAR)[], male STRUCT(d VARCHAR, a VARCHAR)[],
           last STRUCT(d VARCHAR, a VARCHAR)[])"""
    )
    con.execute(
        """CREATE TABLE zones (country VARCHAR, timezone VARCHAR, offset_s BIGINT, prefixes VARCHAR[])"""
    )
    for market in MARKETS:
        con.execute(
            "INSERT INTO markets VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                market.country,
                market.locale,
                market.currency,
                market.dial_code,
                list(market.mobile_prefixes),
                market.subscriber_digits,
                list(market.subscriber_first_digits),
                list(market.email_domains),
                _names(market.female_names),
                _names(market.male_names),
                _names(market.last_names),
            ],
        )
        for zone, _, offset, prefixes in market.zones:
            con.execute(
                "INSERT INTO zones VALUES (?, ?, ?, ?)",
                [market.country, zone, int(offset * 3600), list(prefixes) or None],
            )

    con.execute("CREATE TABLE fx (currency VARCHAR, rate_to_base DOUBLE, decimals INTEGER, ord INTEGER)")
    for n, (currency, rate) in enumerate(FX_RATES.items()):
        con.execute(
            "INSERT INTO fx VALUES (?, ?, ?, ?)", [currency, rate, CURRENCY_DECIMALS.get(currency, 2), n]
        )

    con.execute(
        """CREATE TABLE categories (category VARCHAR, lo DOUBLE, hi DOUBLE, base_price DOUBLE,
           brands VARCHAR[], items VARCHAR[],
           variants STRUCT(label VARCHAR, days INTEGER, mult DOUBLE)[])"""
    )
    for cat, (lo, hi) in zip(CATEGORIES, _cumulative(c.weight for c in CATEGORIES), strict=True):
        con.execute(
            "INSERT INTO categories VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                cat.name,
                lo,
                hi,
                cat.base_price_cny,
                cat.brand_list(),
                cat.item_list(),
                [{"label": v[0], "days": v[1], "mult": v[2]} for v in cat.variants],
            ],
        )

    # Products: category by weight; within a category, rank r walks the brand x item x variant grid in a
    # scrambled order (7919 is prime, so coprime to the grid size) so names are unique until the grid is
    # exhausted, after which an "Edition n" suffix keeps them unique. Popularity rank = product index.
    con.execute(
        f"""
        CREATE TABLE products AS
        WITH drawn AS (
            SELECT p, c.*
            FROM range({products}) t(p)
            JOIN categories c ON u(p, 'category') >= c.lo AND u(p, 'category') < c.hi
        ), ranked AS (
            SELECT *, row_number() OVER (PARTITION BY category ORDER BY p) - 1 AS r,
                   len(brands) * len(items) * len(variants) AS grid
            FROM drawn
        ), combo AS (
            SELECT *, (r * 7919) % grid AS g, r // grid AS edition FROM ranked
        ), named AS (
            SELECT *,
                brands[1 + g % len(brands)] AS brand,
                items[1 + (g // len(brands)) % len(items)] AS item,
                variants[1 + g // (len(brands) * len(items))] AS variant
            FROM combo
        )
        SELECT p AS idx, {PRODUCT_ID_BASE} + 1 + p AS product_id,
            brand || ' ' || item || ' ' || variant.label
                || CASE WHEN edition > 0 THEN ' Edition ' || (edition + 1) ELSE '' END AS name,
            category,
            greatest(9, ceil(base_price * variant.mult * exp(0.35 * nz(p, 'price')) / 10) * 10 - 1)
                AS price_cny,
            variant.days AS consumption_days
        FROM named
        ORDER BY p
        """
    )


def _macros(con: duckdb.DuckDBPyConnection, seed: int) -> None:
    s = f"{seed}::BIGINT"
    # hash(a, b, c) only XORs the last argument's hash into the others', so two tags of one key would be
    # strongly correlated; hashing that value again avalanches every bit and makes the draws independent.
    con.execute(f"CREATE MACRO rh(k, tag) AS hash(hash(k, {s}, tag))")
    con.execute("CREATE MACRO u(k, tag) AS (rh(k, tag) >> 11)::DOUBLE / 9007199254740992.0")  # 53 bits
    con.execute(
        "CREATE MACRO nz(k, tag) AS sqrt(-2 * ln(1 - u(k, tag || ':a'))) * cos(2 * pi() * u(k, tag || ':b'))"
    )  # standard normal by Box-Muller
    con.execute("CREATE MACRO digits(k, tag, n) AS lpad((rh(k, tag) % (10 ** n)::UBIGINT)::VARCHAR, n, '0')")
    con.execute("CREATE MACRO pick(lst, x) AS lst[1 + floor(x * len(lst))::BIGINT]")
    # Local time of day in whole seconds: 8% early morning, 30% working hours, 52% evening peak (18-23h),
    # 10% late night thinning out towards 03:00.
    con.execute(
        """CREATE MACRO tod_s(k, tag) AS floor(3600 * (CASE
               WHEN u(k, tag || ':w') < 0.08 THEN 6 + 3 * u(k, tag || ':h')
               WHEN u(k, tag || ':w') < 0.38 THEN 9 + 9 * u(k, tag || ':h')
               WHEN u(k, tag || ':w') < 0.90 THEN 18 + 5 * u(k, tag || ':h')
               ELSE (23 + 4 * pow(u(k, tag || ':h'), 2)) % 24 END))::BIGINT"""
    )
    # Popularity: product index skewed to the head of the catalogue (top product ~2-7% of picks).
    con.execute("CREATE MACRO popular(x, n) AS floor(n * x * x)::BIGINT")


def generate(
    out_dir: Path,
    members: int,
    seed: int = 42,
    as_of: date | None = None,
    threads: int | None = None,
) -> GenerationResult:
    """Write the six landing files for ``members`` members; each file appears atomically by rename.

    All six are first written to hidden temporary names in ``out_dir`` and renamed only once every one
    succeeded, so a reader sees either the previous set or the new one, never a half-written file.
    """
    if members < 1:
        raise ValueError("members must be at least 1")
    if not 0 <= seed < 2**63:
        raise ValueError("seed must be between 0 and 2**63 - 1")
    as_of = as_of or datetime.now(UTC).date()
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    spill = Path(tempfile.mkdtemp(prefix="retain-datagen-"))
    temps: dict[str, Path] = {}
    try:
        con = duckdb.connect(config={"temp_directory": str(spill), "preserve_insertion_order": True})
        if threads:
            con.execute(f"SET threads = {int(threads)}")
        try:
            _build(con, members, seed, as_of)
            counts: dict[str, int] = {}
            # Largest first, dropping each file's working table once it is written, to bound memory.
            for name, done_with in _WRITE_ORDER:
                tmp = out_dir / f".{name}.parquet.{os.getpid()}.tmp"
                temps[name] = tmp
                counts[name] = con.execute(
                    f"COPY (SELECT * FROM out_{name}) TO '{_sql_path(tmp)}' "
                    "(FORMAT parquet, COMPRESSION zstd)"
                ).fetchone()[0]
                con.execute(f"DROP VIEW out_{name}")
                for table in done_with:
                    con.execute(f"DROP TABLE {table}")
        finally:
            con.close()
        for name, tmp in temps.items():
            os.replace(tmp, out_dir / f"{name}.parquet")
        temps.clear()
    finally:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)
        shutil.rmtree(spill, ignore_errors=True)
    counts = {name: counts[name] for name in FILES}
    return GenerationResult(out_dir, members, seed, as_of, counts, time.perf_counter() - started)


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")


_WRITE_ORDER = (
    ("events", ("ev",)),
    ("order_items", ("items",)),
    ("orders", ("od",)),
    ("members", ("md",)),
    ("products", ()),
    ("fx_rates", ()),
)


def _build(con: duckdb.DuckDBPyConnection, members: int, seed: int, as_of: date) -> None:
    """Create the ``out_*`` views, typed exactly as docs/data-contract.md says, over working tables."""
    _macros(con, seed)
    n_products = product_count(members)
    _load_reference(con, n_products)

    start = history_start(as_of)
    day_us = 86_400 * 1_000_000
    start_us = int(datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp()) * 1_000_000
    as_of_us = int(datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC).timestamp()) * 1_000_000
    # Activity days are 0..last_day relative to start. A local time of day shifted to UTC lands within
    # [-9h, +32h) of its day, so stopping two days early keeps every clean timestamp before as-of 00:00.
    last_day = (as_of - start).days - 2

    def local_ts(day: str, key: str, tag: str) -> str:
        return f"({start_us} + ({day}) * {day_us} + (tod_s({key}, '{tag}') - offset_s) * 1000000)"

    # ---------------------------------------------------------------- members (one row per member, clean)
    con.execute(
        f"""
        CREATE TABLE mb AS
        WITH base AS (
            SELECT i, {MEMBER_ID_BASE} + 1 + i AS member_id,
                {_cumulative_case("u(i, 'country')", [(m.country, m.weight) for m in MARKETS])} AS country,
                CASE WHEN u(i, 'gender') < 0.55 THEN 'female' WHEN u(i, 'gender') < 0.95 THEN 'male'
                     WHEN u(i, 'gender') < 0.97 THEN 'other' ELSE 'unknown' END AS gender,
                CASE WHEN u(i, 'birth_null') < 0.06 THEN NULL
                     ELSE least(75, greatest(18, round(37 + 12 * nz(i, 'age'))))::INTEGER END AS age,
                floor(({last_day} + 1) * pow(u(i, 'signup'), 0.75))::BIGINT AS signup_day
            FROM range({members}) t(i)
        ), zoned AS (
            SELECT *, {_zone_case("u(i, 'zone')")} AS timezone FROM base
        ), named AS (
            -- equi-joins on the drawn labels, and only the picked names leave this step (not the lists)
            SELECT b.*, mk.locale, mk.currency, mk.dial_code, z.offset_s,
                CASE WHEN gender = 'female' OR (gender IN ('other', 'unknown') AND u(i, 'namegender') < 0.5)
                     THEN pick(mk.female, u(i, 'first')) ELSE pick(mk.male, u(i, 'first')) END AS fn,
                pick(mk.last, u(i, 'last')) AS ln,
                pick(coalesce(z.prefixes, mk.prefixes), u(i, 'prefix')) || pick(mk.sub_first, u(i, 'sub1'))
                    || digits(i, 'phone', mk.sub_digits - 1) AS nsn,
                pick(mk.domains, u(i, 'domain')) AS domain
            FROM zoned b JOIN markets mk USING (country) JOIN zones z USING (country, timezone)
        ), contact AS (
            SELECT *,
                CASE WHEN age IS NULL THEN NULL
                     ELSE DATE '{as_of.isoformat()}' - to_years(age)
                          - to_days(floor(u(i, 'bday') * 365)::INTEGER)
                     END AS birth_date,
                CASE floor(u(i, 'email_style') * 4)::INTEGER
                    WHEN 0 THEN fn.a || '.' || ln.a || digits(i, 'e0', 2)
                    WHEN 1 THEN left(fn.a, 1) || ln.a || digits(i, 'e1', 3)
                    WHEN 2 THEN fn.a || '_' || ln.a || (1 + rh(i, 'e2') % 999)::VARCHAR
                    ELSE ln.a || fn.a || digits(i, 'e3', 4) END AS local_part
            FROM named
        )
        SELECT i, member_id, country, locale, timezone, currency, offset_s, gender, age,
            fn.d AS first_name, ln.d AS last_name, birth_date,
            CASE WHEN country = 'CN' AND u(i, 'qq') < 0.35
                 THEN (10000 + rh(i, 'qqnum') % 3000000000)::VARCHAR || '@qq.com'
                 ELSE local_part || '@' || domain END AS email,
            '+' || dial_code || nsn AS phone_e164,
            CASE country
                WHEN 'CN' THEN nsn[1:3] || ' ' || nsn[4:7] || ' ' || nsn[8:11]
                WHEN 'US' THEN '(' || nsn[1:3] || ') ' || nsn[4:6] || '-' || nsn[7:10]
                WHEN 'DE' THEN '0' || nsn[1:3] || ' ' || nsn[4:]
                WHEN 'JP' THEN '0' || nsn[1:2] || '-' || nsn[3:6] || '-' || nsn[7:10]
                WHEN 'GB' THEN '0' || nsn[1:4] || ' ' || nsn[5:]
                WHEN 'FR' THEN '0' || nsn[1:1] || ' ' || nsn[2:3] || ' ' || nsn[4:5] || ' ' || nsn[6:7]
                               || ' ' || nsn[8:9]
                ELSE nsn[1:4] || ' ' || nsn[5:8] END AS phone_national,
            u(i, 'phone_style') < 0.30 AS national_phone,
            signup_day,
            {local_ts("signup_day", "i", "signup_tod")} AS signed_up_us,
            u(i, 'email_opt_in') < 0.80 AS email_opt_in,
            u(i, 'sms_opt_in') < 0.60 AS sms_opt_in
        FROM contact
        ORDER BY i
        """
    )

    # ---------------------------------------------------------------- behaviour plan per member
    con.execute(
        f"""
        CREATE TABLE plan AS
        WITH kind AS (
            SELECT m.i, m.member_id, m.currency, m.offset_s, m.signup_day, m.signed_up_us,
                u(m.i, 'buyer') < {BUYER_SHARE} AS buyer,
                CASE WHEN u(m.i, 'power') < {POWER_BUYER_SHARE} THEN 'power'
                     WHEN u(m.i, 'kind') < {ONE_TIME_SHARE} THEN 'one_time'
                     WHEN u(m.i, 'kind') < {ONE_TIME_SHARE + LOYAL_SHARE} THEN 'loyal'
                     ELSE 'churner' END AS kind,
                u(m.i, 'power') < {POWER_BUYER_SHARE} AS power,
                popular(u(m.i, 'favourite'), {n_products}) AS fav_idx,
                CASE WHEN u(m.i, 'same_day') < 0.4 THEN 0
                     ELSE 1 + floor(-ln(1 - u(m.i, 'lag')) * 14)::BIGINT END AS lag_days
            FROM mb m
        ), timed AS (
            SELECT k.*, p.consumption_days AS fav_days,
                k.signup_day + k.lag_days AS first_day,
                CASE WHEN k.power THEN {POWER_CYCLE_DAYS} * exp(0.4 * nz(k.i, 'cycle'))
                     ELSE coalesce(p.consumption_days, {DEFAULT_CYCLE_DAYS})
                          * exp({CYCLE_SIGMA} * nz(k.i, 'cycle'))
                     END AS raw_cycle,
                CASE k.kind WHEN 'one_time' THEN 0.0 WHEN 'loyal' THEN 1e9
                     WHEN 'power' THEN -ln(1 - u(k.i, 'lifetime')) * {POWER_CHURN_MEAN_DAYS}
                     ELSE -ln(1 - u(k.i, 'lifetime')) * {CHURN_MEAN_DAYS} END AS lifetime_days
            FROM kind k JOIN products p ON p.idx = k.fav_idx
        ), counted AS (
            SELECT *, least(720.0, greatest(4.0, raw_cycle)) AS cycle_days,
                least({last_day}, first_day + lifetime_days) AS end_day
            FROM timed
        )
        SELECT *,
            CASE WHEN buyer AND first_day <= {last_day}
                 THEN least({MAX_ORDERS_PER_MEMBER}, 1 + floor((end_day - first_day) / cycle_days))::BIGINT
                 ELSE 0 END AS planned_orders,
            CASE WHEN lag_days = 0
                 THEN signed_up_us + (300 + floor(u(i, 'first_gap') * 10500))::BIGINT * 1000000
                 ELSE {local_ts("first_day", "i", "first_tod")} END AS first_us
        FROM counted
        ORDER BY i
        """
    )

    # ---------------------------------------------------------------- orders
    con.execute(
        f"""
        CREATE TABLE ob AS
        WITH expanded AS (
            SELECT i, member_id, currency, offset_s, fav_idx, power, first_day, first_us, cycle_days,
                   unnest(range(planned_orders)) AS k
            FROM plan WHERE planned_orders > 0
        ), timed AS (
            SELECT *, i * 4096 + k AS okey,
                CASE WHEN k = 0 THEN first_day
                     ELSE first_day
                          + floor(k * cycle_days + (u(i * 4096 + k, 'jitter') - 0.5) * 0.25 * cycle_days)
                     END::BIGINT AS order_day
            FROM expanded
        )
        SELECT *,
            CASE WHEN k = 0 THEN first_us ELSE {local_ts("order_day", "okey", "order_tod")} END AS ordered_us
        FROM timed
        WHERE order_day <= {last_day}
        """
    )
    con.execute(
        """
        CREATE TABLE o AS
        SELECT row_number() OVER (ORDER BY ordered_us, member_id, k) - 1 AS seq, *
        FROM ob
        """
    )
    con.execute("DROP TABLE ob")
    con.execute(
        f"""
        CREATE TABLE o2 AS
        SELECT {ORDER_ID_BASE} + 1 + seq AS order_id, seq, okey, member_id, currency, ordered_us, power,
               fav_idx,
               {_cumulative_case("u(okey, 'status')", ORDER_STATUSES)} AS status,
               CASE WHEN u(okey, 'items') < 0.55 THEN 1 WHEN u(okey, 'items') < 0.85 THEN 2 ELSE 3 END
                   AS n_items
        FROM o ORDER BY seq
        """
    )
    con.execute("DROP TABLE o")
    n_orders = con.execute("SELECT count(*) FROM o2").fetchone()[0]

    # ---------------------------------------------------------------- order items (priced in order currency)
    con.execute(
        f"""
        CREATE TABLE items AS
        WITH lines AS (
            SELECT order_id, currency, power, seq * 8 + j AS ikey,
                CASE WHEN j = 0 AND u(seq * 8 + j, 'fav') < 0.6 THEN fav_idx
                     ELSE popular(u(seq * 8 + j, 'product'), {n_products}) END AS pidx,
                CASE WHEN power THEN 1 + floor(u(seq * 8 + j, 'qty') * 6)
                     WHEN u(seq * 8 + j, 'qty') < 0.80 THEN 1 WHEN u(seq * 8 + j, 'qty') < 0.95 THEN 2
                     ELSE 3 END::INTEGER AS quantity,
                CASE WHEN u(seq * 8 + j, 'promo') < 0.2 THEN 0.05 * (1 + floor(u(seq * 8 + j, 'depth') * 6))
                     ELSE 0 END AS discount
            FROM (SELECT *, unnest(range(n_items)) AS j FROM o2)
        ), priced AS (
            SELECT l.order_id, p.product_id, l.quantity,
                round(p.price_cny / fx.rate_to_base * (1 - l.discount), fx.decimals) AS unit_price
            FROM lines l JOIN products p ON p.idx = l.pidx JOIN fx ON fx.currency = l.currency
        )
        SELECT order_id, product_id, sum(quantity)::INTEGER AS quantity, min(unit_price) AS unit_price
        FROM priced GROUP BY order_id, product_id
        """
    )
    con.execute(
        """
        CREATE TABLE totals AS
        SELECT i.order_id, round(sum(i.quantity * i.unit_price), any_value(fx.decimals)) AS amount
        FROM items i JOIN o2 ON o2.order_id = i.order_id JOIN fx ON fx.currency = o2.currency
        GROUP BY i.order_id
        """
    )

    # ---------------------------------------------------------------- events
    con.execute(
        f"""
        CREATE TABLE eb AS
        WITH sized AS (
            SELECT p.i, p.member_id, p.offset_s, p.signup_day, p.signed_up_us, p.fav_idx,
                least({last_day},
                      CASE WHEN p.planned_orders > 0 THEN p.end_day + 30
                           ELSE p.signup_day + floor(-ln(1 - u(p.i, 'browse')) * 45) END)::BIGINT AS act_end,
                least({MAX_EVENTS_PER_MEMBER},
                      floor(exp(ln(3) + 0.9 * nz(p.i, 'events'))) + floor(0.8 * p.planned_orders))::BIGINT
                    AS n_events
            FROM plan p
        ), expanded AS (
            SELECT *, unnest(range(n_events)) AS e FROM sized WHERE n_events > 0
        ), timed AS (
            SELECT *, i * 4096 + e AS ekey,
                signup_day + floor(u(i * 4096 + e, 'day') * (act_end - signup_day + 1))::BIGINT AS event_day
            FROM expanded
        )
        SELECT member_id, e, ekey, fav_idx,
            greatest({local_ts("event_day", "ekey", "event_tod")},
                     signed_up_us + (60 + floor(u(ekey, 'after_signup') * 7200))::BIGINT * 1000000)
                AS occurred_us,
            {_cumulative_case("u(ekey, 'type')", EVENT_TYPES)} AS event_type
        FROM timed
        """
    )
    con.execute(
        f"""
        CREATE TABLE ev AS
        SELECT row_number() OVER (ORDER BY occurred_us, member_id, e) - 1 AS seq, ekey, member_id,
            occurred_us, event_type,
            CASE WHEN event_type = 'search' THEN NULL
                 WHEN u(ekey, 'fav') < 0.3 THEN {PRODUCT_ID_BASE} + 1 + fav_idx
                 ELSE {PRODUCT_ID_BASE} + 1 + popular(u(ekey, 'product'), {n_products}) END AS product_id
        FROM eb
        """
    )
    con.execute("DROP TABLE eb")
    con.execute("DROP TABLE plan")
    n_events = con.execute("SELECT count(*) FROM ev").fetchone()[0]

    # ---------------------------------------------------------------- dirty rows and final, typed outputs
    m_bounds = _slots(
        members,
        [NULL_EMAIL_SHARE, MALFORMED_EMAIL_SHARE, UNPARSEABLE_PHONE_SHARE, DUPLICATE_MEMBER_SHARE],
    )
    o_bounds = _slots(
        n_orders,
        [NEGATIVE_AMOUNT_SHARE, FUTURE_ORDER_SHARE, UNKNOWN_CURRENCY_SHARE, DUPLICATE_ORDER_SHARE],
    )
    e_bounds = _slots(n_events, [FUTURE_EVENT_SHARE])
    _pick_dirty(con, "dirty_members", "mb", "i", members, m_bounds[-1][1])
    _pick_dirty(con, "dirty_orders", "o2", "seq", n_orders, o_bounds[-1][1])
    _pick_dirty(con, "dirty_events", "ev", "seq", n_events, e_bounds[-1][1])
    future = f"{as_of_us} + 2 * {day_us} + floor(u(%s, 'future') * 363 * 86400)::BIGINT * 1000000"

    con.execute(
        """
        CREATE TABLE md AS
        SELECT mb.*, d.slot AS s FROM mb LEFT JOIN dirty_members d ON d.k = mb.i
        """
    )
    con.execute("DROP TABLE mb")
    (nl, nh), (ml, mh), (pl, ph), (dl, dh) = m_bounds
    member_cols = f"""
        member_id::BIGINT AS member_id,
        CASE WHEN s >= {nl} AND s < {nh} THEN NULL
             WHEN s >= {ml} AND s < {mh} THEN CASE floor(u(i, 'malformed') * 5)::INTEGER
                 WHEN 0 THEN replace(email, '@', '')
                 WHEN 1 THEN left(email, 1) || '@' || split_part(email, '@', 2)[1:1]
                 WHEN 2 THEN replace(email, '@', '@@')
                 WHEN 3 THEN split_part(email, '@', 1) || '@'
                 ELSE split_part(email, '@', 1) || '@' || split_part(split_part(email, '@', 2), '.', 1) END
             ELSE email END::VARCHAR AS email,
        CASE WHEN s >= {pl} AND s < {ph} THEN pick({_sql_list(MALFORMED_PHONES)}, u(i, 'badphone'))
             WHEN national_phone <> dup THEN phone_national ELSE phone_e164 END::VARCHAR AS phone,
        first_name::VARCHAR AS first_name, last_name::VARCHAR AS last_name, gender::VARCHAR AS gender,
        birth_date::DATE AS birth_date, country::VARCHAR AS country, locale::VARCHAR AS locale,
        timezone::VARCHAR AS timezone, currency::VARCHAR AS currency,
        make_timestamp(signed_up_us)::TIMESTAMP AS signed_up_at,
        (email_opt_in <> dup)::BOOLEAN AS email_opt_in, sms_opt_in::BOOLEAN AS sms_opt_in
    """
    con.execute(
        f"""
        CREATE VIEW out_members AS
        SELECT {member_cols} FROM (
            SELECT *, false AS dup FROM md
            UNION ALL
            SELECT *, true AS dup FROM md WHERE s >= {dl} AND s < {dh}
        ) ORDER BY member_id, dup
        """
    )

    (gl, gh), (fl, fh), (cl, ch), (ol, oh) = o_bounds
    con.execute(
        """
        CREATE TABLE od AS
        SELECT o2.*, t.amount, d.slot AS s
        FROM o2 JOIN totals t USING (order_id) LEFT JOIN dirty_orders d ON d.k = o2.seq
        """
    )
    con.execute("DROP TABLE o2")
    con.execute("DROP TABLE totals")
    con.execute(
        f"""
        CREATE VIEW out_orders AS
        SELECT order_id::BIGINT AS order_id, member_id::BIGINT AS member_id,
            make_timestamp(CASE WHEN s >= {fl} AND s < {fh} THEN {future % "okey"} ELSE ordered_us END)
                ::TIMESTAMP AS ordered_at,
            CASE WHEN s >= {cl} AND s < {ch} THEN pick({_sql_list(UNKNOWN_CURRENCIES)}, u(okey, 'badcur'))
                 ELSE currency END::VARCHAR AS currency,
            (CASE WHEN s >= {gl} AND s < {gh} THEN -amount ELSE amount END)::DOUBLE AS amount,
            status::VARCHAR AS status
        FROM (
            SELECT *, false AS dup FROM od
            UNION ALL
            SELECT *, true AS dup FROM od WHERE s >= {ol} AND s < {oh}
        ) ORDER BY order_id, dup
        """
    )
    con.execute(
        """
        CREATE VIEW out_order_items AS
        SELECT order_id::BIGINT AS order_id, product_id::BIGINT AS product_id, quantity::INTEGER AS quantity,
               unit_price::DOUBLE AS unit_price
        FROM items ORDER BY order_id, product_id
        """
    )
    con.execute(
        """
        CREATE VIEW out_products AS
        SELECT product_id::BIGINT AS product_id, name::VARCHAR AS name, category::VARCHAR AS category,
               price_cny::DOUBLE AS price, 'CNY'::VARCHAR AS currency,
               consumption_days::INTEGER AS consumption_days
        FROM products ORDER BY product_id
        """
    )
    ((xl, xh),) = e_bounds
    con.execute(
        f"""
        CREATE VIEW out_events AS
        SELECT ({EVENT_ID_BASE} + 1 + seq)::BIGINT AS event_id, member_id::BIGINT AS member_id,
            event_type::VARCHAR AS event_type, product_id::BIGINT AS product_id,
            make_timestamp(CASE WHEN d.slot >= {xl} AND d.slot < {xh} THEN {future % "ekey"}
                                ELSE occurred_us END)::TIMESTAMP AS occurred_at
        FROM ev LEFT JOIN dirty_events d ON d.k = ev.seq
        ORDER BY ev.seq
        """
    )
    con.execute(
        """
        CREATE VIEW out_fx_rates AS
        SELECT currency::VARCHAR AS currency, rate_to_base::DOUBLE AS rate_to_base FROM fx ORDER BY ord
        """
    )


def _pick_dirty(
    con: duckdb.DuckDBPyConnection, name: str, source: str, key: str, rows: int, wanted: int
) -> None:
    """Table ``name`` (k, slot): the ``wanted`` keys of ``source`` with the smallest seeded hash, ranked 0..

    Same result as sorting every row by its hash, but only rows whose draw is below a threshold are sorted
    (the draw is monotone in the hash), so picking 0.4% of 10M orders costs a scan rather than a sort.
    The rank decides the dirty kind, so kinds are randomly interleaved through the file.
    """
    share = min(1.0, (2 * wanted + 50) / max(rows, 1))
    while True:
        con.execute(
            f"""
            CREATE OR REPLACE TABLE {name} AS
            SELECT k, row_number() OVER (ORDER BY h, k) - 1 AS slot
            FROM (
                SELECT {key} AS k, rh({key}, '{name}') AS h FROM {source} WHERE u({key}, '{name}') < {share!r}
            )
            QUALIFY slot < {wanted}
            """
        )
        if con.execute(f"SELECT count(*) FROM {name}").fetchone()[0] >= wanted or share >= 1.0:
            return
        share = 1.0


def _slots(rows: int, shares: Sequence[float]) -> list[tuple[int, int]]:
    """Consecutive, non-overlapping slot ranges [lo, hi) holding each dirty kind's exact count."""
    bounds, lo = [], 0
    for share in shares:
        hi = lo + dirty_count(share, rows)
        bounds.append((lo, min(hi, rows)))
        lo = hi
    return bounds
