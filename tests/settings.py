"""Settings for the test suite: the real settings, with a throwaway data folder per test process."""

import atexit
import os
import shutil
import tempfile

# One data folder (and so one database file) per test process: pytest-xdist
# workers get their own, and the child processes a test starts (the worker's
# pipelines) inherit their test process's folder through the environment.
_key = f"MLP_TEST_DATA_DIR_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
if _key not in os.environ:
    os.environ[_key] = tempfile.mkdtemp(prefix="mlp-test-")
    atexit.register(shutil.rmtree, os.environ[_key], ignore_errors=True)
os.environ["ML_PLATFORM_DATA_DIR"] = os.environ[_key]
# Files the tests use as dataset sources live outside the data folder (which no source may read), in a folder
# the tests' administrator allowed; made and removed like the data folder, by the process that made it.
if f"{_key}_SOURCES" not in os.environ:
    os.environ[f"{_key}_SOURCES"] = tempfile.mkdtemp(prefix="mlp-test-sources-")
    atexit.register(shutil.rmtree, os.environ[f"{_key}_SOURCES"], ignore_errors=True)
os.environ["DATASET_ALLOWED_ROOTS"] = os.environ[f"{_key}_SOURCES"]
# Playwright's sync API runs an event loop in the test thread; Django's
# async-safety guard would otherwise refuse ORM calls made by the tests.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

from ml_platform.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins; tests only
# Static files under their plain names, from the finders: no collectstatic before a test (the hashed names of
# production are tested on their own, in tests/control/test_static_files.py).
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}

if os.environ.get("MLP_TEST_DATABASE_URL"):
    # The suite on PostgreSQL (``make test-postgres``): one database per test process, and NAME is the test
    # database's own name so the worker's child processes (which run the pipelines) open that one too.
    import dj_database_url

    _name = f"mlp_test_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
    DATABASES["default"] = {
        **dj_database_url.parse(os.environ["MLP_TEST_DATABASE_URL"]),
        "NAME": _name,
        "TEST": {"NAME": _name},
    }
else:
    # A file, not SQLite's in-memory test database, so the worker's child
    # processes (which run the pipelines) see the same database as the tests.
    DATABASES["default"]["NAME"] = str(DATA_DIR / "test-db.sqlite3")
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test-db.sqlite3")}
