"""The pages and API that read a run's files (its record, stage logs, statistics, schema) go through the
artifact store's filesystem, so a non-local PIPELINE_ROOT (gs:// in production) works: here fsspec's
in-memory filesystem, with a real run of the data stages written to it."""

from __future__ import annotations

import uuid
from pathlib import Path

import fsspec
import pytest
from django.test import Client

from ml_pipeline.reporting import InMemoryReporter
from ml_pipeline.runner import PipelineRunner
from ml_pipeline.spec import STAGES, PipelineSpec
from ml_platform.training import run_folders, services
from ml_platform.training.artifact_files import run_files
from ml_platform.training.execution import lineage
from ml_platform.training.models import TrainingRun
from ml_platform.training.worker import Worker
from tests.helpers import copies

DATA_STAGES = ["Compile", "ExampleGen", "StatisticsGen", "SchemaGen"]


@pytest.fixture
def memory_root(settings):
    root = f"memory://pipelines-{uuid.uuid4().hex[:8]}"
    settings.PIPELINE_ROOT = root
    yield root
    fs = fsspec.filesystem("memory")
    if fs.exists(root):
        fs.rm(root, recursive=True)


@pytest.fixture
def data_run(pending_run, memory_root):
    """The queued run's data stages, run for real into the in-memory root; the run then records them as done."""
    run = TrainingRun.objects.get(pk=pending_run["id"])
    run.pipeline_run_id = run.pipeline_run_id or f"recs-1-{uuid.uuid4().hex[:8]}"
    spec = PipelineSpec.model_validate(run.spec).model_copy(update={"stages": DATA_STAGES})
    result = PipelineRunner(spec, memory_root, run_id=run.pipeline_run_id, reporter=InMemoryReporter()).run()
    assert result.status == "completed", result.error
    stages = {s: {"status": "completed" if s in DATA_STAGES else "pending"} for s in STAGES}
    TrainingRun.objects.filter(pk=run.pk).update(
        pipeline_run_id=run.pipeline_run_id, stages=stages, artifacts=lineage(result), status=TrainingRun.FAILED
    )
    return TrainingRun.objects.get(pk=run.pk)


def test_the_artifacts_are_urls_of_the_non_local_root(data_run, memory_root):
    uri = data_run.artifacts["StatisticsGen"]["uri"]
    assert uri.startswith("memory://") and memory_root.removeprefix("memory://") in uri
    assert fsspec.filesystem("memory").isfile(f"{uri}/output/summary.json")


def test_statistics_and_schema_are_read_from_the_stores_filesystem(api, data_run):
    statistics = api.get(f"/api/training-runs/{data_run.pk}/statistics/")
    assert statistics.status_code == 200, statistics.content
    assert statistics.json()["overview"]["total_examples"] > 0
    schema = api.get(f"/api/training-runs/{data_run.pk}/schema/")
    assert schema.status_code == 200, schema.content
    assert "buyer_id" in [f["name"] for f in schema.json()["features"]]


def test_stage_logs_are_tailed_and_downloaded_from_the_stores_filesystem(api, data_run):
    logs = api.get(f"/api/training-runs/{data_run.pk}/logs/?stage=StatisticsGen&tail=5").json()
    (entry,) = logs["stages"]
    assert entry["available"] and "statistics for" in entry["text"] and entry["size_bytes"] > 0
    download = api.get(f"/api/training-runs/{data_run.pk}/logs/StatisticsGen/download/")
    assert download.status_code == 200
    assert b"statistics for" in b"".join(download.streaming_content)


def test_the_statistics_report_draws_the_histograms_stored_there(olivia, data_run):
    client = Client()
    client.force_login(olivia)
    response = client.get(f"/training/runs/{data_run.pk}/statistics/")
    assert response.status_code == 200
    assert 'id="numeric-features"' in response.content.decode() and "<rect" in response.content.decode()


def test_a_running_runs_finished_stages_are_found_through_its_record_in_the_store(api, data_run):
    TrainingRun.objects.filter(pk=data_run.pk).update(artifacts={}, status=TrainingRun.RUNNING)
    statistics = api.get(f"/api/training-runs/{data_run.pk}/statistics/")
    assert statistics.status_code == 200, statistics.content


def test_deleting_a_run_removes_its_folder_from_the_stores_filesystem(api, data_run):
    folder = str(run_files(data_run))
    assert fsspec.filesystem("memory").isdir(folder)
    assert api.delete(f"/api/training-runs/{data_run.pk}/").status_code == 204
    assert not fsspec.filesystem("memory").exists(folder)


def test_deleting_a_run_keeps_the_stage_folders_a_later_run_reused(api, data_run):
    (later,) = copies(
        data_run.pk, 1, pipeline_run_id="recs-9-later", artifacts={"ExampleGen": data_run.artifacts["ExampleGen"]}
    )
    folder = run_files(data_run)
    assert api.delete(f"/api/training-runs/{data_run.pk}/").status_code == 204
    fs = fsspec.filesystem("memory")
    assert fs.isfile(f"{(folder / 'ExampleGen').path}/manifest.json")  # the later run's cache hit stays
    assert not fs.exists((folder / "StatisticsGen").path) and not fs.exists((folder / "run.json").path)
    assert TrainingRun.objects.filter(pk=later.pk).exists()


def test_the_worker_log_is_spooled_locally_and_lands_in_the_store(api, data_run):
    TrainingRun.objects.filter(pk=data_run.pk).update(attempts=1)
    spool, target = run_folders.worker_log_spool(data_run)
    assert not str(spool).startswith("memory") and str(target).startswith("memory://")
    spool.write_text("worker: claimed the run\nworker: child exited\n")
    run_folders.publish_worker_log(spool, target, last=True)
    logs = api.get(f"/api/training-runs/{data_run.pk}/logs/?stage=worker").json()
    assert "child exited" in logs["worker"]["text"]
    assert not spool.exists()


def test_the_worker_writes_a_started_runs_log_into_the_store_not_a_local_folder(pending_run, memory_root):
    run = TrainingRun.objects.get(pk=pending_run["id"])
    worker = Worker()
    assert worker.claim_and_start().pk == run.pk
    run.refresh_from_db()
    services.request_cancel(run)
    assert worker.stop_cancelled() == 1
    assert fsspec.filesystem("memory").isfile((run_files(run) / "worker.log").path)
    assert not Path("memory:").exists()  # no local folder named after the URL
