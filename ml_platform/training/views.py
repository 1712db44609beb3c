"""Server-rendered pages of training runs and experiments: the standalone statistics report.

The report is our own rendering of what StatisticsGen and SchemaGen wrote
(TFDV's Facets view loads a web component from a CDN, which the platform
never does). The numbers come from ``outputs.statistics_of`` and ``outputs.schema_of``
as the Data Insights tab gets them; the helpers below only pick one split and
shape rows for the template (formatted numbers, bar sizes, histogram rects).
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.shortcuts import render
from google.protobuf.message import DecodeError
from tensorflow_metadata.proto.v0 import statistics_pb2

from ml_pipeline.artifact_types import ExampleStatistics, feature_name
from ml_platform.core.errors import NotFound
from ml_platform.training import outputs
from ml_platform.training.access import run_for_user

TEMPLATE = "training/statistics_report.html"
DEFAULT_SPLIT = "train"
NUMERIC, CATEGORICAL, TIMESTAMP = ("int", "float"), ("string",), ("timestamp",)
# The mini histogram's drawing box (SVG user units; the CSS sets its size on the page).
HIST_WIDTH, HIST_HEIGHT, HIST_GAP = 100.0, 30.0, 1.0


def run_statistics(request, run_id: int):
    """The statistics report of a run or an experiment; 404 with the reason while there are no statistics."""
    run = run_for_user(request.user, run_id, kind=None)
    context = {"run": run, "project": run.project}
    try:
        statistics = outputs.statistics_of(run)
    except NotFound as missing:
        return render(request, TEMPLATE, {**context, "unavailable": str(missing)}, status=404)

    return render(request, TEMPLATE, {**context, **statistics_context(run, statistics, request.GET.get("split"))})


def statistics_context(run, statistics: dict, split: str | None) -> dict:
    """The tables of a run's statistics (``outputs.statistics_of``'s answer) for one split: the report page's
    and the view modal's Data insights tab's."""
    splits = statistics["summary"].get("splits") or {}
    split = split or DEFAULT_SPLIT
    if split not in splits:
        split = statistics["overview"]["split"]  # train, or the first split there is
    columns = (splits.get(split) or {}).get("columns") or {}
    histograms = _histograms(run, split, times={n for n, c in columns.items() if c.get("type") in TIMESTAMP})
    try:
        schema, schema_unavailable = outputs.schema_of(run), None
    except NotFound as missing:
        schema, schema_unavailable = None, str(missing)

    return {
        "overview": statistics["overview"],
        "splits": [{"name": name, "examples": s.get("num_examples") or 0} for name, s in splits.items()],
        "split": split,
        "split_examples": (splits.get(split) or {}).get("num_examples") or 0,
        "split_missing_pct": _average([c.get("missing_pct") for c in columns.values()]),
        "numeric": [
            _numeric_row(name, c, histograms.get(name)) for name, c in columns.items() if c.get("type") in NUMERIC
        ],
        "categorical": [_categorical_row(name, c) for name, c in columns.items() if c.get("type") in CATEGORICAL],
        "timestamps": [
            _timestamp_row(name, c, histograms.get(name)) for name, c in columns.items() if c.get("type") in TIMESTAMP
        ],
        "schema_features": _schema_rows(schema) if schema else [],
        "anomalies": schema["anomalies"] if schema else [],
        "schema_unavailable": schema_unavailable,
    }


# --------------------------------------------------------------------------- rows


def _common(name: str, column: dict) -> dict:
    return {"name": name, "count": column.get("count"), "missing_pct": _pct(column.get("missing_pct"))}


def _numeric_row(name: str, column: dict, histogram: dict | None) -> dict:
    count, zeros = column.get("count") or 0, column.get("zeros")
    return {
        **_common(name, column),
        "type": column.get("type"),
        **{key: _num(column.get(key)) for key in ("mean", "std", "min", "median", "max")},
        "zeros_pct": _pct(100.0 * zeros / count if zeros is not None and count else None),
        "histogram": histogram,
    }


def _timestamp_row(name: str, column: dict, histogram: dict | None) -> dict:
    return {
        **_common(name, column),
        **{key: column.get(key) or "—" for key in ("min", "median", "max")},
        "histogram": histogram,
    }


def _categorical_row(name: str, column: dict) -> dict:
    """Top values with their share of the column's present values (the bar's width)."""
    count = column.get("count") or 0
    top = [
        {"value": t["value"], "count": t["count"], "share": round(100.0 * t["count"] / count, 1) if count else 0.0}
        for t in column.get("top") or []
    ]
    return {**_common(name, column), "unique": column.get("unique"), "avg_length": column.get("avg_length"), "top": top}


def _schema_rows(schema: dict) -> list[dict]:
    """``schema_of``'s feature table, with each feature's domain in words."""
    proto = {f["name"]: f for f in schema["schema"].get("feature", [])}
    named = {d["name"]: d.get("value", []) for d in schema["schema"].get("string_domain", [])}
    rows = []
    for feature in schema["features"]:
        fraction = feature["presence_min_fraction"]
        presence = "—" if fraction is None else "every example" if fraction == 1 else f"≥ {100 * fraction:g}%"
        rows.append({**feature, "presence": presence, "domain": _domain(proto.get(feature["name"], {}), named)})
    return rows


def _domain(feature: dict, named: dict[str, list]) -> str:
    values = feature.get("string_domain", {}).get("value") or named.get(feature.get("domain"))
    if values:
        shown = ", ".join(values[:5])
        return f"{len(values)} values: {shown}" + (", …" if len(values) > 5 else "")
    for key in ("float_domain", "int_domain"):
        if key in feature:
            bounds = feature[key]
            return f"{_num(bounds.get('min'))} … {_num(bounds.get('max'))}"
    if "time_domain" in feature:
        return "time (" + ", ".join(str(v) for v in feature["time_domain"].values()).lower() + ")"
    return "—"


# --------------------------------------------------------------------------- histograms


def _histograms(run, split: str, times: set[str]) -> dict[str, dict]:
    """Each numeric column's STANDARD histogram, as StatisticsGen stored it in ``stats.pb``, ready to draw.

    ``summary.json`` carries no buckets; the binary statistics next to it do.
    Nothing is computed here: a column without stored buckets gets no histogram.
    ``times`` names the timestamp columns (stored as Unix seconds), labelled as dates.
    """
    try:
        output = outputs.artifact_output(run, "StatisticsGen", "statistics")  # on the store's filesystem
        stats = statistics_pb2.DatasetFeatureStatisticsList.FromString(
            (output / ExampleStatistics.FILES["statistics"]).read_bytes()
        )
        dataset = next((d for d in stats.datasets if d.name == split), None)
    except (NotFound, OSError, DecodeError):
        return {}
    drawn = {}
    for feature in dataset.features if dataset else []:
        if not feature.HasField("num_stats"):
            continue
        standard = next((h for h in feature.num_stats.histograms if h.type == statistics_pb2.Histogram.STANDARD), None)
        if standard is not None and standard.buckets:
            name = feature_name(feature)
            drawn[name] = _bars(standard.buckets, name in times)
    return drawn


def _bars(buckets, is_time: bool) -> dict:
    tallest = max(b.sample_count for b in buckets) or 1.0
    width = HIST_WIDTH / len(buckets)
    label = _time if is_time else _num
    bars = []
    for index, bucket in enumerate(buckets):
        height = HIST_HEIGHT * bucket.sample_count / tallest
        bars.append(
            {
                "x": round(index * width, 3),
                "width": round(max(width - HIST_GAP, 0.5), 3),
                "y": round(HIST_HEIGHT - height, 3),
                "height": round(height, 3),
                "title": f"{label(bucket.low_value)} – {label(bucket.high_value)}: {bucket.sample_count:,.0f}",
            }
        )
    return {"bars": bars, "width": HIST_WIDTH, "height": HIST_HEIGHT}


# --------------------------------------------------------------------------- formatting


def _num(value) -> str:
    """A readable number: thousands separated, at most four significant decimals."""
    if value is None:
        return "—"
    value = float(value)
    if value.is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    if abs(value) >= 1000:
        return f"{value:,.1f}"
    return f"{value:.4g}"


def _pct(value) -> str:
    return "—" if value is None else f"{value:.1f}%"


def _time(seconds: float) -> str:
    return datetime.fromtimestamp(round(seconds), tz=UTC).strftime("%Y-%m-%d")


def _average(values: list) -> str:
    present = [v for v in values if v is not None]
    return _pct(sum(present) / len(present) if present else None)
