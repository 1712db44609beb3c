"""Compile: a bad spec fails here with every problem listed, before any data is read."""

import json
import subprocess
import sys

import pytest

from ml_pipeline.errors import ConfigError, validate_model
from ml_pipeline.reporting import InMemoryReporter
from ml_pipeline.runner import PipelineRunner
from ml_pipeline.spec import PipelineSpec
from ml_pipeline.stages.compile import Compile
from tests.helpers import compile_spec_dict

CSV = "customer,item,ordered_at,qty,segment\nc1,p1,2025-01-01,2,retail\nc2,p2,2025-01-02,1,wholesale\n"


@pytest.fixture
def csv_path(tmp_path):
    path = tmp_path / "purchases.csv"
    path.write_text(CSV)
    return path


def run_compile(tmp_path, spec: PipelineSpec):
    reporter = InMemoryReporter()
    runner = PipelineRunner(spec, tmp_path / "root", run_id="r1", reporter=reporter, stages={"Compile": Compile()})
    return runner.run(), reporter, runner


def test_it_freezes_a_valid_spec_with_defaults_resolved(tmp_path, csv_path):
    result, reporter, runner = run_compile(tmp_path, PipelineSpec.model_validate(compile_spec_dict(csv_path)))
    assert result.status == "completed"
    compiled = json.loads((result.artifacts["Compile"].path / "compiled_spec.json").read_text())
    assert compiled["training"]["learning_rate"] == 0.01  # taken from the model config
    assert compiled["training"]["optimizer"] == "adam"
    assert compiled["model"]["loss_weights"] == {"retrieval": 1.0, "rating": 1.0}
    assert [e["stage"] for e in reporter.of_kind("stage_completed")] == ["Compile"]


def test_it_lists_every_problem_at_once_before_reading_data(tmp_path, csv_path):
    bad = compile_spec_dict(
        csv_path,
        dataset__mapping={
            "buyer_id": "Customer",
            "product_id": "item",
            "timestamp": "ordered_at",
            "buyer_features": [{"column": "segment"}],
        },
        evaluator__thresholds=[{"metric": "recall_at_20", "value": 0.1}, {"metric": "rmse", "value": 2.0}],
        model={"model_type": "retrieval"},
    )
    bad["features"]["buyer_tower"]["features"].append({"kind": "numeric", "column": "segment_size"})
    result, reporter, runner = run_compile(tmp_path, PipelineSpec.model_validate(bad))
    assert result.status == "failed"
    message = result.error["message"]
    for expected in (
        "features.buyer_tower.features[2].column: column 'segment_size' is not in the dataset",
        "evaluator.thresholds[0].metric: recall_at_20 is not computed: model.retrieval_k is [5, 10, 50, 100]",
        "evaluator.thresholds[1].metric: rmse needs a rating head; this is a retrieval model",
        "dataset.mapping.buyer_id: column 'Customer' is not in the source (did you mean 'customer'?)",
    ):
        assert expected in message
    assert runner.store.completed("r1", "Compile") is None  # nothing marked complete
    assert (runner.store.stage_dir("r1", "Compile") / "stage.log").read_text().count("ERROR") == 1


def test_a_rating_model_needs_a_mapped_target(tmp_path, csv_path):
    spec = compile_spec_dict(csv_path, model={"model_type": "ranking"})
    del spec["dataset"]["mapping"]["target"]
    result, _, _ = run_compile(tmp_path, PipelineSpec.model_validate(spec))
    assert "dataset.mapping.target: a ranking model needs a target column" in result.error["message"]


def test_time_based_splits_need_a_timestamp_and_valid_dates():
    with pytest.raises(ConfigError) as caught:
        validate_model(
            PipelineSpec,
            compile_spec_dict(
                "x.csv", split={"strategy": "strict_temporal", "train_end": "2025-02-01", "eval_end": "2025-01-01"}
            ),
        )
    assert str(caught.value) == "split.eval_end: must be after train_end"
    with pytest.raises(ConfigError) as caught:
        validate_model(
            PipelineSpec,
            compile_spec_dict(
                "x.csv", split={"strategy": "random", "train_ratio": 0.8, "eval_ratio": 0.3, "test_ratio": 0.1}
            ),
        )
    assert "must add up to 1" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        validate_model(PipelineSpec, compile_spec_dict("x.csv", split={"strategy": "time_holdout"}))
    assert str(caught.value) == "split.holdout_days: required for the time_holdout strategy"


def test_the_cli_rejects_an_invalid_spec_with_field_names(tmp_path):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"name": "x", "model": {"model_type": "retrieval"}}))
    out = subprocess.run(
        [sys.executable, "-m", "ml_pipeline", "plan", str(path), "--root", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert "dataset: Field required" in out.stderr and "features: Field required" in out.stderr
