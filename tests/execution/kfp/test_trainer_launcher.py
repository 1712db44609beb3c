"""The Trainer's Vertex AI custom job: the shapes tried in order on "resources exhausted", each attempt reported."""

from __future__ import annotations

from dataclasses import dataclass, field

from google.api_core import exceptions

from ml_pipeline.kfp.gpus import DEFAULT_FALLBACK, parse_order, shapes
from ml_pipeline.kfp.launcher import launch


@dataclass
class FakeCustomJobs:
    """aiplatform's custom jobs as the launcher uses them: each call recorded, answers scripted per shape."""

    answers: dict[str, Exception] = field(default_factory=dict)  # "<count>x<accelerator>" -> what the job raises
    calls: list[dict] = field(default_factory=list)

    def run(self, **call):
        self.calls.append(call)
        machine = call["worker_pool_specs"][0]["machine_spec"]
        key = f"{machine['accelerator_count']}x{machine['accelerator_type']}"
        if key in self.answers:
            raise self.answers[key]
        return f"projects/acme/locations/{call['region']}/customJobs/{len(self.calls)}"


def pools():
    """The worker pools compiled for 4xT4 in europe-west4: the run's shape, then the default fallback order."""
    return [
        {
            "machine_spec": {
                "machine_type": shape.machine_type,
                "accelerator_type": shape.accelerator.vertex_type,
                "accelerator_count": shape.gpu_count,
            },
            "replica_count": 1,
            "container_spec": {"image_uri": "gpu:1"},
        }
        for shape in shapes("T4", 4, parse_order(DEFAULT_FALLBACK), "europe-west4")
    ]


def run_launcher(jobs, spot=True):
    reports = []
    result = launch(
        jobs,
        worker_pools=pools(),
        stage_command=["python", "-m", "ml_pipeline", "stage", "Trainer"],
        stage_args=["--spec", "{}", "--run-id", "run-7"],
        project="acme",
        region="europe-west4",
        staging_dir="gs://acme-staging/pipelines/custom-jobs",
        service_account="sa@acme",
        spot=spot,
        display_name="run-7-trainer",
        report=reports.append,
    )
    return result, reports


def tried(jobs):
    return [
        (
            c["worker_pool_specs"][0]["machine_spec"]["accelerator_count"],
            c["worker_pool_specs"][0]["machine_spec"]["accelerator_type"],
        )
        for c in jobs.calls
    ]


def test_the_default_fallback_order_is_4xT4_4xV100_4xL4_2xT4():
    assert [shape.label for shape in parse_order(DEFAULT_FALLBACK)] == ["4xT4", "4xV100", "4xL4", "2xT4"]


def test_the_first_shape_that_can_be_had_trains():
    jobs = FakeCustomJobs()
    result, reports = run_launcher(jobs)
    assert result.succeeded
    assert tried(jobs) == [(4, "NVIDIA_TESLA_T4")]
    [call] = jobs.calls
    assert call["region"] == "europe-west4" and call["spot"] is True and call["service_account"] == "sa@acme"
    container = call["worker_pool_specs"][0]["container_spec"]
    assert container == {
        "image_uri": "gpu:1",
        "command": [
            *("python", "-m", "ml_pipeline.kfp.entrypoint", "--gpus", "4", "--"),  # sees its GPUs, or refuses
            *("python", "-m", "ml_pipeline", "stage", "Trainer"),
        ],
        "args": ["--spec", "{}", "--run-id", "run-7"],
    }
    assert [(r["outcome"], r["job"]) for r in reports] == [
        ("succeeded", "projects/acme/locations/europe-west4/customJobs/1")
    ]


def test_resources_exhausted_moves_on_to_the_next_shape_recording_each_attempt_and_its_error():
    jobs = FakeCustomJobs(
        answers={
            "4xNVIDIA_TESLA_T4": exceptions.ResourceExhausted("The zone does not have enough resources available"),
            "4xNVIDIA_TESLA_V100": RuntimeError(
                "Job failed: code 8, RESOURCE_EXHAUSTED: stockout of NVIDIA_TESLA_V100"
            ),
        }
    )
    result, reports = run_launcher(jobs)
    assert result.succeeded
    assert tried(jobs) == [(4, "NVIDIA_TESLA_T4"), (4, "NVIDIA_TESLA_V100"), (4, "NVIDIA_L4")]
    assert [r["outcome"] for r in reports] == ["unavailable", "unavailable", "succeeded"]
    assert "enough resources" in reports[0]["error"] and "RESOURCE_EXHAUSTED" in reports[1]["error"]
    assert reports[0]["shape"]["machine_spec"]["machine_type"] == "n1-standard-32"
    assert all(r["event"] == "compute_attempt" and r["stage"] == "Trainer" for r in reports)


def test_when_no_shape_can_be_had_every_one_was_tried_and_the_launch_fails():
    exhausted = exceptions.ResourceExhausted("quota exceeded")
    jobs = FakeCustomJobs(
        answers={k: exhausted for k in ("4xNVIDIA_TESLA_T4", "4xNVIDIA_TESLA_V100", "4xNVIDIA_L4", "2xNVIDIA_TESLA_T4")}
    )
    result, reports = run_launcher(jobs)
    assert not result.succeeded
    assert len(jobs.calls) == 4 and [r["outcome"] for r in reports] == ["unavailable"] * 4
    assert "4xNVIDIA_TESLA_T4 on n1-standard-32 in europe-west4: unavailable" in result.message


def test_a_trainer_that_fails_on_its_gpus_is_not_retried_on_other_shapes():
    jobs = FakeCustomJobs(answers={"4xNVIDIA_TESLA_T4": RuntimeError("Job failed: the Trainer exited with code 1")})
    result, reports = run_launcher(jobs)
    assert not result.succeeded
    assert len(jobs.calls) == 1 and reports[0]["outcome"] == "failed"
