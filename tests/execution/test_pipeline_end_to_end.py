"""The whole pipeline, all eight stages, on generated data with planted structure and on a real purchase log.

These are the product's promises about the engine: every stage completes
and leaves readable artifacts; a trained model beats the popularity (or
mean) baseline by a clear margin; the exported SavedModel answers in a fresh
process; unchanged stages are reused, changed ones rerun; a killed Trainer
resumes; and bad input fails at the right stage with nothing marked complete.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

from ml_pipeline import demo_data
from ml_pipeline.blessing import fmt
from ml_pipeline.demo_configs import DEMO_FEATURE_CONFIG, DEMO_MAPPING, DEMO_MODEL_CONFIGS
from ml_pipeline.reporting import InMemoryReporter
from ml_pipeline.runner import PipelineRunner
from ml_pipeline.spec import STAGES, PipelineSpec
from tests.helpers import DROP_CANCELLATIONS, RETAIL_CSV, RETAIL_MAPPING

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
MODEL_BY_TYPE = {"retrieval": "Retrieval two-tower", "ranking": "Ranking", "multitask": "Hybrid"}


@pytest.fixture(scope="module")
def purchases(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "purchases.parquet"
    demo_data.write(demo_data.DemoSpec(rows=20_000, seed=3, products=1_000), path)
    return path


def demo_spec(path: Path, model_type: str = "retrieval", **changes) -> PipelineSpec:
    spec = {
        "name": f"e2e-{model_type}",
        "dataset": {"source": {"kind": "file", "path": str(path)}, "mapping": DEMO_MAPPING},
        "split": {"strategy": "time_holdout", "holdout_days": 45},
        "features": DEMO_FEATURE_CONFIG,
        "model": DEMO_MODEL_CONFIGS[MODEL_BY_TYPE[model_type]],
        "training": {"epochs": 8, "batch_size": 512, "early_stopping": {"patience": 3}},
    }
    spec.update(changes)
    return PipelineSpec.model_validate(spec)


def run(spec: PipelineSpec, root: Path, run_id: str = "r1", **kwargs):
    reporter = InMemoryReporter()
    runner = PipelineRunner(spec, root, run_id=run_id, reporter=reporter)
    return runner.run(**kwargs), reporter, runner


def answer_in_fresh_process(model_dir: Path, buyer: dict, product: dict | None) -> dict:
    script = f"""
import json, sys
from ml_pipeline.serving.model import Recommender
recommender = Recommender({str(model_dir)!r})
buyer = json.loads(sys.argv[1]); product = json.loads(sys.argv[2])
out = {{"top": recommender.recommend(buyer, 10)}}
if product:
    out["rating"] = float(recommender.predict_rating(buyer, product))
print(json.dumps(out))
"""
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(buyer), json.dumps(product)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("model_type", ["retrieval", "ranking", "multitask"])
def test_every_stage_completes_and_the_model_beats_its_baseline(purchases, tmp_path, model_type):
    result, reporter, runner = run(demo_spec(purchases, model_type), tmp_path / "root")
    assert result.status == "completed", result.error
    assert [e["stage"] for e in reporter.of_kind("stage_started")] == list(STAGES)
    assert {name: s["status"] for name, s in result.stages.items()} == {name: "completed" for name in STAGES}

    stats = statistics_pb2.DatasetFeatureStatisticsList()
    stats.ParseFromString((result.artifacts["StatisticsGen"].path / "stats.pb").read_bytes())
    assert {d.name for d in stats.datasets} >= {"train", "eval"}
    schema = text_format.Parse((result.artifacts["SchemaGen"].path / "schema.pbtxt").read_text(), schema_pb2.Schema())
    assert "buyer_id" in {f.name for f in schema.feature}

    trainer = result.artifacts["Trainer"].properties
    assert len(reporter.of_kind("epoch_completed")) == trainer["epochs_run"]

    evaluation = result.artifacts["Evaluator"].properties
    assert evaluation["blessed"] is True
    if model_type != "ranking":
        assert evaluation["recall_at_100"] >= 1.25 * evaluation["popularity_recall_at_100"], evaluation
        assert evaluation["recall_at_10"] >= 1.3 * evaluation["popularity_recall_at_10"], evaluation
    if model_type != "retrieval":
        assert evaluation["rmse"] <= 0.9 * evaluation["mean_baseline_rmse"], evaluation

    served = Path(result.artifacts["Pusher"].properties["serving_model"])
    buyer = {"buyer_id": "B000001", "buyer_segment": "retail", "buyer_city": "Denver", "timestamp": 1_740_000_000}
    product = {"product_id": "P000001", "product_category": "Kitchen", "product_subcategory": "x", "price": 3.5}
    answer = answer_in_fresh_process(served, buyer, product if model_type != "retrieval" else None)
    scores = [score for _, score in answer["top"]]
    assert len(answer["top"]) == 10 and scores == sorted(scores, reverse=True)
    if model_type != "retrieval":
        assert answer["rating"] > 0


def test_unchanged_stages_are_reused_and_a_changed_feature_config_reruns_transform_and_after(purchases, tmp_path):
    spec = demo_spec(purchases, training={"epochs": 2, "batch_size": 512})
    run(spec, tmp_path / "root", "r1")
    again = PipelineRunner(spec, tmp_path / "root", run_id="r2")
    assert {step.stage: step.action for step in again.plan()} == {name: "reuse" for name in STAGES}

    features = json.loads(json.dumps(DEMO_FEATURE_CONFIG))
    features["product_tower"]["features"][0]["embedding_dim"] = 16
    changed = demo_spec(purchases, training={"epochs": 2, "batch_size": 512}, features=features)
    plan = {step.stage: step.action for step in PipelineRunner(changed, tmp_path / "root", run_id="r3").plan()}
    assert plan == {
        "Compile": "run",
        "ExampleGen": "reuse",
        "StatisticsGen": "reuse",
        "SchemaGen": "reuse",
        "Transform": "run",
        "Trainer": "run",
        "Evaluator": "run",
        "Pusher": "run",
    }
    result, reporter, _ = run(changed, tmp_path / "root", "r3")
    assert [e["stage"] for e in reporter.of_kind("stage_completed") if e["cached"]] == [
        "ExampleGen",
        "StatisticsGen",
        "SchemaGen",
    ]


def test_a_killed_trainer_resumes_from_its_last_epoch(purchases, tmp_path):
    spec_path = tmp_path / "spec.json"
    spec = demo_spec(purchases, training={"epochs": 6, "batch_size": 256, "early_stopping": {"enabled": False}})
    spec_path.write_text(spec.model_dump_json())
    events = tmp_path / "events.jsonl"
    command = [
        sys.executable,
        "-m",
        "ml_pipeline",
        "run",
        str(spec_path),
        "--root",
        str(tmp_path / "root"),
        "--run-id",
        "killed",
        "--events",
        str(events),
    ]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        text = events.read_text() if events.exists() else ""
        if text.count('"epoch_completed"') >= 2:
            break
        time.sleep(0.1)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    store = PipelineRunner(spec, tmp_path / "root", run_id="killed").store
    assert store.completed("killed", "Trainer") is None  # nothing marked complete

    resumed = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    summary = json.loads((store.completed("killed", "Trainer").path / "trainer_summary.json").read_text())
    assert summary["resumed_from_epoch"] >= 2
    history = json.loads((store.completed("killed", "Trainer").path / "history.json").read_text())
    assert [entry["epoch"] for entry in history] == [1, 2, 3, 4, 5, 6]


def _fails_at(spec: PipelineSpec, root: Path, stage: str, text: str):
    result, reporter, runner = run(spec, root)
    assert result.status == "failed"
    assert result.error["stage"] == stage, result.error
    assert text in result.error["message"], result.error["message"]
    assert runner.store.completed("r1", stage) is None
    assert [e["stage"] for e in reporter.of_kind("stage_failed")] == [stage]
    return result


def test_a_misspelled_column_fails_at_compile_before_any_data_is_read(purchases, tmp_path):
    mapping = {**DEMO_MAPPING, "buyer_id": "buyer"}
    spec = demo_spec(purchases, dataset={"source": {"kind": "file", "path": str(purchases)}, "mapping": mapping})
    _fails_at(spec, tmp_path, "Compile", "dataset.mapping.buyer_id: column 'buyer' is not in the source")


def test_a_wrong_column_type_fails_at_compile(purchases, tmp_path):
    mapping = {**DEMO_MAPPING, "product_features": [{"column": "product_category", "dtype": "float"}]}
    spec = demo_spec(purchases, dataset={"source": {"kind": "file", "path": str(purchases)}, "mapping": mapping})
    _fails_at(spec, tmp_path, "Compile", "cannot be read as float")


def test_an_empty_result_after_filters_fails_at_example_gen(purchases, tmp_path):
    spec = demo_spec(
        purchases,
        dataset={
            "source": {"kind": "file", "path": str(purchases)},
            "mapping": DEMO_MAPPING,
            "filters": {"include_buyers": ["nobody"]},
        },
    )
    _fails_at(spec, tmp_path, "ExampleGen", "dataset.filters: no rows left after filters")


def test_an_all_null_feature_fails_at_transform(tmp_path):
    path = tmp_path / "nulls.parquet"
    import duckdb

    duckdb.sql(f"""COPY (SELECT 'b' || (i % 50) AS buyer_id, 'p' || (i % 30) AS product_id,
                          TIMESTAMP '2025-01-01' + INTERVAL (i) MINUTE AS ts, NULL::VARCHAR AS city
                   FROM range(3000) t(i)) TO '{path}'""")
    spec = PipelineSpec.model_validate(
        {
            "name": "nulls",
            "dataset": {
                "source": {"kind": "file", "path": str(path)},
                "mapping": {
                    "buyer_id": "buyer_id",
                    "product_id": "product_id",
                    "timestamp": "ts",
                    "buyer_features": [{"column": "city"}],
                },
            },
            "features": {
                "buyer_tower": {
                    "features": [
                        {"kind": "id", "column": "buyer_id", "embedding_dim": 4},
                        {"kind": "categorical", "column": "city", "embedding_dim": 4},
                    ]
                },
                "product_tower": {"features": [{"kind": "id", "column": "product_id", "embedding_dim": 4}]},
            },
            "model": {"model_type": "retrieval"},
        }
    )
    _fails_at(spec, tmp_path, "Transform", "city")


def test_a_gpu_request_without_a_gpu_fails_at_the_trainer(purchases, tmp_path):
    spec = demo_spec(purchases, training={"epochs": 1, "hardware": {"gpu_count": 2}})
    _fails_at(spec, tmp_path, "Trainer", "training.hardware.gpu_count")


@pytest.mark.skipif(not RETAIL_CSV.exists(), reason=f"shared dataset folder absent: {RETAIL_CSV}")
def test_it_trains_on_the_real_purchase_log(tmp_path):
    spec = PipelineSpec.model_validate(
        {
            "name": "online-retail",
            "dataset": {
                "source": {"kind": "file", "path": str(RETAIL_CSV)},
                "mapping": RETAIL_MAPPING,
                "filters": DROP_CANCELLATIONS,
            },
            "split": {"strategy": "random", "hash_key": "row"},
            "features": {
                "buyer_tower": {
                    "features": [
                        {"kind": "id", "column": "buyer_id", "embedding_dim": 16},
                        {"kind": "categorical", "column": "Country", "embedding_dim": 4},
                    ]
                },
                "product_tower": {
                    "features": [
                        {"kind": "id", "column": "product_id", "embedding_dim": 16},
                        {"kind": "text", "column": "Description", "embedding_dim": 8},
                    ]
                },
            },
            "model": {"model_type": "retrieval"},
            "training": {"epochs": 3, "batch_size": 256},
        }
    )
    result, _, _ = run(spec, tmp_path / "root")
    assert result.status == "completed", result.error
    evaluator = result.artifacts["Evaluator"]
    evaluation = json.loads((evaluator.path / "evaluation.json").read_text())
    blessing = json.loads((evaluator.path / "blessing.json").read_text())
    model, popularity = evaluation["candidate"], evaluation["popularity"]
    assert evaluation["buyers"] > 50
    # The popularity baseline is scored beside the model: the same held-out buyers, the same metrics.
    assert set(popularity) == set(model) >= {f"recall_at_{k}" for k in (5, 10, 50, 100)}
    assert "vs popularity" in evaluator.summary
    # Popularity gives every buyer the same list, so it covers K products of the catalog. The model's lists
    # are the buyers' own (several times popularity's coverage), unless no epoch beat the untrained model
    # on eval: then that model (the product prior alone: popularity's list) is exported, and the Evaluator
    # says so.
    for k in (10, 100):
        assert popularity[f"coverage_at_{k}"] == pytest.approx(k / evaluation["catalog_size"])
    if result.artifacts["Trainer"].properties["best_epoch"] == 0:
        assert evaluation["collapse"]["popularity_top10_share"] == 1.0
        assert "exactly the popularity top 10" in evaluation["warnings"][0]
    else:
        assert all(model[f"coverage_at_{k}"] > 2 * popularity[f"coverage_at_{k}"] for k in (10, 100))
    # On the metric models are compared by, the model is level with popularity on this small log (today
    # Recall@100 about 0.02 for both; a few hits either way): blessed only when strictly above it, and the
    # reason says so.
    compare, tolerance = blessing["policy"]["compare_metric"], blessing["policy"]["tolerance"]
    assert compare == "recall_at_100"
    assert model[compare] >= popularity[compare] - tolerance
    assert blessing["policy"]["decided_by"] == "first_run_policy"
    assert blessing["blessed"] is (model[compare] > popularity[compare])
    assert any(" popularity " in reason for reason in blessing["reasons"]), blessing["reasons"]


def retail_spec(name: str, model: dict, training: dict | None = None) -> PipelineSpec:
    """The real purchase log with only the required fields (who bought what, how many; cancellations
    dropped), ids-only towers, everything else at its default: the issue's measurement."""
    return PipelineSpec.model_validate(
        {
            "name": name,
            "dataset": {
                "source": {"kind": "file", "path": str(RETAIL_CSV)},
                "mapping": {k: RETAIL_MAPPING[k] for k in ("buyer_id", "product_id", "target")},
                "filters": DROP_CANCELLATIONS,
            },
            "features": {
                "buyer_tower": {"features": [{"kind": "id", "column": "buyer_id"}]},
                "product_tower": {"features": [{"kind": "id", "column": "product_id"}]},
            },
            "model": model,
            "training": training or {},
            "stages": ["Compile", "ExampleGen", "StatisticsGen", "SchemaGen", "Transform", "Trainer", "Evaluator"],
        }
    )


@pytest.mark.skipif(not RETAIL_CSV.exists(), reason=f"shared dataset folder absent: {RETAIL_CSV}")
def test_the_default_model_is_not_below_popularity_on_the_real_purchase_log(tmp_path):
    """A tiny, popularity-dominated B2B log: the product prior (each product's log share) keeps a buyer the
    towers know little about on the best sellers instead of noise (without it, bench/quality.py measured
    Recall@100 0.000 against popularity's 0.012)."""
    result, _, _ = run(retail_spec("online-retail-defaults", {"model_type": "retrieval"}), tmp_path / "root")
    assert result.status == "completed", result.error
    evaluation = json.loads((result.artifacts["Evaluator"].path / "evaluation.json").read_text())
    assert evaluation["candidate"]["recall_at_100"] >= evaluation["popularity"]["recall_at_100"]


@pytest.mark.skipif(not RETAIL_CSV.exists(), reason=f"shared dataset folder absent: {RETAIL_CSV}")
def test_a_model_below_popularity_on_the_real_purchase_log_is_not_blessed(tmp_path):
    """No product prior and one epoch of plain SGD: the towers are still noise."""
    spec = retail_spec(
        "online-retail-untrained",
        {"model_type": "retrieval", "product_bias": False, "optimizer": "sgd", "learning_rate": 1e-4},
        {"epochs": 1},
    )
    result, _, _ = run(spec, tmp_path / "root")
    assert result.status == "completed", result.error
    evaluator = result.artifacts["Evaluator"]
    evaluation = json.loads((evaluator.path / "evaluation.json").read_text())
    model, popularity = evaluation["candidate"]["recall_at_100"], evaluation["popularity"]["recall_at_100"]
    assert model < popularity
    assert result.blessed is False
    assert (
        f"Recall@100 {fmt(model, popularity)} ≤ popularity {fmt(popularity, model)} ✗"
        in evaluator.properties["reasons"]
    )
    # The classical baseline is scored beside it with the same metrics, and only reported.
    assert set(evaluation["cooccurrence_baseline"]) == set(evaluation["popularity"])
