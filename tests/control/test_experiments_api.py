"""Experiments (quick tests) through the API, and what connects them to training runs: promotion, the best
experiments ranking, comparing runs, and a run's results against its source experiment.

These queue experiments without executing them; outcomes (metrics, epochs)
are written straight into the records the way the worker would, so each
ranking and delta is checked against numbers chosen here. The end-to-end
test runs real ones.
"""

from __future__ import annotations

import pytest

from ml_pipeline.metrics import final_metrics
from ml_pipeline.spec import STAGES
from ml_platform.training.models import TrainingMetricsHistory, TrainingRun
from tests.helpers import api_client_for, cancelled, copies, create_run, errors_by_field, runs_url

pytestmark = pytest.mark.django_db


def experiments_url(project) -> str:
    return f"/api/projects/{project.id}/experiments/"


@pytest.fixture
def experiment_body(dataset, feature_config, retrieval):
    return {
        "name": "baseline towers",
        "dataset_id": dataset["id"],
        "feature_config_id": feature_config["id"],
        "model_config_id": retrieval["id"],
        "split_config": {"sample_percent": 25},
        "training_params": {"epochs": 3, "batch_size": 128, "learning_rate": 0.05},
    }


def create_experiment(api, project, body, **changes) -> dict:
    response = api.post(experiments_url(project), {**body, **changes})
    assert response.status_code == 201, response.content
    return response.json()


def finish(run_id: int, status=TrainingRun.COMPLETED, evaluator: dict | None = None, **fields) -> TrainingRun:
    """Record an outcome as the worker would: ``final_metrics`` as the Trainer reported them (the eval
    split), ``evaluator`` as the Evaluator did (the test split)."""
    if "final_metrics" in fields:
        fields["final_metrics"] = final_metrics(fields["final_metrics"], evaluator or {})
    TrainingRun.objects.filter(pk=run_id).update(status=status, **fields)
    return TrainingRun.objects.get(pk=run_id)


# --------------------------------------------------------------------------- creating and viewing


def test_an_experiment_is_queued_without_the_pusher_and_numbered_apart_from_runs(
    api, project, experiment_body, run_body
):
    run = create_run(api, project, run_body)
    experiment = create_experiment(api, project, experiment_body)
    assert (experiment["kind"], experiment["run_number"], experiment["display_name"]) == (
        "experiment",
        1,
        "Exp #1 baseline towers",
    )
    assert run["run_number"] == 1 and create_experiment(api, project, experiment_body)["run_number"] == 2
    assert experiment["status"] == "pending" and experiment["registered_model"] is None
    assert {s["name"]: s["status"] for s in experiment["stages"]} == {
        **{stage: "pending" for stage in STAGES if stage != "Pusher"},
        "Pusher": "skipped",
    }
    assert experiment["split_config"] == {"sample_percent": 25}
    stored = TrainingRun.objects.get(pk=experiment["id"])
    assert "Pusher" not in stored.spec["stages"] and stored.spec["split"]["sample_percent"] == 25
    # one pipeline folder per project: experiments and runs share their stages' cache
    assert stored.spec["name"] == TrainingRun.objects.get(pk=run["id"]).spec["name"] == f"p{project.id}-b2b-recs"
    assert api.get(f"/api/experiments/{experiment['id']}/").json() == experiment


def test_bad_experiment_input_is_named(api, project, experiment_body):
    response = api.post(experiments_url(project), {**experiment_body, "split_config": {"sample_percent": 0}})
    assert errors_by_field(response) == {"split_config.sample_percent": "Input should be greater than 0"}
    response = api.post(experiments_url(project), {**experiment_body, "model_config_id": 424242, "dataset_id": 434343})
    assert errors_by_field(response) == {
        "dataset_id": "no dataset 434343 in this project",
        "model_config_id": "no model config 424242 in this project",
    }
    response = api.post(experiments_url(project), {k: v for k, v in experiment_body.items() if k != "dataset_id"})
    assert errors_by_field(response) == {"dataset_id": "Field required"}
    assert api.get(experiments_url(project)).json()["count"] == 0


def test_experiments_and_training_runs_are_listed_apart_and_reached_by_their_own_urls(
    api, project, experiment_body, run_body, ranking
):
    run = create_run(api, project, run_body)
    experiment = create_experiment(api, project, experiment_body)
    create_experiment(api, project, experiment_body, model_config_id=ranking["id"], name="ranker")
    listed = api.get(experiments_url(project)).json()
    assert listed["count"] == 2 and {r["kind"] for r in listed["results"]} == {"experiment"}
    assert [r["display_name"] for r in listed["results"]] == ["Exp #2 ranker", "Exp #1 baseline towers"]
    assert [r["id"] for r in api.get(runs_url(project)).json()["results"]] == [run["id"]]
    only_ranking = api.get(experiments_url(project) + "?model_type=ranking").json()["results"]
    assert [r["display_name"] for r in only_ranking] == ["Exp #2 ranker"]
    assert api.get(experiments_url(project) + "?status=completed").json()["count"] == 0
    assert api.get(f"/api/training-runs/{experiment['id']}/").status_code == 404
    assert api.get(f"/api/experiments/{run['id']}/").status_code == 404
    assert api.post(f"/api/training-runs/{experiment['id']}/push/").status_code == 404


def test_cancel_and_delete_follow_the_run_rules(api, project, experiment_body):
    experiment = create_experiment(api, project, experiment_body)
    url = f"/api/experiments/{experiment['id']}/"
    assert api.delete(url).status_code == 409
    assert api.post(url + "cancel/").json()["status"] == "cancelled"
    assert api.delete(url).status_code == 204
    assert api.get(url).status_code == 404


def test_outsiders_get_404_and_members_see_experiments(project, experiment_body, api, mark, oscar):
    experiment = create_experiment(api, project, experiment_body)
    outsider = api_client_for(oscar)
    for path in ("", "metrics/", "logs/", "statistics/", "schema/"):
        assert outsider.get(f"/api/experiments/{experiment['id']}/{path}").status_code == 404
    assert outsider.post(f"/api/experiments/{experiment['id']}/promote/", {"name": "x"}).status_code == 404
    assert outsider.get(experiments_url(project)).status_code == 404
    assert api_client_for(mark).get(f"/api/experiments/{experiment['id']}/").status_code == 200


# --------------------------------------------------------------------------- best experiments


def test_best_experiments_has_a_kpi_row_per_model_type_and_the_top_ten(api, project, experiment_body, ranking):
    first = create_experiment(api, project, experiment_body)
    recalls = [0.31, 0.52, 0.12, 0.44, 0.29, 0.61, 0.05, 0.38, 0.47, 0.22, 0.58, 0.15]
    made = copies(first["id"], len(recalls) - 1)
    for experiment_id, recall in zip([first["id"], *[m.pk for m in made]], recalls):
        finish(
            experiment_id,
            final_metrics={
                "recall_at_5": recall / 4,
                "recall_at_10": recall / 2,
                "recall_at_50": recall * 0.9,
                "recall_at_100": recall,
                "loss": 1 - recall,
                "epochs_run": 3,
            },
        )
    copies(first["id"], 1, status=TrainingRun.FAILED, final_metrics={"recall_at_100": 0.99})  # never ranked
    ranker = create_experiment(api, project, experiment_body, model_config_id=ranking["id"])
    finish(ranker["id"], final_metrics={"rmse": 0.81, "mae": 0.62})
    finish(copies(ranker["id"], 1)[0].pk, final_metrics={"rmse": 0.74, "mae": 0.66})

    rows = {row["model_type"]: row for row in api.get(experiments_url(project) + "best/").json()}
    assert list(rows) == ["retrieval", "ranking", "multitask"]
    retrieval_row = rows["retrieval"]
    assert (retrieval_row["count"], retrieval_row["completed"]) == (13, 12)
    assert {k["metric"]: k["best"] for k in retrieval_row["kpis"]} == {
        "recall_at_5": pytest.approx(0.61 / 4),
        "recall_at_10": pytest.approx(0.61 / 2),
        "recall_at_50": pytest.approx(0.61 * 0.9),
        "recall_at_100": 0.61,
    }
    top = retrieval_row["top"]
    assert [row["value"] for row in top] == sorted(recalls, reverse=True)[:10]
    assert [row["rank"] for row in top] == list(range(1, 11))
    best = top[0]
    assert (best["metric"], best["dataset_name"], best["feature_config_name"], best["model_config_name"]) == (
        "recall_at_100",
        "purchases",
        "standard",
        "two-tower",
    )
    assert (best["learning_rate"], best["batch_size"], best["epochs"], best["sample_percent"]) == (0.05, 128, 3, 25)
    assert best["loss"] == pytest.approx(1 - 0.61)

    ranking_row = rows["ranking"]
    assert [(k["metric"], k["split"]) for k in ranking_row["kpis"]] == [
        ("rmse", "eval"),
        ("rmse", "test"),
        ("mae", "eval"),
        ("mae", "test"),
    ]
    assert {k["metric"]: (k["best"], k["lower_is_better"]) for k in ranking_row["kpis"] if k["split"] == "eval"} == {
        "rmse": (0.74, True),
        "mae": (0.62, True),
    }
    assert [row["value"] for row in ranking_row["top"]] == [0.74, 0.81]  # lowest RMSE first
    assert (rows["multitask"]["count"], rows["multitask"]["top"]) == (0, [])


def test_an_experiment_without_recall_at_100_is_ranked_by_its_largest_k(api, project, experiment_body):
    small_k = create_experiment(api, project, experiment_body)
    finish(small_k["id"], final_metrics={"recall_at_5": 0.1, "recall_at_10": 0.3, "loss": 0.5})
    usual = create_experiment(api, project, experiment_body)
    finish(usual["id"], final_metrics={"recall_at_10": 0.2, "recall_at_100": 0.25})
    unranked = create_experiment(api, project, experiment_body)
    finish(unranked["id"], final_metrics={"loss": 0.4})  # no Recall@K at all
    [retrieval] = [r for r in api.get(experiments_url(project) + "best/").json() if r["model_type"] == "retrieval"]
    assert [(row["experiment_id"], row["metric"], row["value"]) for row in retrieval["top"]] == [
        (small_k["id"], "recall_at_10", 0.3),
        (usual["id"], "recall_at_100", 0.25),
    ]
    assert retrieval["completed"] == 3
    other_dataset = api.get(experiments_url(project) + f"best/?dataset_id={experiment_body['dataset_id'] + 1000}")
    assert [(r["count"], r["top"]) for r in other_dataset.json()] == [(0, [])] * 3


def test_experiments_are_ranked_on_the_eval_split_and_carry_their_verdict_as_advice(api, project, experiment_body):
    lucky = create_experiment(api, project, experiment_body)
    below = "Recall@100 0.21 ≤ popularity 0.25 ✗"
    finish(
        lucky["id"],
        final_metrics={"recall_at_100": 0.30},
        evaluator={"recall_at_100": 0.21, "holdout": "test"},  # its test figure is reported, not chosen on
        blessed=False,
        blessing_reasons=["no thresholds set", below],
    )
    steady = create_experiment(api, project, experiment_body)
    finish(
        steady["id"],
        final_metrics={"recall_at_100": 0.35},
        evaluator={"recall_at_100": 0.33, "holdout": "test"},
        blessed=True,
        blessing_reasons=["Recall@100 0.33 > popularity 0.25 ✓"],
    )
    [retrieval] = [r for r in api.get(experiments_url(project) + "best/").json() if r["model_type"] == "retrieval"]
    assert [(row["experiment_id"], row["value"], row["split"]) for row in retrieval["top"]] == [
        (steady["id"], 0.35, "eval"),
        (lucky["id"], 0.30, "eval"),
    ]
    assert {k["metric"]: (k["best"], k["split"]) for k in retrieval["kpis"]}["recall_at_100"] == (0.35, "eval")
    assert [row["advice"] for row in retrieval["top"]] == [
        "would be blessed",
        f"would not be blessed: below popularity ({below})",
    ]
    detail = api.get(f"/api/experiments/{lucky['id']}/").json()
    assert detail["advice"] == f"would not be blessed: below popularity ({below})"
    assert (detail["final_metrics"]["recall_at_100"], detail["metric_splits"]["recall_at_100"]) == (0.21, "test")
    assert (detail["final_metrics"]["eval_recall_at_100"], detail["metric_splits"]["eval_recall_at_100"]) == (
        0.30,
        "eval",
    )


# --------------------------------------------------------------------------- promotion


def test_promoting_an_experiment_trains_what_was_tested_on_all_the_data(api, project, experiment_body, feature_config):
    experiment = create_experiment(api, project, experiment_body)
    refused = api.post(f"/api/experiments/{experiment['id']}/promote/", {"name": "recs"})
    assert errors_by_field(refused) == {
        "experiment_id": "Exp #1 baseline towers is pending; only a completed experiment can be promoted"
    }
    finish(experiment["id"], final_metrics={"recall_at_100": 0.4})
    # The catalog changes after the experiment: the promoted run still trains what was tested.
    changed = {**feature_config["config"], "buyer_tower": {**feature_config["config"]["buyer_tower"], "crosses": []}}
    assert api.patch(f"/api/feature-configs/{feature_config['id']}/", {"config": changed}).status_code == 200
    response = api.post(
        f"/api/experiments/{experiment['id']}/promote/", {"name": "recs", "training_params": {"epochs": 8}}
    )
    assert response.status_code == 201, response.content
    run = response.json()
    assert (run["kind"], run["name"], run["run_number"], run["status"]) == ("training", "recs", 1, "pending")
    assert run["source_experiment"] == {
        "id": experiment["id"],
        "kind": "experiment",
        "run_number": 1,
        "name": "baseline towers",
        "display_name": "Exp #1 baseline towers",
    }
    assert run["feature_config_snapshot"] == experiment["feature_config_snapshot"] != changed
    assert run["training_params"] == {"epochs": 8, "batch_size": 128, "learning_rate": 0.05}
    assert run["split_config"] == {"sample_percent": 100.0}
    assert run["registered_model"]["name"] == "recs" and run["total_epochs"] == 8
    assert [s["status"] for s in run["stages"]] == ["pending"] * len(STAGES)  # with the Pusher

    # the same through the create endpoint, and its mistakes named
    via_create = create_run(api, project, {"name": "recs", "experiment_id": experiment["id"]})
    assert via_create["source_experiment"]["id"] == experiment["id"]
    both = api.post(
        runs_url(project),
        {"name": "recs", "experiment_id": experiment["id"], "dataset_id": experiment_body["dataset_id"]},
    )
    assert errors_by_field(both) == {"dataset_id": "give either experiment_id or the configurations, not both"}
    assert errors_by_field(api.post(runs_url(project), {"name": "recs", "experiment_id": via_create["id"]})) == {
        "experiment_id": f"no experiment {via_create['id']} in this project"
    }


# --------------------------------------------------------------------------- comparing


def test_runs_compare_side_by_side_with_configs_metrics_and_curves(api, project, run_body):
    first = cancelled(api, create_run(api, project, run_body))
    second = create_run(api, project, run_body, training_params={"epochs": 3, "batch_size": 64})
    finish(first["id"], final_metrics={"recall_at_100": 0.40, "loss": 0.9, "epochs_run": 2, "blessed": True})
    finish(second["id"], final_metrics={"recall_at_100": 0.46, "loss": 1.1, "ndcg_at_10": 0.2})
    for run_id, losses in ((first["id"], [1.4, 0.9]), (second["id"], [1.5, 1.2, 1.1])):
        for epoch, loss in enumerate(losses, start=1):
            TrainingMetricsHistory.objects.create(training_run_id=run_id, epoch=epoch, loss=loss)

    answer = api.get(f"/api/training-runs/compare/?ids={first['id']},{second['id']}").json()
    assert [run["display_name"] for run in answer["runs"]] == ["recs #1", "recs #2"]
    config = {row["field"]: row for row in answer["config"]}
    assert config["training_params.epochs"] == {"field": "training_params.epochs", "values": [2, 3], "differs": True}
    assert config["training_params.batch_size"]["differs"] is False
    assert config["model_config.model_type"]["values"] == ["retrieval", "retrieval"]
    metrics = {row["metric"]: row for row in answer["metrics"]}
    assert list(metrics) == ["loss", "ndcg_at_10", "recall_at_100"]  # quality metrics only, losses first
    assert (metrics["recall_at_100"]["values"], metrics["recall_at_100"]["best_index"]) == ([0.40, 0.46], 1)
    assert (metrics["loss"]["best_index"], metrics["loss"]["lower_is_better"]) == (0, True)
    assert metrics["ndcg_at_10"]["values"] == [None, 0.2] and metrics["ndcg_at_10"]["best_index"] is None
    assert answer["curves"]["loss"] == [
        {"run_id": first["id"], "label": "recs #1", "points": [[1, 1.4], [2, 0.9]]},
        {"run_id": second["id"], "label": "recs #2", "points": [[1, 1.5], [2, 1.2], [3, 1.1]]},
    ]
    assert set(answer["curves"]) == {"loss"}  # curves nobody recorded are left out


def test_compare_needs_two_to_ten_runs_the_user_can_see(api, project, run_body, oscar, oscars_project):
    run = create_run(api, project, run_body)
    url = "/api/training-runs/compare/?ids="
    assert errors_by_field(api.get(url + str(run["id"]))) == {"ids": "give between 2 and 10 different runs"}
    assert errors_by_field(api.get(url + f"{run['id']},{run['id']}")) == {"ids": "give between 2 and 10 different runs"}
    assert errors_by_field(api.get(url + "1,two")) == {"ids": "comma-separated run ids, e.g. 12,14"}
    other = create_run(api, project, run_body)
    assert api_client_for(oscar).get(url + f"{run['id']},{other['id']}").status_code == 404


def test_a_promoted_run_shows_its_results_against_the_experiment(api, project, experiment_body):
    experiment = create_experiment(api, project, experiment_body)
    finish(experiment["id"], final_metrics={"recall_at_10": 0.20, "recall_at_100": 0.50, "loss": 0.38, "coverage": 0.3})
    run = create_run(api, project, {"name": "recs", "experiment_id": experiment["id"]})
    finish(
        run["id"],
        final_metrics={"recall_at_10": 0.25, "recall_at_100": 0.45, "loss": 0.28, "epochs_run": 8, "reasons": ["..."]},
    )
    answer = api.get(f"/api/training-runs/{run['id']}/vs-experiment/").json()
    assert answer["experiment"]["display_name"] == "Exp #1 baseline towers"
    assert answer["sample_percent"] == {"run": 100.0, "experiment": 25}
    rows = {row["metric"]: row for row in answer["metrics"]}
    assert list(rows) == ["loss", "recall_at_10", "recall_at_100"]  # metrics both have
    assert rows["loss"]["delta"] == pytest.approx(-0.10) and rows["loss"]["improved"] is True
    assert rows["recall_at_10"]["delta"] == pytest.approx(0.05) and rows["recall_at_10"]["improved"] is True
    assert rows["recall_at_10"]["relative_delta"] == pytest.approx(0.25)
    assert rows["recall_at_100"]["improved"] is False and rows["recall_at_100"]["experiment"] == 0.50

    plain = create_run(
        api,
        project,
        {
            "name": "other",
            "dataset_id": experiment_body["dataset_id"],
            "feature_config_id": experiment_body["feature_config_id"],
            "model_config_id": experiment_body["model_config_id"],
        },
    )
    response = api.get(f"/api/training-runs/{plain['id']}/vs-experiment/")
    assert response.status_code == 404 and "not promoted from an experiment" in response.json()["error"]


def test_a_test_kpi_is_the_test_figure_of_the_experiment_best_on_eval(api, project, experiment_body, ranking):
    lucky_on_test = create_experiment(api, project, experiment_body, model_config_id=ranking["id"])
    finish(
        lucky_on_test["id"],
        final_metrics={"rmse": 0.90, "mae": 0.70},
        evaluator={"rmse": 0.60, "mae": 0.50, "holdout": "test"},
    )
    best_on_eval = create_experiment(api, project, experiment_body, model_config_id=ranking["id"])
    finish(
        best_on_eval["id"],
        final_metrics={"rmse": 0.80, "mae": 0.65},
        evaluator={"rmse": 0.85, "mae": 0.66, "holdout": "test"},
    )
    [row] = [r for r in api.get(experiments_url(project) + "best/").json() if r["model_type"] == "ranking"]
    kpis = {(k["metric"], k["split"]): k["best"] for k in row["kpis"]}
    assert (kpis[("rmse", "eval")], kpis[("rmse", "test")]) == (0.80, 0.85)  # not the lucky 0.60
    assert (kpis[("mae", "eval")], kpis[("mae", "test")]) == (0.65, 0.66)
