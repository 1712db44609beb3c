"""The view modal's Pipeline tab and the whole-log download, without a pages.

The download (``GET /api/training-runs/{id}/logs/{name}/download/``) is the API's: a session or a token, 404
for a run of another project, the file streamed as an attachment named after the run, never a server path.
The tab opens at the stage a run failed in (its error, the traceback, the log's tail), names the run a cached
stage was reused from, and answers 422 naming ``stage`` for a stage there is not.
"""

from __future__ import annotations

from django.conf import settings
from django.test import Client

from ml_platform.accounts.models import ApiToken
from ml_platform.training.models import TrainingRun
from ml_platform.training.services import run_folder
from tests.conftest import TRANSFORM_LOG_LINES
from tests.helpers import copies


def download(client: Client, run, name: str, **headers):
    return client.get(f"/api/training-runs/{run.pk}/logs/{name}/download/", **headers)


def whole(response) -> bytes:
    return b"".join(response.streaming_content)


def pipeline_tab(client: Client, run, query: str = ""):
    return client.get(f"/training/runs/{run.pk}/view/pipeline/{query}", HTTP_HX_REQUEST="true")


# --------------------------------------------------------------------------- the download


def test_a_member_downloads_the_whole_log_streamed_as_a_file_named_after_the_run(pages, failed_run_with_logs):
    run = failed_run_with_logs
    response = download(pages, run, "Transform")
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="run-{run.pk}-Transform.log"'
    body = whole(response)
    assert body == (run_folder(run) / "Transform" / "stage.log").read_bytes()
    assert body.count(b"\n") == TRANSFORM_LOG_LINES  # the whole file, not the tab's tail


def test_a_cached_stages_log_is_the_one_of_the_run_that_produced_it(pages, failed_run_with_logs):
    response = download(pages, failed_run_with_logs, "ExampleGen")
    assert response.status_code == 200 and whole(response) == b"ExampleGen: read 2,450 rows\n"


def test_the_worker_log_downloads_too_and_a_token_is_enough(olivia, failed_run_with_logs):
    _, raw = ApiToken.objects.issue(olivia, "script")
    response = download(Client(), failed_run_with_logs, "worker", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 200 and whole(response) == b"worker: claimed the run\n"


def test_the_download_needs_a_login(failed_run_with_logs):
    response = download(Client(), failed_run_with_logs, "Transform")
    assert response.status_code == 401 and "Authentication required" in response.json()["error"]


def test_another_projects_run_is_404_and_says_nothing_of_its_files(oscar, failed_run_with_logs):
    outsider = Client()
    outsider.force_login(oscar)
    response = download(outsider, failed_run_with_logs, "Transform")
    assert response.status_code == 404
    assert settings.PIPELINE_ROOT not in response.content.decode()


def test_a_stage_that_never_ran_has_no_log_and_the_answer_names_no_path(pages, failed_run_with_logs):
    response = download(pages, failed_run_with_logs, "Pusher")
    assert response.status_code == 404
    assert response.json()["error"] == "No Pusher log for this run: the stage is pending"
    assert settings.PIPELINE_ROOT not in response.content.decode()


def test_an_unknown_log_name_is_422_naming_the_field(pages, failed_run_with_logs):
    response = download(pages, failed_run_with_logs, "passwords")
    assert response.status_code == 422
    assert [p["field"] for p in response.json()["errors"]] == ["name"]


def test_an_experiments_log_downloads_under_the_experiments_api(pages, failed_run_with_logs):
    TrainingRun.objects.filter(pk=failed_run_with_logs.pk).update(kind=TrainingRun.EXPERIMENT)
    run = failed_run_with_logs
    assert download(pages, run, "Transform").status_code == 404  # not a training run
    response = pages.get(f"/api/experiments/{run.pk}/logs/Transform/download/")
    assert response.status_code == 200 and whole(response).startswith(b"Transform line 1\n")


# --------------------------------------------------------------------------- the tab


def test_the_pipeline_tab_opens_at_the_failed_stage_with_its_error_traceback_and_log(pages, failed_run_with_logs):
    run = failed_run_with_logs
    html = pipeline_tab(pages, run).content.decode()
    assert 'data-tab-body="pipeline" data-query="stage=Transform"' in html  # what the modal's refresh asks again
    assert 'class="dag-node node-failed selected" data-stage="Transform" data-status="failed"' in html
    detail = html[html.index('id="view-stage-detail"') :]
    assert 'id="view-traceback"' in detail and "ValueError: empty vocabulary" in detail
    assert "vocabulary of product_id is empty" in detail
    assert f"Transform line {TRANSFORM_LOG_LINES}\n" in detail and "Transform line 1\n" not in detail  # a tail
    assert f'href="/api/training-runs/{run.pk}/logs/Transform/download/"' in detail
    assert settings.PIPELINE_ROOT not in detail.split('id="stage-log-Transform"')[1]  # the log's box names no path


def test_a_cached_stage_names_the_run_it_was_reused_from_with_its_lineage(pages, failed_run_with_logs):
    html = pipeline_tab(pages, failed_run_with_logs, "?stage=ExampleGen").content.decode()
    node = html[html.index('data-stage="ExampleGen"') :]
    assert node.index("reused from recs-1-cafe0001") < node.index("</li>")
    detail = html[html.index('id="view-stage-detail"') :]
    assert "produced by <b>recs-1-cafe0001</b>" in detail
    assert 'data-input="Compile"' in detail and f'title="{"a1" * 32}"' in detail  # fingerprints: the lineage
    assert "ExampleGen: read 2,450 rows" in detail
    assert 'id="view-traceback"' not in detail  # the error belongs to Transform


def test_an_unknown_stage_is_422_naming_the_field(pages, failed_run_with_logs):
    response = pipeline_tab(pages, failed_run_with_logs, "?stage=Nope")
    assert response.status_code == 422 and response.content.decode().startswith("stage: no stage 'Nope'")


def test_a_completed_run_opens_with_no_stage_chosen(pages, pending_run):
    (run,) = copies(pending_run["id"], 1, status=TrainingRun.COMPLETED)
    html = pipeline_tab(pages, run).content.decode()
    assert 'data-query=""' in html and 'id="view-stage-detail"' not in html


def test_the_refresh_button_asks_for_one_log_and_hides_it_from_outsiders(pages, oscar, failed_run_with_logs):
    run = failed_run_with_logs
    (run_folder(run) / "Transform" / "stage.log").write_text("retrying\nsucceeded at last\n")
    html = pages.get(f"/training/runs/{run.pk}/logs/Transform/").content.decode()
    assert html.lstrip().startswith('<div class="stage-log" id="stage-log-Transform"')
    assert "succeeded at last" in html
    outsider = Client()
    outsider.force_login(oscar)
    assert outsider.get(f"/training/runs/{run.pk}/logs/Transform/").status_code == 404
    assert pages.get(f"/training/runs/{run.pk}/logs/secrets/").status_code == 404


def test_the_training_tab_keeps_the_progress_on_top_and_an_old_progress_link_opens_it(pages, failed_run_with_logs):
    run = failed_run_with_logs
    html = pages.get(f"/training/runs/{run.pk}/view/progress/").content.decode()
    assert 'data-tab-body="training"' in html
    assert html.index('id="view-progress"') < html.index('id="view-epochs"') < html.index('id="view-weights"')
    assert "4/8 stages · 50%" in html  # Compile, ExampleGen (cached), StatisticsGen, SchemaGen
