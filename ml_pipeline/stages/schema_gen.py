"""SchemaGen: infer a TFDV schema from the train statistics, then check the eval split against it.

Inference (from the *train* split):

* type: BYTES (strings), INT (integers; timestamps as Unix seconds, with a
  ``time_domain``), FLOAT;
* presence: ``min_fraction`` 1.0 when nothing is missing, else the observed
  fraction; ``min_count`` 1; ``value_count`` 1..1 (every feature is single-valued);
* string domains for string features with at most
  ``schema_policy.max_domain_size`` distinct values — every value seen in
  train, read from ExampleGen's Parquet because the statistics keep only the
  top values — with a drift comparator (L-infinity ``drift_l_infinity``) and
  ``min_domain_mass`` (1 - ``unseen_category_share``). ``buyer_id`` and
  ``product_id`` never get a domain: new ids in eval are the cold-start case,
  not an anomaly;
* value ranges (``int_domain`` / ``float_domain`` min and max) for numeric
  features other than timestamps.

Validation of the *eval* split, each anomaly with a severity:

==================  ========  ====================================================
kind                severity  when
==================  ========  ====================================================
missing_column      error     a schema feature is not in eval
type_change         error     a feature's type in eval differs from the schema's
unseen_categories   error     eval values outside the domain cover more than
                              ``unseen_category_share`` of eval's values (info below)
drift               error     L-infinity distance between the train and eval value
                              distributions above ``drift_l_infinity``: over values
                              for domain features, over the train statistics'
                              10 equal-width histogram buckets for numeric ones
missing_values      warning   eval is less present than ``presence.min_fraction``
                              (by more than 5 points for optional features)
new_column          warning   a column in eval that the schema does not know
out_of_range        info      eval values outside train's [min, max]
==================  ========  ====================================================

Output (under ``output/``): ``schema.pbtxt`` (text-format ``Schema``),
``anomalies.json`` (a list of ``{"feature", "kind", "severity",
"description"}``, errors first) and ``anomalies.pbtxt`` (a TFDV
``Anomalies`` proto with the errors and warnings, keyed by feature, with the
schema as baseline and L-infinity measurements in ``drift_skew_info``).
With ``schema_policy.fail_on_anomalies`` any error fails the stage.
"""

from __future__ import annotations

import json

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from ml_pipeline.artifact_types import Examples, ExampleStatistics, Schema, feature_name
from ml_pipeline.data import sources
from ml_pipeline.data.sql import column_kind, ident, literal
from ml_pipeline.spec import PipelineSpec, SchemaPolicy
from ml_pipeline.stages.base import Stage, StageContext, StageFailure, StageResult

HISTOGRAM_BUCKETS = ExampleStatistics.HISTOGRAM_BUCKETS  # train's numeric histograms, as StatisticsGen writes them
ID_COLUMNS = ("buyer_id", "product_id")
SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}
# An optional feature's min_fraction is train's observed presence; eval may be
# this much (absolute) less present before it is a warning, so sampling noise
# is not reported. A feature always present in train must be always present.
PRESENCE_SLACK = 0.05

StatsType = statistics_pb2.FeatureNameStatistics.Type
SCHEMA_TYPE = {
    StatsType.INT: schema_pb2.INT,
    StatsType.FLOAT: schema_pb2.FLOAT,
    StatsType.STRING: schema_pb2.BYTES,
    StatsType.BYTES: schema_pb2.BYTES,
}
TYPE_NAME = {schema_pb2.INT: "INT", schema_pb2.FLOAT: "FLOAT", schema_pb2.BYTES: "BYTES"}
ANOMALY_TYPE = {
    "missing_column": anomalies_pb2.AnomalyInfo.SCHEMA_MISSING_COLUMN,
    "type_change": anomalies_pb2.AnomalyInfo.UNEXPECTED_DATA_TYPE,
    "unseen_categories": anomalies_pb2.AnomalyInfo.ENUM_TYPE_UNEXPECTED_STRING_VALUES,
    "drift": anomalies_pb2.AnomalyInfo.COMPARATOR_L_INFTY_HIGH,
    "missing_values": anomalies_pb2.AnomalyInfo.FEATURE_TYPE_LOW_FRACTION_PRESENT,
    "new_column": anomalies_pb2.AnomalyInfo.SCHEMA_NEW_COLUMN,
}
KIND_WORDS = {
    "missing_column": "missing column",
    "type_change": "type change",
    "unseen_categories": "unseen categories",
    "drift": "drift",
    "missing_values": "missing values",
    "new_column": "new column",
    "out_of_range": "out of range",
}


def _pct(share: float) -> str:
    return f"{100 * share:.1f}%"


def _features(dataset) -> dict[str, statistics_pb2.FeatureNameStatistics]:
    return {feature_name(f): f for f in dataset.features} if dataset is not None else {}


def _common(feature: statistics_pb2.FeatureNameStatistics):
    return feature.string_stats.common_stats if feature.HasField("string_stats") else feature.num_stats.common_stats


class _Examples:
    """DuckDB queries over ExampleGen's Parquet for one stage run."""

    def __init__(self, examples: Examples) -> None:
        self.examples = examples
        self.con = sources.connect()
        self.con.execute("SET enable_progress_bar = false")

    def close(self) -> None:
        self.con.close()

    def scan(self, split: str) -> str:
        return f"read_parquet({literal(self.examples.split_glob(split))})"

    def kinds(self, split: str) -> dict[str, str]:
        if split not in self.examples.splits():
            return {}
        rows = self.con.execute(f"DESCRIBE SELECT * FROM {self.scan(split)}").fetchall()
        return {row[0]: column_kind(row[1]) for row in rows}

    def distinct(self, split: str, column: str) -> list[str]:
        rows = self.con.execute(
            f"SELECT DISTINCT CAST({ident(column)} AS VARCHAR) AS v FROM {self.scan(split)} "
            f"WHERE {ident(column)} IS NOT NULL ORDER BY v"
        ).fetchall()
        return [row[0] for row in rows]

    def categorical_comparison(self, column: str) -> dict:
        """L-infinity distance between train's and eval's value shares, and eval's values unseen in train."""
        col = ident(column)
        freq = (
            "SELECT CAST({col} AS VARCHAR) AS v, count(*)::DOUBLE AS n FROM {scan} WHERE {col} IS NOT NULL GROUP BY ALL"
        )
        row = self.con.execute(f"""
            WITH t AS ({freq.format(col=col, scan=self.scan("train"))}),
                 e AS ({freq.format(col=col, scan=self.scan("eval"))}),
                 j AS (SELECT coalesce(t.v, e.v) AS v,
                              coalesce(t.n, 0) / (SELECT sum(n) FROM t) AS p,
                              coalesce(e.n, 0) / (SELECT sum(n) FROM e) AS q,
                              t.v IS NULL AS unseen
                       FROM t FULL OUTER JOIN e ON t.v = e.v)
            SELECT max(abs(p - q)), arg_max(v, (abs(p - q), v)), arg_max(p, (abs(p - q), v)),
                   arg_max(q, (abs(p - q), v)), coalesce(sum(q) FILTER (WHERE unseen), 0),
                   count(*) FILTER (WHERE unseen), list(v ORDER BY q DESC, v) FILTER (WHERE unseen)
            FROM j
        """).fetchone()
        distance, value, train_share, eval_share, unseen_share, unseen_count, unseen = row
        return {
            "distance": distance or 0.0,
            "value": value,
            "train_share": train_share,
            "eval_share": eval_share,
            "unseen_share": unseen_share or 0.0,
            "unseen_count": unseen_count,
            "unseen": (unseen or [])[:5],
        }

    def numeric_eval_buckets(self, ranges: dict[str, tuple[float, float, str]]) -> dict[str, dict]:
        """Eval's counts in train's equal-width buckets (values outside clamped to the end buckets)."""
        aggregates, names = [], []
        for column, (low, high, _kind) in ranges.items():
            value = f"CASE WHEN isfinite(CAST({ident(column)} AS DOUBLE)) THEN CAST({ident(column)} AS DOUBLE) END"
            width = (high - low) / HISTOGRAM_BUCKETS
            bucket = (
                (
                    f"least(greatest(CAST(floor(({value} - {low!r}) / {width!r}) AS INTEGER), 0), "
                    f"{HISTOGRAM_BUCKETS - 1})"
                )
                if width > 0
                else "0"
            )
            aggregates += [
                f"histogram(CASE WHEN {value} IS NOT NULL THEN {bucket} END)",
                f"count_if({value} < {low!r})",
                f"count_if({value} > {high!r})",
                f"count({value})",
            ]
            names.append(column)
        if not aggregates:
            return {}
        row = list(self.con.execute(f"SELECT {', '.join(aggregates)} FROM {self.scan('eval')}").fetchone())
        result = {}
        for name in names:
            counts, below, above, total = (row.pop(0) for _ in range(4))
            result[name] = {
                "counts": {int(k): int(v) for k, v in (counts or {}).items() if k is not None},
                "below": below,
                "above": above,
                "total": total,
            }
        return result


# -- inference -------------------------------------------------------------------
def infer_schema(train, kinds: dict[str, str], policy: SchemaPolicy, examples: _Examples) -> schema_pb2.Schema:
    schema = schema_pb2.Schema()
    for stats in train.features:
        name = feature_name(stats)
        feature = schema.feature.add(name=name, type=SCHEMA_TYPE[stats.type])
        common = _common(stats)
        feature.value_count.min = 1
        feature.value_count.max = 1
        feature.presence.min_count = 1
        feature.presence.min_fraction = (
            1.0 if common.num_missing == 0 else common.num_non_missing / max(train.num_examples, 1)
        )
        kind = kinds.get(name, "string" if feature.type == schema_pb2.BYTES else "float")
        if feature.type == schema_pb2.BYTES:
            unique = stats.string_stats.unique
            if name not in ID_COLUMNS and 0 < unique <= policy.max_domain_size:
                domain = schema.string_domain.add(name=name)
                domain.value.extend(examples.distinct("train", name))
                feature.domain = name
                feature.drift_comparator.infinity_norm.threshold = policy.drift_l_infinity
                feature.distribution_constraints.min_domain_mass = 1.0 - policy.unseen_category_share
        elif kind == "timestamp":
            feature.time_domain.integer_format = schema_pb2.TimeDomain.UNIX_SECONDS
        elif stats.num_stats.common_stats.num_non_missing and stats.num_stats.histograms:
            if feature.type == schema_pb2.INT:
                feature.int_domain.min = int(stats.num_stats.min)
                feature.int_domain.max = int(stats.num_stats.max)
            else:
                feature.float_domain.min = stats.num_stats.min
                feature.float_domain.max = stats.num_stats.max
    return schema


# -- validation ------------------------------------------------------------------
def _anomaly(feature: str, kind: str, severity: str, description: str, **measure) -> dict:
    item = {"feature": feature, "kind": kind, "severity": severity, "description": description}
    if measure:
        item["_measure"] = measure  # for the proto; dropped from anomalies.json
    return item


def validate(
    schema: schema_pb2.Schema,
    train,
    evaluation,
    kinds: dict[str, dict[str, str]],
    policy: SchemaPolicy,
    examples: _Examples,
) -> list[dict]:
    anomalies: list[dict] = []
    if evaluation is None or evaluation.num_examples == 0:
        return [_anomaly("", "missing_split", "warning", "the eval split is missing or empty; nothing was validated")]
    train_stats, eval_stats = _features(train), _features(evaluation)
    domains = {d.name: d for d in schema.string_domain}
    numeric_ranges: dict[str, tuple[float, float, str]] = {}
    for feature in schema.feature:
        name = feature.name
        if name not in eval_stats:
            anomalies.append(
                _anomaly(name, "missing_column", "error", f"column '{name}' is in the training data but not in eval")
            )
            continue
        observed = SCHEMA_TYPE[eval_stats[name].type]
        if observed != feature.type:
            anomalies.append(
                _anomaly(
                    name,
                    "type_change",
                    "error",
                    f"'{name}' is {TYPE_NAME[observed]} in eval but {TYPE_NAME[feature.type]} in the schema "
                    f"(train is {kinds['train'].get(name, '?')}, eval is {kinds['eval'].get(name, '?')})",
                )
            )
            continue
        common = _common(eval_stats[name])
        present = common.num_non_missing / evaluation.num_examples
        slack = 0.0 if feature.presence.min_fraction >= 1.0 else PRESENCE_SLACK
        if present + slack + 1e-9 < feature.presence.min_fraction:
            anomalies.append(
                _anomaly(
                    name,
                    "missing_values",
                    "warning",
                    f"'{name}' is present in {_pct(present)} of eval rows; the schema expects at least "
                    f"{_pct(feature.presence.min_fraction)} (as in train)",
                )
            )
        if not common.num_non_missing:
            continue
        if feature.domain in domains:
            anomalies += _check_categorical(name, examples, policy)
        elif feature.HasField("int_domain") or feature.HasField("float_domain"):
            # Train's own min and max: float_domain holds them as float32, which would put train's
            # largest value itself out of range.
            train_num = train_stats[name].num_stats
            numeric_ranges[name] = (train_num.min, train_num.max, kinds["train"].get(name, "float"))
    anomalies += _check_numeric(numeric_ranges, train_stats, examples, policy)
    known = {f.name for f in schema.feature}
    for name in eval_stats:
        if name not in known:
            anomalies.append(
                _anomaly(name, "new_column", "warning", f"column '{name}' is in eval but not in the training data")
            )
    return sorted(anomalies, key=lambda a: (SEVERITY_ORDER[a["severity"]], a["feature"], a["kind"]))


def _check_categorical(name: str, examples: _Examples, policy: SchemaPolicy) -> list[dict]:
    found = []
    comparison = examples.categorical_comparison(name)
    share, count = comparison["unseen_share"], comparison["unseen_count"]
    if count:
        severity = "error" if share > policy.unseen_category_share else "info"
        examples_text = ", ".join(f"'{v}'" for v in comparison["unseen"])
        found.append(
            _anomaly(
                name,
                "unseen_categories",
                severity,
                f"{count} value{'s' if count != 1 else ''} of '{name}' not seen in train "
                f"cover{'s' if count == 1 else ''} {_pct(share)} of eval "
                f"(limit {_pct(policy.unseen_category_share)}), e.g. {examples_text}",
            )
        )
    if comparison["distance"] > policy.drift_l_infinity:
        found.append(
            _anomaly(
                name,
                "drift",
                "error",
                f"the distribution of '{name}' drifted: L-infinity distance {comparison['distance']:.3f} > "
                f"{policy.drift_l_infinity:g}; '{comparison['value']}' is {_pct(comparison['train_share'])} of train "
                f"and {_pct(comparison['eval_share'])} of eval",
                value=comparison["distance"],
                threshold=policy.drift_l_infinity,
            )
        )
    return found


def _check_numeric(ranges, train_stats, examples: _Examples, policy: SchemaPolicy) -> list[dict]:
    found = []
    measured = examples.numeric_eval_buckets(ranges)
    for name, (low, high, _) in ranges.items():
        eval_counts = measured[name]
        total = eval_counts["total"]
        if not total:
            continue
        outside = eval_counts["below"] + eval_counts["above"]
        if outside:
            found.append(
                _anomaly(
                    name,
                    "out_of_range",
                    "info",
                    f"{outside} eval value{'s' if outside != 1 else ''} of '{name}' ({_pct(outside / total)}) "
                    f"fall outside train's range [{low:g}, {high:g}]",
                )
            )
        standard = [h for h in train_stats[name].num_stats.histograms if h.type == statistics_pb2.Histogram.STANDARD]
        if not standard or len(standard[0].buckets) != HISTOGRAM_BUCKETS:
            continue  # a constant feature in train: the range check says it all
        train_counts = [b.sample_count for b in standard[0].buckets]
        train_total = sum(train_counts)
        distances = [
            abs(train_counts[i] / train_total - eval_counts["counts"].get(i, 0) / total)
            for i in range(HISTOGRAM_BUCKETS)
        ]
        distance = max(distances)
        if distance > policy.drift_l_infinity:
            worst = distances.index(distance)
            bucket = standard[0].buckets[worst]
            found.append(
                _anomaly(
                    name,
                    "drift",
                    "error",
                    f"the distribution of '{name}' drifted: L-infinity distance {distance:.3f} > "
                    f"{policy.drift_l_infinity:g} over train's histogram; [{bucket.low_value:g}, {bucket.high_value:g}] "
                    f"holds {_pct(train_counts[worst] / train_total)} of train and "
                    f"{_pct(eval_counts['counts'].get(worst, 0) / total)} of eval",
                    value=distance,
                    threshold=policy.drift_l_infinity,
                )
            )
    return found


def anomalies_proto(schema: schema_pb2.Schema, anomalies: list[dict]) -> anomalies_pb2.Anomalies:
    proto = anomalies_pb2.Anomalies(anomaly_name_format=anomalies_pb2.Anomalies.SERIALIZED_PATH)
    proto.baseline.CopyFrom(schema)
    for item in anomalies:
        if item["severity"] == "info" or item["kind"] not in ANOMALY_TYPE:
            continue
        info = proto.anomaly_info[item["feature"]]
        if not info.path.step:
            info.path.step.append(item["feature"])
        severity = anomalies_pb2.AnomalyInfo.ERROR if item["severity"] == "error" else anomalies_pb2.AnomalyInfo.WARNING
        info.severity = max(info.severity, severity)
        info.reason.add(
            type=ANOMALY_TYPE[item["kind"]], short_description=KIND_WORDS[item["kind"]], description=item["description"]
        )
        info.short_description = KIND_WORDS[item["kind"]] if len(info.reason) == 1 else "Multiple errors"
        info.description = " ".join(r.description for r in info.reason)
        if item["kind"] == "drift":
            drift = proto.drift_skew_info.add()
            drift.path.step.append(item["feature"])
            drift.drift_measurements.add(
                type=anomalies_pb2.DriftSkewInfo.Measurement.L_INFTY,
                value=item["_measure"]["value"],
                threshold=item["_measure"]["threshold"],
            )
    return proto


def _summary(features: int, anomalies: list[dict]) -> str:
    serious = [a for a in anomalies if a["severity"] != "info"]
    notes = len(anomalies) - len(serious)
    note_text = f"{notes} note{'s' if notes != 1 else ''}" if notes else ""
    if not serious:
        return f"schema for {features} features; no anomalies" + (f" ({note_text})" if note_text else "")
    described = ", ".join(
        f"{KIND_WORDS.get(a['kind'], a['kind'])} in {a['feature'] or 'the data'}" for a in serious[:3]
    )
    if len(serious) > 3:
        described += ", …"
    text = f"schema for {features} features; {len(serious)} anomal{'ies' if len(serious) != 1 else 'y'} ({described})"
    return text + (f"; {note_text}" if note_text else "")


class SchemaGen(Stage[SchemaPolicy]):
    name = "SchemaGen"
    # ExampleGen too: string domains list every value seen in train, and the
    # statistics only keep the top values.
    inputs = {"ExampleGen": Examples, "StatisticsGen": ExampleStatistics}
    output = Schema
    Params = SchemaPolicy

    def params(self, spec: PipelineSpec) -> SchemaPolicy:
        return spec.schema_policy

    def run(self, ctx: StageContext, policy: SchemaPolicy) -> StageResult:
        statistics = ctx.input(ExampleStatistics)
        stats = statistics.load()
        train = statistics.dataset("train", stats)
        if train is None or train.num_examples == 0:
            raise StageFailure("the train split has no statistics; nothing to infer a schema from")
        examples = _Examples(ctx.input(Examples))
        try:
            kinds = {split: examples.kinds(split) for split in ("train", "eval")}
            schema = infer_schema(train, kinds["train"], policy, examples)
            anomalies = validate(schema, train, statistics.dataset("eval", stats), kinds, policy, examples)
        finally:
            examples.close()

        files = Schema.FILES
        (ctx.output / files["schema"]).write_text(text_format.MessageToString(schema))
        (ctx.output / files["anomalies_proto"]).write_text(
            text_format.MessageToString(anomalies_proto(schema, anomalies))
        )
        public = [{k: v for k, v in a.items() if not k.startswith("_")} for a in anomalies]
        (ctx.output / files["anomalies"]).write_text(json.dumps(public, indent=1))
        for item in public:
            log = ctx.log.warning if item["severity"] != "info" else ctx.log.info
            log("%s %s: %s", item["severity"], item["feature"], item["description"])

        errors = [a for a in public if a["severity"] == "error"]
        if errors and policy.fail_on_anomalies:
            listed = "; ".join(f"{a['feature']}: {a['description']}" for a in errors)
            raise StageFailure(
                f"schema_policy.fail_on_anomalies: {len(errors)} anomal"
                f"{'ies' if len(errors) != 1 else 'y'} with severity error: {listed}"
            )
        summary = _summary(len(schema.feature), public)
        counts = {level: sum(1 for a in public if a["severity"] == level) for level in ("error", "warning", "info")}
        return StageResult(
            summary,
            {
                "features": len(schema.feature),
                "domains": len(schema.string_domain),
                "anomalies": counts["error"] + counts["warning"],
                "errors": counts["error"],
                "warnings": counts["warning"],
                "notes": counts["info"],
                "kinds": sorted({f"{a['kind']}:{a['feature']}" for a in public if a["severity"] != "info"}),
            },
        )
