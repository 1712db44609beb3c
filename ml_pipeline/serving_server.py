"""The local serving endpoint: serving SavedModels over a TensorFlow-Serving-compatible REST API.

::

    python -m ml_pipeline.serving_server --config models.json --host 127.0.0.1 --port 8501

The config file names the models to serve::

    {"models": {"b2b-recs.recs": {"path": "/.../serving_model", "version": 2,
                                   "buyers": "/.../buyers.parquet"}}}

and is re-read whenever it changes (checked twice a second, at once on
``SIGHUP``), so models are deployed, replaced, rolled back and undeployed
without a restart: a changed entry is loaded next to the one it replaces,
which keeps answering until the new one is ready and is then swapped in; a
removed entry stops answering at once. Write the file atomically (a temporary
file and a rename), as the platform does.

Endpoints
=========

``GET /healthz``
    ``{"status": "ok", "pid", "config", "models": {name: {"version", "state"}}}``.
``GET /v1/models/<name>`` (and ``/versions/<n>``)
    TF Serving's model status: ``{"model_version_status": [{"version": "2",
    "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}``;
    ``LOADING`` while a version loads (the previous one keeps answering), ``END``
    with the error when it failed to load; 404 when the model is not in the config.
``GET /v1/models/<name>/metadata``
    The model's signatures (inputs and outputs) from its ``serving_config.json``.
``POST /v1/models/<name>:predict`` (and ``/versions/<n>:predict``)
    TF Serving's bodies: the row format ``{"signature_name": ..., "instances":
    [{input: value}, ...]}`` answers ``{"predictions": [...]}``, the columnar
    format ``{"inputs": {input: [values]}}`` answers ``{"outputs": {...}}`` (a
    signature with a single output answers the bare value, as TF Serving does).
    Inputs are named as the signature names them (``Unit_Price``) or by their
    column (``Unit Price``). Every input is required: a missing one is a 400
    naming it.
``GET /recommend?buyer_id=...&k=10&model=<name>&at=now``
    The top ``k`` products for a known buyer: the buyer's latest features come
    from the model's buyers lookup (a Parquet file, one row per buyer: the
    buyer tower's raw feature columns and ``__latest_timestamp``); timestamp
    inputs are the request time (``at=now``, the default), the buyer's latest
    interaction (``at=latest``) or given Unix seconds. ``model`` may be left out
    while one model is served. Answers ``{"buyer_id", "model", "version", "k",
    "timestamp", "recommendations": [{"product_id", "score"}]}``, best first.

    An unknown buyer (one the model's training data never saw) is a 404 saying
    so, not a cold-start guess: the lookup holds no features for them, and a
    caller that has the buyer's features gets recommendations for any buyer
    from ``POST /v1/models/<name>:predict``.

Errors answer ``{"error": "..."}`` with 400 (bad request), 404 (unknown model
or buyer) or 503 (the model is still loading, or failed to load).

Why the standard library's ``ThreadingHTTPServer`` and not a web framework:
the API is five routes of JSON in and out; the work is TensorFlow inference
(which releases the GIL); the process must start quickly and import nothing
the training image does not already have. A framework would add a dependency
and a configuration surface for no gain here. Scale-out serving is a stock
TF Serving, Vertex AI or Cloud Run deployment, not this process.

The server binds to loopback unless told otherwise: it has no authentication.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

log = logging.getLogger("ml_pipeline.serving_server")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8501
POLL_SECONDS = 0.5
DEFAULT_K = 10
MAX_BODY_BYTES = 64 * 1024 * 1024
LATEST_TIMESTAMP = "__latest_timestamp"  # the buyers lookup's column: the buyer's newest interaction, Unix seconds
BUYER_ID = "buyer_id"

AVAILABLE, LOADING, END = "AVAILABLE", "LOADING", "END"


class RequestError(Exception):
    """An error answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


# -- the config ----------------------------------------------------------------------
@dataclass(frozen=True)
class ModelEntry:
    """One model of the config file."""

    name: str
    path: str
    version: int
    buyers: str | None = None

    @classmethod
    def from_config(cls, name: str, raw: Any) -> "ModelEntry":
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


# -- what one served model holds -----------------------------------------------------
class BuyerLookup:
    """The buyers lookup: one row per buyer (its latest raw features), indexed by buyer id."""

    def __init__(self, path: str | Path):
        import pyarrow.parquet as pq

        self.path = Path(path)
        self.table = pq.read_table(self.path)
        if BUYER_ID not in self.table.column_names:
            raise ValueError(f"{self.path} has no '{BUYER_ID}' column")
        ids = self.table.column(BUYER_ID).to_pylist()
        self.index = {str(buyer): row for row, buyer in enumerate(ids) if buyer is not None}

    def __len__(self) -> int:
        return len(self.index)

    def features(self, buyer_id: str) -> dict[str, Any] | None:
        row = self.index.get(buyer_id)
        return None if row is None else self.table.slice(row, 1).to_pylist()[0]


class ServedModel:
    """A loaded version: its :class:`~ml_pipeline.serving.Recommender` and buyers lookup."""

    def __init__(self, entry: ModelEntry):
        from ml_pipeline.serving import Recommender

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


# -- the models the config names -------------------------------------------------------
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
            to_load = [entry for name, entry in wanted.items()
                       if name not in self._active or self._active[name].entry != entry]
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
        log.info("model %s version %s available in %.1fs%s%s", entry.name, entry.version, model.load_seconds,
                 buyers, replaced)

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

    def served_names(self) -> list[str]:
        with self._lock:
            return sorted(self._active)

    def known_names(self) -> list[str]:
        with self._lock:
            return sorted(set(self._wanted) | set(self._active))

    def is_pending(self, name: str) -> bool:
        with self._lock:
            return name in self._loading

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


# -- request handling ----------------------------------------------------------------
def _plain(value: Any) -> Any:
    """JSON-ready Python values from numpy outputs (bytes decoded; NaN and infinities as null)."""
    import numpy as np

    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()] if value.dtype != object else [_plain(v) for v in value]
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        value = value.item()
        return _plain(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _missing_inputs(model: ServedModel, signature: str, given) -> list[str]:
    from ml_pipeline.model.inputs import input_name

    names = set(given) | {input_name(str(key)) for key in given}
    return [name for name in model.recommender.input_specs(signature) if name not in names]


def _signature(model: ServedModel, body: dict) -> str:
    signature = body.get("signature_name") or "serving_default"
    if not isinstance(signature, str) or signature not in model.recommender.signatures:
        raise RequestError(400, f"model '{model.name}' has no signature {signature!r}; it has "
                                f"{', '.join(sorted(model.recommender.signatures))}")
    return signature


def _needs(model: ServedModel, signature: str) -> str:
    return ", ".join(model.recommender.input_specs(signature))


def predict(model: ServedModel, body: Any) -> dict:
    """A TF Serving ``:predict`` body (row or columnar format) run on ``model``."""
    if not isinstance(body, dict):
        raise RequestError(400, "the body must be a JSON object with 'instances' or 'inputs'")
    has_instances, has_inputs = "instances" in body, "inputs" in body
    if has_instances == has_inputs:
        raise RequestError(400, "the body needs exactly one of 'instances' (row format) or 'inputs' (columnar format)")
    signature = _signature(model, body)
    specs = model.recommender.input_specs(signature)
    outputs = sorted(model.recommender.signatures[signature].structured_outputs)
    try:
        if has_instances:
            instances = body["instances"]
            if not isinstance(instances, list) or not instances:
                raise RequestError(400, "'instances' must be a non-empty list")
            if len(specs) == 1 and not all(isinstance(row, dict) for row in instances):
                instances = [{next(iter(specs)): row} for row in instances]
            for index, row in enumerate(instances):
                if not isinstance(row, dict):
                    raise RequestError(400, f"instances[{index}] must be an object of inputs")
                missing = _missing_inputs(model, signature, row)
                if missing:
                    raise RequestError(400, f"instances[{index}] is missing input '{missing[0]}' of signature "
                                            f"'{signature}' (it needs {_needs(model, signature)})")
            rows = model.recommender.predict_instances(instances, signature)
            if len(outputs) == 1:
                rows = [row[outputs[0]] for row in rows]
            return {"predictions": _plain(rows)}
        inputs = body["inputs"]
        if len(specs) == 1 and not isinstance(inputs, dict):
            inputs = {next(iter(specs)): inputs}
        if not isinstance(inputs, dict):
            raise RequestError(400, "'inputs' must be an object of input -> values")
        missing = _missing_inputs(model, signature, inputs)
        if missing:
            raise RequestError(400, f"missing input '{missing[0]}' of signature '{signature}' "
                                    f"(it needs {_needs(model, signature)})")
        lengths = {len(v) for v in inputs.values() if isinstance(v, list)}
        if len(lengths) > 1:
            raise RequestError(400, f"the inputs' lists differ in length ({sorted(lengths)}); give one value per row")
        result = model.recommender.predict(inputs, signature)
    except (ValueError, TypeError, KeyError) as error:
        raise RequestError(400, f"could not run signature '{signature}': {error}") from None
    if len(outputs) == 1:
        return {"outputs": _plain(result[outputs[0]])}
    return {"outputs": _plain(result)}


def _request_time(raw: str | None, latest: Any) -> int:
    if raw is None or raw == "" or raw == "now":
        return int(time.time())
    if raw == "latest":
        if latest is None:
            raise RequestError(400, "at=latest: the buyers lookup has no timestamp for this buyer; use at=now")
        return int(latest)
    try:
        return int(float(raw))
    except ValueError:
        raise RequestError(400, f"at must be 'now', 'latest' or Unix seconds, not {raw!r}") from None


def recommend(model: ServedModel, buyer_id: str, k: int | None, at: str | None) -> dict:
    """The top ``k`` products for a buyer of the buyers lookup."""
    import tensorflow as tf

    recommender = model.recommender
    if model.buyers is None:
        raise RequestError(400, f"model '{model.name}' was deployed without a buyers lookup; send the buyer's "
                                f"features to POST /v1/models/{model.name}:predict")
    features = model.buyers.features(buyer_id)
    if features is None:
        raise RequestError(404, f"unknown buyer '{buyer_id}': model '{model.name}' version {model.version} knows "
                                f"{len(model.buyers):,} buyers (those in its training data); send the buyer's "
                                f"features to POST /v1/models/{model.name}:predict instead")
    latest = features.pop(LATEST_TIMESTAMP, None)
    k = min(DEFAULT_K, recommender.k) if k is None else k
    if not 1 <= k <= recommender.k:
        raise RequestError(400, f"k must be between 1 and {recommender.k} (the K this model was exported with)")
    timestamp = _request_time(at, latest)
    from ml_pipeline.model.inputs import input_name

    given = {input_name(str(column)) for column in features}
    for name, spec in recommender.input_specs("serving_default").items():
        if name not in given and spec.dtype == tf.int64:  # timestamp inputs: the time of the request
            features[name] = timestamp
    missing = _missing_inputs(model, "serving_default", features)
    if missing:
        raise RequestError(400, f"the buyers lookup lacks input '{missing[0]}' that model '{model.name}' needs")
    ranked = recommender.recommend(features, k)
    return {
        "buyer_id": buyer_id,
        "model": model.name,
        "version": model.version,
        "k": k,
        "timestamp": timestamp,
        "recommendations": [{"product_id": pid, "score": _plain(score)} for pid, score in ranked],
    }


class ServingHandler(BaseHTTPRequestHandler):
    server_version = "ml-platform-serving/1"
    protocol_version = "HTTP/1.1"

    @property
    def store(self) -> ModelStore:
        return self.server.store  # type: ignore[attr-defined]

    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        # Status polls (the platform's, a load balancer's) at DEBUG; predictions and errors at INFO.
        quiet = self.command == "GET" and (self.path.startswith("/healthz") or ":" not in self.path
                                           and self.path.startswith("/v1/models/"))
        log.log(logging.DEBUG if quiet else logging.INFO, "%s %s", self.address_string(), format % args)

    # plumbing --------------------------------------------------------------------
    def _send(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
        if not getattr(self, "_body_read", True) and int(self.headers.get("Content-Length") or 0):
            headers = {**(headers or {}), "Connection": "close"}  # an unread body would be read as a request
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise RequestError(413, f"the body is larger than {MAX_BODY_BYTES // (1024 * 1024)} MiB")
        raw = self.rfile.read(length) if length else b""
        self._body_read = True
        if not raw:
            raise RequestError(400, "the body is empty; send a JSON object")
        try:
            return json.loads(raw)
        except ValueError as error:
            raise RequestError(400, f"the body is not valid JSON: {error}") from None

    def _handle(self, method: str) -> None:
        self._body_read = False
        try:
            status, body = self._route(method)
            self._send(status, body)
        except RequestError as error:
            self._send(error.status, {"error": error.message}, error.headers)
        except Exception as error:  # noqa: BLE001 - answer, never drop the connection
            log.exception("%s %s failed", method, self.path)
            self._send(500, {"error": f"internal error: {type(error).__name__}: {error}"})

    def do_GET(self):  # noqa: N802 - the stdlib's name
        self._handle("GET")

    def do_POST(self):  # noqa: N802
        self._handle("POST")

    # routes --------------------------------------------------------------------------
    def _route(self, method: str) -> tuple[int, dict]:
        url = urlsplit(self.path)
        path = url.path
        if path in ("/healthz", "/healthz/"):
            self._only(method, "GET")
            return 200, {"status": "ok", "pid": os.getpid(), "config": str(self.store.config_path),
                         "config_error": self.store.config_error, "models": self.store.summary()}
        if path.rstrip("/") == "/recommend":
            self._only(method, "GET")
            return 200, self._recommend(parse_qs(url.query))
        if path.startswith("/v1/models/"):
            return self._models(method, path[len("/v1/models/"):])
        raise RequestError(404, f"no route {path}; try /v1/models/<name>, /v1/models/<name>:predict, "
                                "/recommend or /healthz")

    def _only(self, method: str, allowed: str) -> None:
        if method != allowed:
            raise RequestError(405, f"use {allowed} here", {"Allow": allowed})

    def _models(self, method: str, rest: str) -> tuple[int, dict]:
        verb = None
        if ":" in rest:
            rest, verb = rest.rsplit(":", 1)
        parts = [unquote(part) for part in rest.strip("/").split("/")]
        name, version, tail = parts[0], None, parts[1:]
        if len(tail) >= 2 and tail[0] == "versions":
            try:
                version = int(tail[1])
            except ValueError:
                raise RequestError(400, f"version must be an integer, not {tail[1]!r}") from None
            tail = tail[2:]
        if not name or tail not in ([], ["metadata"]) or (verb and tail):
            raise RequestError(404, f"no route /v1/models/{rest}")
        if verb is not None:
            if verb != "predict":
                raise RequestError(400, f"':{verb}' is not supported; this server answers ':predict'")
            self._only(method, "POST")
            body = self._body()
            return 200, predict(self._served(name, version), body)
        self._only(method, "GET")
        if tail == ["metadata"]:
            model = self._served(name, version)
            config = model.recommender.config
            return 200, {"model_spec": {"name": name, "version": str(model.version)},
                         "metadata": {"signatures": config.get("signatures", {}),
                                      "k": model.recommender.k, "model_type": config.get("model_type"),
                                      "retrieval": config.get("retrieval"),
                                      "catalog_size": config.get("catalog_size")}}
        statuses = self.store.version_status(name)
        if statuses is None:
            raise RequestError(404, self._unknown(name))
        if version is not None:
            statuses = [s for s in statuses if s["version"] == str(version)]
            if not statuses:
                raise RequestError(404, f"model '{name}' has no version {version} here")
        return 200, {"model_version_status": statuses}

    def _unknown(self, name: str) -> str:
        served = self.store.known_names()
        return f"no model '{name}' is served here (serving: {', '.join(served) if served else 'nothing'})"

    def _served(self, name: str, version: int | None = None) -> ServedModel:
        model = self.store.get(name)
        if model is None:
            failure = self.store.failure(name)
            if failure:
                raise RequestError(503, f"model '{name}' failed to load: {failure}")
            if name in self.store.known_names():
                raise RequestError(503, f"model '{name}' is loading; try again shortly", {"Retry-After": "1"})
            raise RequestError(404, self._unknown(name))
        if version is not None and version != model.version:
            raise RequestError(404, f"model '{name}' serves version {model.version}, not {version}")
        return model

    def _recommend(self, query: dict[str, list[str]]) -> dict:
        def one(key):
            values = query.get(key)
            return values[-1] if values else None

        buyer_id = one("buyer_id")
        if not buyer_id:
            raise RequestError(400, "buyer_id is required: /recommend?buyer_id=<id>&k=10")
        name = one("model")
        if not name:
            served = self.store.known_names()
            if not served:
                raise RequestError(404, "no model is deployed")
            if len(served) > 1:
                raise RequestError(400, f"several models are served ({', '.join(served)}); name one with ?model=")
            name = served[0]
        raw_k = one("k")
        try:
            k = int(raw_k) if raw_k not in (None, "") else None
        except ValueError:
            raise RequestError(400, f"k must be an integer, not {raw_k!r}") from None
        return recommend(self._served(name), buyer_id, k, one("at"))


class ServingServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, store: ModelStore):
        super().__init__(address, ServingHandler)
        self.store = store


def serve(config: str | Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          poll_seconds: float = POLL_SECONDS) -> None:
    """Serve until SIGTERM/SIGINT; the config is watched by a background thread."""
    store = ModelStore(config)
    server = ServingServer((host, port), store)
    stop = threading.Event()
    watcher = threading.Thread(target=store.watch, args=(stop, poll_seconds), daemon=True, name="config-watch")

    def terminate(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, terminate)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda signum, frame: store.wake())
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("listening on %s: the serving API has no authentication; keep it behind a firewall", host)
    log.info("serving on http://%s:%s (pid %s), models from %s", host, server.server_address[1], os.getpid(), config)
    watcher.start()
    try:
        server.serve_forever(poll_interval=0.5)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        stop.set()
        store.wake()
        server.server_close()
        log.info("stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml_pipeline.serving_server", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="the models config JSON file (re-read when it changes)")
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument("--poll-seconds", type=float, default=POLL_SECONDS, help="how often the config is checked")
    parser.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        serve(args.config, args.host, args.port, args.poll_seconds)
    except OSError as error:  # the port is taken, the address is not ours
        log.error("cannot listen on %s:%s: %s", args.host, args.port, error)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
