"""The models the server's config file names, loaded and kept in step with the file.

The config (``{"models": {name: {"path", "version", "buyers"}}}``) is re-read
whenever it changes; a changed entry is loaded next to the one it replaces,
which keeps answering until the new one is ready and is then swapped in; a
removed entry stops answering at once (see :mod:`ml_pipeline.serving.server`).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ml_pipeline.serving.buyers import BuyerLookup

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
AVAILABLE, LOADING, END = "AVAILABLE", "LOADING", "END"  # TF Serving's version states


@dataclass(frozen=True)
class ModelEntry:
    """One model of the config file."""

    name: str
    path: str
    version: int
    buyers: str | None = None

    @classmethod
    def from_config(cls, name: str, raw: Any) -> ModelEntry:
        if not isinstance(raw, dict) or not raw.get("path"):
            raise ValueError(f"models.{name}: needs a 'path' (the SavedModel folder)")
        try:
            version = int(raw.get("version", 1))
        except (TypeError, ValueError):
            raise ValueError(f"models.{name}.version: must be an integer, got {raw.get('version')!r}") from None
        buyers = raw.get("buyers")
        return cls(name=name, path=str(raw["path"]), version=version, buyers=str(buyers) if buyers else None)


def read_config(path: Path) -> dict[str, ModelEntry]:
    """The models of a config file (``{"models": {name: {path, version, buyers}}}``)."""
    data = json.loads(Path(path).read_text())
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict):
        raise ValueError("the config needs a 'models' object: {\"models\": {name: {path, version, buyers}}}")
    return {str(name): ModelEntry.from_config(str(name), raw) for name, raw in models.items()}


class ServedModel:
    """A loaded version: its :class:`~ml_pipeline.serving.model.Recommender` and buyers lookup."""

    def __init__(self, entry: ModelEntry):
        from ml_pipeline.serving.model import Recommender

        started = time.monotonic()
        self.entry = entry
        self.recommender = Recommender(entry.path)
        self.buyers = BuyerLookup(entry.buyers) if entry.buyers else None
        self.load_seconds = time.monotonic() - started

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def version(self) -> int:
        return self.entry.version


class ModelStore:
    """Loads the config's models and keeps them in step with the file.

    One watcher thread (:meth:`watch`) does every load, one after another; a
    request only ever takes a reference to a loaded model under the lock, so a
    swap never disturbs a request in flight.
    """

    def __init__(self, config_path: str | Path, loader=ServedModel):
        self.config_path = Path(config_path)
        self._loader = loader
        self._lock = threading.Lock()
        self._wanted: dict[str, ModelEntry] = {}
        self._active: dict[str, ServedModel] = {}
        self._loading: dict[str, ModelEntry] = {}
        self._failed: dict[str, tuple[ModelEntry, str]] = {}
        self._stamp: tuple | None = None
        self.config_error: str | None = None
        self._wake = threading.Event()

    # the watcher --------------------------------------------------------------------
    def _file_stamp(self) -> tuple | None:
        try:
            stat = self.config_path.stat()
        except FileNotFoundError:
            return None
        return stat.st_ino, stat.st_size, stat.st_mtime_ns

    def wake(self) -> None:
        """Check the config now (``SIGHUP``)."""
        self._wake.set()

    def poll(self, force: bool = False) -> bool:
        """Re-read the config if it changed; load what changed. True when it was re-read."""
        stamp = self._file_stamp()
        if stamp == self._stamp and not force:
            return False
        self._stamp = stamp
        if stamp is None:
            self.config_error = f"no config file at {self.config_path}"
            log.warning("%s; serving nothing", self.config_error)
            self._apply({})
            return True
        try:
            wanted = read_config(self.config_path)
        except (OSError, ValueError) as error:  # keep serving what we have
            self.config_error = f"{self.config_path}: {error}"
            log.error("config not applied: %s", self.config_error)
            return True
        self.config_error = None
        self._apply(wanted)
        return True

    def _apply(self, wanted: dict[str, ModelEntry]) -> None:
        with self._lock:
            self._wanted = dict(wanted)
            for name in list(self._active):
                if name not in wanted:
                    log.info("model %s version %s undeployed", name, self._active[name].version)
                    del self._active[name]
            for name in list(self._failed):
                if self._failed[name][0] != wanted.get(name):  # the config moved on from the failed entry
                    del self._failed[name]
            to_load = [
                entry for name, entry in wanted.items() if name not in self._active or self._active[name].entry != entry
            ]
            for entry in to_load:
                self._loading[entry.name] = entry
                self._failed.pop(entry.name, None)
        for entry in to_load:
            self._load(entry)

    def _load(self, entry: ModelEntry) -> None:
        log.info("loading model %s version %s from %s", entry.name, entry.version, entry.path)
        try:
            model = self._loader(entry)
        except Exception as error:  # noqa: BLE001 - any failure is reported as the version's status
            message = f"{type(error).__name__}: {error}"
            log.error("model %s version %s failed to load: %s", entry.name, entry.version, message)
            with self._lock:
                self._loading.pop(entry.name, None)
                if self._wanted.get(entry.name) == entry:
                    self._failed[entry.name] = (entry, message)
            return
        with self._lock:
            self._loading.pop(entry.name, None)
            if self._wanted.get(entry.name) != entry:
                return  # the config moved on meanwhile; the next poll loads what it names now
            previous = self._active.get(entry.name)
            self._active[entry.name] = model
        buyers = f", {len(model.buyers):,} buyers" if model.buyers is not None else ""
        replaced = f" (replaces version {previous.version})" if previous else ""
        log.info(
            "model %s version %s available in %.1fs%s%s",
            entry.name,
            entry.version,
            model.load_seconds,
            buyers,
            replaced,
        )

    def watch(self, stop: threading.Event, poll_seconds: float = POLL_SECONDS) -> None:
        while not stop.is_set():
            forced = self._wake.is_set()
            self._wake.clear()
            try:
                self.poll(force=forced)
            except Exception:  # noqa: BLE001 - the watcher must survive anything
                log.exception("config reload failed")
            self._wake.wait(poll_seconds)

    # what requests see ------------------------------------------------------------
    def get(self, name: str) -> ServedModel | None:
        with self._lock:
            return self._active.get(name)

    def known_names(self) -> list[str]:
        with self._lock:
            return sorted(set(self._wanted) | set(self._active))

    def failure(self, name: str) -> str | None:
        with self._lock:
            failed = self._failed.get(name)
            return failed[1] if failed else None

    def version_status(self, name: str) -> list[dict] | None:
        """TF Serving's ``model_version_status`` for a model; None when the config does not name it."""
        with self._lock:
            if name not in self._wanted and name not in self._active:
                return None
            statuses = []
            loading, failed, active = self._loading.get(name), self._failed.get(name), self._active.get(name)
            if loading is not None:
                statuses.append(_version_status(loading.version, LOADING))
            if failed is not None:
                statuses.append(_version_status(failed[0].version, END, "UNKNOWN", failed[1]))
            if active is not None:
                statuses.append(_version_status(active.version, AVAILABLE))
            if not statuses:  # named, not yet picked up by the watcher
                statuses.append(_version_status(self._wanted[name].version, LOADING))
            return statuses

    def summary(self) -> dict[str, dict]:
        with self._lock:
            names = sorted(set(self._wanted) | set(self._active))
        out = {}
        for name in names:
            statuses = self.version_status(name) or []
            out[name] = {"versions": [{"version": int(s["version"]), "state": s["state"]} for s in statuses]}
            available = [s for s in statuses if s["state"] == AVAILABLE]
            out[name]["version"] = int(available[0]["version"]) if available else None
            out[name]["state"] = AVAILABLE if available else statuses[0]["state"] if statuses else END
        return out


def _version_status(version: int, state: str, code: str = "OK", message: str = "") -> dict:
    return {"version": str(version), "state": state, "status": {"error_code": code, "error_message": message}}
