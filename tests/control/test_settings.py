"""Settings come from the environment, with embedded defaults that need nothing installed."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

PROBE = """
import json, django
from django.conf import settings
django.setup()
from django.db import connection
journal = None
if connection.vendor == "sqlite":  # a PostgreSQL URL in the tests points nowhere; only read it
    with connection.cursor() as cursor:
        journal = cursor.execute("PRAGMA journal_mode").fetchone()[0]
db = settings.DATABASES["default"]
print(json.dumps({
    "engine": db["ENGINE"], "name": str(db["NAME"]), "host": db.get("HOST"), "journal": journal,
    "data_dir": str(settings.DATA_DIR), "pipeline_root": settings.PIPELINE_ROOT,
    "mlflow": settings.MLFLOW_TRACKING_URI, "secret_key": settings.SECRET_KEY,
    "allowed_hosts": settings.ALLOWED_HOSTS, "debug": settings.DEBUG,
}))
"""


def run_probe(**env) -> subprocess.CompletedProcess:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "PIPELINE_ROOT", "MLFLOW_TRACKING_URI", "SECRET_KEY", "ALLOWED_HOSTS")
    }
    clean.update(env, DJANGO_SETTINGS_MODULE="ml_platform.settings")
    return subprocess.run(
        [sys.executable, "-c", PROBE], env=clean, cwd=settings.BASE_DIR, capture_output=True, text=True, check=False
    )


def probe(**env) -> dict:
    out = run_probe(**env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def refusal(**env) -> str:
    """The last line of the error a start with these variables stops on."""
    out = run_probe(**env)
    assert out.returncode != 0, out.stdout
    return out.stderr.strip().splitlines()[-1]


def test_defaults_are_self_contained_under_the_data_folder(tmp_path):
    values = probe(ML_PLATFORM_DATA_DIR=str(tmp_path))
    assert values["engine"] == "django.db.backends.sqlite3"
    assert values["name"] == str(tmp_path / "db.sqlite3")
    assert values["journal"] == "wal"
    assert values["pipeline_root"] == str(tmp_path / "pipelines")
    assert values["mlflow"] == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert values["allowed_hosts"] == ["localhost", "127.0.0.1", "[::1]"]
    assert values["debug"] is False


def test_the_secret_key_is_generated_once_into_the_data_folder(tmp_path):
    first = probe(ML_PLATFORM_DATA_DIR=str(tmp_path))["secret_key"]
    second = probe(ML_PLATFORM_DATA_DIR=str(tmp_path))["secret_key"]
    key_file = tmp_path / "secret_key"
    assert first == second == key_file.read_text()
    assert len(first) >= 50
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_environment_variables_override_the_defaults(tmp_path):
    values = probe(
        ML_PLATFORM_DATA_DIR=str(tmp_path),
        DATABASE_URL="postgres://mlp:pw@db.internal:5432/mlp",
        PIPELINE_ROOT="gs://bucket/pipelines",
        MLFLOW_TRACKING_URI="http://mlflow.internal:5000",
        SECRET_KEY="from-the-environment",
        ALLOWED_HOSTS="ml.example.com, localhost",
    )
    assert values["engine"] == "django.db.backends.postgresql"
    assert values["host"] == "db.internal"
    assert values["pipeline_root"] == "gs://bucket/pipelines"
    assert values["mlflow"] == "http://mlflow.internal:5000"
    assert values["secret_key"] == "from-the-environment"
    assert values["allowed_hosts"] == ["ml.example.com", "localhost"]
    assert not (tmp_path / "secret_key").exists()


def test_no_secret_key_file_is_tracked_by_git():
    tracked = subprocess.run(["git", "ls-files"], cwd=settings.BASE_DIR, capture_output=True, text=True).stdout
    assert "secret_key" not in tracked.split()
    assert not any(Path(p).name in ("secret_key", "demo_password") for p in tracked.split())


@pytest.mark.parametrize(
    ("value", "debug"), [("true", True), ("On", True), ("1", True), ("no", False), ("FALSE", False), ("", False)]
)
def test_a_boolean_variable_takes_the_usual_spellings(tmp_path, value, debug):
    assert probe(ML_PLATFORM_DATA_DIR=str(tmp_path), ML_PLATFORM_DEBUG=value)["debug"] is debug


def test_a_misspelt_boolean_stops_the_start_naming_the_variable(tmp_path):
    error = refusal(ML_PLATFORM_DATA_DIR=str(tmp_path), ML_PLATFORM_SECURE_COOKIES="ture")
    assert error.startswith("django.core.exceptions.ImproperlyConfigured: ML_PLATFORM_SECURE_COOKIES='ture':")


@pytest.mark.parametrize(
    ("name", "value", "wanted"),
    [
        ("MAX_CONCURRENT_RUNS", "two", "an integer"),
        ("SERVING_PORT", "8501.5", "an integer"),
        ("LOGIN_LOCKOUT_MINUTES", "15m", "a number"),
    ],
)
def test_a_number_variable_with_a_bad_value_stops_the_start_naming_it(tmp_path, name, value, wanted):
    error = refusal(ML_PLATFORM_DATA_DIR=str(tmp_path), **{name: value})
    assert error == f"django.core.exceptions.ImproperlyConfigured: {name}={value!r}: not {wanted}"
