"""Weight averaging (``model.weight_averaging``, on for ranking models by default).

The optimizer keeps a moving average of the weights; every epoch is evaluated, kept as best and exported
as that average, while training goes on from the raw weights — so averaging changes what is evaluated and
exported, never how training goes, and a resumed run picks the average up where it was.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from ml_pipeline import metrics
from ml_pipeline.config.model import ModelConfig
from ml_pipeline.model.inputs import target_values, tower_batch
from tests.execution.test_transform_trainer import CrashingReporter, purchases, run, spec_for, split_table

RANKING = {"model_type": "ranking", "output_dim": 8, "rating_head": [{"type": "dense", "units": 8}]}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weight_averaging")
    pq.write_table(purchases(), folder / "purchases.parquet")
    return folder


def _ranking(workspace, run_id: str, averaging: bool, reporter=None, epochs: int = 3, root_in=None, **training):
    """A ranking run on the workspace's data; its pipeline root under ``root_in`` (default: the workspace)."""
    spec = spec_for(
        workspace / "purchases.parquet",
        model={**RANKING, "weight_averaging": averaging},
        training={"epochs": epochs, **training},
    )
    result, reporter = run(root_in or workspace, spec, run_id, reporter)
    return spec, result, reporter


def _eval_predictions(spec, result) -> tuple[np.ndarray, np.ndarray]:
    from ml_pipeline.model import load_trained

    trained = load_trained(result.artifacts["Trainer"].path)
    rows = split_table(result, "eval")
    batch = {**tower_batch(rows, spec.features, "buyer"), **tower_batch(rows, spec.features, "product")}
    return np.asarray(trained.rating(batch)), target_values(rows)


@pytest.mark.parametrize(("model_type", "averaging"), [("ranking", True), ("retrieval", False), ("multitask", False)])
def test_ranking_models_average_their_weights_by_default_and_the_others_do_not(model_type, averaging):
    assert ModelConfig(model_type=model_type).weight_averaging is averaging
    assert ModelConfig(model_type=model_type, weight_averaging=not averaging).weight_averaging is not averaging


def test_averaging_changes_what_is_evaluated_and_exported_not_how_training_goes(workspace):
    raw_spec, raw, raw_reporter = _ranking(workspace, "raw", averaging=False)
    avg_spec, averaged, avg_reporter = _ranking(workspace, "averaged", averaging=True)
    assert raw.status == averaged.status == "completed", (raw.error, averaged.error)
    losses = [[e["metrics"]["loss"] for e in r.of_kind("epoch_completed")] for r in (raw_reporter, avg_reporter)]
    assert losses[0] == losses[1]  # the same training, step for step
    evaluated = [[e["metrics"]["rmse"] for e in r.of_kind("epoch_completed")] for r in (raw_reporter, avg_reporter)]
    assert evaluated[0] != evaluated[1]  # ...evaluated with different weights

    for spec, result, history in ((raw_spec, raw, evaluated[0]), (avg_spec, averaged, evaluated[1])):
        predicted, actual = _eval_predictions(spec, result)
        # the exported model is the one the last epoch's eval RMSE was measured on
        assert metrics.rating_metrics(predicted, actual)["rmse"] == pytest.approx(history[-1], rel=1e-5)


def test_early_stopping_restores_the_best_epoch_as_it_was_evaluated(workspace):
    """A min_delta no later epoch can beat: epoch 1 stays the best, and is exported averaged, as evaluated."""
    early = {"enabled": True, "patience": 2, "min_delta": 10.0}
    spec, result, reporter = _ranking(workspace, "early", averaging=True, epochs=5, early_stopping=early)
    assert result.status == "completed", result.error
    summary = json.loads((result.artifacts["Trainer"].path / "trainer_summary.json").read_text())
    assert (summary["restored_best_weights"], summary["exported_epoch"], summary["epochs_run"]) == (True, 1, 3)
    history = [e["metrics"]["rmse"] for e in reporter.of_kind("epoch_completed")]
    predicted, actual = _eval_predictions(spec, result)
    assert metrics.rating_metrics(predicted, actual)["rmse"] == pytest.approx(history[0], rel=1e-5)


def test_a_resumed_averaging_run_exports_what_an_uninterrupted_one_does(workspace, tmp_path):
    spec, whole, _ = _ranking(workspace, "whole", averaging=True, epochs=4, root_in=tmp_path)  # not cached
    _, first, _ = _ranking(workspace, "interrupted", averaging=True, reporter=CrashingReporter(2), epochs=4)
    assert first.status == "failed"
    _, resumed, reporter = _ranking(workspace, "interrupted", averaging=True, epochs=4)
    assert resumed.status == whole.status == "completed", (resumed.error, whole.error)
    assert any("resuming from the checkpoint of epoch 2" in e["message"] for e in reporter.of_kind("log"))
    summary = json.loads((resumed.artifacts["Trainer"].path / "trainer_summary.json").read_text())
    assert summary["resumed_from_epoch"] == 2
    np.testing.assert_allclose(_eval_predictions(spec, resumed)[0], _eval_predictions(spec, whole)[0], rtol=1e-5)
