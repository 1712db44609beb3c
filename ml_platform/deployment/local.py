"""The local deployment target: versions served by the platform's own serving process.

Deploying a version makes its folder under ``SERVING_DIR/models/<name>/v<N>/``
once (hard links to the Pusher's SavedModel, the buyers lookup, ``READY``
written last), points the server's config at it and waits until the server
answers with that version; a version that fails to load is rolled back to the
entry it replaced. The process itself (settings, pid file, lock, config file)
is :mod:`ml_platform.deployment.serving_process`.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path
from urllib.parse import quote

from ml_pipeline.serving.buyers import BuyersLookupError, write_buyers_lookup
from ml_pipeline.serving.model import is_serving_model
from ml_platform.deployment.serving_process import (
    ServerProcess,
    base_url,
    config_path,
    ensure_server,
    http_json,
    load_timeout,
    log_path,
    log_tail,
    process_alive,
    read_models_config,
    read_pidfile,
    serving_dir,
    signal_reload,
    write_models_config,
)
from ml_platform.deployment.targets import DeploymentFailed, DeploymentTarget, ModelToServe, TargetStatus

READY = "READY"


def _link_or_copy(source: str, destination: str) -> None:
    try:
        os.link(source, destination)
    except OSError:  # another filesystem, or links not allowed
        shutil.copy2(source, destination)


class LocalServingTarget(DeploymentTarget):
    """Serves versions from the platform's own serving process (TF-Serving-compatible REST API)."""

    name = "local"
    label = "Local serving endpoint"

    def endpoint_url(self, serving_name: str) -> str:
        return f"{base_url()}/v1/models/{quote(serving_name, safe='')}"

    def version_dir(self, serving_name: str, version: int) -> Path:
        return serving_dir() / "models" / serving_name / f"v{version}"

    def prepare(self, model: ModelToServe) -> dict:
        """The version's folder (SavedModel hard links and buyers lookup), made once; its config entry."""
        folder = self.version_dir(model.serving_name, model.version)
        if not (folder / READY).exists():
            if not is_serving_model(model.model_path):
                raise DeploymentFailed(f"{model.model_path} is not a serving SavedModel")
            staging = folder.with_name(f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}")
            try:
                shutil.copytree(model.model_path, staging / "model", copy_function=_link_or_copy)
                try:
                    buyers = write_buyers_lookup(model.examples_path, model.buyer_features, staging / "buyers.parquet")
                except BuyersLookupError as error:
                    raise DeploymentFailed(str(error)) from None
                (staging / READY).write_text(
                    json.dumps({"run_id": model.run_id, "buyers": buyers, "source": str(model.model_path)})
                )
                shutil.rmtree(folder, ignore_errors=True)
                os.replace(staging, folder)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return {"path": str(folder / "model"), "version": model.version, "buyers": str(folder / "buyers.parquet")}

    def deploy(self, model: ModelToServe) -> TargetStatus:
        entry = self.prepare(model)
        info = ensure_server()
        config = read_models_config()
        previous = config["models"].get(model.serving_name)
        config["models"][model.serving_name] = entry
        write_models_config(config)
        signal_reload(info)
        try:
            return self._wait(info, model.serving_name, model.version)
        except DeploymentFailed:
            config = read_models_config()
            if previous is not None:
                config["models"][model.serving_name] = previous
            else:
                config["models"].pop(model.serving_name, None)
            write_models_config(config)
            signal_reload(info)
            raise

    def _wait(self, info: ServerProcess, serving_name: str, version: int) -> TargetStatus:
        deadline = time.monotonic() + load_timeout()
        while True:
            status = self.status(serving_name, info)
            if status.state == TargetStatus.AVAILABLE and status.version == version:
                return status
            if status.state == TargetStatus.FAILED and status.version == version:
                raise DeploymentFailed(f"the serving process could not load version {version}: {status.message}")
            if not process_alive(info.pid):
                raise DeploymentFailed(f"the serving process stopped: {log_tail(5) or 'no output'}")
            if time.monotonic() > deadline:
                raise DeploymentFailed(
                    f"version {version} did not become available within "
                    f"{load_timeout():.0f}s (state: {status.state}); see {log_path()}"
                )
            time.sleep(0.2)

    def undeploy(self, serving_name: str) -> TargetStatus:
        config = read_models_config()
        config["models"].pop(serving_name, None)
        write_models_config(config)
        info = read_pidfile()
        if info is None or not process_alive(info.pid):
            return TargetStatus(TargetStatus.ABSENT, message="the serving process is not running")
        signal_reload(info)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = self.status(serving_name, info)
            if status.state in (TargetStatus.ABSENT, TargetStatus.UNREACHABLE):
                return TargetStatus(TargetStatus.ABSENT)
            time.sleep(0.1)
        raise DeploymentFailed(
            f"the serving process still serves '{serving_name}' 30s after it was removed "
            f"from {config_path()}; see {log_path()}"
        )

    def status(self, serving_name: str, info: ServerProcess | None = None) -> TargetStatus:
        url = self.endpoint_url(serving_name)
        info = info or read_pidfile()
        if info is None or not process_alive(info.pid):
            return TargetStatus(
                TargetStatus.UNREACHABLE, endpoint_url=url, message="the serving process is not running"
            )
        answer = http_json("GET", f"{info.url}/v1/models/{quote(serving_name, safe='')}", timeout=2.0)
        if answer is None:
            return TargetStatus(
                TargetStatus.UNREACHABLE, endpoint_url=url, message="the serving process does not answer"
            )
        code, body = answer
        if code == 404:
            return TargetStatus(TargetStatus.ABSENT, endpoint_url=url)
        statuses = body.get("model_version_status") or []
        by_state = {s.get("state"): s for s in statuses}
        if "AVAILABLE" in by_state and "LOADING" not in by_state and "END" not in by_state:
            return TargetStatus(TargetStatus.AVAILABLE, int(by_state["AVAILABLE"]["version"]), url)
        if "END" in by_state:
            failed = by_state["END"]
            return TargetStatus(
                TargetStatus.FAILED, int(failed["version"]), url, (failed.get("status") or {}).get("error_message", "")
            )
        if "LOADING" in by_state:
            return TargetStatus(TargetStatus.LOADING, int(by_state["LOADING"]["version"]), url)
        return TargetStatus(TargetStatus.UNREACHABLE, endpoint_url=url, message=f"unexpected answer {body}")

    def forget(self, serving_name: str, keep_versions: set[int]) -> None:
        folder = serving_dir() / "models" / serving_name
        if not folder.is_dir():
            return
        for version_dir in folder.iterdir():
            if version_dir.name not in {f"v{v}" for v in keep_versions}:
                shutil.rmtree(version_dir, ignore_errors=True)
        if not keep_versions:
            shutil.rmtree(folder, ignore_errors=True)
