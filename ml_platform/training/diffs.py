"""What changed between two run configurations, leaf by leaf, under the API's field paths."""

from __future__ import annotations

from ml_pipeline.redact import redact

# What the config diff compares, under the names the API uses for them.
DIFFED = {
    "description": "description",
    "dataset": "dataset_snapshot",
    "feature_config": "feature_config_snapshot",
    "model_config": "model_config_snapshot",
    "split_config": "split_config",
    "training_params": "training_params",
    "gpu_config": "gpu_config",
    "evaluator_config": "evaluator_config",
}


def config_leaves(value, path: str) -> dict:
    """A nested config as {"section.key.inner": value} (lists and empty dicts are leaves)."""
    if isinstance(value, dict) and value:
        leaves = {}
        for key, inner in value.items():
            leaves.update(config_leaves(inner, f"{path}.{key}"))
        return leaves
    return {path: redact(value)}  # diffs and comparisons are shown: no database password in them


def config_diff(before: dict, after: dict) -> list[dict]:
    """Every leaf that differs, by field path (``training_params.epochs``), lists compared whole.

    Written out rather than taken from a diff library: it is a dozen lines,
    and its paths are the API's own field paths, the ones errors name too.
    """
    old, new = {}, {}
    for section in before:
        old.update(config_leaves(before[section], section))
        new.update(config_leaves(after[section], section))
    return [
        {"field": path, "before": old.get(path), "after": new.get(path)}
        for path in sorted(old.keys() | new.keys())
        if old.get(path) != new.get(path)
    ]
