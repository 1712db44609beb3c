"""Transform: learn every feature transform from the TRAIN split, once, as readable files.

DuckDB computes everything over ExampleGen's train Parquet parts (rows never
pass through Python):

* id / categorical features: the vocabulary, the ``max_vocab_size`` most
  frequent non-empty values seen at least ``min_count`` times (ties broken by
  value, so the order is deterministic); everything else goes to the
  ``oov_buckets`` OOV rows at serving time;
* text features: the same over tokens; a value is tokenised as lowercase
  words — every run of characters that are neither letters nor digits
  (``[^\\p{L}\\p{N}]+``) separates tokens — keeping its first ``max_tokens``
  tokens. The model's :class:`~ml_pipeline.model.layers.TextTokens` layer
  tokenises the same way (both use RE2);
* numeric ``normalize``: mean and variance (of ``ln(1 + max(x, 0))`` with
  ``log1p``), missing values imputed with the mean;
* numeric / timestamp ``bucketize``: ``buckets - 1`` quantile boundaries
  (repeated boundaries of very skewed columns are dropped, so a bucket is
  never empty by construction; the embedding table then has fewer rows than
  configured); timestamps in Unix seconds;
* crosses: the hash size, how each crossed column is keyed (value, bucket
  index, calendar periods) and the number of distinct combinations in train;
* the target: count, mean (the mean baseline, nulls as 0 like the
  Evaluator's), variance, range, and mean and variance after the configured
  transforms.

Empty strings (how :func:`~ml_pipeline.model.inputs.tower_batch` passes a
null) and values holding a line break never enter a vocabulary: they are
OOV. A run fails, naming the feature's field
(``features.buyer_tower.features[i].column``), when a feature's column is
missing or null in every train row, when no value reaches ``min_count``, or
when a vocabulary plus its OOV rows would exceed the hard limit
:data:`ml_pipeline.config.features.MAX_VOCAB`.

Output::

    output/transform.json           every number above, per tower and feature
    output/vocab/<input name>.txt   one value per line, most frequent first

The Trainer builds Keras preprocessing layers from these files
(:mod:`ml_pipeline.model.build`, read with
:class:`ml_pipeline.model.transform.TransformArtifact`), so the exported
models carry the transform and serving never re-implements it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ml_pipeline.artifact_types import Examples, TransformGraph
from ml_pipeline.config import features as features_config
from ml_pipeline.config.features import (
    CategoricalFeature,
    Cross,
    FeatureConfig,
    IdFeature,
    NumericFeature,
    TextFeature,
    TimestampFeature,
)
from ml_pipeline.data import sources
from ml_pipeline.data.sql import ident, literal
from ml_pipeline.errors import DataError
from ml_pipeline.model.inputs import input_name
from ml_pipeline.spec import PipelineSpec
from ml_pipeline.stages.base import Stage, StageContext, StageFailure, StageResult

TRANSFORM_FILE = TransformGraph.FILES["transform"]
VOCAB_DIR = "vocab"
TRANSFORM_FORMAT = 1
TOKEN_SEPARATORS = r"[^\p{L}\p{N}]+"  # RE2, shared with ml_pipeline.model.layers.TextTokens
CROSS_NUMERIC_BUCKETS = 10  # a normalised numeric column is keyed by its decile when crossed
TOWERS = ("buyer", "product")


def tokens_sql(column_sql: str, max_tokens: int) -> str:
    """A DuckDB list of the first ``max_tokens`` lowercase word tokens of a string expression."""
    spaced = f"trim(regexp_replace(lower({column_sql}), {literal(TOKEN_SEPARATORS)}, ' ', 'g'))"
    return f"regexp_split_to_array({spaced}, ' ')[1:{int(max_tokens)}]"


def target_transform_sql(value_sql: str, transforms) -> str:
    """The configured target transforms (in order) as a DuckDB expression; log1p clamps at 0."""
    expr = value_sql
    for transform in transforms:
        if transform.op == "log1p":
            expr = f"ln(1 + greatest({expr}, 0))"
        elif transform.op == "clip":
            if transform.min is not None:
                expr = f"greatest({expr}, {literal(float(transform.min))})"
            if transform.max is not None:
                expr = f"least({expr}, {literal(float(transform.max))})"
        elif transform.op == "scale":
            expr = f"({expr}) * {literal(float(transform.factor))}"
    return expr


def _finite(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


class Transform(Stage[FeatureConfig]):
    name = "Transform"
    # Everything is learnt from ExampleGen's train split; the schema adds nothing the
    # transform needs, so SchemaGen is not an input (its anomalies policy runs before us).
    inputs = {"ExampleGen": Examples}
    output = TransformGraph
    Params = FeatureConfig
    version = 1

    def params(self, spec: PipelineSpec) -> FeatureConfig:
        return spec.features

    def run(self, ctx: StageContext, features: FeatureConfig) -> StageResult:
        train = ctx.input(Examples).split_glob("train")
        (ctx.output / VOCAB_DIR).mkdir(exist_ok=True)
        con = sources.connect()
        try:
            con.execute(f"CREATE TEMP VIEW train AS SELECT * FROM read_parquet({literal(train)})")
            columns = {row[0]: row[1] for row in con.execute("DESCRIBE train").fetchall()}
            train_rows = con.execute("SELECT count(*) FROM train").fetchone()[0]
            if not train_rows:
                raise DataError("the train split is empty: nothing to learn transforms from", field="split")
            builder = _Builder(con, features, columns, train_rows, ctx.output, ctx.log)
            towers = {tower: builder.tower(tower) for tower in TOWERS}
            target = builder.target()
        finally:
            con.close()

        document = {
            "format": TRANSFORM_FORMAT,
            "train_rows": train_rows,
            "token_separators": TOKEN_SEPARATORS,
            "towers": towers,
            "target": target,
        }
        (ctx.output / TRANSFORM_FILE).write_text(json.dumps(document, indent=2, sort_keys=False))

        vocabularies = {
            entry["column"]: entry["vocabulary_size"]
            for tower in TOWERS
            for entry in towers[tower]["features"]
            if "vocabulary_size" in entry
        }
        parts = [f"{column} {size:,}" for column, size in vocabularies.items()]
        summary = f"vocabularies created: {' · '.join(parts)}" if parts else "no vocabularies"
        others = self._other_counts(towers)
        if others:
            summary += f"; {others}"
        ctx.log.info("%s (from %s train rows)", summary, f"{train_rows:,}")
        properties: dict[str, Any] = {
            "train_rows": train_rows,
            "vocabularies": vocabularies,
            "input_dims": {tower: towers[tower]["input_dim"] for tower in TOWERS},
        }
        if target is not None:
            properties["target_mean"] = target["mean"]
        return StageResult(summary, properties)

    @staticmethod
    def _other_counts(towers: dict) -> str:
        kinds: dict[str, int] = {}
        for tower in TOWERS:
            for entry in towers[tower]["features"]:
                if entry["kind"] in ("numeric", "timestamp"):
                    key = (
                        "normalised"
                        if entry.get("transform") == "normalize"
                        else ("bucketised" if entry.get("transform") == "bucketize" else "cyclical")
                    )
                    kinds[key] = kinds.get(key, 0) + 1
            if towers[tower]["crosses"]:
                kinds["crosses"] = kinds.get("crosses", 0) + len(towers[tower]["crosses"])
        return " · ".join(f"{count} {kind}" for kind, count in kinds.items())


class _Builder:
    """Computes one tower's (or the target's) transform entries with SQL over the ``train`` view."""

    def __init__(self, con, features: FeatureConfig, columns: dict[str, str], train_rows: int, output: Path, log):
        self.con, self.features, self.columns = con, features, columns
        self.train_rows, self.output, self.log = train_rows, output, log
        self.vocab_files: dict[str, str] = {}

    # -- helpers ---------------------------------------------------------------
    def _one(self, sql: str):
        return self.con.execute(sql).fetchone()

    def _check_column(self, where: str, column: str) -> str:
        if column not in self.columns:
            raise StageFailure(
                f"{where}: column '{column}' is not in ExampleGen's train split "
                f"(it has {', '.join(sorted(self.columns))})"
            )
        return ident(column)

    def _check_not_all_null(self, where: str, column: str, col: str, extra: str = "") -> int:
        non_null = self._one(f"SELECT count({col}) FROM train{extra}")[0]
        if non_null == 0:
            raise StageFailure(
                f"{where}: column '{column}' is null in every one of the {self.train_rows:,} "
                "train rows; drop the feature or fix the mapping"
            )
        return non_null

    def _quantiles(self, value_sql: str, count: int) -> list[float]:
        if count < 1:
            return []
        points = [i / (count + 1) for i in range(1, count + 1)]
        values = (
            self._one(
                f"SELECT quantile_cont({value_sql}, {literal_list_float(points)}) FROM train "
                f"WHERE {value_sql} IS NOT NULL AND isfinite({value_sql})"
            )[0]
            or []
        )
        return sorted({float(v) for v in values if v is not None and math.isfinite(v)})

    # -- towers ----------------------------------------------------------------
    def tower(self, tower: str) -> dict:
        config = self.features.tower(tower)
        entries = []
        for index, feature in enumerate(config.features):
            where = f"features.{tower}_tower.features[{index}].column"
            entry = {
                "column": feature.column,
                "input_name": input_name(feature.column),
                "kind": feature.kind,
                "field": f"features.{tower}_tower.features[{index}]",
            }
            if isinstance(feature, (IdFeature, CategoricalFeature, TextFeature)):
                entry.update(self._vocabulary(tower, where, feature))
            elif isinstance(feature, NumericFeature):
                entry.update(self._numeric(where, feature))
            elif isinstance(feature, TimestampFeature):
                entry.update(self._timestamp(where, feature))
            entries.append(entry)
        by_column = dict(zip((f.column for f in config.features), entries))
        crosses = [self._cross(tower, index, cross, by_column) for index, cross in enumerate(config.crosses)]
        input_dim = sum(e["width"] for e in entries) + sum(c["embedding_dim"] for c in crosses)
        return {"features": entries, "crosses": crosses, "input_dim": input_dim}

    def _vocabulary(self, tower: str, where: str, feature) -> dict:
        col = self._check_column(where, feature.column)
        self._check_not_all_null(where, feature.column, col)
        text = isinstance(feature, TextFeature)
        value = f"CAST({col} AS VARCHAR)"
        if text:
            source = (
                f"SELECT unnest({tokens_sql(value, feature.max_tokens)}) AS token FROM train WHERE {col} IS NOT NULL"
            )
        else:
            source = f"SELECT {value} AS token FROM train WHERE {col} IS NOT NULL"
        # Values holding a line break cannot be a line of the vocabulary file: they stay OOV.
        self.con.execute(
            f"CREATE OR REPLACE TEMP TABLE vocab_counts AS SELECT token, count(*) AS n FROM ({source}) "
            "WHERE token <> '' AND strpos(token, chr(10)) = 0 AND strpos(token, chr(13)) = 0 GROUP BY token"
        )
        distinct, occurrences = self._one("SELECT count(*), coalesce(sum(n), 0) FROM vocab_counts")
        kept = self.con.execute(
            f"SELECT token, n FROM vocab_counts WHERE n >= {int(feature.min_count)} "
            f"ORDER BY n DESC, token LIMIT {int(feature.max_vocab_size)}"
        ).fetchall()
        self.con.execute("DROP TABLE vocab_counts")
        what = "token" if text else "value"
        if not kept:
            raise StageFailure(
                f"{where}: no {what} of '{feature.column}' appears at least min_count="
                f"{feature.min_count} times in train ({distinct:,} distinct); lower min_count"
            )
        limit = features_config.MAX_VOCAB
        if len(kept) + feature.oov_buckets > limit:
            raise StageFailure(
                f"{where}: the vocabulary of '{feature.column}' would have {len(kept):,} {what}s + "
                f"{feature.oov_buckets} OOV rows, more than the hard limit of {limit:,}; "
                "lower max_vocab_size or raise min_count"
            )
        covered = sum(n for _, n in kept)
        file_name = self._vocab_file_name(tower, feature)
        path = self.output / VOCAB_DIR / file_name
        path.write_text("".join(f"{token}\n" for token, _ in kept), encoding="utf-8")
        info = {
            "vocabulary_file": f"{VOCAB_DIR}/{file_name}",
            "vocabulary_size": len(kept),
            "oov_buckets": feature.oov_buckets,
            "embedding_dim": feature.width(),  # the default (from max_vocab_size) where the config gives none
            "width": feature.width(),
            "max_vocab_size": feature.max_vocab_size,
            "min_count": feature.min_count,
            f"distinct_{what}s": distinct,
            "coverage": round(covered / occurrences, 6) if occurrences else 0.0,
            "top": [[token, n] for token, n in kept[:10]],
        }
        if text:
            info["max_tokens"] = feature.max_tokens
            info["tokens"] = occurrences
        if len(kept) < distinct:
            self.log.info(
                "%s: %s of %s distinct %ss kept (%.1f%% of occurrences)",
                feature.column,
                f"{len(kept):,}",
                f"{distinct:,}",
                what,
                100 * info["coverage"],
            )
        return info

    def _vocab_file_name(self, tower: str, feature) -> str:
        name = input_name(feature.column)
        file_name = f"{name}.txt"
        if file_name in self.vocab_files.values():  # the same column in both towers
            file_name = f"{name}.{tower}.txt"
        self.vocab_files[f"{tower}:{feature.column}"] = file_name
        return file_name

    def _numeric(self, where: str, feature: NumericFeature) -> dict:
        col = self._check_column(where, feature.column)
        value = f"CAST({col} AS DOUBLE)"
        self._check_not_all_null(where, feature.column, col, f" WHERE isfinite({value})")
        nulls, low, high = self._one(
            f"SELECT count(*) FILTER (WHERE {col} IS NULL OR NOT isfinite({value})), "
            f"min({value}) FILTER (WHERE isfinite({value})), max({value}) FILTER (WHERE isfinite({value})) "
            "FROM train"
        )
        info: dict[str, Any] = {
            "transform": feature.transform,
            "log1p": feature.log1p,
            "null_count": nulls,
            "min": _finite(low),
            "max": _finite(high),
        }
        if feature.transform == "normalize":
            transformed = f"ln(1 + greatest({value}, 0))" if feature.log1p else value
            mean, variance = self._one(
                f"SELECT avg({transformed}), var_pop({transformed}) FROM train WHERE isfinite({value})"
            )
            mean, variance = _finite(mean) or 0.0, _finite(variance) or 0.0
            if variance == 0.0:
                self.log.warning("%s: '%s' is constant in train; it carries no information", where, feature.column)
            info.update(mean=mean, variance=variance, std=math.sqrt(variance), fill_value=mean, width=1)
        else:
            # log1p is monotonic: quantile buckets of x and of log1p(x) hold the same rows.
            boundaries = self._quantiles(value, feature.buckets - 1)
            median = self._one(f"SELECT median({value}) FROM train WHERE isfinite({value})")[0]
            info.update(
                boundaries=boundaries,
                buckets=len(boundaries) + 1,
                requested_buckets=feature.buckets,
                fill_value=_finite(median) or 0.0,
                embedding_dim=feature.embedding_dim,
                width=feature.embedding_dim,
            )
            if len(boundaries) + 1 < feature.buckets:
                self.log.info(
                    "%s: '%s' has only %d distinct quantile boundaries: %d buckets instead of %d",
                    where,
                    feature.column,
                    len(boundaries),
                    len(boundaries) + 1,
                    feature.buckets,
                )
        return info

    def _timestamp(self, where: str, feature: TimestampFeature) -> dict:
        col = self._check_column(where, feature.column)
        seconds = f"epoch(CAST({col} AS TIMESTAMP))"
        self._check_not_all_null(where, feature.column, col)
        nulls, low, high = self._one(
            f"SELECT count(*) FILTER (WHERE {col} IS NULL), min({seconds}), max({seconds}) FROM train"
        )
        info: dict[str, Any] = {
            "transform": feature.transform,
            "null_count": nulls,
            "min_seconds": _finite(low),
            "max_seconds": _finite(high),
        }
        if feature.transform == "cyclical":
            info.update(periods=list(feature.periods), width=2 * len(feature.periods))
        else:
            boundaries = [float(round(b)) for b in self._quantiles(seconds, feature.buckets - 1)]
            boundaries = sorted(set(boundaries))
            info.update(
                boundaries=boundaries,
                buckets=len(boundaries) + 1,
                requested_buckets=feature.buckets,
                embedding_dim=feature.embedding_dim,
                width=feature.embedding_dim,
            )
        return info

    def _cross(self, tower: str, index: int, cross: Cross, by_column: dict[str, dict]) -> dict:
        parts, keys = [], []
        for column in cross.columns:
            entry = by_column[column]
            col = ident(column)
            part: dict[str, Any] = {"column": column, "input_name": entry["input_name"], "kind": entry["kind"]}
            if entry["kind"] in ("id", "categorical"):
                part["key"] = "value"
                keys.append(f"CAST({col} AS VARCHAR)")
            elif entry["kind"] == "timestamp" and entry["transform"] == "cyclical":
                part.update(key="calendar", periods=entry["periods"])
                keys.append(f"strftime(CAST({col} AS TIMESTAMP), '%H %w %d %m')")
            else:
                if entry.get("transform") == "bucketize":
                    boundaries = entry["boundaries"]
                else:  # a normalised numeric column is crossed by its decile
                    boundaries = self._quantiles(f"CAST({col} AS DOUBLE)", CROSS_NUMERIC_BUCKETS - 1)
                part.update(key="bucket", boundaries=boundaries)
                value = f"epoch(CAST({col} AS TIMESTAMP))" if entry["kind"] == "timestamp" else f"CAST({col} AS DOUBLE)"
                keys.append(f"len([b for b in {literal_list_float(boundaries)}::DOUBLE[] if b <= {value}])")
            parts.append(part)
        distinct = self._one(f"SELECT count(DISTINCT ({', '.join(keys)})) FROM train")[0]
        if distinct > cross.hash_buckets:
            self.log.info(
                "features.%s_tower.crosses[%d]: %s distinct combinations hashed into %s buckets",
                tower,
                index,
                f"{distinct:,}",
                f"{cross.hash_buckets:,}",
            )
        return {
            "name": cross.name,
            "columns": list(cross.columns),
            "field": f"features.{tower}_tower.crosses[{index}]",
            "hash_buckets": cross.hash_buckets,
            "embedding_dim": cross.embedding_dim,
            "width": cross.embedding_dim,
            "distinct_combinations": distinct,
            "parts": parts,
        }

    # -- target ----------------------------------------------------------------
    def target(self) -> dict | None:
        config = self.features.target
        if config is None:
            return None
        if "target" not in self.columns:
            # only ranking and multitask models need it; the Trainer says so when one does
            self.log.warning(
                "features.target: the examples have no 'target' column (dataset.mapping.target is "
                "not set): no target statistics"
            )
            return None
        value = "CAST(target AS DOUBLE)"
        filled = f"coalesce({value}, 0)"  # the Trainer and Evaluator read null targets as 0
        transformed = target_transform_sql(filled, config.transforms)
        row = self._one(
            f"SELECT count({value}), count(*) - count({value}), avg({filled}), var_pop({filled}), min({value}), "
            f"max({value}), avg({transformed}), var_pop({transformed}) FROM train"
        )
        count, nulls, mean, variance, low, high, t_mean, t_variance = row
        if count == 0:
            raise StageFailure("features.target.column: the target is null in every train row")
        return {
            "column": config.column,
            "transforms": [t.model_dump(mode="json", exclude_none=True) for t in config.transforms],
            "count": count,
            "null_count": nulls,
            "mean": _finite(mean) or 0.0,
            "variance": _finite(variance) or 0.0,
            "min": _finite(low),
            "max": _finite(high),
            "transformed_mean": _finite(t_mean) or 0.0,
            "transformed_variance": _finite(t_variance) or 0.0,
        }


def literal_list_float(values) -> str:
    return "[" + ", ".join(repr(float(v)) for v in values) + "]"
