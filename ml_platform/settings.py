"""Django settings, read from the environment with embedded defaults.

Every setting a deployment may want to change is an environment variable;
the README's "Configuration" table lists them. Without any of them set the
platform runs self-contained: SQLite (WAL) and MLflow's SQLite store under
the data folder, and a secret key generated there on first start.
"""

import ipaddress
import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONCE, NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


# A typed variable with a value not of its type stops the start, naming the variable: "ture" is not false.
# Empty is the same as unset (the default).
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value not in _TRUE | _FALSE:
        raise ImproperlyConfigured(f"{name}={os.environ[name]!r}: use true or false (also 1/0, yes/no, on/off)")
    return value in _TRUE


def _env_number(name: str, default: float, kind: type[int] | type[float]):
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return kind(value)
    except ValueError:
        wanted = "an integer" if kind is int else "a number"
        raise ImproperlyConfigured(f"{name}={os.environ[name]!r}: not {wanted}") from None


def _env_int(name: str, default: int) -> int:
    return _env_number(name, default, int)


def _env_float(name: str, default: float) -> float:
    return _env_number(name, default, float)


def _env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DATA_DIR = Path(os.environ.get("ML_PLATFORM_DATA_DIR", BASE_DIR / "var")).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _load_or_create_secret_key(data_dir: Path) -> str:
    """Return SECRET_KEY from the environment, or from a file made on first start.

    The key is never committed: it is generated into the (git-ignored) data
    folder with owner-only permissions and reused on every later start.
    """
    from_env = os.environ.get("SECRET_KEY")
    if from_env:
        return from_env
    key_file = data_dir / "secret_key"
    if key_file.exists():
        return key_file.read_text().strip()
    key = secrets.token_urlsafe(50)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key


SECRET_KEY = _load_or_create_secret_key(DATA_DIR)
DEBUG = _env_bool("ML_PLATFORM_DEBUG", False)
ALLOWED_HOSTS = _env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = _env_list("CSRF_TRUSTED_ORIGINS", "")

PIPELINE_ROOT = os.environ.get("PIPELINE_ROOT", str(DATA_DIR / "pipelines"))
MLFLOW_TRACKING_URI = os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{DATA_DIR / 'mlflow.db'}")
MLFLOW_ARTIFACT_ROOT = os.environ.get("MLFLOW_ARTIFACT_ROOT", (DATA_DIR / "mlflow-artifacts").as_uri())
# MLflow's own web UI (``mlflow ui``/``mlflow server``), e.g. http://localhost:5000: the view modal links a run
# to it. Empty (the default): no link, as no UI is known to serve the tracking store.
MLFLOW_UI_URL = os.environ.get("MLFLOW_UI_URL", "")
# Folders whose files every project's dataset sources may read (colon-separated), besides each project's own
# uploads. The data folder is never readable as a source, even inside one of these (ml_platform/datasets/access.py).
DATASET_ALLOWED_ROOTS = [p for p in os.environ.get("DATASET_ALLOWED_ROOTS", "").split(":") if p]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "axes",
    "csp",
    "ninja",  # serves Swagger UI for /api/docs from its own static files, not a CDN the CSP would block
    "ml_platform.core",
    "ml_platform.accounts",
    "ml_platform.projects",
    "ml_platform.datasets",
    "ml_platform.modeling",
    "ml_platform.registry",
    "ml_platform.training",
    "ml_platform.experiments",
    "ml_platform.deployment",
    "ml_platform.runners",
    "ml_platform.schedules",
    "ml_platform.audit",
]

MIDDLEWARE = [
    "ml_platform.core.middleware.RequestIdMiddleware",  # first: every answer and log line of a request has its id
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "ml_platform.core.middleware.LoginRequiredMiddleware",
    "ml_platform.core.middleware.ApiErrorShapeMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a locked-out login into the lockout page
]

ROOT_URLCONF = "ml_platform.urls"
WSGI_APPLICATION = "ml_platform.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "ml_platform" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{DATA_DIR / 'db.sqlite3'}"),
        conn_max_age=_env_int("DATABASE_CONN_MAX_AGE", 0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web server read while the worker writes; IMMEDIATE
    # transactions take the write lock up front instead of failing with
    # "database is locked" on upgrade from a read lock.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=10000;",
            "transaction_mode": "IMMEDIATE",
        }
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# django-axes counts failed logins per (username, address) and refuses that pair for a while after too many,
# through its backend (first, so a locked-out pair never reaches the password check) and a request in
# authenticate(): the login form passes one. The address is the one the audit trail records.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = _env_int("LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=_env_float("LOGIN_LOCKOUT_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "ml_platform.audit.services.client_address"
AXES_LOCKOUT_CALLABLE = "ml_platform.accounts.views.locked_out"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", DATA_DIR / "staticfiles"))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "ml_platform" / "static"]
# htmx, Chart.js and D3's selection module come from npm (package.json) as ES modules; only the files the pages
# load are served (ml_platform/core/frontend.py).
NODE_MODULES_DIR = BASE_DIR / "node_modules"
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    "ml_platform.core.staticfiles.NodeModulesFinder",
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Hashed names from collectstatic's manifest (`make up` runs it); in debug mode the plain names, from the
    # finders. The tests serve plain names from the finders (tests/settings.py).
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
# Files not collected yet are served from the finders too (the hashed ones only ever from STATIC_ROOT).
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

MEDIA_ROOT = DATA_DIR / "media"
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # the page's JS reads it to send X-CSRFToken
SESSION_COOKIE_SECURE = _env_bool("ML_PLATFORM_SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

# Security headers. The pages load only the platform's own scripts and styles (no inline script, event
# handler or style attribute anywhere: the CSP refuses them), and no other site may frame them. The one inline
# script is base.html's import map (browsers read it only inline), allowed by a nonce new on every answer;
# django-csp adds the nonce to script-src only on answers whose template used it.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],  # Swagger UI's icons are data: URLs
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CONTENT_TYPE_NOSNIFF = True
# HSTS only over HTTPS (the secure-cookie switch): browsers then refuse plain HTTP to this host for a year.
SECURE_HSTS_SECONDS = 365 * 24 * 3600 if SESSION_COOKIE_SECURE else 0
# Reverse proxies whose X-Forwarded-For is believed (addresses or networks, comma-separated). Without any the
# client's address (in the audit trail) is REMOTE_ADDR: anyone can send the header. A bad entry fails at start.
TRUSTED_PROXIES = [ipaddress.ip_network(p, strict=False) for p in _env_list("ML_PLATFORM_TRUSTED_PROXIES", "")]


LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

NINJA_PAGINATION_PER_PAGE = 50

# Training runs: the worker's limits, and the GPU price table for cost (USD per GPU-hour).
MAX_CONCURRENT_RUNS = _env_int("MAX_CONCURRENT_RUNS", 1)
RUN_STALE_AFTER_SECONDS = _env_float("RUN_STALE_AFTER_SECONDS", 60)
RUN_MAX_ATTEMPTS = _env_int("RUN_MAX_ATTEMPTS", 2)
GPU_PRICES_PER_HOUR = {"T4": 0.35, "L4": 0.71, "V100": 2.48, "A100": 2.93, "H100": 9.80}

# Training schedules (ml_platform/schedules): who fires them (embedded: the worker's tick; see backends.py), and
# how their e-mail notifications go out (the console, in the worker's log, unless a real backend is set up
# with Django's EMAIL_HOST... settings).
SCHEDULER_BACKEND = os.environ.get("SCHEDULER_BACKEND", "").strip() or "embedded"
if SCHEDULER_BACKEND not in ("embedded",):
    raise ImproperlyConfigured(f"SCHEDULER_BACKEND={SCHEDULER_BACKEND!r}: use embedded")
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "").strip() or "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "").strip() or "ml-platform@localhost"
# Hosts a notification webhook may reach although they resolve to a loopback, private, link-local or other
# non-public address (ml_platform/schedules/outbound.py refuses those otherwise): comma-separated, empty by default.
NOTIFICATION_ALLOWED_HOSTS = _env_list("NOTIFICATION_ALLOWED_HOSTS", "")

# Remote runners (ml_platform/runners): Vertex AI Pipelines and any Kubeflow Pipelines v2 server. Empty values
# are "not configured": a runner is offered only when what it needs is set (ml_platform/runners/config.py
# names what is missing). The pipeline stages and data run in the data region, the Trainer's GPU custom job
# in the GPU training region (empty: the data region).
DEFAULT_RUNNER = os.environ.get("DEFAULT_RUNNER", "local").strip() or "local"
if DEFAULT_RUNNER not in ("local", "kubeflow", "vertex"):
    raise ImproperlyConfigured(f"DEFAULT_RUNNER={DEFAULT_RUNNER!r}: use local, kubeflow or vertex")
CLOUD_PROJECT_ID = os.environ.get("CLOUD_PROJECT_ID", "")
CLOUD_DATA_REGION = os.environ.get("CLOUD_DATA_REGION", "")
CLOUD_GPU_TRAINING_REGION = os.environ.get("CLOUD_GPU_TRAINING_REGION", "")
CLOUD_STAGING_BUCKET = os.environ.get("CLOUD_STAGING_BUCKET", "")  # gs://bucket[/prefix]
CLOUD_SERVICE_ACCOUNT = os.environ.get("CLOUD_SERVICE_ACCOUNT", "")
PIPELINE_IMAGE = os.environ.get("PIPELINE_IMAGE", "")
PIPELINE_GPU_IMAGE = os.environ.get("PIPELINE_GPU_IMAGE", "")  # empty: PIPELINE_IMAGE
REMOTE_ARTIFACT_ROOT = os.environ.get("REMOTE_ARTIFACT_ROOT", "")  # empty on Vertex: the bucket's /gcs mount
KUBEFLOW_HOST = os.environ.get("KUBEFLOW_HOST", "")
KUBEFLOW_TOKEN = os.environ.get("KUBEFLOW_TOKEN", "")
KUBEFLOW_NAMESPACE = os.environ.get("KUBEFLOW_NAMESPACE", "")
KUBEFLOW_PIPELINE_ROOT = os.environ.get("KUBEFLOW_PIPELINE_ROOT", "")
PLATFORM_URL = os.environ.get("PLATFORM_URL", "")  # how a remote runner reaches this platform's webhooks
GPU_FALLBACK_ORDER = os.environ.get("GPU_FALLBACK_ORDER", "4xT4,4xV100,4xL4,2xT4")
REMOTE_POLL_SECONDS = _env_float("REMOTE_POLL_SECONDS", 30)
# Cloud deployment targets (ml_platform/deployment/cloud.py): a Vertex AI endpoint, Cloud Run with TF Serving.
VERTEX_SERVING_IMAGE = os.environ.get(
    "VERTEX_SERVING_IMAGE", "europe-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-17:latest"
)
VERTEX_ENDPOINT_MACHINE_TYPE = os.environ.get("VERTEX_ENDPOINT_MACHINE_TYPE", "n1-standard-4")
VERTEX_ENDPOINT_MIN_REPLICAS = _env_int("VERTEX_ENDPOINT_MIN_REPLICAS", 1)
VERTEX_ENDPOINT_MAX_REPLICAS = _env_int("VERTEX_ENDPOINT_MAX_REPLICAS", 2)
CLOUD_RUN_SERVING_IMAGE = os.environ.get("CLOUD_RUN_SERVING_IMAGE", "docker.io/tensorflow/serving:2.20.0")
CLOUD_RUN_MIN_INSTANCES = _env_int("CLOUD_RUN_MIN_INSTANCES", 0)
CLOUD_RUN_MAX_INSTANCES = _env_int("CLOUD_RUN_MAX_INSTANCES", 3)

# The local serving endpoint (ml_pipeline.serving.server), started by the platform on first deploy.
SERVING_HOST = os.environ.get("SERVING_HOST", "127.0.0.1")
SERVING_PORT = _env_int("SERVING_PORT", 8501)
SERVING_URL = os.environ.get("SERVING_URL", "")  # empty: http://SERVING_HOST:SERVING_PORT
SERVING_DIR = os.environ.get("SERVING_DIR", str(DATA_DIR / "serving"))
SERVING_LOAD_TIMEOUT = _env_float("SERVING_LOAD_TIMEOUT", 180)
SERVING_TOKEN = os.environ.get("SERVING_TOKEN", "")  # empty: the endpoint authenticates nobody (loopback only)
SERVING_MAX_BODY_BYTES = _env_int("SERVING_MAX_BODY_BYTES", 4 * 1024 * 1024)
SERVING_MAX_INSTANCES = _env_int("SERVING_MAX_INSTANCES", 1000)
