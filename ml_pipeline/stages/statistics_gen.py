"""StatisticsGen: per-split feature statistics, as TFDV computes them, from DuckDB queries.

Every number comes from aggregate queries over ExampleGen's Parquet (two
scans per split plus one grouped query per string column); rows are never
pulled into Python, and memory stays bounded for any data size: quantiles
and medians are approximate (t-digest, as TFDV's are), counts, means,
standard deviations (population), minima, maxima and distinct counts exact.

Output (under ``output/``):

* ``stats.pb``: a binary ``tensorflow_metadata`` ``DatasetFeatureStatisticsList``
  with one ``DatasetFeatureStatistics`` per split (``name`` = split,
  ``num_examples``); each feature has ``path.step = [column]`` and a
  ``type``: INT (integer columns, and timestamps as Unix seconds), FLOAT or
  STRING. Numeric features carry ``num_stats`` (common stats, mean, std_dev,
  num_zeros, min, median, max, a 10-bucket STANDARD histogram and a
  10-bucket QUANTILES histogram); string features ``string_stats``
  (common stats, unique, top 20 ``top_values``, a rank histogram of the top
  100 values, avg_length). TFDV's tools (``tfdv.visualize_statistics``,
  ``tfdv.infer_schema``) read it as their own.
* ``summary.json``: the compact version the UI shows::

    {"features": ["buyer_id", ...],                 # every column, in order
     "splits": {"train": {"num_examples": 1960098,
                          "columns": {
        "buyer_id": {"type": "string", "count": 1960098, "missing": 0, "missing_pct": 0.0,
                     "unique": 4312, "avg_length": 5.0, "top": [{"value": "c17", "count": 90}, ...]},
        "target": {"type": "float", "count": ..., "missing": ..., "missing_pct": ...,
                   "mean": ..., "std": ..., "min": ..., "median": ..., "max": ..., "zeros": ...},
        "timestamp": {"type": "timestamp", "count": ..., "missing": ..., "missing_pct": ...,
                      "min": "2024-01-01 00:00:00", "median": "...", "max": "..."}}},
                "eval": {...}, "test": {...}}}

  ``type`` is "string", "int", "float" or "timestamp"; ``top`` holds the 5
  most frequent values; numbers that cannot be computed (an all-missing
  column) are left out; ``non_finite`` counts NaN/inf floats (left out of the
  other numbers, as TFDV does).

With a BigQuery source the same queries, in GoogleSQL, run in BigQuery over each split's rows (the shared
statement split by ExampleGen's rule: :mod:`ml_pipeline.data.splits`), so no row is read here; BigQuery's
per-split counts must equal ExampleGen's, or the stage fails (the table changed since the export).
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

from pydantic import model_serializer
from tensorflow_metadata.proto.v0 import statistics_pb2

from ml_pipeline.artifact_types import Examples, ExampleStatistics
from ml_pipeline.config.dataset import DatasetConfig
from ml_pipeline.data import sources
from ml_pipeline.data.query import BIGQUERY, DUCKDB, Dialect
from ml_pipeline.data.sql import column_kind, literal
from ml_pipeline.spec import PipelineSpec, SplitConfig
from ml_pipeline.stages.base import Stage, StageContext, StageFailure, StageParams, StageResult

SUMMARY_TOP_VALUES = 5


class BigQueryPushdown(StageParams):
    """A BigQuery source's dataset and split: what the statistics computed in BigQuery need."""

    dataset: DatasetConfig
    split: SplitConfig


class StatisticsGenParams(StageParams):
    """Fixed by the statistics' format (SchemaGen reads the histograms), but part of the cache key; with a
    BigQuery source, what the statistics pushed down to BigQuery compute over."""

    histogram_buckets: int = ExampleStatistics.HISTOGRAM_BUCKETS
    top_values: int = 20
    rank_histogram_values: int = 100
    pushdown: BigQueryPushdown | None = None

    @model_serializer(mode="wrap")
    def _without_pushdown_when_local(self, handler):
        # A local source's key stays what it was before pushdown existed (cached statistics still match).
        data = handler(self)
        if data.get("pushdown", 0) is None:
            del data["pushdown"]
        return data


Type = statistics_pb2.FeatureNameStatistics.Type
PROTO_TYPE = {"int": Type.INT, "timestamp": Type.INT, "float": Type.FLOAT, "string": Type.STRING}


def _value_expr(d: Dialect, column: str, kind: str) -> str:
    """The value statistics are computed over: finite doubles, Unix seconds, or text."""
    col = d.ident(column)
    if kind == "float":
        number = d.cast(col, "float")
        return f"CASE WHEN {d.not_finite(number)} THEN NULL ELSE {number} END"
    if kind == "int":
        return d.cast(col, "float")
    if kind == "timestamp":
        return d.epoch_seconds(col)
    return d.cast(col, "string")


def _number(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(round(seconds), tz=UTC).replace(tzinfo=None).isoformat(sep=" ")


class _SplitStatistics:
    """Statistics of one split's rows (the relation ``source``: its Parquet parts, or the split's rows on
    BigQuery), computed by a few queries in the dialect ``d``, run by ``run`` (SQL -> rows)."""

    def __init__(self, run, d: Dialect, source: str, columns, name: str, params: StatisticsGenParams) -> None:
        self.run, self.d, self.source, self.columns, self.name = run, d, source, columns, name
        self.buckets, self.top_values = params.histogram_buckets, params.top_values
        self.rank_values = params.rank_histogram_values

    def _one(self, sql: str) -> list:
        (row,) = self.run(sql)
        return list(row)

    def compute(self) -> tuple[statistics_pb2.DatasetFeatureStatistics, dict]:
        dataset = statistics_pb2.DatasetFeatureStatistics(name=self.name)
        summary: dict = {"num_examples": 0, "columns": {}}
        d, aggregates = self.d, ["count(*)"]
        for column, kind in self.columns:
            value = _value_expr(d, column, kind)
            aggregates.append(f"count({d.ident(column)})")
            if kind == "string":
                aggregates.append(f"avg(length({value}))")
            else:
                aggregates += [
                    f"count({value})",
                    f"avg({value})",
                    f"stddev_pop({value})",
                    d.count_if(f"{value} = 0"),
                    f"min({value})",
                    f"max({value})",
                    d.approx_quantiles(value, self.buckets),
                ]
        row = self._one(f"SELECT {', '.join(aggregates)} FROM {self.source}")
        num_examples = row.pop(0)
        dataset.num_examples = num_examples
        summary["num_examples"] = num_examples
        if num_examples == 0:
            return dataset, summary

        numeric = {}
        for column, kind in self.columns:
            present = row.pop(0)
            if kind == "string":
                numeric[column] = {"present": present, "avg_length": row.pop(0)}
            else:
                finite, mean, std, zeros, low, high, quantiles = (row.pop(0) for _ in range(7))
                numeric[column] = {
                    "present": present,
                    "finite": finite,
                    "mean": mean,
                    "std": std,
                    "zeros": zeros,
                    "min": low,
                    "max": high,
                    "quantiles": list(quantiles or [])[1:-1],  # without the minimum and maximum
                }
        histograms = self._standard_histograms(numeric)

        for column, kind in self.columns:
            values = numeric[column]
            feature = dataset.features.add()
            feature.path.step.append(column)
            feature.type = PROTO_TYPE[kind]
            if kind == "string":
                entry = self._string_feature(feature, column, kind, values, num_examples)
            else:
                entry = self._numeric_feature(feature, kind, values, histograms.get(column), num_examples)
            summary["columns"][column] = entry
        return dataset, summary

    # -- numeric -------------------------------------------------------------
    def _standard_histograms(self, numeric: dict) -> dict[str, dict[int, int]]:
        """Counts per equal-width bucket between each column's min and max, in one scan."""
        d, aggregates, names = self.d, [], []
        for column, kind in self.columns:
            values = numeric[column]
            if kind == "string" or values["finite"] == 0 or values["min"] == values["max"]:
                continue
            width = (values["max"] - values["min"]) / self.buckets
            value = _value_expr(d, column, kind)
            # (least() skips NULLs in DuckDB, hence the CASE: missing values are in no bucket.)
            offset = d.cast(f"floor(({value} - {values['min']!r}) / {width!r})", "int")
            bucket = f"CASE WHEN {value} IS NOT NULL THEN least({offset}, {self.buckets - 1}) END"
            aggregates += [d.count_if(f"{bucket} = {index}") for index in range(self.buckets)]
            names.append(column)
        if not aggregates:
            return {}
        row = self._one(f"SELECT {', '.join(aggregates)} FROM {self.source}")
        counts = [row[i * self.buckets : (i + 1) * self.buckets] for i in range(len(names))]
        return {name: {i: int(n) for i, n in enumerate(found) if n} for name, found in zip(names, counts)}

    def _numeric_feature(self, feature, kind: str, values: dict, counts: dict[int, int] | None, num_examples: int):
        stats = feature.num_stats
        present = values["present"]
        _common_stats(stats.common_stats, present, num_examples, self.buckets)
        entry = _summary_common(kind, present, num_examples)
        if not values["finite"]:
            return entry
        low, high = float(values["min"]), float(values["max"])
        quantiles = [float(q) for q in values["quantiles"]]
        median = quantiles[(self.buckets // 2) - 1]
        stats.mean = float(values["mean"])
        stats.std_dev = float(values["std"] or 0.0)
        stats.num_zeros = int(values["zeros"])
        stats.min, stats.max, stats.median = low, high, median

        standard = stats.histograms.add(type=statistics_pb2.Histogram.STANDARD)
        standard.num_nan = present - values["finite"]
        if counts is None:  # a single value
            standard.buckets.add(low_value=low, high_value=high, sample_count=float(values["finite"]))
        else:
            width = (high - low) / self.buckets
            for index in range(self.buckets):
                bucket_high = high if index == self.buckets - 1 else low + (index + 1) * width
                standard.buckets.add(
                    low_value=low + index * width, high_value=bucket_high, sample_count=float(counts.get(index, 0))
                )
        quantile_hist = stats.histograms.add(type=statistics_pb2.Histogram.QUANTILES)
        quantile_hist.num_nan = present - values["finite"]
        bounds = [low, *quantiles, high]
        share = values["finite"] / self.buckets
        for index in range(self.buckets):
            quantile_hist.buckets.add(low_value=bounds[index], high_value=bounds[index + 1], sample_count=share)

        if kind == "timestamp":
            entry.update(min=_iso(low), median=_iso(median), max=_iso(high))
        else:
            entry.update(
                mean=_number(stats.mean),
                std=_number(stats.std_dev),
                min=low,
                median=median,
                max=high,
                zeros=stats.num_zeros,
            )
            if present > values["finite"]:
                entry["non_finite"] = present - values["finite"]
        return entry

    # -- strings -------------------------------------------------------------
    def _string_feature(self, feature, column: str, kind: str, values: dict, num_examples: int):
        stats = feature.string_stats
        present = values["present"]
        _common_stats(stats.common_stats, present, num_examples, self.buckets)
        entry = _summary_common(kind, present, num_examples)
        if not present:
            stats.unique = 0
            entry.update(unique=0, top=[])
            return entry
        value = _value_expr(self.d, column, kind)
        rows = self.run(
            f"SELECT value, n, count(*) OVER () FROM (SELECT {value} AS value, count(*) AS n FROM {self.source} "
            f"WHERE {self.d.ident(column)} IS NOT NULL GROUP BY 1) AS value_counts "
            f"ORDER BY n DESC, value LIMIT {self.rank_values}"
        )
        rows = [tuple(r) for r in rows]
        stats.unique = int(rows[0][2])
        stats.avg_length = float(values["avg_length"] or 0.0)
        for value_text, count, _ in rows[: self.top_values]:
            stats.top_values.add(value=value_text, frequency=float(count))
        for rank, (value_text, count, _) in enumerate(rows):
            stats.rank_histogram.buckets.add(low_rank=rank, high_rank=rank, label=value_text, sample_count=float(count))
        entry.update(
            unique=stats.unique,
            avg_length=round(stats.avg_length, 3),
            top=[{"value": v, "count": int(n)} for v, n, _ in rows[:SUMMARY_TOP_VALUES]],
        )
        return entry


def _common_stats(common, present: int, num_examples: int, buckets: int) -> None:
    common.num_non_missing = present
    common.num_missing = num_examples - present
    if present:
        common.min_num_values = 1
        common.max_num_values = 1
        common.avg_num_values = 1.0
        common.tot_num_values = present
        histogram = common.num_values_histogram
        histogram.type = statistics_pb2.Histogram.QUANTILES
        for _ in range(buckets):
            histogram.buckets.add(low_value=1.0, high_value=1.0, sample_count=present / buckets)


def _summary_common(kind: str, present: int, num_examples: int) -> dict:
    missing = num_examples - present
    return {
        "type": kind,
        "count": present,
        "missing": missing,
        "missing_pct": round(100.0 * missing / num_examples, 3) if num_examples else 0.0,
    }


def _collect(computed) -> tuple[statistics_pb2.DatasetFeatureStatisticsList, dict]:
    stats = statistics_pb2.DatasetFeatureStatisticsList()
    summary: dict = {"splits": {}}
    for split_statistics in computed:
        dataset, split_summary = split_statistics.compute()
        stats.datasets.append(dataset)
        summary["splits"][split_statistics.name] = split_summary
    names: list[str] = []
    for split_summary in summary["splits"].values():
        names += [name for name in split_summary["columns"] if name not in names]
    summary["features"] = names
    return stats, summary


def compute_statistics(
    examples: Examples, params: StatisticsGenParams
) -> tuple[statistics_pb2.DatasetFeatureStatisticsList, dict]:
    """Statistics of every split of ExampleGen's output."""
    con = sources.connect()
    con.execute("SET enable_progress_bar = false")

    def run(sql: str) -> list:
        return con.execute(sql).fetchall()

    def split_statistics(split: str) -> _SplitStatistics:
        source = f"read_parquet({literal(examples.split_glob(split))})"
        columns = [(row[0], column_kind(row[1])) for row in run(f"DESCRIBE SELECT * FROM {source}")]
        return _SplitStatistics(run, DUCKDB, source, columns, split, params)

    try:
        return _collect(split_statistics(split) for split in examples.splits())
    finally:
        con.close()


def pushed_down_statistics(
    examples: Examples, params: StatisticsGenParams, client=None
) -> tuple[statistics_pb2.DatasetFeatureStatisticsList, dict]:
    """The same statistics of a BigQuery source, computed in BigQuery over each split's rows (the shared
    query builder's statement, split by ExampleGen's rule in GoogleSQL): the rows are never read here."""
    from ml_pipeline.data.bigquery import BigQueryRows

    pushdown = params.pushdown
    rows = BigQueryRows.open(pushdown.dataset, client)
    statement = rows.statement()
    columns = list(pushdown.dataset.mapping.output_columns().items())
    computed = [
        _SplitStatistics(
            rows.run, BIGQUERY, rows.split_relation(statement, pushdown.split, split), columns, split, params
        )
        for split in examples.splits()
    ]
    stats, summary = _collect(computed)
    expected = examples.properties.get("splits") or {}
    differing = {
        s: (n, expected[s])
        for s, n in ((d.name, d.num_examples) for d in stats.datasets)
        if s in expected and expected[s] != n
    }
    if differing:
        found = ", ".join(f"{s}: {n:,} in BigQuery, {e:,} in ExampleGen's output" for s, (n, e) in differing.items())
        raise StageFailure(f"BigQuery's split of the rows differs from ExampleGen's ({found}); the data changed since")
    return stats, summary


class StatisticsGen(Stage[StatisticsGenParams]):
    name = "StatisticsGen"
    inputs = {"ExampleGen": Examples}
    output = ExampleStatistics
    Params = StatisticsGenParams

    def params(self, spec: PipelineSpec) -> StatisticsGenParams:
        if spec.dataset.source.kind == "bigquery":
            return StatisticsGenParams(pushdown=BigQueryPushdown(dataset=spec.dataset, split=spec.split))
        return StatisticsGenParams()

    def run(self, ctx: StageContext, params: StatisticsGenParams) -> StageResult:
        examples = ctx.input(Examples)
        if params.pushdown is not None:
            ctx.log.info("computing the statistics in BigQuery")
            stats, summary = pushed_down_statistics(examples, params)
        else:
            stats, summary = compute_statistics(examples, params)
        if not stats.datasets:
            raise StageFailure(f"ExampleGen's output at {examples.path} holds no splits")
        (ctx.output / ExampleStatistics.FILES["statistics"]).write_bytes(stats.SerializeToString())
        (ctx.output / ExampleStatistics.FILES["summary"]).write_text(
            json.dumps(summary, separators=(",", ":"), allow_nan=False)
        )
        splits = {d.name: d.num_examples for d in stats.datasets}
        non_empty = sum(1 for n in splits.values() if n)
        features = len(summary["features"])
        text = f"statistics for {features} features × {non_empty} split{'s' if non_empty != 1 else ''}"
        ctx.log.info(text)
        return StageResult(text, {"features": features, "splits": splits})
