"""The local serving process: one server the platform starts, fed by a config file it rewrites.

The deployment target that uses it is :mod:`ml_platform.deployment.local`.

Everything lives under ``SERVING_DIR`` (default ``<DATA_DIR>/serving``)::

    models.json                       the server's config: {"models": {name: {path, version, buyers}}}
    server.pid                        JSON: pid, host, port, config, started_at of the running server
    server.log                        the server's stdout and stderr (rotated to server.log.1 at 20 MB)
    .lock                             serialises deploy/undeploy/rollback across web processes
    models/<name>/v<N>/model/         the version's SavedModel (hard links to the Pusher's output)
    models/<name>/v<N>/buyers.parquet the buyers lookup for GET /recommend
    models/<name>/v<N>/READY          written last: the folder is complete

The server (``python -m ml_pipeline.serving.server``) runs in a session of
its own, so it outlives the process that started it (the worker's child that
carries a deploy out); the pid file finds it again. ``manage.py
run_platform`` stops it when the platform stops, and its next start brings
back what ``models.json`` names. ``manage.py serving
start|stop|restart|status`` manages it by hand (after a reboot, ``start``
brings back everything ``models.json`` names).

Settings (read when used, so tests may override them): ``SERVING_HOST``
(default 127.0.0.1), ``SERVING_PORT`` (8501), ``SERVING_URL`` (the base URL
shown to users; default http://host:port), ``SERVING_DIR``,
``SERVING_LOAD_TIMEOUT`` (seconds a version may take to load, 180),
``SERVING_TOKEN`` (the bearer token the server requires; empty: none, so keep
it on loopback), ``SERVING_MAX_BODY_BYTES`` and ``SERVING_MAX_INSTANCES``
(what one request may carry). Each is also read from the environment variable
of that name. The token and limits reach the server through its environment
(never its command line), and every call the platform makes to it sends the
token; a running server started with another token or other limits is
restarted by :func:`ensure_server`.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path

from django.conf import settings

from ml_pipeline.serving.requests import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_INSTANCES, ServerOptions
from ml_platform.deployment.targets import DeploymentFailed

log = logging.getLogger(__name__)

SERVER_MODULE = "ml_pipeline.serving.server"
# The module's name before it moved into the serving package: a server started then is still recognised (and so
# stopped or restarted) after an upgrade.
FORMER_SERVER_MODULE = "ml_pipeline.serving_server"
LOG_ROTATE_BYTES = 20 * 1024 * 1024

_CHILDREN: dict[int, subprocess.Popen] = {}  # servers this process started, reaped when they stop


# -- settings --------------------------------------------------------------------------
def _setting(name: str, default):
    value = getattr(settings, name, None)
    if value is None:
        value = os.environ.get(name)
    return default if value in (None, "") else value


def serving_host() -> str:
    return str(_setting("SERVING_HOST", "127.0.0.1"))


def serving_port() -> int:
    return int(_setting("SERVING_PORT", 8501))


def load_timeout() -> float:
    return float(_setting("SERVING_LOAD_TIMEOUT", 180))


def serving_token() -> str:
    return str(_setting("SERVING_TOKEN", "")).strip()


def server_options() -> ServerOptions:
    """The limits and token the server is started with (``SERVING_MAX_BODY_BYTES``, ``SERVING_MAX_INSTANCES``,
    ``SERVING_TOKEN``)."""
    return ServerOptions(
        max_body_bytes=int(_setting("SERVING_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)),
        max_instances=int(_setting("SERVING_MAX_INSTANCES", DEFAULT_MAX_INSTANCES)),
        token=serving_token(),
    )


def _auth_headers() -> dict[str, str]:
    token = serving_token()
    return {"Authorization": f"Bearer {token}"} if token else {}


def serving_dir() -> Path:
    path = Path(_setting("SERVING_DIR", Path(settings.DATA_DIR) / "serving"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def config_path() -> Path:
    return serving_dir() / "models.json"


def pid_path() -> Path:
    return serving_dir() / "server.pid"


def log_path() -> Path:
    return serving_dir() / "server.log"


def _client_host(host: str) -> str:
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def internal_url(host: str | None = None, port: int | None = None) -> str:
    """Where the platform itself reaches the server."""
    host = _client_host(serving_host() if host is None else host)
    return f"http://{_url_host(host)}:{serving_port() if port is None else port}"


def base_url() -> str:
    """The endpoint's base URL as users see it (``SERVING_URL``, else the internal one)."""
    return str(_setting("SERVING_URL", "") or internal_url()).rstrip("/")


# -- the lock --------------------------------------------------------------------------
@contextmanager
def serving_lock(timeout: float | None = None):
    """One deploy, undeploy or rollback at a time, across every web and worker process on this host."""
    timeout = load_timeout() + 60 if timeout is None else timeout
    handle = open(serving_dir() / ".lock", "a+")  # noqa: SIM115 (held for the lock; closed in the finally below)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise DeploymentBusy("another deployment is in progress; try again when it has finished") from None
                time.sleep(0.1)
        yield
    finally:
        handle.close()  # releases the lock


class DeploymentBusy(DeploymentFailed):
    pass


# -- the config file ---------------------------------------------------------------------
def read_models_config() -> dict:
    try:
        data = json.loads(config_path().read_text())
    except FileNotFoundError:
        return {"models": {}}
    except ValueError as error:
        raise DeploymentFailed(f"{config_path()} is not valid JSON ({error}); fix or remove it") from None
    data.setdefault("models", {})
    return data


def write_models_config(config: dict) -> None:
    """Atomically (a temporary file, fsync, rename): the server never reads half a file."""
    path = config_path()
    staging = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    with open(staging, "w") as handle:
        json.dump(config, handle, indent=2, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(staging, path)


# -- the process -------------------------------------------------------------------------
@dataclass
class ServerProcess:
    pid: int
    host: str
    port: int
    config: str
    started_at: float

    @property
    def url(self) -> str:
        return internal_url(self.host, self.port)


def read_pidfile() -> ServerProcess | None:
    try:
        return ServerProcess(**json.loads(pid_path().read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return None


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a running serving server (not a zombie, not a recycled pid)."""
    import psutil

    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        _CHILDREN.pop(pid, None)
        return False
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        command = " ".join(process.cmdline())
        return SERVER_MODULE in command or FORMER_SERVER_MODULE in command
    except psutil.Error:
        return False


def http_json(method: str, url: str, body: dict | None = None, timeout: float = 2.0) -> tuple[int, dict] | None:
    """(status, JSON body) of a request to the server; None when nothing answers."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {**_auth_headers(), **({"Content-Type": "application/json"} if data else {})}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        try:
            return error.code, json.loads(error.read() or b"{}")
        except ValueError:
            return error.code, {}
    except (urllib.error.URLError, OSError, ValueError):
        return None


def healthz(host: str, port: int, timeout: float = 1.0) -> dict | None:
    """The server's ``/healthz`` (with ``pid``, ``models``, ``options`` when our token is accepted)."""
    answer = http_json("GET", f"{internal_url(host, port)}/healthz", timeout=timeout)
    return answer[1] if answer and answer[0] == 200 else None


def _configured_as_now(answer: dict) -> bool:
    """Whether a server's ``/healthz`` shows the token and limits the settings name now."""
    return answer.get("options") == server_options().public()


def log_tail(lines: int = 20) -> str:
    try:
        text = log_path().read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _rotate_log() -> None:
    path = log_path()
    if path.exists() and path.stat().st_size > LOG_ROTATE_BYTES:
        os.replace(path, path.with_name(path.name + ".1"))


def start_server(wait: float = 60.0) -> ServerProcess:
    """Start the serving process on ``SERVING_HOST:SERVING_PORT``; returns once ``/healthz`` answers."""
    host, port = serving_host(), serving_port()
    other = healthz(host, port, timeout=0.5)
    if other is not None:
        raise DeploymentFailed(
            f"port {port} is already used by another serving process (pid {other.get('pid', '?')}, "
            f"config {other.get('config', '?')}); stop it or set SERVING_PORT"
        )
    if not config_path().exists():
        write_models_config({"models": {}})
    _rotate_log()
    options = server_options()
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
        "PYTHONUNBUFFERED": "1",
        "SERVING_TOKEN": options.token,
        "SERVING_MAX_BODY_BYTES": str(options.max_body_bytes),
        "SERVING_MAX_INSTANCES": str(options.max_instances),
    }
    command = [sys.executable, "-m", SERVER_MODULE, "--config", str(config_path()), "--host", host, "--port", str(port)]
    with open(log_path(), "ab") as output:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=str(settings.BASE_DIR),
            env=env,
            start_new_session=True,
            close_fds=True,
        )
    _CHILDREN[process.pid] = process
    info = ServerProcess(pid=process.pid, host=host, port=port, config=str(config_path()), started_at=time.time())
    pid_path().write_text(json.dumps(asdict(info)))
    log.info("started the serving process (pid %s) on %s", process.pid, info.url)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if process.poll() is not None:
            _CHILDREN.pop(process.pid, None)
            pid_path().unlink(missing_ok=True)
            raise DeploymentFailed(
                f"the serving process exited at start (code {process.returncode}): {log_tail(5) or 'no output'}"
            )
        answer = healthz(host, port, timeout=0.5)
        if answer is not None and answer.get("pid") == process.pid:
            return info
        time.sleep(0.1)
    stop_server()
    raise DeploymentFailed(f"the serving process did not answer within {wait:.0f}s; see {log_path()}")


def ensure_server() -> ServerProcess:
    """The running server (started when it is not running, restarted when the host or port changed)."""
    info = read_pidfile()
    if info is not None and process_alive(info.pid):
        if (info.host, info.port, info.config) == (serving_host(), serving_port(), str(config_path())):
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # it may still be starting
                answer = healthz(info.host, info.port, timeout=0.5)
                if answer is not None:
                    if answer.get("pid") == info.pid and _configured_as_now(answer):
                        return info
                    log.info(
                        "the serving process (pid %s) does not answer as configured (another token or other "
                        "limits, or another process); restarting it",
                        info.pid,
                    )
                    break
                if not process_alive(info.pid):
                    break
                time.sleep(0.1)
        stop_server()
    return start_server()


def stop_server(timeout: float = 10.0) -> bool:
    """Stop the server the pid file names (SIGTERM, SIGKILL after ``timeout``); True when one was running."""
    info = read_pidfile()
    running = info is not None and process_alive(info.pid)
    if running:
        with suppress(ProcessLookupError):
            os.kill(info.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while process_alive(info.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if process_alive(info.pid):
            log.warning("the serving process (pid %s) ignored SIGTERM; killing it", info.pid)
            with suppress(ProcessLookupError):
                os.kill(info.pid, signal.SIGKILL)
        child = _CHILDREN.pop(info.pid, None)
        if child is not None:
            child.wait(timeout=timeout)
        log.info("stopped the serving process (pid %s)", info.pid)
    pid_path().unlink(missing_ok=True)
    return running


def signal_reload(info: ServerProcess) -> None:
    """Have the server re-read its config now rather than at its next poll."""
    with suppress(ProcessLookupError):
        os.kill(info.pid, signal.SIGHUP)


def server_status() -> dict:
    info = read_pidfile()
    running = info is not None and process_alive(info.pid)
    health = healthz(info.host, info.port) if running else None
    return {
        "running": running,
        "answering": health is not None,
        "pid": info.pid if running else None,
        "url": info.url if running else internal_url(),
        "config": str(config_path()),
        "log": str(log_path()),
        "models": (health or {}).get("models", {}),
    }
