"""Settings for the test suite: the real settings, with a throwaway data folder per test process."""

import atexit
import os
import shutil
import tempfile

if "ML_PLATFORM_DATA_DIR" not in os.environ:
    _data_dir = tempfile.mkdtemp(prefix="mlp-test-")
    os.environ["ML_PLATFORM_DATA_DIR"] = _data_dir
    atexit.register(shutil.rmtree, _data_dir, ignore_errors=True)
# Playwright's sync API runs an event loop in the test thread; Django's
# async-safety guard would otherwise refuse ORM calls made by the tests.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

from ml_platform.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins; tests only

# A file, not SQLite's in-memory test database, so the worker's child
# processes (which run the pipelines) see the same database as the tests.
DATABASES["default"]["NAME"] = str(DATA_DIR / "test-db.sqlite3")
DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test-db.sqlite3")}
