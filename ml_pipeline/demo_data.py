"""Deterministic demo data: a B2B purchase log with planted, learnable structure.

The demo project, the tutorials and the model-quality tests all train on this
log, so it has to look like a real wholesale distributor's order lines and it
has to hide structure that a good recommender finds and a popularity list
does not:

* **buyers** have a segment (wholesale, retail, horeca, office, education), a
  city and a skewed activity level; a fifth of them join during the period
  (cold starts in any time split);
* **products** sit in a category -> subcategory tree with a log-normal,
  category-dependent list price and a Zipf-like popularity;
* **taste**: every buyer and product has a latent vector (buyers: segment +
  region + own noise; products: category + subcategory + own noise), and the
  segments have explicit category preferences. A line picks a subcategory with
  probability ∝ mass × exp(preference + buyer·subcategory + seasonality), then
  a product in it ∝ popularity × exp(buyer·product), by resampling a few
  popularity-drawn candidates by taste (sampling-importance-resampling);
* **habits**: each buyer has a few favourite products, drawn from its own
  taste, that about half of its lines reorder; this is what makes individual
  history beat segment-level and global popularity;
* **time**: orders of several lines share a timestamp; volume has a weekly
  pattern (quiet weekends), a yearly cycle, holidays and growth, and each
  category has its own seasonal peak (education in August, beverages in July);
* **quantity** grows with affinity, with reorders and with the segment
  (wholesale buys more), falls with price, and is a positive whole number.

Everything is a pure function of :class:`DemoSpec`: the catalogue and the
per-day row counts come from ``seed``; rows are made in fixed blocks of
``BLOCK_ROWS``, each with its own random stream, and re-cut into batches, so
the same spec gives the same rows whatever ``batch_rows`` is. Rows come out
sorted by timestamp. Memory depends on the number of buyers and products and on
the batch size, never on ``rows``.

Command line::

    python -m ml_pipeline.demo_data --rows 100000 --out /tmp/x.parquet [--format csv] [--seed 0]

(Over the usual module size on purpose: the world's constants and the one
generator that draws from them are a single model of the data, read together.)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from ml_pipeline.errors import ConfigError, Problem

COLUMNS = (
    "buyer_id",
    "product_id",
    "timestamp",
    "quantity",
    "price",
    "buyer_segment",
    "buyer_city",
    "product_category",
    "product_subcategory",
)
SCHEMA = pa.schema(
    [
        ("buyer_id", pa.string()),
        ("product_id", pa.string()),
        ("timestamp", pa.timestamp("us")),
        ("quantity", pa.float64()),
        ("price", pa.float64()),
        ("buyer_segment", pa.string()),
        ("buyer_city", pa.string()),
        ("product_category", pa.string()),
        ("product_subcategory", pa.string()),
    ]
)
FORMATS = ("parquet", "csv")

# Rows are generated in blocks of this size, each with its own random stream:
# the unit of determinism (not the caller's batch size) and of working memory.
BLOCK_ROWS = 65_536
# Parquet row groups: large enough for good compression and column statistics.
ROW_GROUP_ROWS = 262_144


# --------------------------------------------------------------------------- the world


@dataclass(frozen=True)
class Category:
    name: str
    subcategories: tuple[str, ...]
    median_price: float
    peak: tuple[int, int]  # (month, day) of the seasonal peak
    seasonality: float  # amplitude of the log seasonal factor


CATEGORIES = (
    Category("Beverages", ("Coffee", "Tea", "Soft drinks", "Bottled water", "Juices"), 14.0, (7, 15), 0.35),
    Category("Food", ("Snacks", "Dairy", "Bakery", "Frozen food", "Canned goods", "Dry goods"), 9.0, (12, 10), 0.2),
    Category(
        "Cleaning", ("Detergents", "Disinfectants", "Paper towels", "Trash bags", "Cleaning tools"), 16.0, (4, 1), 0.15
    ),
    Category(
        "Office supplies",
        ("Copy paper", "Pens and markers", "Folders and binders", "Printer ink", "Desk accessories"),
        8.0,
        (9, 1),
        0.2,
    ),
    Category(
        "Kitchen",
        ("Cookware", "Utensils", "Disposable tableware", "Food storage", "Small appliances"),
        35.0,
        (11, 15),
        0.15,
    ),
    Category("Furniture", ("Chairs", "Desks", "Storage cabinets", "Shelving"), 190.0, (8, 25), 0.25),
    Category(
        "Electronics", ("Laptops", "Monitors", "Peripherals", "Cables and adapters", "Printers"), 110.0, (11, 25), 0.3
    ),
    Category(
        "Education",
        ("Textbooks", "Art supplies", "Lab equipment", "Classroom decor", "Educational games"),
        22.0,
        (8, 15),
        0.7,
    ),
    Category("Packaging", ("Boxes", "Tape", "Shipping labels", "Bubble wrap", "Carrier bags"), 18.0, (12, 1), 0.45),
    Category("Health and safety", ("Gloves", "First aid", "Hand soap", "Masks", "Safety signs"), 12.0, (1, 20), 0.35),
)


@dataclass(frozen=True)
class Segment:
    name: str
    share: float  # share of buyers
    activity: float  # relative order frequency
    lines: float  # mean lines per order
    quantity: float  # typical units per line
    discount: float  # price paid / list price
    reorder: float  # share of lines that reorder a favourite product
    prefers: dict[str, float] = field(default_factory=dict)  # category -> log preference (others: NOT_PREFERRED)


NOT_PREFERRED = -1.0
SEGMENTS = (
    Segment(
        "wholesale",
        0.08,
        3.0,
        7.0,
        24.0,
        0.82,
        0.55,
        {"Food": 1.2, "Beverages": 1.2, "Packaging": 1.5, "Cleaning": 0.8, "Health and safety": 0.5},
    ),
    Segment(
        "retail",
        0.30,
        1.0,
        3.0,
        6.0,
        0.95,
        0.5,
        {"Food": 1.5, "Beverages": 1.5, "Packaging": 0.8, "Health and safety": 0.5, "Cleaning": 0.3},
    ),
    Segment(
        "horeca",
        0.27,
        1.6,
        4.0,
        8.0,
        0.92,
        0.6,
        {"Food": 1.5, "Beverages": 1.3, "Kitchen": 1.5, "Cleaning": 0.8, "Health and safety": 0.5},
    ),
    Segment(
        "office",
        0.25,
        0.6,
        2.5,
        3.0,
        1.0,
        0.45,
        {"Office supplies": 1.8, "Electronics": 1.2, "Furniture": 1.0, "Beverages": 0.6, "Cleaning": 0.2},
    ),
    Segment(
        "education",
        0.10,
        0.8,
        3.5,
        10.0,
        0.9,
        0.45,
        {"Education": 2.0, "Office supplies": 1.2, "Furniture": 0.6, "Cleaning": 0.3, "Health and safety": 0.3},
    ),
)

# (city, region, population in millions): the buyers' cities, drawn by population.
CITIES = (
    ("New York", "Northeast", 8.3),
    ("Los Angeles", "West", 3.9),
    ("Chicago", "Midwest", 2.7),
    ("Houston", "South", 2.3),
    ("Phoenix", "West", 1.6),
    ("Philadelphia", "Northeast", 1.6),
    ("San Antonio", "South", 1.5),
    ("San Diego", "West", 1.4),
    ("Dallas", "South", 1.3),
    ("Austin", "South", 0.97),
    ("San Jose", "West", 0.97),
    ("Fort Worth", "South", 0.96),
    ("Jacksonville", "South", 0.95),
    ("Columbus", "Midwest", 0.91),
    ("Charlotte", "South", 0.88),
    ("Indianapolis", "Midwest", 0.88),
    ("San Francisco", "West", 0.81),
    ("Seattle", "West", 0.75),
    ("Denver", "West", 0.72),
    ("Nashville", "South", 0.69),
    ("Oklahoma City", "South", 0.69),
    ("Washington", "South", 0.68),
    ("El Paso", "South", 0.68),
    ("Las Vegas", "West", 0.66),
    ("Boston", "Northeast", 0.65),
    ("Portland", "West", 0.63),
    ("Detroit", "Midwest", 0.63),
    ("Memphis", "South", 0.62),
    ("Louisville", "South", 0.62),
    ("Baltimore", "Northeast", 0.57),
    ("Milwaukee", "Midwest", 0.56),
    ("Albuquerque", "West", 0.56),
    ("Tucson", "West", 0.55),
    ("Fresno", "West", 0.54),
    ("Sacramento", "West", 0.53),
    ("Kansas City", "Midwest", 0.51),
    ("Atlanta", "South", 0.5),
    ("Omaha", "Midwest", 0.49),
    ("Raleigh", "South", 0.48),
    ("Miami", "South", 0.45),
    ("Minneapolis", "Midwest", 0.43),
    ("Tampa", "South", 0.4),
    ("New Orleans", "South", 0.37),
    ("Cleveland", "Midwest", 0.36),
    ("Cincinnati", "Midwest", 0.31),
    ("Newark", "Northeast", 0.31),
    ("Pittsburgh", "Northeast", 0.3),
    ("St. Louis", "Midwest", 0.29),
    ("Buffalo", "Northeast", 0.27),
    ("Salt Lake City", "West", 0.2),
    ("Providence", "Northeast", 0.19),
    ("Hartford", "Northeast", 0.12),
)
REGIONS = ("Northeast", "Midwest", "South", "West")

LATENT_DIM = 8
TASTE_NOISE = 0.6  # spread of a buyer's own taste around its segment and region
REGION_TASTE = 0.2
FAVOURITES = 8  # favourite products per buyer
CANDIDATES = 8  # popularity-drawn candidates per line, resampled by affinity
POOL = 512  # popularity draws per subcategory and call, the candidates' source
FAVOURITE_CANDIDATES = 16  # favourites are chosen harder: they express a buyer's own taste
LATE_JOINERS = 0.2  # share of buyers whose first possible order is during the period
WEEKDAY_VOLUME = (1.0, 1.08, 1.05, 1.0, 0.85, 0.25, 0.1)  # Monday .. Sunday
HOLIDAYS = ((1, 1), (7, 4), (12, 25), (12, 26))
HOURLY_VOLUME = (
    0.02,
    0.02,
    0.02,
    0.02,
    0.03,
    0.1,
    0.4,
    1.2,
    2.6,
    3.6,
    3.8,
    3.3,
    2.2,
    2.8,
    3.2,
    3.0,
    2.2,
    1.2,
    0.6,
    0.4,
    0.3,
    0.2,
    0.1,
    0.05,
)


# --------------------------------------------------------------------------- the spec


def _check_int(name: str, value, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise ConfigError(Problem(name, f"must be a whole number between {low:,} and {high:,} (got {value!r})"))


@dataclass(frozen=True)
class DemoSpec:
    """What to generate. ``buyers``/``products`` default to sizes that scale with ``rows``."""

    rows: int
    seed: int = 0
    buyers: int | None = None
    products: int | None = None
    start: date = date(2025, 1, 1)
    days: int = 365

    def __post_init__(self):
        _check_int("rows", self.rows, 1_000, 10_000_000)
        _check_int("seed", self.seed, 0, 2**63 - 1)
        if self.buyers is not None:
            _check_int("buyers", self.buyers, 10, 999_999)
        if self.products is not None:
            _check_int("products", self.products, 100, 999_999)
        if not isinstance(self.start, date) or isinstance(self.start, datetime):
            raise ConfigError(Problem("start", f"must be a date (got {self.start!r})"))
        _check_int("days", self.days, 7, 3_660)

    @property
    def n_buyers(self) -> int:
        """About 25 lines per buyer, within [200, 500,000]."""
        return self.buyers if self.buyers is not None else int(np.clip(round(self.rows / 25), 200, 500_000))

    @property
    def n_products(self) -> int:
        """About 60 lines per product, within [100, 200,000]."""
        return self.products if self.products is not None else int(np.clip(round(self.rows / 60), 100, 200_000))


# --------------------------------------------------------------------------- generation


def _ids(prefix: str, numbers: np.ndarray) -> pa.Array:
    """'B000123'-style ids, built by Arrow rather than a Python loop."""
    digits = pc.utf8_lpad(pa.array(numbers).cast(pa.string()), 6, "0")
    return pc.binary_join_element_wise(prefix, digits, "")


def _season(day_of_year: np.ndarray, peak: tuple[int, int], amplitude: float) -> np.ndarray:
    """Log seasonal factor: a yearly cosine peaking on ``peak``."""
    peak_day = date(2001, *peak).timetuple().tm_yday
    return amplitude * np.cos(2 * np.pi * (day_of_year - peak_day) / 365.25)


def _categorical(logits: np.ndarray, draws: int, rng: np.random.Generator) -> np.ndarray:
    """``draws`` indices per row, ∝ exp(logits) (inverse CDF, vectorised over rows; ``logits`` is consumed)."""
    logits -= logits.max(axis=1, keepdims=True)
    np.exp(logits, out=logits)
    cumulative = np.cumsum(logits, axis=1, out=logits)
    targets = rng.random((len(cumulative), draws), dtype=cumulative.dtype) * cumulative[:, -1:]
    below = (cumulative[:, None, :] < targets[:, :, None]).sum(axis=2)
    return np.minimum(below, cumulative.shape[1] - 1)


@dataclass
class _Block:
    batch: pa.RecordBatch
    buyers: np.ndarray  # buyer index per row (for counting who is present)
    products: np.ndarray


class _World:
    """The catalogue, the buyers and the calendar: everything shared by all blocks.

    Products are stored sorted by subcategory, so each subcategory is a
    contiguous slice of one cumulative popularity array and "a product of
    subcategory s, by popularity" is an inverse-CDF draw inside that slice.
    """

    def __init__(self, spec: DemoSpec):
        self.spec = spec
        rng = np.random.default_rng([spec.seed, 0])
        n_buyers, n_products, d = spec.n_buyers, spec.n_products, LATENT_DIM

        # Catalogue tree.
        self.category_names = pa.array([c.name for c in CATEGORIES])
        self.subcategory_names = pa.array([s for c in CATEGORIES for s in c.subcategories])
        self.sub_category = np.array([k for k, c in enumerate(CATEGORIES) for _ in c.subcategories])
        n_subs = len(self.sub_category)

        # Products: every subcategory gets at least one, the rest by uneven subcategory sizes.
        sub_size = rng.lognormal(0.0, 0.5, n_subs)
        extra = rng.choice(n_subs, n_products - n_subs, p=sub_size / sub_size.sum())
        self.product_sub = np.sort(np.concatenate([np.arange(n_subs), extra]))
        self.sub_start = np.searchsorted(self.product_sub, np.arange(n_subs + 1))
        self.product_category = self.sub_category[self.product_sub]
        self.product_ids = _ids("P", rng.permutation(n_products) + 1)  # public ids do not reveal the tree

        medians = np.array([c.median_price for c in CATEGORIES])
        sub_price_shift = rng.normal(0.0, 0.35, n_subs)
        self.list_price = np.round(
            np.maximum(
                medians[self.product_category]
                * np.exp(sub_price_shift[self.product_sub] + rng.normal(0.0, 0.5, n_products)),
                0.5,
            ),
            2,
        )
        # Cheaper categories and cheaper items within a category sell in larger quantities.
        self.log_quantity_price = -0.35 * np.log(medians[self.product_category] / 15.0) - 0.3 * np.log(
            self.list_price / medians[self.product_category]
        )

        # Zipf-like popularity over a random ranking.
        rank = rng.permutation(n_products)
        popularity = (rank + 10.0) ** -0.9
        self.cum_popularity = np.concatenate([[0.0], np.cumsum(popularity)])
        sub_mass = np.add.reduceat(popularity, self.sub_start[:-1])

        # Latent taste.
        category_latent = rng.normal(0.0, 0.6, (len(CATEGORIES), d))
        self.sub_latent = (category_latent[self.sub_category] + rng.normal(0.0, 0.45, (n_subs, d))).astype(np.float32)
        self.product_latent = (self.sub_latent[self.product_sub] + rng.normal(0.0, 0.55, (n_products, d))).astype(
            np.float32
        )

        # Buyers.
        self.segment_names = pa.array([s.name for s in SEGMENTS])
        self.city_names = pa.array([c[0] for c in CITIES])
        self.buyer_ids = _ids("B", np.arange(1, n_buyers + 1))
        shares = np.array([s.share for s in SEGMENTS])
        self.buyer_segment = rng.choice(len(SEGMENTS), n_buyers, p=shares / shares.sum())
        population = np.array([c[2] for c in CITIES])
        self.buyer_city = rng.choice(len(CITIES), n_buyers, p=population / population.sum())
        city_region = np.array([REGIONS.index(c[1]) for c in CITIES])
        segment_latent = rng.normal(0.0, 0.25, (len(SEGMENTS), d))
        region_latent = rng.normal(0.0, REGION_TASTE, (len(REGIONS), d))
        self.buyer_latent = (
            segment_latent[self.buyer_segment]
            + region_latent[city_region[self.buyer_city]]
            + rng.normal(0.0, TASTE_NOISE, (n_buyers, d))
        ).astype(np.float32)
        activity = np.array([s.activity for s in SEGMENTS])[self.buyer_segment] * rng.lognormal(0.0, 1.1, n_buyers)
        self.buyer_cdf = np.cumsum(activity) / activity.sum()
        late = rng.random(n_buyers) < LATE_JOINERS
        self.join_day = np.where(late, rng.integers(1, spec.days, n_buyers), 0)
        self.join_day[np.argmax(activity)] = 0  # someone can always order, whatever the day

        # Per-segment tables.
        preference = np.array([[s.prefers.get(c.name, NOT_PREFERRED) for c in CATEGORIES] for s in SEGMENTS])
        # exp(taste . v) averages exp(var/2 * |v|^2) over buyers; dividing that out keeps the marginal
        # share of a subcategory or product set by popularity and segment preference, not by |v|.
        taste_var = TASTE_NOISE**2 + REGION_TASTE**2
        self.sub_norm_logit = (-0.5 * taste_var * np.square(self.sub_latent).sum(axis=1)).astype(np.float32)
        self.product_norm_logit = (-0.5 * taste_var * np.square(self.product_latent).sum(axis=1)).astype(np.float32)
        self.segment_sub_logit = (
            np.log(sub_mass)[None, :] + preference[:, self.sub_category] + self.sub_norm_logit[None, :]
        ).astype(np.float32)
        self.segment_product_preference = preference[:, self.product_category].astype(np.float32)
        self.segment_lines = np.array([s.lines for s in SEGMENTS])
        self.segment_log_quantity = np.log([s.quantity for s in SEGMENTS])
        self.segment_discount = np.array([s.discount for s in SEGMENTS])
        self.segment_reorder = np.array([s.reorder for s in SEGMENTS])
        self.favourite_start_p = 1.0 / np.arange(1, FAVOURITES + 1)
        self.favourite_start_p /= self.favourite_start_p.sum()

        # Calendar: volume per day (weekday x yearly cycle x growth x holidays), then exact rows per day.
        dates = np.datetime64(spec.start, "D") + np.arange(spec.days)
        weekday = (dates.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
        day_of_year = (dates - dates.astype("datetime64[Y]")).astype(np.int64) + 1
        month_day = [(d.month, d.day) for d in dates.astype(object)]
        volume = (
            np.array(WEEKDAY_VOLUME)[weekday]
            * (1.0 + 0.1 * np.cos(2 * np.pi * (day_of_year - 300) / 365.25))
            * (1.0 + 0.2 * np.arange(spec.days) / 365.0)
            * np.where([md in HOLIDAYS for md in month_day], 0.1, 1.0)
        )
        day_rows = rng.multinomial(spec.rows, volume / volume.sum())
        self.day_first_row = np.concatenate([[0], np.cumsum(day_rows)])
        self.day_rows = day_rows
        self.day_start_us = dates.astype("datetime64[us]").astype(np.int64)
        self.price_drift = 1.0 + 0.03 * np.arange(spec.days) / 365.0
        # Seasonality per day and subcategory (days x S), added to the subcategory logits.
        self.day_sub_season = np.stack([_season(day_of_year, c.peak, c.seasonality) for c in CATEGORIES], axis=1)[
            :, self.sub_category
        ].astype(np.float32)
        # Mean of exp(season) over a year is I0(amplitude): dividing by it keeps a category's yearly volume.
        self.sub_season_mean = np.log(np.i0([c.seasonality for c in CATEGORIES]))[self.sub_category]
        hourly = np.array(HOURLY_VOLUME)
        self.hour_cdf = np.concatenate([[0.0], np.cumsum(hourly) / hourly.sum()])

        self.favourites = self._choose_favourites(rng)
        self.affinity_mean, self.affinity_std = self._affinity_scale(rng)

    # -- taste

    def _subcategory_logits(self, buyers: np.ndarray, days: np.ndarray | None) -> np.ndarray:
        """Log weights of each subcategory per buyer (n x S): mass + segment preference + taste [+ season]."""
        logits = np.take(self.buyer_latent, buyers, axis=0) @ self.sub_latent.T
        logits += np.take(self.segment_sub_logit, np.take(self.buyer_segment, buyers), axis=0)
        if days is not None:
            logits += np.take(self.day_sub_season, days, axis=0)
        return logits

    def _popular_pool(self, rng: np.random.Generator) -> np.ndarray:
        """POOL products per subcategory (S x POOL), each drawn independently ∝ popularity.

        One inverse-CDF search per pool entry instead of one per candidate:
        a uniform pick from the pool is still a draw ∝ popularity.
        """
        first, stop = self.sub_start[:-1], self.sub_start[1:]
        low, high = self.cum_popularity[first], self.cum_popularity[stop]
        targets = low[:, None] + (high - low)[:, None] * rng.random((len(first), POOL))
        pool = np.searchsorted(self.cum_popularity, targets, side="right") - 1
        return np.clip(pool, first[:, None], stop[:, None] - 1)

    def _draw_products(
        self, taste: np.ndarray, sub: np.ndarray, rng: np.random.Generator, candidates: int
    ) -> np.ndarray:
        """A product of each row's subcategory, ∝ popularity x exp(taste . product).

        Sampling-importance-resampling: ``candidates`` picks from the
        subcategory's popularity pool, then one of them ∝ exp(taste score)
        (the score less its taste-norm term, so that taste reorders products
        without changing their overall shares).
        """
        n = len(sub)
        picks = sub[:, None] * POOL + rng.integers(0, POOL, (n, candidates))
        pool = np.take(self._popular_pool(rng), picks)
        score = np.matmul(np.take(self.product_latent, pool, axis=0), taste[:, :, None])[..., 0]
        score += np.take(self.product_norm_logit, pool)
        return np.take_along_axis(pool, _categorical(score, 1, rng), axis=1)[:, 0]

    def _explore(
        self, buyers: np.ndarray, days: np.ndarray | None, rng: np.random.Generator, candidates: int = CANDIDATES
    ) -> np.ndarray:
        """A product per buyer by its taste (and the season, given days): subcategory, then product."""
        sub = _categorical(self._subcategory_logits(buyers, days), 1, rng)[:, 0]
        return self._draw_products(np.take(self.buyer_latent, buyers, axis=0), sub, rng, candidates)

    def _choose_favourites(self, rng: np.random.Generator) -> np.ndarray:
        """FAVOURITES distinct products per buyer that it keeps reordering, drawn from its own taste."""
        n_buyers = len(self.buyer_segment)
        chosen = np.empty((n_buyers, FAVOURITES), dtype=np.int64)
        step = BLOCK_ROWS // FAVOURITES
        for i in range(0, n_buyers, step):
            buyers = np.arange(i, min(i + step, n_buyers))
            subs = _categorical(self._subcategory_logits(buyers, None), FAVOURITES, rng)
            taste = np.repeat(self.buyer_latent[buyers], FAVOURITES, axis=0)
            chosen[buyers] = self._draw_products(taste, subs.ravel(), rng, FAVOURITE_CANDIDATES).reshape(subs.shape)
        # Redraw repeats within a buyer's list; a few rounds leave at most a handful of repeats among hits.
        for _ in range(8):
            by_product = np.argsort(chosen, axis=1, kind="stable")
            ranked = np.take_along_axis(chosen, by_product, axis=1)
            repeat = np.zeros_like(chosen, dtype=bool)
            np.put_along_axis(repeat, by_product[:, 1:], ranked[:, 1:] == ranked[:, :-1], axis=1)
            rows, slots = np.nonzero(repeat)
            if not rows.size:
                break
            chosen[rows, slots] = self._explore(rows, None, rng, FAVOURITE_CANDIDATES)
        return chosen.astype(np.int32)

    def affinity(self, buyers: np.ndarray, products: np.ndarray) -> np.ndarray:
        """The planted buyer x product affinity: segment preference + latent dot product."""
        return self.segment_product_preference[self.buyer_segment[buyers], products] + np.einsum(
            "nd,nd->n", self.buyer_latent[buyers], self.product_latent[products]
        )

    def _affinity_scale(self, rng: np.random.Generator) -> tuple[float, float]:
        """Mean and spread of affinity over random pairs, to put quantity's affinity term on a fixed scale."""
        sample = self.affinity(
            rng.integers(0, len(self.buyer_segment), 20_000), rng.integers(0, len(self.product_sub), 20_000)
        )
        return float(sample.mean()), float(sample.std())

    # -- rows

    def _draw_buyers(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """Buyers ∝ activity."""
        return np.minimum(np.searchsorted(self.buyer_cdf, rng.random(count), side="right"), len(self.buyer_cdf) - 1)

    def block(self, index: int) -> _Block:
        """Rows [index * BLOCK_ROWS, ...) of the log, sorted by timestamp."""
        spec = self.spec
        rng = np.random.default_rng([spec.seed, 1, index])
        first_row = index * BLOCK_ROWS
        n = min(BLOCK_ROWS, spec.rows - first_row)

        # Orders: a buyer (by activity) and a number of lines, drawn until they cover the block's rows.
        order_buyer, order_lines, lines = [], [], 0
        while lines < n:
            buyers = self._draw_buyers(max(n // 3, 256), rng)
            order_buyer.append(buyers)
            order_lines.append(1 + rng.poisson(self.segment_lines[self.buyer_segment[buyers]] - 1.0))
            lines += int(order_lines[-1].sum())
        order_buyer, order_lines = np.concatenate(order_buyer), np.concatenate(order_lines)
        n_orders = int(np.searchsorted(np.cumsum(order_lines), n)) + 1
        row_order = np.repeat(np.arange(n_orders), order_lines[:n_orders])[:n]

        # Rows' days are fixed by the global per-day counts; an order cut by midnight becomes two.
        row_day = np.searchsorted(self.day_first_row, first_row + np.arange(n), side="right") - 1
        starts = np.ones(n, dtype=bool)
        starts[1:] = (row_order[1:] != row_order[:-1]) | (row_day[1:] != row_day[:-1])
        group_first = np.flatnonzero(starts)
        row_group = np.cumsum(starts) - 1
        line = np.arange(n) - group_first[row_group]
        group_day = row_day[group_first]
        group_buyer = order_buyer[row_order[group_first]]
        while (waiting := np.flatnonzero(self.join_day[group_buyer] > group_day)).size:
            group_buyer[waiting] = self._draw_buyers(waiting.size, rng)

        # Time of day: this block holds a known slice of each day's rows, so it draws times from the
        # matching slice of the intraday distribution; blocks then concatenate in timestamp order.
        day_first = self.day_first_row[group_day]
        day_rows = self.day_rows[group_day]
        low = (np.maximum(day_first, first_row) - day_first) / day_rows
        high = (np.minimum(day_first + day_rows, first_row + n) - day_first) / day_rows
        seconds = np.interp(low + (high - low) * rng.random(group_first.size), self.hour_cdf, np.arange(25) * 3600.0)
        group_time = self.day_start_us[group_day] + np.minimum(np.floor(seconds), 86_399).astype(np.int64) * 1_000_000

        # Products: reorder a favourite (distinct ones within an order; more often in its season),
        # or explore by taste and season.
        buyer = group_buyer[row_group]
        segment = self.buyer_segment[buyer]
        favourite_start = rng.choice(FAVOURITES, group_first.size, p=self.favourite_start_p)
        product = self.favourites[buyer, (favourite_start[row_group] + line) % FAVOURITES].astype(np.int64)
        favourite_sub = self.product_sub[product]
        season = np.exp(self.day_sub_season[row_day, favourite_sub] - self.sub_season_mean[favourite_sub])
        reorder = rng.random(n) < self.segment_reorder[segment] * season
        explore = np.flatnonzero(~reorder)
        product[explore] = self._explore(buyer[explore], row_day[explore], rng)

        # Quantity: segment base, more for liked and habitual products, less for dear ones; whole units.
        affinity = np.clip((self.affinity(buyer, product) - self.affinity_mean) / self.affinity_std, -3.0, 3.0)
        log_quantity = (
            self.segment_log_quantity[segment]
            + 0.3 * affinity
            + 0.25 * reorder
            + self.log_quantity_price[product]
            + rng.normal(0.0, 0.45, n)
        )
        quantity = np.maximum(1.0, np.rint(np.exp(log_quantity)))
        # Price paid: list price x segment discount x yearly drift x small volume discount, in cents.
        price = np.round(
            self.list_price[product]
            * self.segment_discount[segment]
            * self.price_drift[row_day]
            * (1.0 - 0.02 * np.log10(quantity))
            * np.exp(rng.normal(0.0, 0.02, n)),
            2,
        )
        price = np.maximum(price, 0.01)

        by_time = np.argsort(group_time[row_group], kind="stable")
        buyer, product = buyer[by_time], product[by_time]
        sub = self.product_sub[product]
        batch = pa.RecordBatch.from_arrays(
            [
                self.buyer_ids.take(buyer),
                self.product_ids.take(product),
                pa.array(group_time[row_group][by_time], pa.timestamp("us")),
                pa.array(quantity[by_time]),
                pa.array(price[by_time]),
                self.segment_names.take(segment[by_time]),
                self.city_names.take(self.buyer_city[buyer]),
                self.category_names.take(self.sub_category[sub]),
                self.subcategory_names.take(sub),
            ],
            schema=SCHEMA,
        )
        return _Block(batch, buyer, product)


def _blocks(spec: DemoSpec) -> Iterator[_Block]:
    world = _World(spec)
    for index in range(math.ceil(spec.rows / BLOCK_ROWS)):
        yield world.block(index)


def _one_batch(table: pa.Table) -> pa.RecordBatch:
    return table.combine_chunks().to_batches()[0]


def _rebatch(batches: Iterable[pa.RecordBatch], size: int) -> Iterator[pa.RecordBatch]:
    """Re-cut a stream of record batches into batches of exactly ``size`` rows (the last one may be shorter)."""
    pending: list[pa.RecordBatch] = []  # zero-copy slices of what is not yielded yet
    pending_rows = 0
    for batch in batches:
        pending.append(batch)
        pending_rows += batch.num_rows
        if pending_rows < size:
            continue
        table = pa.Table.from_batches(pending)
        offset = 0
        while pending_rows - offset >= size:
            yield _one_batch(table.slice(offset, size))
            offset += size
        pending = table.slice(offset).to_batches()
        pending_rows -= offset
    if pending_rows:
        yield _one_batch(pa.Table.from_batches(pending))


def iter_batches(spec: DemoSpec, batch_rows: int = 250_000) -> Iterator[pa.RecordBatch]:
    """The log as record batches of ``batch_rows`` rows, in timestamp order; identical for any ``batch_rows``."""
    _check_int("batch_rows", batch_rows, 1, 100_000_000)
    return _rebatch((block.batch for block in _blocks(spec)), batch_rows)


# --------------------------------------------------------------------------- writing


def write_batches(
    batches: Iterable[pa.RecordBatch], path: str | Path, format: str = "parquet", schema: pa.Schema = SCHEMA
) -> int:
    """Stream batches into one Parquet or CSV file; return the row count.

    Writes to a hidden temporary file in the same folder and renames it at the
    end, so the final name only ever holds a complete file (and an older file
    under that name survives a failed write).
    """
    if format not in FORMATS:
        raise ConfigError(Problem("format", f"must be one of {', '.join(FORMATS)} (got {format!r})"))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.partial")
    rows = 0
    try:
        if format == "parquet":
            writer = pq.ParquetWriter(partial, schema, compression="zstd")
        else:
            writer = pa_csv.CSVWriter(partial, schema)
        with writer:
            for batch in batches:
                writer.write_batch(batch)
                rows += batch.num_rows
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return rows


def write(spec: DemoSpec, path: str | Path, format: str = "parquet") -> dict:
    """Generate the log into one file; return counts, where it is and how long it took."""
    started = time.perf_counter()
    seen_buyers = np.zeros(spec.n_buyers, dtype=bool)
    seen_products = np.zeros(spec.n_products, dtype=bool)

    def batches() -> Iterator[pa.RecordBatch]:
        for block in _blocks(spec):
            seen_buyers[block.buyers] = True
            seen_products[block.products] = True
            yield block.batch

    rows = write_batches(_rebatch(batches(), ROW_GROUP_ROWS), path, format)
    return {
        "rows": rows,
        "buyers": int(seen_buyers.sum()),
        "products": int(seen_products.sum()),
        "path": str(path),
        "format": format,
        "seconds": round(time.perf_counter() - started, 3),
    }


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ml_pipeline.demo_data", description="Write a generated B2B purchase log with planted structure."
    )
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--out", required=True, help="file to write (parent folders are created)")
    parser.add_argument("--format", choices=FORMATS, help="default: from the file suffix, else parquet")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--buyers", type=int)
    parser.add_argument("--products", type=int)
    parser.add_argument("--start", type=date.fromisoformat, default=date(2025, 1, 1), help="first day, YYYY-MM-DD")
    parser.add_argument("--days", type=int, default=365)
    args = parser.parse_args(argv)
    format = args.format or ("csv" if args.out.lower().endswith(".csv") else "parquet")
    try:
        spec = DemoSpec(
            rows=args.rows, seed=args.seed, buyers=args.buyers, products=args.products, start=args.start, days=args.days
        )
    except ValueError as error:
        parser.error(str(error))
    print(json.dumps(write(spec, args.out, format)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
