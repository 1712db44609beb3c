"""Benchmark: the training-runs API over HTTP (gunicorn, as ``run_platform`` serves it), against the stack's floor.

    .venv/bin/python bench/api.py [--runs 10000] [--experiments 2000] [--list-requests 200] [--detail-requests 100]
                                  [--epochs 30]

Everything happens in a throwaway data folder (``ML_PLATFORM_DATA_DIR`` set to
a temporary directory before Django starts; ``DATABASE_URL`` and the other
path variables are unset, so it is the default deployment: SQLite in WAL
mode), migrated, seeded, and removed at the end with the server.

Seeding: the demo project (``load_demo`` on 1,000 generated rows: a real
dataset, feature config and the three demo model configs), one real run per
model type through ``services.create_training_run`` (so the spec and the
snapshots are the real ones), then ``--runs`` runs inserted with
``bulk_create`` as copies of those, with what a real run of their status
holds: the stage table (times, summaries, cached stages), the Trainer's and
Evaluator's final metrics, the artifact lineage, blessing reasons, resources,
error and traceback for failed runs, GPU configs and costs, spread over 400
days (newest first is the list's order). ``--history-runs`` of the finished
runs get 20 epochs of metrics rows (with weight/gradient histograms), the
RUNNING run measured below gets 50 epochs written through ``record_epoch``
(the worker child's code path). ``--experiments`` experiments (85% completed,
with final metrics) share the table, as they do in the platform.

Then gunicorn serves it on a free loopback port with the command line of
``manage.py run_platform`` (``ml_platform.wsgi:application``, ``--workers 2
--threads 4``, access log on) and this process measures, over HTTP with a
bearer token, one request at a time, each on a new connection (both workers
serve; the connect is part of every figure, the floor's too):

* the floor: ``GET /healthz`` (WSGI, every middleware, a database
  connection and ``SELECT 1``: what any request pays), and
  ``GET /api/projects/{id}/`` (the floor plus token authentication and the
  membership check every run endpoint does);
* listing with ``--runs`` runs: ``--list-requests`` requests over a fixed
  mix of pages (first, random deep ones, 100 per page), status filters and
  searches (a model name, a description word, no match, combined with a
  status). Target: p95 under 100 ms;
* the detail of a RUNNING run with 50 epochs of metrics rows (and, for
  comparison, a finished run's detail and the running run's metrics);
* the experiments' first page and the "best experiments" ranking (a KPI
  row and the top 10 per model type, over every completed experiment);
* the lag from an epoch ending to its row being readable: a spawned writer
  process (Django set up on the same database, as the worker's child) calls
  ``DatabaseReporter(run).epoch_completed(...)`` for ``--epochs`` epochs,
  0.3-0.7 s apart, noting the clock just before each call; this process
  polls ``GET /api/training-runs/{id}/metrics/`` every 20 ms (start to
  start) and notes when each epoch first appears. Both read
  ``time.monotonic`` (one system-wide clock on Linux). Target: every epoch
  (the max) readable within 2 s.

Every request goes to 127.0.0.1; every phase is bounded in requests and in
time. The printed table is also saved to ``bench/results/api.txt``; the exit
status is 1 when a target fails or a request does not answer 200.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import multiprocessing
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import publish, usable_cpus  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "api.txt"
LIST_P95_TARGET_MS = 100.0
LAG_TARGET_S = 2.0
WEB_WORKERS, WEB_THREADS = 2, 4  # run_platform's defaults (WEB_CONCURRENCY=2, --threads 4)
DETAIL_EPOCHS = 50
BEST_LABEL = "best experiments: KPI rows and top 10 per model type"
HISTORY_EPOCHS = 20
PHASE_SECONDS = 120  # no phase of requests runs longer than this
REQUEST_TIMEOUT = 10.0
# Settings that would point the throwaway deployment elsewhere: unset, so everything lives in the temp folder.
UNSET = (
    "DATABASE_URL",
    "PIPELINE_ROOT",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_ARTIFACT_ROOT",
    "STATIC_ROOT",
    "SERVING_DIR",
    "SERVING_URL",
    "ML_PLATFORM_DEMO_PASSWORD",
)

MODEL_NAMES = {
    "retrieval": [
        "weekly-recs",
        "two-tower-retail",
        "two-tower-wholesale",
        "recs-eu",
        "recs-us",
        "recs-apac",
        "cold-start-recs",
        "reorder-candidates",
        "cross-sell",
        "seasonal-recs",
        "new-buyers",
        "basket-completion",
    ],
    "ranking": [
        "ranker",
        "ranker-wholesale",
        "price-aware-ranker",
        "reorder-ranker",
        "homepage-ranker",
        "email-ranker",
        "category-ranker",
        "promo-ranker",
    ],
    "multitask": [
        "hybrid",
        "hybrid-eu",
        "hybrid-us",
        "hybrid-large",
        "hybrid-small",
        "hybrid-promo",
        "hybrid-reorder",
        "hybrid-seasonal",
        "hybrid-catalog",
        "hybrid-v2",
    ],
}
CADENCES = ["weekly", "nightly", "monthly", "ad-hoc", "scheduled"]
NOTES = [
    "baseline for Q3",
    "more epochs",
    "larger towers",
    "lower learning rate",
    "time holdout 30 days",
    "after the catalog refresh",
    "GPU trial",
    "retry after the data fix",
    "compare with last month",
    "new buyer features",
    "",
]
STAGE_SECONDS = {
    "Compile": 1,
    "ExampleGen": 25,
    "StatisticsGen": 9,
    "SchemaGen": 1,
    "Transform": 35,
    "Trainer": 900,
    "Evaluator": 30,
    "Pusher": 4,
}
ARTIFACT_TYPES = {
    "Compile": "PipelineSpec",
    "ExampleGen": "Examples",
    "StatisticsGen": "ExampleStatistics",
    "SchemaGen": "Schema",
    "Transform": "TransformGraph",
    "Trainer": "Model",
    "Evaluator": "ModelEvaluation",
    "Pusher": "PushedModel",
}
TRACEBACK = (
    "".join(
        f'  File "/work/main/ml_pipeline/{path}", line {line}, in {fn}\n    {code}\n'
        for path, line, fn, code in [
            ("runner.py", 212, "run", "result = stage.run(ctx)"),
            ("stages/trainer.py", 371, "run", "data = self._load(ctx, built)"),
            ("model/training.py", 144, "load", "arrays = _read_split(uri, columns)"),
            ("model/training.py", 97, "_read_split", "table = pq.read_table(path, columns=columns)"),
            (
                "../.venv/lib/python3.11/site-packages/pyarrow/parquet/core.py",
                1793,
                "read_table",
                "return dataset.read(columns=columns, use_threads=use_threads)",
            ),
        ]
        * 4
    )
    + "pyarrow.lib.ArrowInvalid: Column 'price' has type string in this file, float64 expected\n"
)


# --------------------------------------------------------------------------- statistics


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summary(values: list[float]) -> dict:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": max(values),
    }


# --------------------------------------------------------------------------- realistic run contents


def iso(moment: datetime) -> str:
    return moment.isoformat()


def fingerprint(rng: random.Random) -> str:
    return f"{rng.getrandbits(256):064x}"


def histogram(rng: random.Random, spread: float) -> dict:
    edges = [round(-spread + 2 * spread * i / 20, 6) for i in range(21)]
    counts = [int(4000 * math.exp(-(((i - 9.5) / 4) ** 2)) + rng.randint(0, 40)) for i in range(20)]
    return {"counts": counts, "edges": edges}


def epoch_metrics(rng: random.Random, epoch: int, model_type: str) -> dict:
    """What the Trainer reports after an epoch (``Trainer._train``): scalars and the histograms."""
    decay = math.exp(-epoch / 12)
    metrics = {
        "loss": 2.2 * decay + 0.6 + rng.uniform(-0.01, 0.01),
        "val_loss": 2.3 * decay + 0.7 + rng.uniform(-0.02, 0.02),
    }
    if model_type in ("retrieval", "multitask"):
        for k, base in ((5, 0.08), (10, 0.13), (50, 0.29), (100, 0.41)):
            metrics[f"recall_at_{k}"] = base * (1 - 0.7 * decay) + rng.uniform(-0.005, 0.005)
    if model_type in ("ranking", "multitask"):
        metrics["rmse"] = 1.1 * decay + 0.85 + rng.uniform(-0.01, 0.01)
        metrics["mae"] = 0.8 * decay + 0.6 + rng.uniform(-0.01, 0.01)
    metrics["epoch_seconds"] = round(rng.uniform(14, 19), 4)
    metrics["examples_per_second"] = round(80_000 / metrics["epoch_seconds"], 1)
    parts = ["buyer_tower", "product_tower"] + (["rating_head"] if model_type != "retrieval" else [])
    histograms = {"weights": {}, "gradients": {}}
    for part in parts:
        for stat, value in (
            ("l1", 1800 + epoch * 9),
            ("l2", 14 + epoch * 0.05),
            ("mean", 0.0012),
            ("std", 0.061 + epoch * 0.0002),
            ("min", -0.41),
            ("max", 0.43),
        ):
            metrics[f"{part}_weight_{stat}"] = value * rng.uniform(0.98, 1.02)
        metrics[f"{part}_grad_norm"] = 0.9 * decay + rng.uniform(0.01, 0.05)
        histograms["weights"][part] = histogram(rng, 0.42)
        histograms["gradients"][part] = histogram(rng, 0.01)
    metrics["histograms"] = histograms
    return metrics


def resource_sample(rng: random.Random, gpu: dict) -> dict:
    gpus = [
        {
            "index": i,
            "name": f"NVIDIA {gpu['gpu_type']}",
            "memory_used_mb": float(rng.randint(3000, 9000)),
            "memory_total_mb": 40960.0,
            "utilization_pct": float(rng.randint(40, 99)),
        }
        for i in range(gpu.get("gpu_count") or 0)
    ]
    return {"cpu_pct": round(rng.uniform(90, 390), 1), "rss_mb": round(rng.uniform(1800, 3400), 1), "gpus": gpus}


def final_metrics(rng: random.Random, model_type: str, epochs: int, blessed: bool) -> dict:
    """The Trainer's properties merged with the Evaluator's (``execution.execute``)."""
    last = epoch_metrics(rng, epochs, model_type)
    trainer = {k: v for k, v in last.items() if k in ("loss", "val_loss", "rmse", "mae") or k.startswith("recall_at_")}
    trainer.update(
        epochs_run=epochs,
        best_epoch=max(1, epochs - rng.randint(0, 3)),
        early_stopped_epoch=None,
        examples_per_second=last["examples_per_second"],
        devices=["/CPU:0"],
        strategy="default",
    )
    evaluator = {
        "blessed": blessed,
        "reasons": [],
        "holdout": "test",
        "buyers": rng.randint(3000, 4000),
        "rows": rng.randint(9000, 11000),
        "compare_metric": "recall_at_100" if model_type != "ranking" else "rmse",
    }
    for key, value in trainer.items():
        if key.startswith("recall_at_") or key in ("rmse", "mae"):
            evaluator[key] = value * rng.uniform(0.97, 1.03)
            evaluator[f"popularity_{key}" if key.startswith("recall") else f"mean_baseline_{key}"] = value * (
                0.68 if key.startswith("recall") else 1.3
            )
    return {**trainer, **evaluator}


def blessing_reasons(model_type: str, blessed: bool, metrics: dict) -> list[str]:
    metric = "recall_at_100" if model_type != "ranking" else "rmse"
    value = metrics.get(metric, 0.0)
    word = "beats" if blessed else "does not beat"
    return [
        f"{metric} {value:.4f} {word} the popularity baseline by the required 5% margin",
        "no baseline model configured: compared with the popularity / mean baselines only",
    ]


def stage_summaries(rng: random.Random, model_type: str, epochs: int, metrics: dict) -> dict:
    rows = rng.randint(95_000, 100_000)
    return {
        "Compile": f"spec checked: 8 stages, {model_type} model, {epochs} epochs",
        "ExampleGen": f"{rows:,} rows: train {int(rows * 0.8):,} / eval {int(rows * 0.1):,} / test {int(rows * 0.1):,}",
        "StatisticsGen": "3 splits, 9 columns, 0.4% missing on average",
        "SchemaGen": "9 features (4 categorical, 3 numeric, 1 timestamp, 1 target), 0 anomalies",
        "Transform": f"14 model inputs; vocabularies {rng.randint(3800, 4100):,} buyers / "
        f"{rng.randint(1900, 2000):,} products",
        "Trainer": f"{epochs} epochs (best {metrics.get('best_epoch', epochs)}), "
        + (
            f"Recall@100 {metrics.get('recall_at_100', 0):.3g}"
            if model_type != "ranking"
            else f"RMSE {metrics.get('rmse', 0):.3g}"
        ),
        "Evaluator": ("BLESSED — " if metrics.get("blessed") else "NOT BLESSED — ")
        + (
            f"Recall@100 {metrics.get('recall_at_100', 0):.3g} vs popularity "
            f"{metrics.get('popularity_recall_at_100', 0):.3g}"
            if model_type != "ranking"
            else f"RMSE {metrics.get('rmse', 0):.3g} vs mean {metrics.get('mean_baseline_rmse', 0):.3g}"
        ),
        "Pusher": f"exported the serving model ({rng.randint(8, 40)} MB)",
    }


def run_contents(
    rng: random.Random,
    stages_order,
    status: str,
    model_type: str,
    epochs: int,
    started: datetime,
    pipeline_root: str,
    spec_name: str,
    pipeline_run_id: str,
) -> dict:
    """Stage table, artifacts, outcome and times of a run of this status that started at ``started``."""
    blessed = status == "completed"
    metrics = final_metrics(rng, model_type, epochs, blessed) if status in ("completed", "not_blessed") else {}
    summaries = stage_summaries(rng, model_type, epochs, metrics)
    # How far it got: finished runs ran every stage; failed/cancelled ones stopped somewhere.
    stop_at = {"completed": len(stages_order), "not_blessed": len(stages_order) - 1}.get(status)
    if stop_at is None:
        stop_at = rng.choice([1, 2, 4, 5, 5, 5, 6])  # mostly in the Trainer
    stages, artifacts, clock, previous = {}, {}, started, None
    cached_upto = rng.choice([0, 0, 0, 2, 4, 5])  # a rerun reuses the early stages from the cache
    for index, stage in enumerate(stages_order):
        if index < stop_at:
            seconds = STAGE_SECONDS[stage] * (epochs / 30 if stage == "Trainer" else 1) * rng.uniform(0.8, 1.3)
            cached = 0 < index < cached_upto
            seconds = 0.2 if cached else seconds
            stages[stage] = {
                "status": "cached" if cached else "completed",
                "started_at": iso(clock),
                "ended_at": iso(clock + timedelta(seconds=seconds)),
                "summary": summaries[stage],
            }
            uri = f"{pipeline_root}/{spec_name}/runs/{pipeline_run_id}/{stage}"
            own = fingerprint(rng)
            artifacts[stage] = {
                "type": ARTIFACT_TYPES[stage],
                "uri": uri,
                "producer": stage,
                "run": pipeline_run_id,
                "fingerprint": own,
                "inputs": {previous: fingerprint(rng)} if previous else {},
                "summary": summaries[stage],
            }
            previous = stage
            clock += timedelta(seconds=seconds)
        elif index == stop_at and status in ("failed", "cancelled"):
            seconds = rng.uniform(2, 300)
            message = (
                "Column 'price' has type string in this file, float64 expected"
                if status == "failed"
                else "cancelled by the user"
            )
            stages[stage] = {
                "status": "failed" if status == "failed" else "cancelled",
                "started_at": iso(clock),
                "ended_at": iso(clock + timedelta(seconds=seconds)),
                "summary": message,
            }
            clock += timedelta(seconds=seconds)
        else:
            stages[stage] = (
                {"status": "pending"}
                if status != "not_blessed"
                else {
                    "status": "skipped",
                    "started_at": iso(clock),
                    "ended_at": iso(clock),
                    "summary": "not blessed: nothing to push",
                }
            )
    failed_stage = stages_order[stop_at] if status == "failed" else ""
    return {
        "stages": stages,
        "artifacts": artifacts if status in ("completed", "not_blessed") else {},
        "final_metrics": metrics,
        "blessed": blessed if status in ("completed", "not_blessed") else None,
        "blessing_reasons": blessing_reasons(model_type, blessed, metrics) if metrics else [],
        "current_stage": stages_order[min(stop_at, len(stages_order) - 1)],
        "current_epoch": epochs if stop_at > stages_order.index("Trainer") else None,
        "completed_at": clock,
        "error_stage": failed_stage,
        "error_message": (
            f"{failed_stage} failed: Column 'price' has type string in this file, float64 expected"
            if status == "failed"
            else ("cancelled by the user" if status == "cancelled" else "")
        ),
        "error_traceback": ("Traceback (most recent call last):\n" + TRACEBACK) if status == "failed" else "",
    }


# --------------------------------------------------------------------------- seeding


def copied_from(template, model_type: str) -> dict:
    """The fields a seeded run or experiment takes from its model type's template run: configs, snapshots."""
    return {
        "dataset": template.dataset,
        "feature_config": template.feature_config,
        "model_config": template.model_config,
        "model_type": model_type,
        "dataset_snapshot": template.dataset_snapshot,
        "feature_config_snapshot": template.feature_config_snapshot,
        "model_config_snapshot": template.model_config_snapshot,
    }


def seed(runs: int, history_runs: int, lag_epochs: int, experiments: int, rng: random.Random) -> dict:
    """The demo project, ``runs`` realistic runs, the two RUNNING runs the measurements use, and
    ``experiments`` experiments (quick tests, mostly completed, with final metrics)."""
    from decimal import Decimal

    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.db.models import Count
    from django.utils import timezone as dj_timezone

    from ml_pipeline.spec import STAGES
    from ml_platform.accounts.models import ApiToken
    from ml_platform.core.demo import load_demo
    from ml_platform.datasets.models import Dataset
    from ml_platform.modeling.models import FeatureConfig, ModelConfig
    from ml_platform.training import services
    from ml_platform.training.models import EPOCH_METRICS, TrainingMetricsHistory, TrainingRun
    from ml_platform.training.reporter import record_epoch

    demo = load_demo(rows=1000)
    user = get_user_model().objects.get(username=demo["username"])
    project = demo["project"]
    dataset = Dataset.objects.get(project=project)
    features = FeatureConfig.objects.get(project=project)
    configs = {m.config["model_type"]: m for m in ModelConfig.objects.filter(project=project)}
    templates = {
        model_type: services.create_training_run(
            project,
            user,
            name=f"template-{model_type}",
            description="",
            dataset_id=dataset.id,
            feature_config_id=features.id,
            model_config_id=config.id,
            training_params={"epochs": 30, "batch_size": 1024},
        )
        for model_type, config in configs.items()
    }
    registered = {
        name: services._registered_model(project, user, name, model_type, "")
        for model_type, names in MODEL_NAMES.items()
        for name in names
    }
    names = [(name, model_type) for model_type, group in MODEL_NAMES.items() for name in group]

    now = dj_timezone.now()
    span = timedelta(days=400)
    made, created = [], []
    for number in range(1, runs + 1):
        age = span * (runs - number) / runs  # run 1 is the oldest
        created_at = now - age - timedelta(minutes=5)
        if number > runs - 2:
            status = "running"  # the two newest: the ones the measurements below watch
        elif age < timedelta(days=1):
            status = rng.choice(["pending", "scheduled", "completed", "failed"])
        else:
            status = rng.choices(["completed", "not_blessed", "failed", "cancelled"], [65, 12, 15, 8])[0]
        name, model_type = rng.choice(names)
        template = templates[model_type]
        epochs = rng.choice([10, 20, 30, 30, 50, 80])
        gpu_type = rng.choice([None, None, "T4", "L4", "A100"])
        gpu = {
            "gpu_type": gpu_type,
            "gpu_count": rng.choice([1, 1, 2, 4]) if gpu_type else 0,
            "preemptible": rng.random() < 0.3,
            "allow_cpu_fallback": False,
        }
        pipeline_run_id = f"run-{number}-{rng.getrandbits(32):08x}"
        run = TrainingRun(
            project=project,
            run_number=number,
            name=name,
            description=f"{rng.choice(CADENCES)} {model_type} model for {rng.choice(['retail', 'wholesale', 'all'])} "
            f"buyers; {rng.choice(NOTES)}".strip("; "),
            registered_model=registered[name],
            **copied_from(template, model_type),
            split_config=template.split_config,
            training_params={"epochs": epochs, "batch_size": 1024},
            gpu_config=gpu,
            evaluator_config=template.evaluator_config,
            schedule_config=template.schedule_config,
            spec={**template.spec, "training": {**template.spec.get("training", {}), "epochs": epochs}},
            status=status,
            total_epochs=epochs,
            pipeline_run_id=pipeline_run_id,
            created_by=user,
            webhook_secret=f"{rng.getrandbits(172):043x}",
        )
        if status in ("pending", "scheduled"):
            run.stages = {stage: {"status": "pending"} for stage in STAGES}
        else:
            started = created_at + timedelta(seconds=rng.uniform(2, 120))
            contents = run_contents(
                rng,
                STAGES,
                "completed" if status == "running" else status,
                model_type,
                epochs,
                started,
                settings.PIPELINE_ROOT,
                template.spec.get("name", ""),
                pipeline_run_id,
            )
            run.started_at, run.attempts, run.worker_id = started, 1, f"worker-{rng.randint(1000, 9999)}"
            run.mlflow_run_id = f"{rng.getrandbits(128):032x}"
            run.resources = {**resource_sample(rng, gpu), "cost_so_far_usd": 0.0}
            if status == "running":
                pass  # filled in below, as a live run
            else:
                for field in (
                    "stages",
                    "artifacts",
                    "final_metrics",
                    "blessed",
                    "blessing_reasons",
                    "current_stage",
                    "current_epoch",
                    "completed_at",
                    "error_stage",
                    "error_message",
                    "error_traceback",
                ):
                    setattr(run, field, contents[field])
                run.cost_usd = run.cost_so_far()
                run.resources["cost_so_far_usd"] = float(run.cost_usd)
        made.append(run)
        created.append(created_at)
    with transaction.atomic():
        # The templates (run numbers 1-3) were only there to give the copies a real spec and snapshots.
        for template in templates.values():
            template.delete()
            template.registered_model.delete()
        TrainingRun.objects.bulk_create(made, batch_size=500)
        # auto_now_add stamped them all "now": spread them over the 400 days.
        saved = list(TrainingRun.objects.filter(project=project, run_number__lte=runs).order_by("run_number"))
        for run, created_at in zip(saved, created):
            run.created_at = created_at
        TrainingRun.objects.bulk_update(saved, ["created_at"], batch_size=500)

    # Experiments: the same records (kind "experiment"), on 10-50% samples, with the metrics they rank by.
    quick = []
    for number in range(1, experiments + 1):
        model_type = rng.choice(list(templates))
        template, epochs = templates[model_type], rng.choice([3, 5, 10])
        status = rng.choices(["completed", "failed", "cancelled"], [85, 10, 5])[0]
        sample = rng.choice([10, 25, 50])
        learning_rate = rng.choice([0.01, 0.05, 0.1])
        quick.append(
            TrainingRun(
                project=project,
                kind=TrainingRun.EXPERIMENT,
                run_number=number,
                name=rng.choice(NOTES),
                **copied_from(template, model_type),
                split_config={"sample_percent": sample},
                training_params={"epochs": epochs, "batch_size": 1024, "learning_rate": learning_rate},
                gpu_config=template.gpu_config,
                evaluator_config={},
                schedule_config=template.schedule_config,
                spec={
                    **template.spec,
                    "stages": list(STAGES[:-1]),
                    "split": {**template.spec["split"], "sample_percent": sample},
                    "training": {**template.spec["training"], "epochs": epochs, "learning_rate": learning_rate},
                },
                status=status,
                total_epochs=epochs,
                pipeline_run_id=f"exp-{number}-{rng.getrandbits(32):08x}",
                stages={stage: {"status": "completed"} for stage in STAGES[:-1]} | {"Pusher": {"status": "skipped"}},
                final_metrics=final_metrics(rng, model_type, epochs, True) if status == "completed" else {},
                created_by=user,
                started_at=now - timedelta(hours=number),
                completed_at=now - timedelta(hours=number),
            )
        )
    TrainingRun.objects.bulk_create(quick, batch_size=500)

    # Metrics history of some finished runs (what the charts of older runs read): a realistic table size.
    finished = [r for r in saved if r.status in ("completed", "not_blessed")][-history_runs:] if history_runs else []
    rows = []
    for run in finished:
        for epoch in range(1, HISTORY_EPOCHS + 1):
            metrics = epoch_metrics(rng, epoch, run.model_type)
            rows.append(
                TrainingMetricsHistory(
                    training_run=run,
                    epoch=epoch,
                    metrics={k: v for k, v in metrics.items() if k != "histograms"},
                    histograms=metrics["histograms"],
                    resources=resource_sample(rng, run.gpu_config),
                    **{k: metrics.get(k) for k in EPOCH_METRICS},
                )
            )
    TrainingMetricsHistory.objects.bulk_create(rows, batch_size=500)

    # The two RUNNING runs: in the Trainer, earlier stages done. The newer one is the lag run (no epoch yet),
    # the older one has 50 epochs written through record_epoch, the worker child's code path.
    detail_run, lag_run = saved[-2], saved[-1]
    for run, epochs, done in ((detail_run, 80, DETAIL_EPOCHS), (lag_run, lag_epochs, 0)):
        started = now - timedelta(seconds=200 + 16 * done)
        contents = run_contents(
            rng,
            STAGES,
            "completed",
            run.model_type,
            epochs,
            started,
            settings.PIPELINE_ROOT,
            run.spec.get("name", ""),
            run.pipeline_run_id,
        )
        stages = contents["stages"]
        trainer = STAGES.index("Trainer")
        for stage in STAGES[trainer:]:
            stages[stage] = {"status": "pending"}
        stages["Trainer"] = {"status": "running", "started_at": iso(started + timedelta(seconds=100)), "ended_at": None}
        TrainingRun.objects.filter(pk=run.pk).update(
            stages=stages,
            current_stage="Trainer",
            current_epoch=None,
            total_epochs=epochs,
            started_at=started,
            training_params={"epochs": epochs, "batch_size": 1024},
            heartbeat_at=now,
            worker_pid=os.getpid(),
            gpu_config={"gpu_type": "A100", "gpu_count": 1, "preemptible": False, "allow_cpu_fallback": False},
            completed_at=None,
            final_metrics={},
            artifacts={},
            blessed=None,
            blessing_reasons=[],
            error_message="",
            error_stage="",
            error_traceback="",
            cost_usd=Decimal("0"),
        )
        run.refresh_from_db()
        for epoch in range(1, done + 1):
            metrics = epoch_metrics(rng, epoch, run.model_type)
            record_epoch(run, epoch, epochs, metrics, resource_sample(rng, run.gpu_config))

    _, token = ApiToken.objects.issue(user, "bench")
    by_status = dict(
        TrainingRun.objects.filter(project=project, kind=TrainingRun.TRAINING)
        .order_by()
        .values("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    return {
        "project_id": project.id,
        "token": token,
        "detail_run": detail_run.pk,
        "lag_run": lag_run.pk,
        "lag_total_epochs": lag_epochs,
        "finished_run": finished[-1].pk if finished else saved[0].pk,
        "by_status": by_status,
        "search_name": "hybrid-eu",
        "search_word": "wholesale",
        "model_type_of_lag_run": lag_run.model_type,
        "history_rows": TrainingMetricsHistory.objects.count(),
        "runs": TrainingRun.objects.filter(project=project, kind=TrainingRun.TRAINING).count(),
        "experiments": TrainingRun.objects.filter(project=project, kind=TrainingRun.EXPERIMENT).count(),
    }


# --------------------------------------------------------------------------- the server and the client


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(folder: Path, port: int) -> subprocess.Popen:
    """gunicorn with run_platform's command line, bound to loopback; its output goes to a file in the folder."""
    from ml_platform.core.management.commands.run_platform import gunicorn_command

    log = open(folder / "gunicorn.log", "wb")  # noqa: SIM115 (the child process writes to it; closed when it is reaped)
    server = subprocess.Popen(
        gunicorn_command(f"127.0.0.1:{port}", WEB_WORKERS, WEB_THREADS),
        cwd=ROOT,
        env=os.environ.copy(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            output = (folder / "gunicorn.log").read_text()[-2000:]
            raise RuntimeError(f"gunicorn exited ({server.returncode}): {output}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
                if answer.status == 200:
                    return server
        except (OSError, urllib.error.URLError):
            time.sleep(0.3)
    stop_server(server)
    raise RuntimeError("gunicorn did not answer /healthz within 60 s")


def stop_server(server: subprocess.Popen) -> None:
    """SIGTERM to the master (it stops its workers); SIGKILL to its own process group if it hangs."""
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=35)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)  # the group start_new_session made for this server only
            server.wait(timeout=10)


class Client:
    """GETs to 127.0.0.1 only, each on a new connection; every answer must be 200."""

    def __init__(self, port: int, token: str):
        self.port, self.token = port, token

    def get(self, path: str, auth: bool = True) -> tuple[float, bytes]:
        headers = {"Authorization": f"Bearer {self.token}"} if auth else {}
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=REQUEST_TIMEOUT)
        try:
            started = time.perf_counter()
            connection.request("GET", path, headers=headers)
            answer = connection.getresponse()
            body = answer.read()
            seconds = time.perf_counter() - started
        finally:
            connection.close()
        if answer.status != 200:
            raise RuntimeError(f"GET {path} answered {answer.status}: {body[:300]!r}")
        return seconds, body

    def timed(self, paths: list[str], auth: bool = True) -> list[float]:
        deadline = time.monotonic() + PHASE_SECONDS
        times = []
        for path in paths:
            if time.monotonic() > deadline:
                raise RuntimeError(f"phase over {PHASE_SECONDS} s after {len(times)} of {len(paths)} requests")
            times.append(self.get(path, auth)[0] * 1000)
        return times


def list_mix(project_id: int, seeded: dict, requests: int, rng: random.Random) -> tuple[list[tuple[str, str]], list]:
    """(kind, path) for ``requests`` list requests (pages, filters and searches in fixed shares, shuffled),
    and the kinds in order."""
    base = f"/api/projects/{project_id}/training-runs/"
    counts = seeded["by_status"]
    total = seeded["runs"]

    def last_page(n: int, size: int = 20) -> int:
        return max(1, math.ceil(n / size))

    kinds = [  # (kind, share, path maker)
        ("first page", 15, lambda: f"{base}"),
        ("random page (20/page)", 20, lambda: f"{base}?page={rng.randint(2, last_page(total))}"),
        ("random page (100/page)", 10, lambda: f"{base}?page={rng.randint(1, last_page(total, 100))}&page_size=100"),
        (
            "status=completed, random page",
            10,
            lambda: f"{base}?status=completed&page={rng.randint(1, last_page(counts.get('completed', 1)))}",
        ),
        ("status=running,pending", 7.5, lambda: f"{base}?status=running,pending"),
        (
            "status=failed, random page",
            7.5,
            lambda: f"{base}?status=failed&page={rng.randint(1, last_page(counts.get('failed', 1)))}",
        ),
        (
            f"search={seeded['search_name']} (a name)",
            10,
            lambda: f"{base}?search={seeded['search_name']}&page={rng.randint(1, 5)}",
        ),
        (f"search={seeded['search_word']} (description)", 7.5, lambda: f"{base}?search={seeded['search_word']}"),
        ("search=no-such-run", 5, lambda: f"{base}?search=no-such-run"),
        (
            f"status=completed&search={seeded['search_name']}",
            7.5,
            lambda: f"{base}?status=completed&search={seeded['search_name']}",
        ),
    ]
    shares = sum(share for _, share, _ in kinds)
    mix = []
    for index, (kind, share, make) in enumerate(kinds):
        n = round(requests * share / shares) if index < len(kinds) - 1 else requests - len(mix)
        mix += [(kind, make()) for _ in range(n)]
    rng.shuffle(mix)
    return mix, [kind for kind, _, _ in kinds]


def check_answers(client: Client, project_id: int, seeded: dict, detail: str) -> None:
    """The server answers what was seeded: every run listed, the RUNNING run with its 50 epochs."""
    first = json.loads(client.get(f"/api/projects/{project_id}/training-runs/")[1])
    running = json.loads(client.get(detail)[1])
    epochs = json.loads(client.get(detail + "metrics/")[1])["epochs"]
    problems = [
        f"the list counts {first['count']} runs, not {seeded['runs']}" if first["count"] != seeded["runs"] else "",
        f"the first page has {len(first['results'])} runs" if len(first["results"]) != 20 else "",
        f"the detail run is {running['status']}" if running["status"] != "running" else "",
        f"the detail run has {len(epochs)} epochs" if len(epochs) != DETAIL_EPOCHS else "",
    ]
    if any(problems):
        raise RuntimeError("; ".join(p for p in problems if p))


# --------------------------------------------------------------------------- the epoch writer (a spawned process)


def epoch_writer(run_id: int, epochs: int, total_epochs: int, seed: int, go, ended) -> None:
    """As the worker's child: Django on the same database, DatabaseReporter.epoch_completed after each epoch."""
    import django

    django.setup()
    from ml_platform.training.models import TrainingRun
    from ml_platform.training.reporter import DatabaseReporter

    rng = random.Random(seed)
    run = TrainingRun.objects.get(pk=run_id)
    reporter = DatabaseReporter(run)
    payloads = [epoch_metrics(rng, epoch, run.model_type) for epoch in range(1, epochs + 1)]
    go.wait(60)
    for epoch, metrics in enumerate(payloads, start=1):
        time.sleep(rng.uniform(0.3, 0.7))  # the epoch's training
        end = time.monotonic()
        reporter.epoch_completed(epoch, total_epochs, metrics)
        ended.put((epoch, end, time.monotonic()))
    ended.put(None)


def measure_lag(client: Client, seeded: dict, epochs: int, poll_ms: float) -> dict:
    context = multiprocessing.get_context("spawn")
    go, ended = context.Event(), context.Queue()
    writer = context.Process(
        target=epoch_writer, args=(seeded["lag_run"], epochs, seeded["lag_total_epochs"], 7, go, ended), daemon=True
    )
    writer.start()
    path = f"/api/training-runs/{seeded['lag_run']}/metrics/"
    seen, ends, writes, polls = {}, {}, [], []
    time.sleep(0.5)
    client.get(path)  # warm
    go.set()
    deadline = time.monotonic() + 60 + epochs * 3
    done = False
    try:
        while time.monotonic() < deadline:
            started = time.monotonic()
            seconds, body = client.get(path)
            received = time.monotonic()
            polls.append(seconds * 1000)
            for row in json.loads(body)["epochs"]:
                seen.setdefault(row["epoch"], received)
            while not ended.empty():
                item = ended.get_nowait()
                if item is None:
                    done = True
                else:
                    ends[item[0]] = item[1]
                    writes.append((item[2] - item[1]) * 1000)
            if done and all(e in seen for e in ends):
                break
            time.sleep(max(0.0, poll_ms / 1000 - (time.monotonic() - started)))
        else:
            raise RuntimeError(f"the lag phase did not finish in time: {len(ends)} epochs written, {len(seen)} seen")
    finally:
        writer.join(timeout=10)
        if writer.is_alive():
            writer.terminate()
            writer.join(timeout=5)
    if writer.exitcode not in (0, None):
        raise RuntimeError(f"the epoch writer exited with {writer.exitcode}")
    if len(ends) != epochs:
        raise RuntimeError(f"the epoch writer reported {len(ends)} of {epochs} epochs")
    lags = [(seen[epoch] - ends[epoch]) * 1000 for epoch in sorted(ends)]
    return {"lag": summary(lags), "write": summary(writes), "poll": summary(polls), "epochs": len(lags)}


# --------------------------------------------------------------------------- report


def report(seeded: dict, db_bytes: int, measured: dict, lag: dict, poll_ms: float) -> tuple[str, bool]:
    import django
    import gunicorn
    import ninja
    import psutil
    from django.conf import settings
    from django.db import connection

    floor = measured["GET /healthz (floor: WSGI, middleware, DB connection)"]["p50"]
    cpus = usable_cpus()
    statuses = ", ".join(f"{status} {n:,}" for status, n in sorted(seeded["by_status"].items()))
    lines = [
        f"Training-runs API benchmark: {seeded['runs']:,} runs over HTTP — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"{cpus} CPUs, {psutil.virtual_memory().total / 1024**3:.0f} GB RAM, Python {platform.python_version()}, "
        f"Django {django.__version__}, django-ninja {ninja.__version__}, gunicorn {gunicorn.__version__} "
        f"({WEB_WORKERS} workers x {WEB_THREADS} threads), SQLite {connection.Database.sqlite_version} (WAL), "
        f"CONN_MAX_AGE={settings.DATABASES['default'].get('CONN_MAX_AGE')}",
        f"database: {seeded['runs']:,} runs ({statuses}), "
        f"{seeded['experiments']:,} experiments, {seeded['history_rows']:,} metrics rows, {db_bytes / 1024**2:.0f} MB",
        "one request at a time, each on a new loopback connection, bearer token; times in ms, client side "
        f"(send to last byte); 1-min load average at the end {os.getloadavg()[0]:.2f} (other work skews figures)",
        "",
        f"{'request':<58} {'n':>4} {'p50':>7} {'p95':>7} {'p99':>7} {'max':>7}  {'p50 - floor':>11}",
    ]
    for label, stats in measured.items():
        over = "" if label.startswith("  ") else f"{stats['p50'] - floor:>+11.1f}"
        lines.append(
            f"{label:<58} {stats['n']:>4} {stats['p50']:>7.1f} {stats['p95']:>7.1f} {stats['p99']:>7.1f} "
            f"{stats['max']:>7.1f}  {over}"
        )
    lines += [
        "",
        f"epoch -> readable through GET /api/training-runs/{{id}}/metrics/ ({lag['epochs']} epochs, "
        f"DatabaseReporter.epoch_completed in a spawned writer, polled every {poll_ms:g} ms):",
        f"  {'lag (epoch end -> first poll that shows it)':<60} p50 {lag['lag']['p50']:>7.1f}  "
        f"p95 {lag['lag']['p95']:>7.1f}  max {lag['lag']['max']:>7.1f}",
        f"  {'of which the write (epoch_completed call, committed)':<60} p50 {lag['write']['p50']:>7.1f}  "
        f"p95 {lag['write']['p95']:>7.1f}  max {lag['write']['max']:>7.1f}",
        f"  {'floor: a poll round trip (rows show ~poll/2 + this late)':<60} p50 {lag['poll']['p50']:>7.1f}  "
        f"p95 {lag['poll']['p95']:>7.1f}  max {lag['poll']['max']:>7.1f}",
    ]
    list_stats = measured["list: all requests (mixed pages, filters, searches)"]
    checks = [
        (
            f"list p95 under {LIST_P95_TARGET_MS:g} ms",
            list_stats["p95"] < LIST_P95_TARGET_MS,
            f"{list_stats['p95']:.1f} ms",
        ),
        (
            f"epoch lag under {LAG_TARGET_S:g} s (every epoch: max)",
            lag["lag"]["max"] < LAG_TARGET_S * 1000,
            f"{lag['lag']['max']:.0f} ms",
        ),
    ]
    lines += ["", "targets:"]
    passed = True
    for label, ok, value in checks:
        passed &= ok
        lines.append(f"  {label:<44} {value:>10}  {'PASS' if ok else 'FAIL'}")
    for label, key in (
        ("detail of a RUNNING run", "detail: RUNNING run, 50 epochs of metrics rows"),
        ("best experiments", BEST_LABEL),
    ):
        stats = measured[key]
        lines.append(f"  {label + ' (no target)':<44} {stats['p95']:>7.1f} ms  p95 (p50 {stats['p50']:.1f} ms)")
    return "\n".join(lines) + "\n", passed


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--history-runs", type=int, default=300, help="finished runs given 20 epochs of metrics")
    parser.add_argument("--list-requests", type=int, default=200)
    parser.add_argument("--detail-requests", type=int, default=100)
    parser.add_argument("--floor-requests", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=30, help="epochs the lag writer reports")
    parser.add_argument("--experiments", type=int, default=2_000)
    parser.add_argument("--poll-ms", type=float, default=20.0)
    parser.add_argument("--results", type=Path, default=RESULTS, help="where to save the table")
    args = parser.parse_args(argv)
    if args.runs < 10 or args.list_requests < 10 or args.detail_requests < 2 or args.epochs < 2:
        parser.error("--runs >= 10, --list-requests >= 10, --detail-requests >= 2, --epochs >= 2")

    folder = Path(tempfile.mkdtemp(prefix="bench-api-"))
    os.environ["ML_PLATFORM_DATA_DIR"] = str(folder)
    os.environ["DJANGO_SETTINGS_MODULE"] = "ml_platform.settings"
    for name in UNSET:
        os.environ.pop(name, None)
    server = None
    try:
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command
        from django.db import connection

        call_command("migrate", verbosity=0)
        rng = random.Random(0)
        started = time.monotonic()
        seeded = seed(args.runs, args.history_runs, args.epochs, args.experiments, rng)
        connection.close()
        print(
            f"seeded {seeded['runs']:,} runs in {time.monotonic() - started:.0f} s; starting gunicorn", file=sys.stderr
        )
        db_file = Path(settings.DATABASES["default"]["NAME"])
        db_bytes = sum(p.stat().st_size for p in db_file.parent.glob(db_file.name + "*"))

        port = free_port()
        server = start_server(folder, port)
        client = Client(port, seeded["token"])
        pid = seeded["project_id"]
        detail = f"/api/training-runs/{seeded['detail_run']}/"
        mix, kinds = list_mix(pid, seeded, args.list_requests, rng)
        for path in ["/healthz"] * 10:  # warm both workers (imports, first connection, caches)
            client.get(path, auth=False)
        for path in [f"/api/projects/{pid}/", mix[0][1], detail, detail + "metrics/"] * 4:
            client.get(path)
        check_answers(client, pid, seeded, detail)

        measured = {}
        measured["GET /healthz (floor: WSGI, middleware, DB connection)"] = summary(
            client.timed(["/healthz"] * args.floor_requests, auth=False)
        )
        measured["GET /api/projects/{id}/ (floor + token auth, membership)"] = summary(
            client.timed([f"/api/projects/{pid}/"] * args.floor_requests)
        )
        times = client.timed([path for _, path in mix])
        measured["list: all requests (mixed pages, filters, searches)"] = summary(times)
        by_kind: dict[str, list[float]] = {}
        for (kind, _), ms in zip(mix, times):
            by_kind.setdefault(kind, []).append(ms)
        for kind in kinds:
            measured[f"  {kind}"] = summary(by_kind[kind])
        measured["detail: RUNNING run, 50 epochs of metrics rows"] = summary(
            client.timed([detail] * args.detail_requests)
        )
        measured["detail: a finished (completed) run"] = summary(
            client.timed([f"/api/training-runs/{seeded['finished_run']}/"] * max(2, args.detail_requests // 2))
        )
        measured["metrics: RUNNING run, 50 epochs (no histograms)"] = summary(
            client.timed([detail + "metrics/"] * max(2, args.detail_requests // 2))
        )
        measured[f"experiments: first page of {seeded['experiments']:,}"] = summary(
            client.timed([f"/api/projects/{pid}/experiments/"] * max(2, args.detail_requests // 2))
        )
        measured[BEST_LABEL] = summary(
            client.timed([f"/api/projects/{pid}/experiments/best/"] * max(2, args.detail_requests // 2))
        )

        lag = measure_lag(client, seeded, args.epochs, args.poll_ms)
        text, passed = report(seeded, db_bytes, measured, lag, args.poll_ms)
    finally:
        if server is not None:
            stop_server(server)
        shutil.rmtree(folder, ignore_errors=True)
    return publish(text, passed, args.results)


if __name__ == "__main__":
    sys.exit(main())
