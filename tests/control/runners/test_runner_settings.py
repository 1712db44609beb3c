"""The runner settings are read at start: an unknown default runner stops it, naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys

from django.conf import settings


def start_with(tmp_path, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "ml_platform.settings",
            "ML_PLATFORM_DATA_DIR": str(tmp_path),
            **env,
        },
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        check=False,
    )


def test_an_unknown_default_runner_stops_the_start_naming_the_variable(tmp_path):
    done = start_with(tmp_path, DEFAULT_RUNNER="airflow")
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1] == (
        "django.core.exceptions.ImproperlyConfigured: DEFAULT_RUNNER='airflow': use local, kubeflow or vertex"
    )


def test_a_bad_poll_interval_stops_the_start_naming_the_variable(tmp_path):
    done = start_with(tmp_path, REMOTE_POLL_SECONDS="half a minute")
    assert "REMOTE_POLL_SECONDS='half a minute': not a number" in done.stderr


def check(tmp_path, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "ml_platform.settings",
            "ML_PLATFORM_DATA_DIR": str(tmp_path),
            **env,
        },
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        check=False,
    )


def test_a_default_runner_that_is_not_configured_fails_the_checks_naming_what_it_lacks(tmp_path):
    done = check(tmp_path, DEFAULT_RUNNER="kubeflow", KUBEFLOW_HOST="https://kfp.acme.example")
    assert done.returncode != 0
    assert (
        "runners.E001) DEFAULT_RUNNER: the kubeflow runner is not configured: set KUBEFLOW_PIPELINE_ROOT, "
        "REMOTE_ARTIFACT_ROOT, PIPELINE_IMAGE, PLATFORM_URL" in done.stderr
    )


def test_a_fallback_order_that_is_not_one_fails_the_checks(tmp_path):
    done = check(tmp_path, GPU_FALLBACK_ORDER="4xT4,3xT4")
    assert "runners.E002) GPU_FALLBACK_ORDER: T4 GPUs come 1, 2, 4 to a machine, not 3" in done.stderr
