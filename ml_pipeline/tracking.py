"""MLflow tracking for pipeline runs: params, per-epoch metrics, final metrics, key artifacts, lineage.

:class:`MlflowReporter` is a reporter like the others, so any runner (the
local worker, a remote job) gets tracking by adding it to its fan-out.
MLflow's fluent API keeps a process-global "active run"; this class uses
the explicit ``MlflowClient`` instead, so several runs in one process
cannot mix their metrics.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ml_pipeline.artifact_types import (
    CompiledSpec,
    ExampleStatistics,
    Model,
    ModelEvaluation,
    Schema,
    TransformGraph,
)
from ml_pipeline.reporting import Reporter

KEY_ARTIFACTS = {  # stage -> its artifact's files that are logged to MLflow
    "Compile": [CompiledSpec.FILES["spec"]],
    "StatisticsGen": [ExampleStatistics.FILES["summary"]],
    "SchemaGen": [Schema.FILES["schema"], Schema.FILES["anomalies"]],
    "Transform": [TransformGraph.FILES["transform"]],
    "Trainer": [Model.FILES["history"], Model.FILES["summary"]],
    "Evaluator": [ModelEvaluation.FILES["evaluation"], ModelEvaluation.FILES["blessing"]],
}


def flatten(prefix: str, value: Any, out: dict[str, Any]) -> dict[str, Any]:
    """{"training": {"epochs": 3}} -> {"training.epochs": 3}; lists become JSON strings."""
    if isinstance(value, dict):
        for key, inner in value.items():
            flatten(f"{prefix}.{key}" if prefix else str(key), inner, out)
    else:
        out[prefix] = json.dumps(value) if isinstance(value, list) else value
    return out


class MlflowReporter(Reporter):
    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        run_name: str,
        spec: dict,
        tags: dict[str, str] | None = None,
        run_id: str | None = None,
        artifact_root: str | None = None,
    ) -> None:
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=tracking_uri)
        found = self.client.get_experiment_by_name(experiment)
        # Without an explicit location a database-backed store puts artifacts
        # in ./mlruns of whatever folder the process happens to run in.
        location = f"{artifact_root.rstrip('/')}/{experiment}" if artifact_root else None
        experiment_id = (
            found.experiment_id if found else self.client.create_experiment(experiment, artifact_location=location)
        )
        if run_id:  # a resumed pipeline keeps logging into its MLflow run
            self.run_id = run_id
        else:
            self.run_id = self.client.create_run(experiment_id, run_name=run_name, tags=tags or {}).info.run_id
            params = flatten("", {k: spec[k] for k in ("split", "model", "training", "evaluator") if k in spec}, {})
            for key, value in params.items():
                self.client.log_param(self.run_id, key[:250], str(value)[:6000])

    def stage_completed(self, stage, summary, properties, cached):
        self.client.set_tag(self.run_id, f"stage.{stage}", f"{'cached: ' if cached else ''}{summary}"[:5000])

    def stage_failed(self, stage, message, traceback):
        self.client.set_tag(self.run_id, "error", f"{stage}: {message}"[:5000])

    def epoch_completed(self, epoch, total_epochs, metrics):
        for name, value in metrics.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.client.log_metric(self.run_id, name, float(value), step=epoch)

    def finish(self, status: str, final_metrics: dict[str, Any], artifacts: dict[str, dict]) -> None:
        """Final metrics, the key artifact files and the lineage; then close the MLflow run."""
        for name, value in final_metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                self.client.log_metric(self.run_id, f"final.{name}", float(value))
        for stage, files in KEY_ARTIFACTS.items():
            artifact = artifacts.get(stage)
            if not artifact:
                continue
            for name in files:
                path = Path(artifact["uri"]) / "output" / name
                if path.exists():
                    self.client.log_artifact(self.run_id, str(path), artifact_path=stage)
        self.client.log_dict(self.run_id, artifacts, "lineage.json")
        self.client.set_terminated(self.run_id, status="FINISHED" if status != "failed" else "FAILED")


def end_if_running(tracking_uri: str, run_id: str, status: str) -> bool:
    """Close an MLflow run its pipeline could not close (its process was killed or cancelled); True if it did.

    The pipeline closes its own MLflow run when it finishes; a run the worker ends
    instead would otherwise stay RUNNING in MLflow for ever.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    if client.get_run(run_id).info.status != "RUNNING":
        return False
    client.set_terminated(run_id, status=status)
    return True
