"""The blessing: whether a trained model may be pushed, as a record of the rules that decided it.

:func:`bless` applies the Evaluator's policy to the candidate's metrics (and, with a baseline model, the
baseline's): every threshold must pass; with a baseline, the candidate's ``compare_metric`` (default
``recall_at_<largest K>``, or ``rmse`` for ranking models) must not regress by more than ``tolerance``;
without one, ``first_run_policy`` decides. Either way, unless ``naive_baseline_margin`` is None, the
compare metric must beat the naive baseline scored beside the model (popularity for a retrieval metric,
the mean rating for RMSE/MAE) by more than that margin (default 0: strictly better), so a model no better
than "everyone gets the best sellers" is never pushed. A disabled evaluator blesses. Each rule says what it compared
and whether it passed; its ``text`` is what people read (``"Recall@100 0.41 ≥ 0.35 ✓"``), and the
``reasons`` stored beside the rules are those texts.

``blessing.json``::

    {"blessed": false,
     "rules": [{"metric": "recall_at_100", "value": 0.41, "threshold": 0.5, "baseline": null,
                "passed": false, "text": "Recall@100 0.41 < 0.5 ✗"}, ...],
     "reasons": ["Recall@100 0.41 < 0.5 ✗", ...],
     "policy": {"thresholds": [...], "compare_metric": "recall_at_100", "tolerance": 0.01,
                "first_run_policy": "...", "baseline_model_uri": null, "decided_by": "first_run_policy"}}
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ml_pipeline.artifacts import write_json_atomic
from ml_pipeline.config.model import ModelType
from ml_pipeline.metrics import lower_is_better
from ml_pipeline.spec import EvaluatorConfig

BLESSING_FILE = "blessing.json"
PASS, FAIL = "✓", "✗"


# -- names and numbers for people ----------------------------------------------------
def metric_label(metric: str) -> str:
    """``recall_at_100`` -> ``Recall@100``, ``rmse`` -> ``RMSE``."""
    names = {"recall": "Recall", "ndcg": "NDCG", "coverage": "Coverage"}
    if "_at_" in metric:
        base, k = metric.split("_at_", 1)
        return f"{names.get(base, base)}@{k}"
    return {"mrr": "MRR", "rmse": "RMSE", "mae": "MAE", "coverage": "Coverage"}.get(metric, metric)


def fmt(value: float, other: float | None = None) -> str:
    """4 significant digits, more when needed to tell ``value`` from ``other``."""
    for digits in (4, 6, 8):
        text = f"{value:.{digits}g}"
        if other is None or value == other or text != f"{other:.{digits}g}":
            return text
    return repr(value)


def default_compare_metric(model_type: str, ks: list[int]) -> str:
    return f"recall_at_{max(ks)}" if ModelType(model_type).has_retrieval else "rmse"


# -- the record ------------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    """One rule of the verdict: a threshold, the comparison with the baseline model, or the policy.

    ``passed`` is None for a note that checks nothing (no thresholds set, the first-run policy's
    verdict on the thresholds, a disabled evaluator).
    """

    text: str
    passed: bool | None = None
    metric: str | None = None
    value: float | None = None
    threshold: float | None = None
    baseline: float | None = None


@dataclass
class Blessing:
    blessed: bool
    rules: list[Rule]
    policy: dict[str, Any] = field(default_factory=dict)

    @property
    def reasons(self) -> list[str]:
        return [rule.text for rule in self.rules]

    def failed(self) -> list[Rule]:
        return [rule for rule in self.rules if rule.passed is False]

    def why_not(self) -> str:
        """What kept the model from being blessed: its failed rules, else every rule."""
        return "; ".join(rule.text for rule in self.failed() or self.rules) or "no blessing recorded"

    def to_dict(self) -> dict[str, Any]:
        return {
            "blessed": self.blessed,
            "rules": [asdict(rule) for rule in self.rules],
            "reasons": self.reasons,
            "policy": self.policy,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Blessing:
        if "rules" in data:
            rules = [Rule(**rule) for rule in data["rules"]]
        else:  # written before blessings had rules: the reasons are all there is
            rules = [Rule(str(text)) for text in data.get("reasons") or []]
        return cls(bool(data["blessed"]), rules, dict(data.get("policy") or {}))

    @classmethod
    def load(cls, path: str | Path) -> Blessing:
        """From ``blessing.json`` or the Evaluator output folder holding it."""
        path = Path(path)
        if path.is_dir():
            path = path / BLESSING_FILE
        return cls.from_dict(json.loads(path.read_text()))

    def save(self, folder: Path) -> None:
        write_json_atomic(Path(folder) / BLESSING_FILE, self.to_dict())


# -- the policy ------------------------------------------------------------------------
def _threshold_rule(threshold, value: float | None, model_type: str) -> Rule:
    label, op = metric_label(threshold.metric), threshold.direction()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return Rule(
            f"{label} is not computed for a {model_type} model {FAIL}",
            False,
            threshold.metric,
            threshold=threshold.value,
        )
    ok = value >= threshold.value if op == ">=" else value <= threshold.value
    symbol = ("≥" if op == ">=" else "≤") if ok else ("<" if op == ">=" else ">")
    text = f"{label} {fmt(value, threshold.value)} {symbol} {fmt(threshold.value, value)} {PASS if ok else FAIL}"
    return Rule(text, ok, threshold.metric, value, threshold=threshold.value)


def _baseline_rule(metric: str, mine: float | None, theirs: float | None, name: str, tolerance: float) -> Rule:
    label = metric_label(metric)
    if mine is None or theirs is None:
        missing = "the candidate" if mine is None else f"baseline {name}"
        return Rule(
            f"{label} vs baseline {name}: {missing} has no {metric} to compare {FAIL}",
            False,
            metric,
            mine,
            baseline=theirs,
        )
    delta = mine - theirs
    regression = delta if lower_is_better(metric) else -delta
    ok = regression <= tolerance + 1e-12
    text = f"{label} {fmt(mine, theirs)} vs baseline {name} {fmt(theirs, mine)}: {delta:+.4g} "
    text += PASS if ok else f"{FAIL} (worse by more than the tolerance {tolerance:g})"
    return Rule(text, ok, metric, mine, baseline=theirs)


def naive_baseline_name(metric: str) -> str:
    """The naive baseline a metric is held against: ``mean`` for rating errors, else ``popularity``."""
    return "mean" if lower_is_better(metric) else "popularity"


def _naive_rule(metric: str, mine: float | None, theirs: float | None, name: str, margin: float) -> Rule:
    label = metric_label(metric)
    if mine is None or theirs is None or math.isnan(mine) or math.isnan(theirs):
        return Rule(f"{label} vs {name}: not computed, not compared")
    lower = lower_is_better(metric)
    ok = mine < theirs - margin if lower else mine > theirs + margin
    symbol = ("<" if ok else "≥") if lower else (">" if ok else "≤")
    bar = f"{name} {fmt(theirs, mine)}" + (f" {'-' if lower else '+'} margin {margin:g}" if margin else "")
    return Rule(f"{label} {fmt(mine, theirs)} {symbol} {bar} {PASS if ok else FAIL}", ok, metric, mine, baseline=theirs)


def bless(
    config: EvaluatorConfig,
    model_type: str,
    ks: list[int],
    candidate: dict[str, float],
    baseline: dict[str, float] | None = None,
    baseline_label: str | None = None,
    naive: dict[str, float] | None = None,
) -> Blessing:
    """The verdict, from the candidate's metrics, (when there is a baseline model) the baseline's, and the
    naive baseline's (popularity or mean, scored on the same holdout; None: no such rule).

    Never undecided: every path ends in blessed or not, with its rules.
    """
    compare_metric = config.compare_metric or default_compare_metric(model_type, ks)
    policy: dict[str, Any] = {
        "thresholds": [t.model_dump(mode="json") for t in config.thresholds],
        "compare_metric": compare_metric,
        "tolerance": config.tolerance,
        "first_run_policy": config.first_run_policy,
        "naive_baseline_margin": config.naive_baseline_margin,
        "baseline_model_uri": config.baseline_model_uri,
    }
    if not config.enabled:
        return Blessing(True, [Rule("evaluation disabled")], {**policy, "decided_by": "disabled"})

    rules = [_threshold_rule(t, candidate.get(t.metric), model_type) for t in config.thresholds]
    thresholds_pass = all(rule.passed for rule in rules)
    if not config.thresholds:
        rules.append(Rule("no thresholds set"))
    if naive is not None and config.naive_baseline_margin is not None:
        name = naive_baseline_name(compare_metric)
        rule = _naive_rule(
            compare_metric, candidate.get(compare_metric), naive.get(compare_metric), name, config.naive_baseline_margin
        )
        rules.append(rule)
        thresholds_pass = thresholds_pass and rule.passed is not False

    if baseline is not None:
        compared = _baseline_rule(
            compare_metric,
            candidate.get(compare_metric),
            baseline.get(compare_metric),
            baseline_label or "model",
            config.tolerance,
        )
        return Blessing(
            thresholds_pass and bool(compared.passed),
            [*rules, compared],
            {**policy, "decided_by": "baseline_comparison"},
        )

    policy["decided_by"] = "first_run_policy"
    if config.first_run_policy == "never_bless":
        never = Rule(f"first run, no baseline model: first_run_policy is never_bless {FAIL}", False)
        return Blessing(False, [*rules, never], policy)
    verdict = "blessed" if thresholds_pass else "not blessed"
    note = Rule(f"first run, no baseline model: {verdict} by first_run_policy bless_if_thresholds_pass")
    return Blessing(thresholds_pass, [*rules, note], policy)


def advice(blessed: bool | None, reasons: list[str]) -> str | None:
    """An experiment's verdict as advice (an experiment is never pushed): ``"would be blessed"``, or
    ``"would not be blessed: below popularity (Recall@100 0.0584 ≤ popularity 0.364 ✗)"``; None: not evaluated."""
    if blessed is None:
        return None
    if blessed:
        return "would be blessed"
    failed = [text for text in reasons if text.endswith(FAIL)]
    naive = [text for text in failed if any(f" {name} " in text for name in ("popularity", "mean"))]
    if naive:
        name = "popularity" if " popularity " in naive[0] else "the mean rating"
        return f"would not be blessed: below {name} ({'; '.join(failed)})"
    return "would not be blessed" + (f": {'; '.join(failed)}" if failed else "")
