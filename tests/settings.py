"""Settings for the test suite: the real settings, with a throwaway data folder per test process."""

import os
import tempfile

os.environ.setdefault("ML_PLATFORM_DATA_DIR", tempfile.mkdtemp(prefix="mlp-test-"))
# Playwright's sync API runs an event loop in the test thread; Django's
# async-safety guard would otherwise refuse ORM calls made by the tests.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

from ml_platform.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins; tests only
