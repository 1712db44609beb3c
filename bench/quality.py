"""Model quality on public data: the platform's default configs against the popularity / mean baselines.

Each run goes through the platform's own pipeline (Compile → … → Evaluator) with only the required
fields of a spec filled and everything else at its default, on a random 80/10/10 split; it prints one
row per run (data, config, the Evaluator's test-split metrics beside its baselines, epochs, wall time).

    .venv/bin/python bench/quality.py                      # every case
    .venv/bin/python bench/quality.py movielens-retrieval  # one case
    .venv/bin/python bench/quality.py movielens-retrieval --model '{"optimizer": "adagrad"}'

Data: ``../shared/datasets/ml-latest-small/ratings.csv`` (MovieLens, GroupLens; research licence, see
its README) and ``../shared/datasets/online_retail_sample.csv``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from ml_pipeline.artifact_types import Examples  # noqa: E402
from ml_pipeline.reporting import InMemoryReporter  # noqa: E402
from ml_pipeline.runner import PipelineRunner  # noqa: E402
from ml_pipeline.spec import PipelineSpec  # noqa: E402

DATA = REPO.parent / "shared" / "datasets"
MOVIELENS = DATA / "ml-latest-small" / "ratings.csv"
RETAIL = DATA / "online_retail_sample.csv"
STAGES = ["Compile", "ExampleGen", "StatisticsGen", "SchemaGen", "Transform", "Trainer", "Evaluator"]
ID_FEATURES = {
    "buyer_tower": {"features": [{"kind": "id", "column": "buyer_id", "embedding_dim": 32}]},
    "product_tower": {"features": [{"kind": "id", "column": "product_id", "embedding_dim": 32}]},
}


def _dataset(name: str) -> dict:
    if name == "movielens":
        return {
            "source": {"kind": "file", "path": str(MOVIELENS)},
            "mapping": {"buyer_id": "userId", "product_id": "movieId", "target": "rating"},
        }
    return {
        "source": {"kind": "file", "path": str(RETAIL)},
        "mapping": {"buyer_id": "CustomerID", "product_id": "StockCode", "target": "Quantity"},
        "filters": {"conditions": [{"column": "InvoiceNo", "op": "not_starts_with", "value": "C"}]},
    }


CASES = {
    "movielens-retrieval": ("movielens", "retrieval"),
    "movielens-ranking": ("movielens", "ranking"),
    "movielens-multitask": ("movielens", "multitask"),
    "retail-retrieval": ("retail", "retrieval"),
}


def bias_baseline_rmse(examples: Examples, reg: float = 10.0, sweeps: int = 10) -> float:
    """Test RMSE of mean + user bias + item bias, fitted on the train split by regularised alternating sweeps."""
    train, test = (examples.read_split(s).to_pandas() for s in ("train", "test"))
    mean = float(train["target"].mean())
    user = {u: 0.0 for u in train["buyer_id"].unique()}
    item = {i: 0.0 for i in train["product_id"].unique()}
    for _ in range(sweeps):
        residual = train["target"] - mean - train["product_id"].map(item)
        grouped = residual.groupby(train["buyer_id"])
        user = (grouped.sum() / (grouped.count() + reg)).to_dict()
        residual = train["target"] - mean - train["buyer_id"].map(user)
        grouped = residual.groupby(train["product_id"])
        item = (grouped.sum() / (grouped.count() + reg)).to_dict()
    predicted = mean + test["buyer_id"].map(user).fillna(0.0) + test["product_id"].map(item).fillna(0.0)
    return float(np.sqrt(np.mean((predicted - test["target"]) ** 2)))


def run_case(case: str, model: dict, training: dict, root: Path) -> dict:
    data, model_type = CASES[case]
    features = dict(ID_FEATURES)
    if model_type != "retrieval":
        features["target"] = {"column": "target"}
    spec = PipelineSpec.model_validate(
        {
            "name": f"quality-{case}",
            "dataset": _dataset(data),
            "features": features,
            "model": {"model_type": model_type, **model},
            "training": training,
            "stages": STAGES,
        }
    )
    started = time.perf_counter()
    result = PipelineRunner(spec, root, run_id=case, reporter=InMemoryReporter()).run()
    wall = time.perf_counter() - started
    if result.status != "completed":
        raise SystemExit(f"{case}: {result.error}")
    trainer = result.artifacts["Trainer"].properties
    evaluation = json.loads((result.artifacts["Evaluator"].path / "evaluation.json").read_text())
    blessing = json.loads((result.artifacts["Evaluator"].path / "blessing.json").read_text())
    row = {"case": case, "config": json.dumps(model) if model else "defaults", "epochs": trainer["epochs_run"]}
    row["monitor"] = json.loads((result.artifacts["Trainer"].path / "trainer_summary.json").read_text()).get(
        "early_stopping_monitor"
    )
    row["best_epoch"] = trainer["best_epoch"]
    if model_type != "ranking":
        row["recall_at_100"] = evaluation["candidate"]["recall_at_100"]
        row["popularity_recall_at_100"] = evaluation["popularity"]["recall_at_100"]
        row["ratio"] = row["recall_at_100"] / max(row["popularity_recall_at_100"], 1e-12)
    if model_type != "retrieval":
        row["rmse"] = evaluation["candidate"]["rmse"]
        row["mean_rmse"] = evaluation["mean_baseline"]["rmse"]
        row["bias_rmse"] = bias_baseline_rmse(Examples.of(result.artifacts["ExampleGen"]))
    row["blessed"] = blessing["blessed"]
    row["wall_s"] = round(wall, 1)
    return row


# What the defaults were before issue 10 (early stopping then watched val_loss; now the eval Recall@K / RMSE).
PREVIOUS_DEFAULTS = {"optimizer": "adagrad", "learning_rate": 0.1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cases", nargs="*", help=f"cases to run (default: all of {', '.join(CASES)})")
    parser.add_argument(
        "--model", help="model config fields to set (JSON); default: the defaults and the previous ones"
    )
    parser.add_argument("--training", default="{}", help="training params to set (JSON)")
    args = parser.parse_args()
    models = [json.loads(args.model)] if args.model else [{}, PREVIOUS_DEFAULTS]
    with tempfile.TemporaryDirectory() as root:
        for case in args.cases or CASES:
            for model in models:
                if CASES.get(case, ("", "retrieval"))[1] != "retrieval" and model is PREVIOUS_DEFAULTS:
                    model = {**model, "rating_head": []}
                row = run_case(case, model, json.loads(args.training), Path(root))
                print(
                    " | ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
                    flush=True,
                )


if __name__ == "__main__":
    main()
