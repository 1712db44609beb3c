"""The view modal's Results and Overview details, without a pages: the MLflow link only when an MLflow UI is
configured (``MLFLOW_UI_URL``), early stopping as the Trainer records it (``early_stopped_epoch``,
``best_epoch``, ``epochs_run``), a copy-path action per artifact, and the split's date column chip."""

from __future__ import annotations

import pytest
from django.test import Client

from ml_platform.training.models import TrainingRun
from tests.helpers import copies

MLFLOW_RUN = "0a1b2c3d4e5f"


@pytest.fixture
def early_stopped(pending_run) -> TrainingRun:
    """A completed run whose Trainer stopped early at epoch 7 of 20 and exported epoch 4, tracked in MLflow."""
    (run,) = copies(
        pending_run["id"],
        1,
        status=TrainingRun.COMPLETED,
        mlflow_run_id=MLFLOW_RUN,
        training_params={"epochs": 20, "early_stopping": {"enabled": True, "patience": 3}},
        final_metrics={"recall_at_10": 0.2, "early_stopped_epoch": 7, "best_epoch": 4, "epochs_run": 7},
        artifacts={"Pusher": {"type": "PushedModel", "uri": "/models/recs/7", "producer": "Pusher"}},
    )
    return run


def tab(client: Client, run, name: str) -> str:
    return client.get(f"/training/runs/{run.pk}/view/{name}/").content.decode()


def test_without_an_mlflow_ui_there_is_no_mlflow_link(pages, early_stopped, settings):
    settings.MLFLOW_UI_URL = ""
    assert 'id="view-mlflow"' not in tab(pages, early_stopped, "results")


def test_with_an_mlflow_ui_the_link_opens_the_run_there(pages, early_stopped, settings):
    settings.MLFLOW_UI_URL = "http://mlflow.example:5000/"
    html = tab(pages, early_stopped, "results")
    assert f'href="http://mlflow.example:5000/#/runs/{MLFLOW_RUN}"' in html


def test_early_stopping_shows_what_the_trainer_recorded(pages, early_stopped):
    html = tab(pages, early_stopped, "results")
    box = html[html.index('id="view-early-stopping"') :]
    assert "patience 3" in box
    assert '<span class="chip" data-role="stopped-at">Stopped at epoch 7</span>' in box
    assert '<span class="chip" data-role="best-epoch">Best epoch 4</span>' in box
    assert '<span class="chip" data-role="epochs-run">7 epochs run</span>' in box


def test_a_run_that_trained_every_epoch_says_it_did_not_stop_early(pages, early_stopped):
    metrics = {**early_stopped.final_metrics, "early_stopped_epoch": None, "epochs_run": 20, "best_epoch": 20}
    TrainingRun.objects.filter(pk=early_stopped.pk).update(final_metrics=metrics)
    html = tab(pages, early_stopped, "results")
    assert 'data-role="stopped-at">Did not stop early<' in html and "Best epoch 20" in html


def test_each_artifact_has_a_copy_path_action(pages, early_stopped):
    html = tab(pages, early_stopped, "results")
    row = html[html.index('data-artifact="Pusher"') :]
    assert 'data-component="copy-path" data-path="/models/recs/7"' in row[: row.index("</tr>")]


def test_the_sampling_chips_name_the_datasets_date_column(pages, early_stopped):
    html = tab(pages, early_stopped, "overview")
    assert '<span class="chip" data-role="date-column">Date column ordered_at</span>' in html
