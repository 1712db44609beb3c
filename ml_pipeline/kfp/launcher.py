"""The Trainer as a Vertex AI custom job in the GPU training region, trying GPU shapes in order.

The pipeline's Trainer task (in the data region) runs ``python -m ml_pipeline launch-trainer``: it starts a
custom job with the first worker pool compiled into its arguments, whose container runs the Trainer stage
on the GPU image, and waits for it. When Vertex AI answers that the shape cannot be had (quota or stock:
"resources exhausted"), the next pool is tried; any other failure is the Trainer's own and ends the
attempts. Each attempt, with its error, is reported to the platform (a ``compute_attempt`` event), so the
run shows which GPUs it got and why the others were passed over.

Spot (preemptible) jobs restart their worker when it is preempted (``restart_job_on_worker_restart``);
the Trainer resumes from the checkpoints it keeps in its stage's work folder under the artifact root.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

# What Vertex AI says when a shape cannot be had now: RESOURCE_EXHAUSTED (code 8), a zone's pool exhausted,
# a stock-out, or no quota for the accelerator in the region.
UNAVAILABLE = re.compile(
    r"resource[s_ ]*exhausted|resources are insufficient|stockout|zone_resource_pool_exhausted|"
    r"quota|does not have enough resources|code[\"': ]*8\b",
    re.IGNORECASE,
)


class ShapeUnavailable(Exception):
    """This worker pool shape cannot be had now; another may."""


def is_unavailable(error: BaseException) -> bool:
    try:
        from google.api_core import exceptions

        if isinstance(error, (exceptions.ResourceExhausted, exceptions.ServiceUnavailable)):
            return True
    except ImportError:  # pragma: no cover (google-api-core comes with google-cloud-aiplatform)
        pass
    return isinstance(error, ShapeUnavailable) or bool(UNAVAILABLE.search(str(error)))


class CustomJobs(Protocol):
    """What the launcher needs of Vertex AI: run one custom job to its end (raising when it fails)."""

    def run(
        self,
        *,
        display_name: str,
        worker_pool_specs: list[dict],
        project: str,
        region: str,
        staging_dir: str,
        service_account: str,
        spot: bool,
        labels: dict[str, str],
    ) -> str:
        """The job's resource name, once it has succeeded."""


class AiplatformCustomJobs:
    """:class:`CustomJobs` through google-cloud-aiplatform."""

    def run(self, *, display_name, worker_pool_specs, project, region, staging_dir, service_account, spot, labels):
        from google.cloud import aiplatform
        from google.cloud.aiplatform_v1.types import custom_job

        job = aiplatform.CustomJob(
            display_name=display_name,
            worker_pool_specs=worker_pool_specs,
            project=project,
            location=region,
            staging_bucket=staging_dir,
            labels=labels,
        )
        job.run(
            service_account=service_account or None,
            restart_job_on_worker_restart=spot,
            scheduling_strategy=custom_job.Scheduling.Strategy.SPOT if spot else None,
            sync=True,
        )
        return job.resource_name


@dataclass
class Attempt:
    shape: dict[str, Any]
    region: str
    outcome: str  # "succeeded", "unavailable" or "failed"
    error: str = ""
    job: str = ""

    def as_event(self) -> dict[str, Any]:
        return {
            "event": "compute_attempt",
            "stage": "Trainer",
            "shape": self.shape,
            "region": self.region,
            "outcome": self.outcome,
            "error": self.error[:2000],
            "job": self.job,
        }


@dataclass
class LaunchResult:
    succeeded: bool
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def message(self) -> str:
        tried = "; ".join(f"{_label(a.shape)} in {a.region}: {a.outcome} {a.error}".strip() for a in self.attempts)
        return f"the Trainer's custom job did not succeed ({tried})"


def _label(shape: dict) -> str:
    machine = shape.get("machine_spec", {})
    return f"{machine.get('accelerator_count')}x{machine.get('accelerator_type')} on {machine.get('machine_type')}"


def launch(
    jobs: CustomJobs,
    *,
    worker_pools: list[dict],
    stage_command: list[str],
    stage_args: list[str],
    project: str,
    region: str,
    staging_dir: str,
    service_account: str,
    spot: bool,
    display_name: str,
    report,
    labels: dict[str, str] | None = None,
) -> LaunchResult:
    """Try each worker pool in order until one runs the Trainer to its end; ``report(event)`` hears each attempt."""
    result = LaunchResult(succeeded=False)
    for pool in worker_pools:
        spec = json.loads(json.dumps(pool))
        gpus = int(spec.get("machine_spec", {}).get("accelerator_count") or 0)
        check = ["python", "-m", "ml_pipeline.kfp.entrypoint", "--gpus", str(gpus), "--"] if gpus else []
        spec.setdefault("container_spec", {}).update(command=[*check, *stage_command], args=stage_args)
        attempt = Attempt(shape={k: v for k, v in pool.items() if k != "container_spec"}, region=region, outcome="")
        try:
            attempt.job = jobs.run(
                display_name=display_name,
                worker_pool_specs=[spec],
                project=project,
                region=region,
                staging_dir=staging_dir,
                service_account=service_account,
                spot=spot,
                labels=labels or {},
            )
            attempt.outcome = "succeeded"
        except Exception as error:  # noqa: BLE001 (every failure is recorded; only "unavailable" moves on)
            attempt.error = f"{type(error).__name__}: {error}"
            attempt.outcome = "unavailable" if is_unavailable(error) else "failed"
        result.attempts.append(attempt)
        report(attempt.as_event())
        if attempt.outcome == "succeeded":
            result.succeeded = True
            return result
        if attempt.outcome == "failed":
            return result
    return result
