"""The sample and train/eval/test split as SQL, in either dialect: ExampleGen's rule, written once.

A row's key is ``seed|buyer_id|product_id|timestamp`` (``hash_key`` "row"; "buyer": ``seed|buyer_id``), the
timestamp as text the way DuckDB casts it (``2011-01-31 08:26:00``, fractional seconds only where there are
some; GoogleSQL's ``FORMAT_TIMESTAMP('%Y-%m-%d %H:%M:%E*S')`` writes the same). ``h`` is the MD5 digest's
bytes 9-16 read little-endian as an unsigned 64-bit number (DuckDB's ``md5_number_lower``; GoogleSQL builds
it from the digest's bytes, see :meth:`ml_pipeline.data.query.BigQueryDialect.md5_lower64`). The split reads
``h mod 10^6``, the sample ``(h div 10^6) mod 10^6``, so a row's split does not depend on the sample size.
ExampleGen splits with the DuckDB rendering; StatisticsGen's pushed-down statistics of a BigQuery source
with the GoogleSQL one, so both describe the same rows per split.
"""

from __future__ import annotations

from datetime import UTC, datetime

from ml_pipeline.data.query import Dialect
from ml_pipeline.spec import SplitConfig

HASH_BUCKETS = 1_000_000
SPLIT_COLUMN = "__split"
_HASH = "__h"


def naive_utc(value: datetime) -> datetime:
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def hash_expr(d: Dialect, split: SplitConfig, has_time: bool) -> str:
    parts = [d.string(str(split.seed)), "buyer_id"]
    if split.hash_key == "row":
        parts.append("product_id")
        if has_time:
            parts.append(d.timestamp_text(d.ident("timestamp")))
    return d.md5_lower64(d.join_text(parts))


def split_expr(d: Dialect, split: SplitConfig, newest: str | None) -> str:
    """The row's split; ``newest`` is SQL for where time_holdout's days end (a literal or a subquery)."""
    ts = d.ident("timestamp")
    if split.strategy == "random":
        train_cut = round(split.train_ratio * HASH_BUCKETS)
        eval_cut = round((split.train_ratio + split.eval_ratio) * HASH_BUCKETS)
        bucket = d.mod(_HASH, HASH_BUCKETS)
        return f"CASE WHEN {bucket} < {train_cut} THEN 'train' WHEN {bucket} < {eval_cut} THEN 'eval' ELSE 'test' END"
    if split.strategy == "time_holdout":
        # As filters.last_days: "the last N days" is (end - N days, end] (``newest``: :func:`holdout_end`).
        return f"CASE WHEN {ts} > {d.sub_days(newest, int(split.holdout_days))} THEN 'eval' ELSE 'train' END"
    train_end, eval_end = d.literal(naive_utc(split.train_end)), d.literal(naive_utc(split.eval_end))
    return f"CASE WHEN {ts} < {train_end} THEN 'train' WHEN {ts} < {eval_end} THEN 'eval' ELSE 'test' END"


def examples_sql(d: Dialect, split: SplitConfig, has_time: bool, rows: str, newest: str | None = None) -> str:
    """The sampled rows of the relation ``rows`` with their split in ``__split``."""
    sampling = split.sample_percent < 100.0
    needs_hash = sampling or split.strategy == "random"
    inner = (
        f"SELECT *, {hash_expr(d, split, has_time)} AS {_HASH} FROM {rows}" if needs_hash else f"SELECT * FROM {rows}"
    )
    where = ""
    if sampling:
        sample = d.mod(d.int_div(_HASH, HASH_BUCKETS), HASH_BUCKETS)
        where = f" WHERE {sample} < {round(split.sample_percent * HASH_BUCKETS / 100)}"
    star = d.star_except(_HASH) if needs_hash else "*"
    return f"SELECT {star}, {split_expr(d, split, newest)} AS {SPLIT_COLUMN} FROM ({inner}) AS keyed{where}"


def holdout_end(d: Dialect, rows: str) -> str:
    """Where time_holdout's "last N days" end, as SQL: the newest row of ``rows``.

    With a dataset's ``as_of`` (a scheduled run's occurrence) ``rows`` hold nothing dated after it, so the
    holdout does not move with when the run got to it; it still ends at the newest row, not at ``as_of``
    itself, so a file that stopped growing days before keeps its eval split.
    """
    return f"(SELECT max({d.ident('timestamp')}) FROM {rows})"


def split_relation(d: Dialect, statement: str, split: SplitConfig, name: str, has_time: bool) -> str:
    """The rows of split ``name`` of ``statement`` (a dataset's kept rows), as a relation to select from:
    what StatisticsGen's pushed-down queries read (time_holdout ends where ExampleGen's does)."""
    newest = holdout_end(d, "kept_rows") if has_time else None
    split_rows = examples_sql(d, split, has_time, "kept_rows", newest)
    return (
        f"(WITH kept_rows AS ({statement}), split_rows AS ({split_rows}) "
        f"SELECT {d.star_except(SPLIT_COLUMN)} FROM split_rows WHERE {SPLIT_COLUMN} = {d.string(name)}) AS examples"
    )
