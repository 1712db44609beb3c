"""Run numbers: one counter per project and kind, taken atomically, so concurrent creators never clash.

The concurrent tests run real threads, each with its own database
connection, on SQLite (WAL, IMMEDIATE transactions) and on PostgreSQL.
"""

import importlib
import threading

import pytest
from django.apps import apps
from django.db import connections

from ml_platform.training import services
from ml_platform.training.models import RunNumberCounter, TrainingRun
from tests.helpers import queue_run

pytestmark = pytest.mark.django_db(transaction=True)


def at_once(count: int, create) -> tuple[list, list]:
    """Call ``create`` from ``count`` threads released together; what they made and what they raised."""
    barrier, made, errors = threading.Barrier(count), [], []

    def one():
        try:
            barrier.wait()
            made.append(create())
        except Exception as error:  # noqa: BLE001 - the test reports every failure
            errors.append(repr(error))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return made, errors


def experiment(project, user, catalog):
    dataset, features, model = catalog
    return services.create_experiment(
        project,
        user,
        dataset_id=dataset.id,
        feature_config_id=features.id,
        model_config_id=model.id,
        training_params={"epochs": 1},
    )


def test_concurrent_creates_get_distinct_numbers(project, olivia, catalog):
    made, errors = at_once(40, lambda: experiment(project, olivia, catalog))
    assert errors == []
    assert sorted(run.run_number for run in made) == list(range(1, 41))
    assert sorted(TrainingRun.objects.filter(kind=TrainingRun.EXPERIMENT).values_list("run_number", flat=True)) == list(
        range(1, 41)
    )


def test_concurrent_reruns_get_distinct_numbers(project, olivia, catalog):
    source = queue_run(project, olivia, catalog)
    TrainingRun.objects.filter(pk=source.pk).update(status=TrainingRun.COMPLETED)
    source.refresh_from_db()
    made, errors = at_once(20, lambda: services.rerun(source, olivia, from_stage="Trainer"))
    assert errors == []
    assert sorted(run.run_number for run in made) == list(range(2, 22))


def test_training_runs_and_experiments_are_numbered_apart(project, olivia, catalog):
    numbers = [
        (run.kind, run.run_number)
        for run in (
            queue_run(project, olivia, catalog),
            experiment(project, olivia, catalog),
            experiment(project, olivia, catalog),
            queue_run(project, olivia, catalog),
        )
    ]
    assert numbers == [("training", 1), ("experiment", 1), ("experiment", 2), ("training", 2)]


def test_a_deleted_runs_number_is_not_given_again(project, olivia, catalog):
    experiment(project, olivia, catalog)
    second = experiment(project, olivia, catalog)
    TrainingRun.objects.filter(pk=second.pk).update(status=TrainingRun.FAILED)
    second.refresh_from_db()
    services.delete_run(second)
    assert experiment(project, olivia, catalog).run_number == 3


def test_a_number_taken_without_the_counter_is_stepped_over(project, olivia, catalog):
    first = experiment(project, olivia, catalog)
    loaded = TrainingRun.objects.get(pk=first.pk)
    loaded.pk, loaded.run_number = None, 7  # a bulk load or the admin, past the counter
    loaded.save()
    assert experiment(project, olivia, catalog).run_number == 8


def test_the_data_migration_starts_counters_at_the_highest_numbers(project, olivia, catalog):
    queue_run(project, olivia, catalog)
    for _ in range(3):
        experiment(project, olivia, catalog)
    RunNumberCounter.objects.all().delete()
    migration = importlib.import_module("ml_platform.training.migrations.0006_initial_run_counters")
    migration.initialise(apps, None)
    assert dict(RunNumberCounter.objects.filter(project=project).values_list("kind", "last")) == {
        "training": 1,
        "experiment": 3,
    }
