"""Deterministic synthetic data for a mid-size online retailer (``baton seed``).

Writes customers, identifiers, consents, suppressions and behavioural events into the
marketing store with PostgreSQL ``COPY``, fast enough for a million customers and a
month of events in a few minutes on a small machine.

Determinism
-----------
Everything is a pure function of the parameters, so the same ``(customers, seed,
until, days)`` produces byte-identical rows (``event_id`` included, on an empty
store):

* per-customer *traits* used by the event generator (timezone, preferred category,
  activity level) come from an RNG seeded with ``seed`` alone;
* the other customer columns come from a second RNG seeded with ``seed``; their dates
  are placed relative to the start of the event window of the run that built them
  (customers are historical: they signed up, and last ordered, before the window);
* events are generated per UTC day ``d`` from RNGs seeded with ``(seed, d)``: the day's
  active customers, their purchases, their sessions and the day's stock and price
  notifications each have their own stream.  A day's events may fall on a neighbouring
  day (local time, follow-ups such as ``review_due`` a few days after a purchase); every
  run keeps exactly the generated events whose ``ts`` lies in its window ``(start,
  end]``, so any window is the same slice of one endless, fixed history.

Top-up
------
The parameters and the end of the last window are kept in ``baton_meta`` (key
``seed``).  Called again with the same ``customers`` and ``seed`` (and no ``reset``),
the seeder only appends the events in ``(previous until, new until]`` (bounded to the
last ``days`` days); the result equals one run over the combined window, except for the
surrogate ``event_id`` order.  Different parameters, ``reset=True`` or an interrupted
previous run truncate the seeded tables and rebuild them — without ``reset`` only while the
store holds nothing seed did not write (identifiers from ``baton identity load``, cycles,
messages): those would be lost or point at other people.  Arguments are checked before
anything is touched (at most 10,000,000 customers and 3,650 days; ``until`` not in the future).
"""

from __future__ import annotations

import functools
import json
import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Connection, Engine

from baton.errors import ConfigError
from baton.store.raw import driver_connection
from baton.store.tx import settings_session, transaction

log = logging.getLogger(__name__)

GENERATOR_VERSION = 3  # 2: one person across several profiles (SPEC §6); 3: the very active shopper
META_KEY = "seed"
SEEDED_TABLES = ("customers", "identifiers", "consents", "suppressions", "events")
MAX_CUSTOMERS = 10_000_000
"""The most customers ``baton seed`` writes (the benchmarks use 1,000,000)."""
MAX_DAYS = 3_650
"""The most days of events ``baton seed`` writes."""
DAY = 86_400
CUSTOMER_CHUNK = 100_000
COPY_FLUSH = 20_000  # lines per copy.write()
NULL = "\\N"

# --------------------------------------------------------------------------- vocabulary
# No string below may contain a tab, newline or backslash: rows are written as COPY
# text without escaping (checked at import time by _check_vocabulary()).

# (IANA timezone, weight, calling code, mobile prefix, city)
TIMEZONES: tuple[tuple[str, float, str, str, str], ...] = (
    ("America/New_York", 14.0, "1", "917", "New York, NY"),
    ("America/Chicago", 9.0, "1", "312", "Chicago, IL"),
    ("America/Denver", 4.0, "1", "720", "Denver, CO"),
    ("America/Los_Angeles", 10.0, "1", "213", "Los Angeles, CA"),
    ("America/Phoenix", 2.0, "1", "602", "Phoenix, AZ"),
    ("America/Anchorage", 0.4, "1", "907", "Anchorage, AK"),
    ("Pacific/Honolulu", 0.4, "1", "808", "Honolulu, HI"),
    ("America/Detroit", 1.2, "1", "313", "Detroit, MI"),
    ("America/Indiana/Indianapolis", 0.6, "1", "317", "Indianapolis, IN"),
    ("America/Toronto", 2.0, "1", "416", "Toronto, ON"),
    ("America/Vancouver", 1.0, "1", "604", "Vancouver, BC"),
    ("America/Mexico_City", 1.5, "52", "155", "Mexico City"),
    ("America/Sao_Paulo", 1.5, "55", "119", "Sao Paulo"),
    ("America/Bogota", 0.5, "57", "310", "Bogota"),
    ("America/Argentina/Buenos_Aires", 0.5, "54", "911", "Buenos Aires"),
    ("Europe/London", 8.0, "44", "77", "London"),
    ("Europe/Dublin", 1.0, "353", "87", "Dublin"),
    ("Europe/Paris", 5.0, "33", "6", "Paris"),
    ("Europe/Berlin", 6.0, "49", "151", "Berlin"),
    ("Europe/Madrid", 3.0, "34", "6", "Madrid"),
    ("Europe/Rome", 3.0, "39", "34", "Rome"),
    ("Europe/Amsterdam", 2.0, "31", "6", "Amsterdam"),
    ("Europe/Brussels", 1.0, "32", "47", "Brussels"),
    ("Europe/Stockholm", 1.0, "46", "70", "Stockholm"),
    ("Europe/Oslo", 0.5, "47", "9", "Oslo"),
    ("Europe/Copenhagen", 0.5, "45", "2", "Copenhagen"),
    ("Europe/Warsaw", 1.5, "48", "5", "Warsaw"),
    ("Europe/Vienna", 1.0, "43", "66", "Vienna"),
    ("Europe/Zurich", 1.0, "41", "7", "Zurich"),
    ("Europe/Lisbon", 1.0, "351", "9", "Lisbon"),
    ("Europe/Athens", 0.5, "30", "69", "Athens"),
    ("Europe/Helsinki", 0.5, "358", "4", "Helsinki"),
    ("Europe/Prague", 0.5, "420", "6", "Prague"),
    ("Asia/Tokyo", 1.0, "81", "90", "Tokyo"),
    ("Asia/Singapore", 0.7, "65", "8", "Singapore"),
    ("Asia/Kolkata", 1.0, "91", "9", "Mumbai"),
    ("Asia/Dubai", 0.5, "971", "5", "Dubai"),
    ("Asia/Shanghai", 0.5, "86", "13", "Shanghai"),
    ("Asia/Kathmandu", 0.1, "977", "98", "Kathmandu"),
    ("Australia/Sydney", 1.5, "61", "4", "Sydney, NSW"),
    ("Australia/Perth", 0.3, "61", "4", "Perth, WA"),
    ("Pacific/Auckland", 0.5, "64", "2", "Auckland"),
    ("Africa/Johannesburg", 0.5, "27", "8", "Johannesburg"),
    ("Pacific/Kiritimati", 0.05, "686", "7", "Kiritimati"),
)
MISSING_TZ_SHARE = 0.03
INVALID_TZ_SHARE = 0.01
INVALID_TIMEZONES = ("Mars/Olympus", "EST5EDT-bad", "America/New York", "GMT+25", "Europe/Atlantis")
DEFAULT_TZ = "America/New_York"  # the demo policy's default_timezone

FIRST_NAMES = (
    "Olivia",
    "Liam",
    "Emma",
    "Noah",
    "Ava",
    "Oliver",
    "Sophia",
    "Elijah",
    "Isabella",
    "James",
    "Mia",
    "William",
    "Amelia",
    "Benjamin",
    "Harper",
    "Lucas",
    "Evelyn",
    "Henry",
    "Abigail",
    "Alexander",
    "Emily",
    "Mateo",
    "Ella",
    "Daniel",
    "Camila",
    "Sebastian",
    "Luna",
    "Jack",
    "Sofia",
    "Aiden",
    "Chloe",
    "Samuel",
    "Zoe",
    "David",
    "Nora",
    "Joseph",
    "Lily",
    "Carter",
    "Hannah",
    "Owen",
    "Lea",
    "Jonas",
    "Emilia",
    "Finn",
    "Clara",
    "Paul",
    "Chiara",
    "Luca",
    "Julie",
    "Hugo",
    "Ines",
    "Arthur",
    "Sara",
    "Marco",
    "Yuki",
    "Haruto",
    "Aarav",
    "Priya",
    "Wei",
    "Mei",
    "Fatima",
    "Omar",
    "Aisha",
    "Diego",
    "Valentina",
    "Santiago",
    "Lucia",
    "Mateus",
    "Ana",
    "Pedro",
    "Freya",
    "Oscar",
    "Maja",
    "Elias",
    "Nadia",
    "Tomasz",
    "Zofia",
    "Niamh",
    "Sean",
    "Grace",
)
LAST_NAMES = (
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Nguyen",
    "Hill",
    "Flores",
    "Green",
    "Muller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weber",
    "Dubois",
    "Bernard",
    "Moreau",
    "Laurent",
    "Rossi",
    "Russo",
    "Ferrari",
    "Esposito",
    "Bianchi",
    "Jansen",
    "de Vries",
    "Novak",
    "Kowalski",
    "Nowak",
    "Silva",
    "Santos",
    "Costa",
    "Tanaka",
    "Sato",
    "Suzuki",
    "Patel",
    "Sharma",
    "Singh",
    "Chen",
    "Wang",
    "Murphy",
    "Kelly",
    "O'Brien",
    "Andersson",
    "Johansson",
    "Nielsen",
    "Hansen",
    "Papadopoulos",
    "Ali",
    "Khan",
)
STREETS = (
    "Maple Avenue",
    "Oak Street",
    "Pine Road",
    "Cedar Lane",
    "Elm Street",
    "Park Avenue",
    "Main Street",
    "Highland Drive",
    "Lakeview Terrace",
    "Church Road",
    "Station Road",
    "Mill Lane",
    "Victoria Street",
    "Rue de la Paix",
    "Hauptstrasse",
    "Via Roma",
    "Calle Mayor",
    "Kerkstraat",
    "Sunset Boulevard",
    "Harbour View",
    "Riverside Walk",
    "Orchard Close",
    "King Street",
    "Queen Street",
    "Bridge Road",
)
EMAIL_DOMAINS = ("example.com", "example.net", "example.org", "mail.example.com", "inbox.example.net")

# category -> (nouns, price range in whole currency units)
CATALOG: tuple[tuple[str, tuple[str, ...], int, int], ...] = (
    (
        "apparel",
        (
            "Linen Shirt",
            "Denim Jacket",
            "Wool Sweater",
            "Chino Pants",
            "Summer Dress",
            "Hoodie",
            "Rain Coat",
            "Polo Shirt",
            "Cardigan",
            "Puffer Vest",
        ),
        19,
        189,
    ),
    (
        "shoes",
        (
            "Running Shoes",
            "Leather Boots",
            "Canvas Sneakers",
            "Loafers",
            "Sandals",
            "Trail Runners",
            "Chelsea Boots",
            "Slip-Ons",
        ),
        29,
        219,
    ),
    (
        "accessories",
        ("Leather Belt", "Wool Scarf", "Sunglasses", "Backpack", "Wallet", "Watch", "Tote Bag", "Beanie"),
        12,
        249,
    ),
    (
        "beauty",
        (
            "Face Serum",
            "Lip Balm Set",
            "Night Cream",
            "Shampoo Bar",
            "Eau de Parfum",
            "Clay Mask",
            "Sunscreen SPF 50",
        ),
        8,
        119,
    ),
    (
        "home",
        (
            "Throw Blanket",
            "Scented Candle",
            "Linen Duvet Cover",
            "Table Lamp",
            "Wall Mirror",
            "Cushion Cover",
            "Area Rug",
            "Plant Pot",
        ),
        14,
        299,
    ),
    (
        "kitchen",
        (
            "Chef Knife",
            "Cast Iron Skillet",
            "Coffee Grinder",
            "Espresso Cups",
            "Cutting Board",
            "Stand Mixer",
            "French Press",
            "Dutch Oven",
        ),
        12,
        449,
    ),
    (
        "electronics",
        (
            "Wireless Earbuds",
            "Bluetooth Speaker",
            "Smart Watch",
            "E-Reader",
            "Power Bank",
            "Noise-Cancelling Headphones",
            "Action Camera",
            "Mechanical Keyboard",
        ),
        25,
        599,
    ),
    (
        "outdoor",
        (
            "Camping Tent",
            "Sleeping Bag",
            "Hiking Backpack",
            "Trekking Poles",
            "Water Bottle",
            "Headlamp",
            "Camp Stove",
        ),
        15,
        399,
    ),
    (
        "sports",
        (
            "Yoga Mat",
            "Dumbbell Set",
            "Cycling Jersey",
            "Tennis Racket",
            "Foam Roller",
            "Resistance Bands",
            "Swim Goggles",
        ),
        10,
        259,
    ),
    (
        "toys",
        (
            "Building Blocks",
            "Puzzle 1000pc",
            "Plush Bear",
            "Board Game",
            "Remote Control Car",
            "Art Set",
            "Wooden Train",
        ),
        9,
        129,
    ),
)
CATEGORIES = tuple(c[0] for c in CATALOG)
ADJECTIVES = (
    "Classic",
    "Everyday",
    "Premium",
    "Organic",
    "Nordic",
    "Urban",
    "Vintage",
    "Ultralight",
    "Signature",
    "Essential",
    "Coastal",
    "Alpine",
    "Studio",
    "Heritage",
    "Pro",
)
PRODUCTS_PER_NOUN = 6  # adjective variants per noun

# daily probability of being active, share of customers
ACTIVITY = ((0.05, 0.25), (0.20, 0.08), (0.40, 0.025), (0.35, 0.004))
WEEKDAY_FACTOR = (0.95, 0.92, 0.95, 1.0, 1.05, 1.15, 1.2)  # Monday .. Sunday
PURCHASE_SHARE = (0.02, 0.03)  # of the day's active customers
CART_RATE = 0.15  # non-purchasing sessions that add to cart
ABANDON_RATE = 0.23  # of those carts, share that fire cart_abandoned (~20% of all carts)
BACK_IN_STOCK_RATE = 0.0015  # alerts per day, as a share of all customers
PRICE_DROP_RATE = 0.002
REVIEW_DELAY_DAYS = (3, 7)
HOUR_WEIGHTS = (
    1.0,
    0.5,
    0.3,
    0.2,
    0.2,
    0.4,
    1.0,
    2.0,
    3.0,
    4.0,
    4.5,
    5.0,
    6.0,
    5.5,
    4.5,
    4.5,
    5.0,
    5.5,
    6.5,
    8.0,
    8.5,
    7.5,
    5.0,
    2.5,
)


def _check_vocabulary() -> None:
    words: list[str] = list(INVALID_TIMEZONES) + list(FIRST_NAMES) + list(LAST_NAMES) + list(STREETS)
    words += list(EMAIL_DOMAINS) + list(ADJECTIVES) + [w for t in TIMEZONES for w in (t[0], t[4])]
    words += [w for c in CATALOG for w in (c[0], *c[1])]
    for w in words:
        if any(ch in w for ch in '\t\n\r\\"'):
            raise AssertionError(f"seed vocabulary word {w!r} needs COPY/JSON escaping")


_check_vocabulary()


# ------------------------------------------------------------------------------ results


@dataclass
class SeedStats:
    """What one :func:`run_seed` call wrote."""

    mode: str  # "rebuild", "top_up" or "up_to_date"
    customers: int = 0
    identifiers: int = 0
    consents: int = 0
    suppressions: int = 0
    events: int = 0
    events_by_type: dict[str, int] = field(default_factory=dict)
    window_start: str | None = None  # events written: ts in (window_start, window_end]
    window_end: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The stats as plain data (dicts and numbers), e.g. for JSON."""
        return asdict(self)


# ------------------------------------------------------------------------------ helpers


def _parse_until(until: str | datetime | None) -> datetime:
    if until is None:
        dt = datetime.now(UTC)
    elif isinstance(until, datetime):
        dt = until
    else:
        text = until.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError as exc:
            raise ConfigError(
                f"--until {until!r} is not an ISO 8601 time, e.g. 2026-03-01T12:00:00Z"
            ) from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    dt = dt.astimezone(UTC)
    return dt.replace(second=0, microsecond=0)


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


class _TsFormat:
    """Epoch seconds -> 'YYYY-MM-DD HH:MM:SS+00', cached per minute (cheap in hot loops)."""

    def __init__(self) -> None:
        self._minutes: dict[int, str] = {}
        self._days: dict[int, str] = {}

    def ts(self, epoch: int) -> str:
        m, s = divmod(epoch, 60)
        p = self._minutes.get(m)
        if p is None:
            p = self._minutes[m] = time.strftime("%Y-%m-%d %H:%M:", time.gmtime(m * 60))
        return f"{p}{s:02d}+00"

    def day(self, epoch: int) -> str:
        d = epoch // DAY
        s = self._days.get(d)
        if s is None:
            s = self._days[d] = time.strftime("%Y-%m-%d", time.gmtime(d * DAY))
        return s


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def _diurnal_table(size: int = 8192) -> list[int]:
    """Local minute-of-day for ``size`` evenly spaced quantiles of the shopping curve."""
    weights = [HOUR_WEIGHTS[m // 60] for m in range(1440)]
    total = sum(weights)
    table: list[int] = []
    acc = 0.0
    m = 0
    for i in range(size):
        q = (i + 0.5) / size * total
        while acc + weights[m] < q:
            acc += weights[m]
            m += 1
        table.append(m)
    return table


@dataclass
class _Product:
    segment: str  # 'product_id\titem_name\tcategory\tprice'
    drop_segment: str  # same with the reduced price
    drop_props: str  # properties JSON of a price_drop
    price_cents: int


@dataclass
class _World:
    """Everything derived from (customers, seed) alone: traits and the catalogue."""

    n: int
    ids: list[str]
    tz_idx: bytearray  # index into tz_names (valid zones first, then missing, then invalid)
    pref: bytearray  # preferred category index
    classes: list[list[int]]  # customer indexes per activity class
    heavy: set[int]  # the most active class: sometimes two sessions a day
    followers: list[int]  # the two most active classes: they get stock and price alerts
    products_by_cat: list[list[_Product]]
    browse_segments: list[str]
    tz_names: list[str | None]
    tz_zone: list[str]  # zone used for local time (default for missing/invalid)


def _build_world(n: int, seed: int) -> _World:
    width = max(7, len(str(n)))
    ids = [f"c{i:0{width}d}" for i in range(1, n + 1)]

    # timezone lookup table: 10,000 slots, valid zones by weight, then missing, invalid
    valid = [t[0] for t in TIMEZONES]
    tz_names: list[str | None] = [*valid, None, *INVALID_TIMEZONES]
    tz_zone = [*valid, DEFAULT_TZ, *([DEFAULT_TZ] * len(INVALID_TIMEZONES))]
    slots = 10_000
    n_missing = round(slots * MISSING_TZ_SHARE)
    n_invalid = round(slots * INVALID_TZ_SHARE)
    n_valid = slots - n_missing - n_invalid
    wsum = sum(t[1] for t in TIMEZONES)
    tz_table: list[int] = []
    acc = 0.0
    for k, t in enumerate(TIMEZONES):
        acc += t[1]
        tz_table.extend([k] * (round(acc / wsum * n_valid) - len(tz_table)))
    tz_table.extend([len(valid)] * n_missing)
    for k in range(n_invalid):
        tz_table.append(len(valid) + 1 + k % len(INVALID_TIMEZONES))

    cat_weights = (16, 10, 9, 9, 12, 9, 12, 8, 8, 7)
    cat_table = [k for k, w in enumerate(cat_weights) for _ in range(w)]
    class_table = [k for k, (share, _p) in enumerate(ACTIVITY) for _ in range(round(share * 100))]

    rng = random.Random(f"baton-seed:{seed}:traits")
    r = rng.random
    tz_idx = bytearray(n)
    pref = bytearray(n)
    classes: list[list[int]] = [[] for _ in ACTIVITY]
    nt, nc, ncl = len(tz_table), len(cat_table), len(class_table)
    for i in range(n):
        tz_idx[i] = tz_table[int(r() * nt)]
        pref[i] = cat_table[int(r() * nc)]
        classes[class_table[int(r() * ncl)]].append(i)

    crng = random.Random(f"baton-seed:{seed}:catalog")
    products_by_cat: list[list[_Product]] = []
    serial = 0
    for cat, nouns, lo, hi in CATALOG:
        items: list[_Product] = []
        for noun in nouns:
            for adj in crng.sample(ADJECTIVES, PRODUCTS_PER_NOUN):
                serial += 1
                whole = int(lo + (hi - lo) * crng.random() ** 2)
                cents = whole * 100 + (99 if crng.random() < 0.7 else 0)
                drop = cents - max(100, (cents * crng.choice((10, 15, 20, 25, 30)) // 100) // 100 * 100)
                name = f"{adj} {noun}"
                pid = f"p{serial:05d}"
                items.append(
                    _Product(
                        segment=f"{pid}\t{name}\t{cat}\t{_money(cents)}",
                        drop_segment=f"{pid}\t{name}\t{cat}\t{_money(drop)}",
                        drop_props=f'{{"previous_price": {_money(cents)}}}',
                        price_cents=cents,
                    )
                )
        crng.shuffle(items)  # popularity order: earlier items are picked more often
        products_by_cat.append(items)
    browse_segments = [f"\\N\t\\N\t{cat}\t\\N" for cat in CATEGORIES]
    return _World(
        n,
        ids,
        tz_idx,
        pref,
        classes,
        set(classes[0]),
        classes[0] + classes[1],
        products_by_cat,
        browse_segments,
        tz_names,
        tz_zone,
    )


# ---------------------------------------------------------------------- customers phase


@dataclass
class _CustomerChunk:
    customers: list[str] = field(default_factory=list)
    identifiers: list[str] = field(default_factory=list)
    consents: list[str] = field(default_factory=list)
    suppressions: list[str] = field(default_factory=list)


#: the share of persons with several profiles, and what their other profiles are (SPEC §6)
MULTI_PROFILE_SHARE = 1 / 8
EXTRA_ROLES = ("guest", "app", "cookie")
JUNK_SHARE = 0.002
JUNK_EMAILS = frozenset({"null", "test@test.com"})
TABLET_SHARE = 0.005


def _profile_roles(n: int, seed: int) -> tuple[list[str], list[int]]:
    """Which profiles belong to one person: about one person in eight has two to four profiles — an
    account (``primary``) followed by a guest checkout with the email in another spelling, an app
    install sharing a device id with the account, and a cookie that logs in later.  Returns each
    profile's role (``single``, ``primary``, ``guest``, ``app``, ``cookie``) and its primary's index."""
    rng = random.Random(f"baton-seed:{seed}:identity")
    roles = ["single"] * n
    owner = list(range(n))
    i = 0
    while i < n:
        if n - i > 1 and rng.random() < MULTI_PROFILE_SHARE:
            k = min(rng.choice((2, 3, 4)), n - i)
            roles[i] = "primary"
            for j, role in enumerate(rng.sample(EXTRA_ROLES, k - 1), start=1):
                roles[i + j] = role
                owner[i + j] = i
            i += k
        else:
            i += 1
    return roles, owner


def _respell(email: str, pick: float) -> str:
    """The same address written another way (what a guest checkout form gets)."""
    local, _, domain = email.partition("@")
    if pick < 0.4:
        return email.upper()
    if pick < 0.7:
        return f"{local.capitalize()}@{domain.capitalize()}"
    return f"  {email} "


@dataclass(slots=True)
class _Profile:
    """One customer profile being generated: the columns the later rows (identifiers, consents,
    suppressions) depend on."""

    cid: str
    num: int  # 1-based serial, part of the generated addresses
    role: str  # see _profile_roles
    first: str
    last: str
    days_before: int  # the signup's days before the event window
    signup: int  # epoch
    created: str  # signup as a COPY timestamp
    email: str | None = None  # as typed
    norm_email: str = ""  # "" when there is no email
    phone: str | None = None
    push: str | None = None
    postal: str | None = None
    login: tuple[str, int] | None = None  # (value, first seen)


_TIERS = ("bronze", "silver", "gold", "platinum")


class _CustomerGenerator:
    """The per-customer steps of :func:`_customer_chunks`.

    Two streams: ``rng`` (``…:customers``) draws every column of a profile, ``irng``
    (``…:identity-values``) how the profiles of one person differ.  Each step draws from them in
    a fixed order, whatever the outcome of an earlier draw, so the rows are a pure function of
    ``(customers, seed, anchor)``.
    """

    def __init__(self, world: _World, seed: int, anchor: int, fmt: _TsFormat) -> None:
        self.world = world
        self.anchor = anchor
        self.fmt = fmt
        self.roles, _owner = _profile_roles(world.n, seed)
        self.irng = random.Random(f"baton-seed:{seed}:identity-values")
        self.ir = self.irng.random
        self.rng = random.Random(f"baton-seed:{seed}:customers")
        self.r = self.rng.random
        self.getbits = self.rng.getrandbits
        self.tablets = max(1, world.n // 600)
        self.primary: _Profile | None = None  # the account of the person being generated
        self.tz_info = [(t[2], t[3], t[4]) for t in TIMEZONES]

    def add(self, i: int, chunk: _CustomerChunk) -> None:
        """Generate customer ``i`` and append its rows to ``chunk``."""
        ti = self.world.tz_idx[i]
        cc, mobile, city = self.tz_info[ti] if ti < len(self.tz_info) else self.tz_info[0]
        p = self.contact(i, cc, mobile, city)
        if p.role in ("single", "primary"):
            self.junk(p)
        if p.role == "primary":
            p.login = (f"acct-{p.num}", p.signup)
            self.primary = p
        elif p.role != "single":
            self.other_profile(p)
        attrs = self.attributes(i, p)
        tzname = self.world.tz_names[ti]
        chunk.customers.append(
            f"{p.cid}\t{p.email if p.email is not None else NULL}\t{p.phone or NULL}\t{p.push or NULL}"
            f"\t{p.postal or NULL}\t{p.first}\t{p.last}\t{tzname or NULL}\t{attrs}\t{p.created}\t{p.created}\n"
        )
        self.identifiers(p, chunk.identifiers)
        changed = self.fmt.ts(min(p.signup + int(self.r() * (p.days_before - 1) * DAY), self.anchor - 1))
        self.consents(p, changed, chunk.consents)
        self.suppressions(p, changed, chunk.suppressions)

    def contact(self, i: int, cc: str, mobile: str, city: str) -> _Profile:
        """Name, signup time and the contact columns, each present with its share."""
        r = self.r
        num = i + 1
        first = FIRST_NAMES[int(r() * len(FIRST_NAMES))]
        last = LAST_NAMES[int(r() * len(LAST_NAMES))]
        days_before = 1 + int(r() ** 1.6 * 2190)
        signup = self.anchor - days_before * DAY + int(r() * DAY)
        p = _Profile(
            self.world.ids[i], num, self.roles[i], first, last, days_before, signup, self.fmt.ts(signup)
        )
        if r() < 0.95:
            p.norm_email, p.email = self.email(first, last, num)
        p.phone = f"+{cc}{mobile}{num:07d}" if r() < 0.70 else None
        p.push = f"fcm-{self.getbits(96):024x}" if r() < 0.40 else None
        p.postal = f"{1 + int(r() * 2400)} {STREETS[int(r() * len(STREETS))]}, {city}" if r() < 0.60 else None
        return p

    def email(self, first: str, last: str, num: int) -> tuple[str, str]:
        """(normalised address, the address as typed: sometimes capitalised or padded with spaces)."""
        r = self.r
        local_last = last.lower().replace(" ", "").replace("'", "")
        style = r()
        if style < 0.55:
            local = f"{first.lower()}.{local_last}{num}"
        elif style < 0.8:
            local = f"{first[0].lower()}{local_last}{num}"
        else:
            local = f"{first.lower()}_{local_last}{num}"
        domain = EMAIL_DOMAINS[int(r() * len(EMAIL_DOMAINS))]
        norm = f"{local}@{domain}"
        quirk = r()
        if quirk < 0.05:  # typed with capitals
            return norm, f"{local.capitalize()}@{domain.capitalize()}" if quirk < 0.025 else norm.upper()
        if quirk < 0.06:  # pasted with surrounding spaces
            return norm, f" {norm} "
        return norm, norm

    def junk(self, p: _Profile) -> None:
        """A few accounts have junk typed into the forms (``null``, ``test@test.com``, ``0000000``)."""
        ir = self.ir
        if ir() < JUNK_SHARE:
            p.email = ("null", "NULL", "test@test.com", "Test@Test.com")[int(ir() * 4)]
            p.norm_email = p.email.lower()
            p.phone = "0000000" if ir() < 0.3 else p.phone

    def other_profile(self, p: _Profile) -> None:
        """A guest, app or cookie profile of the person whose account is :attr:`primary` (SPEC §6): its
        own signup near the account's, and the account's identifiers written differently."""
        ir = self.ir
        primary = self.primary
        assert primary is not None  # _profile_roles puts the account first
        signup = max(0, primary.signup + int((ir() * 2 - 1) * 200 * DAY))
        p.signup = min(signup, self.anchor - DAY)
        p.created = self.fmt.ts(p.signup)
        p.email = p.phone = p.push = p.postal = None
        p.norm_email = ""
        if p.role == "guest" and primary.norm_email:
            p.norm_email = primary.norm_email
            p.email = _respell(p.norm_email, ir())
            if primary.phone and ir() < 0.5:  # the phone in another format: the same digits
                digits = primary.phone[1:]
                p.phone = f"+{digits[:-7]} ({digits[-7:-4]}) {digits[-4:]}"
        elif p.role == "app":
            p.push = f"fcm-{self.irng.getrandbits(96):024x}"
        elif p.role == "cookie":
            # logs in later (before the event window, so a top-up never changes the identifiers)
            assert primary.login is not None
            p.login = (primary.login[0], min(p.signup + int(ir() * 40 * DAY) + DAY, self.anchor - 1))

    def attributes(self, i: int, p: _Profile) -> str:
        """The ``attributes`` JSON: purchase history before the window, preferences."""
        r = self.r
        fmt = self.fmt
        x = r()
        orders = 0 if x < 0.35 else 1 + int(((x - 0.35) / 0.65) ** 3 * 40)
        aov = 2500 + int(r() * 12000)
        ltv = orders * aov
        tier = "none" if orders == 0 else _TIERS[min(3, (orders - 1) // 4)]
        attrs = (
            f'{{"loyalty_tier": "{tier}", "lifetime_value": {_money(ltv)}, "orders_count": {orders}, '
            f'"signup_date": "{fmt.day(p.signup)}", "preferred_category": "{CATEGORIES[self.world.pref[i]]}"'
        )
        if orders:
            last_order = self.anchor - 1 - int(r() ** 1.3 * min(p.days_before, 900) * DAY)
            attrs += f', "last_order_date": "{fmt.day(max(last_order, p.signup))}"'
        return attrs + (', "newsletter": true}' if r() < 0.3 else "}")

    def identifiers(self, p: _Profile, ids: list[str]) -> None:
        """Email, phone, cookies, device and login of the profile; an app install shares the
        account's device, a few single profiles a family tablet."""
        r = self.r
        getbits = self.getbits
        cid, created = p.cid, p.created
        if p.email is not None:
            ids.append(f"email\t{p.norm_email}\t{p.norm_email}\t{cid}\t{created}\n")
        if p.phone:
            digits = "".join(c for c in p.phone if c.isdigit())
            ids.append(f"phone\t{p.phone}\t{digits}\t{cid}\t{created}\n")
        cookie = f"ck-{getbits(48):012x}{p.num:x}"
        ids.append(f"cookie\t{cookie}\t{cookie}\t{cid}\t{created}\n")
        if r() < 0.3:
            cookie = f"ck-{getbits(48):012x}{p.num:x}-2"
            ids.append(f"cookie\t{cookie}\t{cookie}\t{cid}\t{self.fmt.ts(p.signup + int(r() * 90 * DAY))}\n")
        if p.push:
            device = f"dev-{p.num:x}-{getbits(32):08x}"
            if p.role == "app":  # the account saw the same device when the app was installed
                assert self.primary is not None
                device = f"dev-app-{self.primary.num:x}"
                ids.append(f"device\t{device}\t{device}\t{self.primary.cid}\t{created}\n")
            elif p.role == "single" and self.ir() < TABLET_SHARE:  # a tablet the family shares
                device = f"tablet-{int(self.ir() * self.tablets):x}"
            ids.append(f"device\t{device}\t{device}\t{cid}\t{created}\n")
        if p.login is not None:
            ids.append(f"login\t{p.login[0]}\t{p.login[0]}\t{cid}\t{self.fmt.ts(p.login[1])}\n")

    def consents(self, p: _Profile, changed: str, cons: list[str]) -> None:
        """SMS opt-ins, email opt-outs and newsletter opt-ins, push opt-outs."""
        r = self.r
        cid = p.cid
        if p.phone and r() < 0.35:
            cons.append(f"{cid}\tsms\t\topt_in\t{'checkout' if r() < 0.6 else 'signup_form'}\t{changed}\n")
        if p.email is not None:
            y = r()
            if y < 0.02:
                cons.append(f"{cid}\temail\t\topt_out\tpreference_center\t{changed}\n")
            elif y < 0.06:
                cons.append(f"{cid}\temail\tpromotions\topt_out\tpreference_center\t{changed}\n")
            elif y < 0.09:
                cons.append(f"{cid}\temail\tnewsletter\topt_out\tunsubscribe_link\t{changed}\n")
            elif y < 0.30:
                cons.append(f"{cid}\temail\tnewsletter\topt_in\tnewsletter_signup\t{p.created}\n")
        if p.push and r() < 0.06:
            cons.append(f"{cid}\tpush\t\topt_out\tapp_settings\t{changed}\n")

    def suppressions(self, p: _Profile, changed: str, sup: list[str]) -> None:
        """Bounced and complained-about emails, invalid phone numbers (a guest shares the account's
        address: the account's suppression is the person's)."""
        r = self.r
        if p.email is not None and r() < 0.01 and p.role != "guest" and p.norm_email not in JUNK_EMAILS:
            reason = "hard_bounce" if r() < 0.7 else "complaint"
            sup.append(f"email\t{p.norm_email}\t{reason}\t{changed}\n")
        if p.phone and r() < 0.003:
            sup.append(f"sms\t{p.phone}\tinvalid_number\t{changed}\n")


def _customer_chunks(
    world: _World, seed: int, anchor: int, fmt: _TsFormat
) -> Iterator[tuple[int, _CustomerChunk]]:
    """Rows of the customer tables, ``CUSTOMER_CHUNK`` customers at a time.

    ``anchor`` (epoch, a midnight) is the start of the event window: signups and
    historical orders lie before it.
    Profiles of one person (:func:`_profile_roles`) share identifiers in other spellings; a few
    profiles carry junk values (``null``, ``test@test.com``, ``0000000``) and a few app installs share
    a family tablet's device id.
    """
    gen = _CustomerGenerator(world, seed, anchor, fmt)
    shopper = _ShopperProfiles(world, seed, anchor, fmt)
    chunk = _CustomerChunk()
    for i in range(world.n):
        if i in shopper.rows:  # her own rows, after the same draws as anyone's: the others' stay as they were
            gen.add(i, _CustomerChunk())
            shopper.add(i, chunk)
        else:
            gen.add(i, chunk)
        if len(chunk.customers) >= CUSTOMER_CHUNK:
            yield i + 1, chunk
            chunk = _CustomerChunk()
    if chunk.customers:
        yield world.n, chunk


# -------------------------------------------------------------------------- events phase


def _day_offsets(world: _World, day: int) -> list[int]:
    """UTC offset in seconds of every timezone index at noon UTC of ``day``."""
    noon = datetime.fromtimestamp(day * DAY + DAY // 2, UTC)
    cache: dict[str, int] = {}
    out: list[int] = []
    for zone in world.tz_zone:
        off = cache.get(zone)
        if off is None:
            delta = noon.astimezone(ZoneInfo(zone)).utcoffset()
            off = cache[zone] = int(delta.total_seconds()) if delta is not None else 0
        out.append(off)
    return out


# margins: how far (in seconds) a generator day's events can fall outside its UTC day
_BEFORE = 16 * 3600  # UTC+14 local morning, minus the session before a purchase
_AFTER = 17 * 3600  # UTC-12 local night, plus a session and a cart-abandonment delay
_FOLLOW_UP = (REVIEW_DELAY_DAYS[1] + 1) * DAY


def _generator_days(start: int, end: int) -> tuple[list[int], list[int]]:
    """(days whose follow-ups only can reach the window, days generated in full)."""
    first_full = (start - _AFTER) // DAY - 1
    last_full = (end + _BEFORE) // DAY + 1
    full = [
        d
        for d in range(first_full, last_full + 1)
        if (d + 1) * DAY + _AFTER > start and d * DAY - _BEFORE <= end
    ]
    lead = (
        [
            d
            for d in range((start - _AFTER - _FOLLOW_UP) // DAY - 1, full[0])
            if (d + 1) * DAY + _AFTER + _FOLLOW_UP > start
        ]
        if full
        else []
    )
    return lead, full


class _DayGenerator:
    """The events of one generator day (see :func:`_day_events`).

    Each part of the day has its own RNG stream (``…:active:{day}``, ``…:purchases:{day}``,
    ``…:sessions:{day}``, ``…:notifications:{day}``), and every value is drawn whether or not its
    event falls in the window: the window must never change what the RNG yields.
    """

    def __init__(
        self,
        world: _World,
        seed: int,
        day: int,
        start: int,
        end: int,
        fmt: _TsFormat,
        minutes: list[int],
        counts: dict[str, int],
    ) -> None:
        self.world = world
        self.seed = seed
        self.day = day
        self.start = start
        self.end = end
        self.ts = fmt.ts
        self.minutes = minutes
        self.counts = counts
        self.offs = _day_offsets(world, day)
        self.base = day * DAY

    def stream(self, part: str) -> random.Random:
        """The RNG of one part of the day."""
        return random.Random(f"baton-seed:{self.seed}:{part}:{self.day}")

    def counted(self, kind: str, t: int) -> bool:
        """Whether an event of ``kind`` at ``t`` lies in the window (then it is counted)."""
        if self.start < t <= self.end:
            self.counts[kind] += 1
            return True
        return False

    def local_time(self, rr: Callable[[], float], i: int) -> int:
        """A time of the day on customer ``i``'s local shopping curve, as epoch seconds."""
        x = rr() * len(self.minutes)
        k = int(x)
        return self.base + self.minutes[k] * 60 + int((x - k) * 60) - self.offs[self.world.tz_idx[i]]

    def pick(self, rr: Callable[[], float], i: int) -> _Product:
        """A product for customer ``i``: mostly of the preferred category, popular ones more often."""
        products = self.world.products_by_cat
        cat = products[self.world.pref[i]] if rr() < 0.65 else products[int(rr() * len(CATEGORIES))]
        return cat[int(rr() ** 2 * len(cat))]

    def active(self) -> list[int]:
        """Who is active today: a share of each activity class, more on busy weekdays."""
        ra = self.stream("active")
        factor = WEEKDAY_FACTOR[(self.day + 3) % 7] * (0.9 + 0.2 * ra.random())  # 1970-01-01 was a Thursday
        active: list[int] = []
        for members, (_share, p) in zip(self.world.classes, ACTIVITY, strict=True):
            k = min(len(members), int(len(members) * p * factor + ra.random()))
            active.extend(ra.sample(members, k))
        return active

    def purchases(
        self, active: list[int], orders: dict[int, tuple[int, list[_Product], str]]
    ) -> Iterator[str]:
        """Fill ``orders`` with the day's purchases (customer -> (time, items, order id)) and yield their
        ``review_due`` follow-ups; a stream of its own, so follow-ups need nothing else."""
        rp = self.stream("purchases")
        rr = rp.random
        share = PURCHASE_SHARE[0] + (PURCHASE_SHARE[1] - PURCHASE_SHARE[0]) * rr()
        buyers = rp.sample(active, min(len(active), int(len(active) * share + rr())))
        for seq, i in enumerate(buyers):
            at = self.local_time(rr, i)
            items = [self.pick(rr, i) for _ in range(1 if rr() < 0.6 else (2 if rr() < 0.7 else 3))]
            order_id = f"o{self.day}-{seq + 1:06d}"
            review_at = (
                at
                + (REVIEW_DELAY_DAYS[0] + int(rr() * (REVIEW_DELAY_DAYS[1] - REVIEW_DELAY_DAYS[0] + 1))) * DAY
            )
            review_at += int((rr() - 0.5) * 4 * 3600)
            orders[i] = (at, items, order_id)
            if self.counted("review_due", review_at):
                yield (
                    f"{self.world.ids[i]}\treview_due\t{self.ts(review_at)}\t{items[0].segment}\t\\N"
                    f"\t{order_id}\t\\N\n"
                )

    def sessions(
        self, active: list[int], orders: dict[int, tuple[int, list[_Product], str]]
    ) -> Iterator[str]:
        """The active customers' sessions: a buyer's first session ends in the purchase; the most
        active class sometimes has a second session."""
        r = self.stream("sessions").random
        heavy = self.world.heavy
        for i in active:
            cid = self.world.ids[i]
            order = orders.get(i)
            n_sessions = 2 if (i in heavy and r() < 0.3) else 1
            for s in range(n_sessions):
                if order is not None and s == 0:
                    yield from self.purchase_session(r, i, cid, order)
                else:
                    yield from self.browse_session(r, i, cid)

    def purchase_session(
        self, r: Callable[[], float], i: int, cid: str, order: tuple[int, list[_Product], str]
    ) -> Iterator[str]:
        """The session before a purchase: maybe a browse, each item viewed and added, the purchase."""
        ts = self.ts
        at, items, order_id = order
        t = at - 60 * (3 + 4 * len(items)) - int(r() * 900)
        if r() < 0.5:
            if self.counted("browse", t):
                yield f"{cid}\tbrowse\t{ts(t)}\t{self.world.browse_segments[self.world.pref[i]]}\t\\N\t\\N\t\\N\n"
            t += 20 + int(r() * 100)
        total = 0
        for prod in items:
            if self.counted("product_view", t):
                yield f"{cid}\tproduct_view\t{ts(t)}\t{prod.segment}\t\\N\t\\N\t\\N\n"
            t += 30 + int(r() * 150)
            total += prod.price_cents
            if self.counted("add_to_cart", t):
                yield f"{cid}\tadd_to_cart\t{ts(t)}\t{prod.segment}\t{_money(total)}\t\\N\t\\N\n"
            t += 10 + int(r() * 60)
        if self.counted("purchase", at):
            yield (
                f"{cid}\tpurchase\t{ts(at)}\t{items[0].segment}\t{_money(total)}\t{order_id}"
                f'\t{{"items": {len(items)}}}\n'
            )

    def browse_session(self, r: Callable[[], float], i: int, cid: str) -> Iterator[str]:
        """A session without a purchase: category browses, product views, sometimes a cart."""
        ts = self.ts
        pref = self.world.pref
        t = self.local_time(r, i)
        x = r()
        n_browse = 0 if x < 0.35 else (1 if x < 0.8 else 2)
        for _ in range(n_browse):
            # draw before filtering: the window must never change what the RNG yields
            c = pref[i] if r() < 0.6 else int(r() * len(CATEGORIES))
            if self.counted("browse", t):
                yield f"{cid}\tbrowse\t{ts(t)}\t{self.world.browse_segments[c]}\t\\N\t\\N\t\\N\n"
            t += 20 + int(r() * 100)
        x = r()
        n_views = 1 if x < 0.4 else (2 if x < 0.65 else (3 if x < 0.82 else (4 if x < 0.93 else 5)))
        viewed: list[_Product] = []
        for _ in range(n_views):
            prod = self.pick(r, i)
            viewed.append(prod)
            if self.counted("product_view", t):
                yield f"{cid}\tproduct_view\t{ts(t)}\t{prod.segment}\t\\N\t\\N\t\\N\n"
            t += 30 + int(r() * 210)
        if r() < CART_RATE:
            yield from self.cart(r, cid, viewed, t)

    def cart(self, r: Callable[[], float], cid: str, viewed: list[_Product], t: int) -> Iterator[str]:
        """The last (or last two) viewed products added to the cart at ``t``, and maybe abandoned."""
        ts = self.ts
        total = 0
        for prod in viewed[-2:] if (len(viewed) > 1 and r() < 0.3) else viewed[-1:]:
            total += prod.price_cents
            if self.counted("add_to_cart", t):
                yield f"{cid}\tadd_to_cart\t{ts(t)}\t{prod.segment}\t{_money(total)}\t\\N\t\\N\n"
            t += 15 + int(r() * 90)
        if r() < ABANDON_RATE:
            t += 3600 + int(r() * 3600)
            if self.counted("cart_abandoned", t):
                last = viewed[-1]
                yield f"{cid}\tcart_abandoned\t{ts(t)}\t{last.segment}\t{_money(total)}\t\\N\t\\N\n"

    def notifications(self) -> Iterator[str]:
        """Stock and price notifications for products people follow; alerts are set by engaged
        shoppers: the two most active classes."""
        rn = self.stream("notifications")
        rr = rn.random
        ids = self.world.ids
        followers = self.world.followers
        n, nf = self.world.n, len(followers)
        for i in rn.sample(followers, min(nf, int(n * BACK_IN_STOCK_RATE + rr()))):
            t = self.base + int(rr() * DAY)
            prod = self.pick(rr, i)
            if self.counted("back_in_stock", t):
                yield f"{ids[i]}\tback_in_stock\t{self.ts(t)}\t{prod.segment}\t\\N\t\\N\t\\N\n"
        for i in rn.sample(followers, min(nf, int(n * PRICE_DROP_RATE + rr()))):
            t = self.base + int(rr() * DAY)
            prod = self.pick(rr, i)
            if self.counted("price_drop", t):
                yield f"{ids[i]}\tprice_drop\t{self.ts(t)}\t{prod.drop_segment}\t\\N\t\\N\t{prod.drop_props}\n"


def _day_events(
    world: _World,
    seed: int,
    day: int,
    start: int,
    end: int,
    full: bool,
    fmt: _TsFormat,
    minutes: list[int],
    counts: dict[str, int],
) -> Iterator[str]:
    """COPY lines of the events generated for UTC ``day`` with ``start < ts <= end``.

    Without ``full`` only the follow-ups of the day's purchases (``review_due``) are
    produced: the streams that make everything else are not even drawn.  The very active
    shopper's profiles get the events of her day (:class:`_ShopperDay`) instead of generated ones.
    """
    gen = _DayGenerator(world, seed, day, start, end, fmt, minutes, counts)
    shopper = _ShopperDay(gen)
    yield from shopper.without_hers(_generated_events(gen, full))
    yield from shopper.events(full)


def _generated_events(gen: _DayGenerator, full: bool) -> Iterator[str]:
    """The day's generated events (see :func:`_day_events`)."""
    active = gen.active()
    orders: dict[int, tuple[int, list[_Product], str]] = {}
    yield from gen.purchases(active, orders)
    if not full:
        return
    yield from gen.sessions(active, orders)
    yield from gen.notifications()


EVENT_TYPES = (
    "browse",
    "product_view",
    "add_to_cart",
    "cart_abandoned",
    "purchase",
    "back_in_stock",
    "price_drop",
    "review_due",
)


# ---------------------------------------------------------------- the very active shopper
# The story the demo tells (issue #11): one shopper whom the shop's independent automations would
# message twenty-odd times a day.  She is one person with three profiles — her account, a guest
# checkout with the same email typed differently and the same phone formatted differently, and the
# app, which shares a device id with the account — and every day she does the same things at the
# same UTC hours (New York's morning to late evening), so any 24 hours hold the same day of hers.

SHOPPER_FIRST, SHOPPER_LAST = "Maya", "Brooks"
SHOPPER_EMAIL = "maya.brooks@example.com"
SHOPPER_TIMEZONE = "America/New_York"
SHOPPER_POSTAL = "41 Orchard Close, New York, NY"
#: (UTC hour after the day's midnight, profile, what she does): ``cart`` views and adds a product and
#: abandons the cart the next hour; ``browse`` views products she never puts in a cart; ``stock`` and
#: ``drop`` are alerts about products she follows; ``buy`` is an order, whose review is due five days on
SHOPPER_DAY: tuple[tuple[int, str, str], ...] = (
    (11, "app", "browse"),
    (12, "account", "cart"),
    (13, "account", "stock"),
    (14, "account", "browse"),
    (15, "account", "drop"),
    (15, "guest", "drop"),
    (16, "guest", "cart"),
    (16, "account", "browse"),
    (17, "account", "buy"),
    (18, "app", "stock"),
    (19, "account", "cart"),
    (20, "app", "cart"),
    (20, "app", "drop"),
    (21, "guest", "browse"),
    (22, "account", "browse"),
    (23, "account", "cart"),
    (24, "account", "stock"),
    (25, "app", "browse"),
    (26, "guest", "cart"),
    (27, "account", "cart"),
)
SHOPPER_REVIEW_DAYS = 5
_SHOPPER_ROLES = ("account", "guest", "app")


@dataclass(frozen=True)
class Shopper:
    """The seed's very active shopper: her profiles' customer ids (the account is her person's id)."""

    account: str
    guest: str
    app: str
    name: str = f"{SHOPPER_FIRST} {SHOPPER_LAST}"
    email: str = SHOPPER_EMAIL

    @property
    def profiles(self) -> tuple[str, str, str]:
        """Her customer ids: account, guest checkout, app."""
        return (self.account, self.guest, self.app)


@functools.lru_cache(maxsize=8)
def _shopper_index(n: int, seed: int) -> int | None:
    """Index of the account of the first person whose profiles are an account, a guest checkout and
    an app install, in that order of creation (:func:`_profile_roles`); None in a seed without one."""
    roles, owner = _profile_roles(n, seed)
    for i in range(n - 2):
        if (
            roles[i] == "primary"
            and {roles[i + 1], roles[i + 2]} == {"guest", "app"}
            and owner[i + 1] == owner[i + 2] == i
            and (i + 3 == n or owner[i + 3] != i)
        ):
            return i
    return None


def very_active_shopper(customers: int, seed: int) -> Shopper | None:
    """The very active shopper of ``baton seed --customers customers --seed seed`` (None in a seed too
    small to have her).  Her rows replace those generated for her three profiles."""
    i = _shopper_index(customers, seed)
    if i is None:
        return None
    width = max(7, len(str(customers)))
    return Shopper(*(f"c{k:0{width}d}" for k in range(i + 1, i + 4)))


def _shopper_profiles(world: _World, seed: int) -> dict[int, str]:
    """Her profiles' indexes and roles (``account``, ``guest``, ``app``)."""
    i = _shopper_index(world.n, seed)
    return {} if i is None else {i + k: role for k, role in enumerate(_SHOPPER_ROLES)}


class _ShopperProfiles:
    """Her customer rows, identifiers and consents (by profile index in :attr:`rows`): fixed values,
    her account created first, so that it is her person's id."""

    def __init__(self, world: _World, seed: int, anchor: int, fmt: _TsFormat) -> None:
        self.rows: dict[int, _CustomerChunk] = {}
        roles = _shopper_profiles(world, seed)
        if not roles:
            return
        rng = random.Random(f"baton-seed:{seed}:shopper")
        account = min(roles)
        num = account + 1
        phone_digits = f"1917{num:07d}"
        device = f"dev-app-{num:x}"
        created = {
            "account": anchor - 700 * DAY + 10 * 3600,
            "guest": anchor - 125 * DAY + 19 * 3600,
            "app": anchor - 60 * DAY + 13 * 3600,
        }
        ts = {role: fmt.ts(t) for role, t in created.items()}
        for i, role in roles.items():
            chunk = self.rows[i] = _CustomerChunk()
            cid = world.ids[i]
            cookie = f"ck-{rng.getrandbits(48):012x}{i + 1:x}"
            chunk.identifiers.append(f"cookie\t{cookie}\t{cookie}\t{cid}\t{ts[role]}\n")
            if role == "account":
                push = f"fcm-{rng.getrandbits(96):024x}"
                own_device = f"dev-{num:x}-{rng.getrandbits(32):08x}"
                columns: tuple[str | None, ...] = (SHOPPER_EMAIL, f"+{phone_digits}", push, SHOPPER_POSTAL)
                orders, ltv, last_order = 14, 218450, anchor - DAY
                chunk.identifiers += [
                    f"email\t{SHOPPER_EMAIL}\t{SHOPPER_EMAIL}\t{cid}\t{ts[role]}\n",
                    f"phone\t+{phone_digits}\t{phone_digits}\t{cid}\t{ts[role]}\n",
                    f"device\t{own_device}\t{own_device}\t{cid}\t{ts[role]}\n",
                    f"device\t{device}\t{device}\t{cid}\t{ts['app']}\n",  # the app was installed on it
                    f"login\tacct-{num}\tacct-{num}\t{cid}\t{ts[role]}\n",
                ]
                chunk.consents += [
                    f"{cid}\tsms\t\topt_in\tcheckout\t{ts[role]}\n",
                    f"{cid}\temail\tnewsletter\topt_in\tnewsletter_signup\t{ts[role]}\n",
                ]
            elif role == "guest":  # the same email and phone, typed at a checkout
                phone = f"+1 (917) {phone_digits[4:7]}-{phone_digits[7:]}"
                columns = ("Maya.Brooks@Example.com", phone, None, None)
                orders, ltv, last_order = 1, 6499, created["guest"]
                chunk.identifiers += [
                    f"email\t{SHOPPER_EMAIL}\t{SHOPPER_EMAIL}\t{cid}\t{ts[role]}\n",
                    f"phone\t{phone}\t{phone_digits}\t{cid}\t{ts[role]}\n",
                ]
            else:  # the app: a push token and the device it shares with the account
                columns = (None, None, f"fcm-{rng.getrandbits(96):024x}", None)
                orders, ltv, last_order = 0, 0, None
                chunk.identifiers.append(f"device\t{device}\t{device}\t{cid}\t{ts[role]}\n")
            tier = _TIERS[min(3, (orders - 1) // 4)] if orders else "none"
            attrs = (
                f'{{"loyalty_tier": "{tier}", "lifetime_value": {_money(ltv)}, "orders_count": {orders}, '
                f'"signup_date": "{fmt.day(created[role])}", "preferred_category": "home"'
                + (f', "last_order_date": "{fmt.day(last_order)}"' if last_order is not None else "")
                + (', "newsletter": true}' if role == "account" else "}")
            )
            email, phone_col, push_col, postal = columns
            tz = NULL if role == "guest" else SHOPPER_TIMEZONE
            chunk.customers.append(
                f"{cid}\t{email or NULL}\t{phone_col or NULL}\t{push_col or NULL}\t{postal or NULL}"
                f"\t{SHOPPER_FIRST}\t{SHOPPER_LAST}\t{tz}\t{attrs}\t{ts[role]}\t{ts[role]}\n"
            )

    def add(self, i: int, chunk: _CustomerChunk) -> None:
        """Append profile ``i``'s rows to ``chunk``."""
        mine = self.rows[i]
        chunk.customers += mine.customers
        chunk.identifiers += mine.identifiers
        chunk.consents += mine.consents


class _ShopperDay:
    """Her events of one generator day (:data:`SHOPPER_DAY`), from a stream of their own
    (``…:shopper:{day}``); the events generated for her profiles are left out."""

    def __init__(self, gen: _DayGenerator) -> None:
        self.gen = gen
        roles = _shopper_profiles(gen.world, gen.seed)
        self.cids = {role: gen.world.ids[i] for i, role in roles.items()}
        self.prefixes = tuple(f"{cid}\t" for cid in self.cids.values())

    def without_hers(self, lines: Iterator[str]) -> Iterator[str]:
        """``lines`` but those of her profiles (uncounted again)."""
        if not self.prefixes:
            yield from lines
            return
        for line in lines:
            if line.startswith(self.prefixes):
                self.gen.counts[line.split("\t", 2)[1]] -= 1
            else:
                yield line

    def pools(self) -> tuple[list[_Product], list[_Product], list[_Product], list[_Product]]:
        """Products she browses and follows (home), puts in carts (apparel over $25), buys (beauty), and
        those she follows whose price drops by at least 12%."""
        by_cat = self.gen.world.products_by_cat
        home = by_cat[CATEGORIES.index("home")][:8]
        carts = [p for p in by_cat[CATEGORIES.index("apparel")] if p.price_cents >= 2500][:8]
        buys = by_cat[CATEGORIES.index("beauty")][:6]
        drops = [p for p in home if 100 * _cents(p.drop_segment.rsplit("\t", 1)[1]) <= 88 * p.price_cents]
        return home, carts, buys, drops or home

    def events(self, full: bool) -> Iterator[str]:
        """Her day's events in the window (without ``full``: only the reviews due from its order)."""
        if not self.cids:
            return
        gen = self.gen
        r = random.Random(f"baton-seed:{gen.seed}:shopper:{gen.day}").random
        home, carts, buys, drops = self.pools()
        for hour, role, action in SHOPPER_DAY:  # every value drawn, whatever is kept
            cid = self.cids[role]
            t = gen.base + hour * 3600 + 300 + int(r() * 2400)
            if action == "cart":
                prod = carts[int(r() * len(carts))]
                money = _money(prod.price_cents)
                lines = [
                    ("product_view", t, f"{prod.segment}\t\\N\t\\N\t\\N"),
                    ("add_to_cart", t + 100, f"{prod.segment}\t{money}\t\\N\t\\N"),
                    ("cart_abandoned", t + 3600 + int(r() * 600), f"{prod.segment}\t{money}\t\\N\t\\N"),
                ]
            elif action == "browse":
                first, second = home[int(r() * len(home))], home[int(r() * len(home))]
                lines = [("browse", t, "\\N\t\\N\thome\t\\N\t\\N\t\\N\t\\N")]
                for k, prod in enumerate((first, second, first), start=1):
                    lines.append(("product_view", t + 90 * k, f"{prod.segment}\t\\N\t\\N\t\\N"))
            elif action == "stock":
                prod = home[int(r() * len(home))]
                lines = [("back_in_stock", t, f"{prod.segment}\t\\N\t\\N\t\\N")]
            elif action == "drop":
                prod = drops[int(r() * len(drops))]
                lines = [("price_drop", t, f"{prod.drop_segment}\t\\N\t\\N\t{prod.drop_props}")]
            else:  # buy
                prod = buys[int(r() * len(buys))]
                money, order_id = _money(prod.price_cents), f"o{gen.day}-s{min(self.cids.values())}"
                due = t + SHOPPER_REVIEW_DAYS * DAY + 3600
                lines = [
                    ("product_view", t, f"{prod.segment}\t\\N\t\\N\t\\N"),
                    ("add_to_cart", t + 120, f"{prod.segment}\t{money}\t\\N\t\\N"),
                    ("purchase", t + 360, f'{prod.segment}\t{money}\t{order_id}\t{{"items": 1}}'),
                    ("review_due", due, f"{prod.segment}\t\\N\t{order_id}\t\\N"),
                ]
            for kind, at, rest in lines:
                if (full or kind == "review_due") and gen.counted(kind, at):
                    yield f"{cid}\t{kind}\t{gen.ts(at)}\t{rest}\n"


def _cents(money: str) -> int:
    whole, _, cents = money.partition(".")
    return int(whole) * 100 + int(cents or 0)


# ------------------------------------------------------------------------------ writing

COPY_SQL = {
    "customers": "COPY customers (customer_id, email, phone, push_token, postal_address, first_name, "
    "last_name, timezone, attributes, created_at, updated_at) FROM STDIN",
    "identifiers": "COPY identifiers (kind, value, norm, customer_id, first_seen) FROM STDIN",
    "consents": "COPY consents (customer_id, channel, topic, status, source, updated_at) FROM STDIN",
    "suppressions": "COPY suppressions (channel, address, reason, created_at) FROM STDIN",
    "events": "COPY events (customer_id, type, ts, product_id, item_name, category, price, cart_value, "
    "order_id, properties) FROM STDIN",
}


def _copy_lines(cur: Any, table: str, lines: Iterator[str] | list[str]) -> int:
    """COPY text lines into ``table``; returns the number of rows."""
    count = 0
    buf: list[str] = []
    with cur.copy(COPY_SQL[table]) as copy:
        for line in lines:
            buf.append(line)
            if len(buf) >= COPY_FLUSH:
                copy.write("".join(buf))
                count += len(buf)
                buf.clear()
        if buf:
            copy.write("".join(buf))
            count += len(buf)
    return count


def _read_meta(cur: Any) -> dict[str, Any] | None:
    cur.execute("select value from baton_meta where key = %(key)s", {"key": META_KEY})
    row = cur.fetchone()
    if row is None:
        return None
    value = row[0]
    return json.loads(value) if isinstance(value, str) else dict(value)


def _write_meta(cur: Any, value: dict[str, Any]) -> None:
    cur.execute(
        "insert into baton_meta (key, value, updated_at) values (%(key)s, %(value)s::jsonb, now()) "
        "on conflict (key) do update set value = excluded.value, updated_at = excluded.updated_at",
        {"key": META_KEY, "value": json.dumps(value, sort_keys=True)},
    )


@contextmanager
def _session(engine: Engine) -> Iterator[Connection]:
    """A dedicated session for the bulk load: ``synchronous_commit = off`` (reset before the
    connection returns to the pool); each step is a :func:`~baton.store.tx.transaction` on it."""
    with settings_session(engine, synchronous_commit="off") as conn:
        raw = driver_connection(conn)
        if not hasattr(raw, "cursor") or not hasattr(raw, "commit"):
            raise ConfigError("baton seed needs the psycopg (3) driver for PostgreSQL")
        yield conn


# ------------------------------------------------------------------------------- driver


@dataclass
class _Plan:
    """What a :func:`run_seed` call does: ``mode`` (``rebuild``, ``top_up`` or ``up_to_date``), the
    start of the events it writes and the ``baton_meta`` value it keeps while it writes them."""

    mode: str
    start: int
    meta: dict[str, Any]


def _refuse_silent_rebuild(conn: Connection, meta: dict[str, Any], *, customers: int, seed: int) -> None:
    """A rebuild replaces every profile; without ``--reset`` it must not also throw away what seed did not
    write — identifiers loaded by ``baton identity load`` — or leave history (cycles, messages) pointing at
    customer ids that now hold other people."""
    with transaction(conn) as tx:
        loaded = int(tx.execute("select count(*) from identifiers where source is not null").fetchone()[0])
        cycles = int(tx.execute("select count(*) from cycles").fetchone()[0])
        messages = int(tx.execute("select count(*) from messages").fetchone()[0])
    lost = [
        what
        for n, what in (
            (loaded, f"{loaded:,} identifier(s) loaded by `baton identity load`"),
            (cycles, f"{cycles:,} cycle(s)"),
            (messages, f"{messages:,} message(s)"),
        )
        if n
    ]
    if not lost:
        return
    was = f"--customers {meta.get('customers')} --seed {meta.get('seed')}"
    why = "a new generator version" if meta.get("version") != GENERATOR_VERSION else "other arguments"
    raise ConfigError(
        f"the store was seeded with {was}; {why} (--customers {customers} --seed {seed}) would rebuild it, "
        f"deleting every profile while the store holds {', '.join(lost)} that would be lost or point at other "
        f"people: pass --reset to rebuild anyway, or {was} to top it up"
    )


def needs_rebuild(engine: Engine, *, customers: int, seed: int) -> bool:
    """Whether seeding with these arguments rebuilds the store (other arguments or generator version
    than it was seeded with, or an unfinished seed) rather than topping it up."""
    with transaction(engine) as tx:
        has_meta = bool(tx.execute("select to_regclass('baton_meta') is not null").fetchone()[0])
        meta = _read_meta(tx.cursor()) if has_meta else None
    return not _seeded_with(meta, customers=customers, seed=seed)


def _seeded_with(meta: dict[str, Any] | None, *, customers: int, seed: int) -> bool:
    """Whether the store's seed (``baton_meta``) is complete and was written by this generator version
    with these arguments — then seeding again tops it up instead of rebuilding it."""
    return bool(
        meta is not None
        and meta.get("complete")
        and meta.get("version") == GENERATOR_VERSION
        and meta.get("customers") == customers
        and meta.get("seed") == seed
    )


def _plan(conn: Connection, *, customers: int, days: int, seed: int, end: int, reset: bool) -> _Plan:
    """Rebuild, top up or nothing to add, from what ``baton_meta`` says about the store's data."""
    with transaction(conn) as tx, tx.cursor() as cur:
        meta = _read_meta(cur)
        cur.execute("select exists (select 1 from customers)")
        has_rows = bool(cur.fetchone()[0])
    if _seeded_with(meta, customers=customers, seed=seed) and not reset:
        assert meta is not None
        prev_end = int(datetime.fromisoformat(meta["until"].replace("Z", "+00:00")).timestamp())
        if end <= prev_end:
            return _Plan("up_to_date", prev_end, meta)
        return _Plan("top_up", max(prev_end, end - days * DAY), {**meta, "complete": False})
    if meta is None and has_rows and not reset:
        raise ConfigError(
            "the store already holds customers that `baton seed` did not write; pass --reset to replace them"
        )
    if meta is not None and has_rows and not reset:
        _refuse_silent_rebuild(conn, meta, customers=customers, seed=seed)
    start = end - days * DAY
    meta = {
        "version": GENERATOR_VERSION,
        "customers": customers,
        "seed": seed,
        "start": _iso(start),
        "until": _iso(end),
        "days": days,
        "complete": False,
    }
    return _Plan("rebuild", start, meta)


def _progress(console: Any) -> Any:
    """A rich progress display on ``console``, or nothing without one."""
    if console is None:
        return nullcontext()
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def _seed_customers(
    conn: Connection,
    world: _World,
    seed: int,
    anchor: int,
    fmt: _TsFormat,
    stats: SeedStats,
    progress: Any,
    say: Callable[[str], None],
) -> None:
    """Write the customer tables, one transaction per chunk of customers."""
    t0 = time.perf_counter()
    task = progress.add_task("customers", total=world.n) if progress else None
    for done, chunk in _customer_chunks(world, seed, anchor, fmt):
        with transaction(conn) as tx, tx.cursor() as cur:
            stats.customers += _copy_lines(cur, "customers", chunk.customers)
            stats.identifiers += _copy_lines(cur, "identifiers", chunk.identifiers)
            stats.consents += _copy_lines(cur, "consents", chunk.consents)
            stats.suppressions += _copy_lines(cur, "suppressions", chunk.suppressions)
        if progress:
            progress.update(task, completed=done)
    stats.seconds["customers"] = round(time.perf_counter() - t0, 2)
    say(
        f"customers: {stats.customers:,} customers, {stats.identifiers:,} identifiers, "
        f"{stats.consents:,} consents, {stats.suppressions:,} suppressions "
        f"in {stats.seconds['customers']:.1f}s"
    )


def _seed_events(
    conn: Connection,
    world: _World,
    seed: int,
    window: tuple[int, int],
    fmt: _TsFormat,
    stats: SeedStats,
    progress: Any,
    say: Callable[[str], None],
) -> None:
    """Write the events with ``ts`` in ``window`` (start, end], one transaction per generator day."""
    start, end = window
    t0 = time.perf_counter()
    lead, full = _generator_days(start, end)
    todo = [(d, False) for d in lead] + [(d, True) for d in full]
    task = progress.add_task("events", total=len(todo)) if progress else None
    counts = dict.fromkeys(EVENT_TYPES, 0)
    minutes = _diurnal_table()
    for d, is_full in todo:
        with transaction(conn) as tx, tx.cursor() as cur:
            stats.events += _copy_lines(
                cur, "events", _day_events(world, seed, d, start, end, is_full, fmt, minutes, counts)
            )
        if progress:
            progress.advance(task)
    stats.events_by_type = counts
    stats.seconds["events"] = round(time.perf_counter() - t0, 2)
    say(
        f"events: {stats.events:,} in ({stats.window_start}, {stats.window_end}] "
        f"in {stats.seconds['events']:.1f}s — " + ", ".join(f"{k} {v:,}" for k, v in counts.items())
    )


def _finish(conn: Connection, plan: _Plan, end: int, stats: SeedStats) -> None:
    """Mark the seed complete up to ``end`` and analyze the tables written."""
    t0 = time.perf_counter()
    with transaction(conn) as tx, tx.cursor() as cur:
        plan.meta.update(until=_iso(end), complete=True)
        _write_meta(cur, plan.meta)
    for table in SEEDED_TABLES if plan.mode == "rebuild" else ("events",):
        with transaction(conn) as tx:  # one table at a time: no lock held longer than its analyze
            tx.execute(f"analyze {table}")
    stats.seconds["analyze"] = round(time.perf_counter() - t0, 2)


def run_seed(
    engine: Engine,
    *,
    customers: int,
    days: int,
    seed: int,
    until: str | datetime | None = None,
    reset: bool = False,
    console: Any = None,
) -> SeedStats:
    """Fill (or top up) the store with synthetic retail data; see the module docstring."""
    if not 1 <= customers <= MAX_CUSTOMERS:
        raise ConfigError(f"--customers must be from 1 to {MAX_CUSTOMERS:,}")
    if not 1 <= days <= MAX_DAYS:
        raise ConfigError(f"--days must be from 1 to {MAX_DAYS:,}")
    until_at = _parse_until(until)
    latest = datetime.now(UTC) + timedelta(days=1)
    if not datetime(1971, 1, 1, tzinfo=UTC) + timedelta(days=days) <= until_at <= latest:
        raise ConfigError(
            f"--until {until_at.isoformat()} is out of range: give a time after 1971 plus --days and not in "
            "the future (a seed up to a future time would leave later seeds nothing to add until then)"
        )
    end = int(until_at.timestamp())
    say: Callable[[str], None] = console.print if console is not None else (lambda _msg: None)
    t_all = time.perf_counter()

    with _session(engine) as conn:
        plan = _plan(conn, customers=customers, days=days, seed=seed, end=end, reset=reset)
        if plan.mode == "up_to_date":
            until_iso = plan.meta["until"]
            say(
                f"store already seeded up to {until_iso} ({customers:,} customers, seed {seed}): nothing to add"
            )
            return SeedStats(mode="up_to_date", window_start=until_iso, window_end=until_iso)
        stats = SeedStats(mode=plan.mode, window_start=_iso(plan.start), window_end=_iso(end))
        with _progress(console) as progress:
            t0 = time.perf_counter()
            with transaction(conn) as tx, tx.cursor() as cur:
                if plan.mode == "rebuild":
                    cur.execute(f"truncate {', '.join(SEEDED_TABLES)} restart identity")
                _write_meta(cur, plan.meta)
            world = _build_world(customers, seed)
            stats.seconds["prepare"] = round(time.perf_counter() - t0, 2)
            fmt = _TsFormat()
            if plan.mode == "rebuild":
                _seed_customers(conn, world, seed, plan.start // DAY * DAY, fmt, stats, progress, say)
            _seed_events(conn, world, seed, (plan.start, end), fmt, stats, progress, say)
            _finish(conn, plan, end, stats)

    stats.seconds["total"] = round(time.perf_counter() - t_all, 2)
    say(f"seed {plan.mode} done in {stats.seconds['total']:.1f}s")
    log.info("seed %s: %s", plan.mode, stats)
    return stats
