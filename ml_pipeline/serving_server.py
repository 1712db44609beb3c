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

Errors answer ``{"error": "..."}`` (TF Serving's shape; with ``"errors":
[{"field", "message"}]`` when one field is at fault) with 400 (bad request),
401 (no or a wrong bearer token), 404 (unknown model or buyer), 408 (the body
stalled), 411 (no ``Content-Length``, or a chunked body), 413 (the body is too
large) or 503 (the model is still loading, or failed to load).

Limits
======

A request is refused before its body is read when its ``Content-Length`` is
missing (411), not a number (400) or over ``SERVING_MAX_BODY_BYTES`` (413,
default 4 MiB; the connection is then closed, the body never read); a client
that sends ``Expect: 100-continue`` (curl does for large bodies) gets the
refusal instead of the go-ahead. A ``:predict`` body may hold at most
``SERVING_MAX_INSTANCES`` rows (default 1,000); JSON nested deeper than
Python's recursion limit, ``NaN``/``Infinity``, and input values that are not
of the input's type (a timestamp beyond the year 9999, a non-finite number, a
list where one value belongs) are 400s naming the field. Every connection's
socket has a timeout (``--read-timeout``, 30 s), so a client that sends its
headers and then stalls releases its thread.

Authentication
==============

With ``SERVING_TOKEN`` set in the server's environment, every request but
``GET /healthz`` needs ``Authorization: Bearer <token>`` (compared in
constant time), else 401; ``/healthz`` then answers only ``{"status": "ok"}``
to a caller without the token. Without a token the server authenticates
nobody: keep it on loopback (the default) or behind a proxy that does.

Why the standard library's ``ThreadingHTTPServer`` and not a web framework:
the API is five routes of JSON in and out; the work is TensorFlow inference
(which releases the GIL); the process must start quickly and import nothing
the training image does not already have. A framework would add a dependency
and a configuration surface for no gain here. Scale-out serving is a stock
TF Serving, Vertex AI or Cloud Run deployment, not this process.

The server binds to loopback unless told otherwise.
"""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import math
import os
import re
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

log = logging.getLogger("ml_pipeline.serving_server")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8501
POLL_SECONDS = 0.5
DEFAULT_K = 10
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_INSTANCES = 1000
READ_TIMEOUT_SECONDS = 30.0
MAX_TIMESTAMP = 253_402_300_799  # 9999-12-31T23:59:59Z: Unix seconds beyond it are a mistake or an attack
FLOAT32_MAX = 3.4028234663852886e38
HEALTH_PATHS = ("/healthz", "/healthz/")
LINGER_SECONDS = 2.0  # after refusing an unread body: how long what the client still sends is discarded
BODY_METHODS = ("POST", "PUT", "PATCH")
LATEST_TIMESTAMP = "__latest_timestamp"  # the buyers lookup's column: the buyer's newest interaction, Unix seconds
BUYER_ID = "buyer_id"

AVAILABLE, LOADING, END = "AVAILABLE", "LOADING", "END"


class RequestError(Exception):
    """An error answered as ``{"error": message}`` with ``status`` (and ``errors`` naming ``field``, if any)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None, field: str | None = None):
        super().__init__(message)
        self.status, self.message, self.headers, self.field = status, message, headers or {}, field

    def body(self) -> dict:
        if self.field is None:
            return {"error": self.message}
        return {"error": self.message, "errors": [{"field": self.field, "message": self.message}]}


@dataclass(frozen=True)
class ServerOptions:
    """What one request may ask of the server, and the token it must bring (empty: no authentication)."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_instances: int = DEFAULT_MAX_INSTANCES
    read_timeout: float = READ_TIMEOUT_SECONDS
    token: str = field(default="", repr=False)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "ServerOptions":
        """``SERVING_MAX_BODY_BYTES``, ``SERVING_MAX_INSTANCES``, ``SERVING_TOKEN``; defaults where unset."""
        environ = os.environ if environ is None else environ

        def number(name: str, default: int) -> int:
            raw = environ.get(name, "").strip()
            try:
                value = int(raw) if raw else default
            except ValueError:
                raise ValueError(f"{name} must be a whole number, not {raw!r}") from None
            if value < 1:
                raise ValueError(f"{name} must be at least 1, not {value}")
            return value

        return cls(max_body_bytes=number("SERVING_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
                   max_instances=number("SERVING_MAX_INSTANCES", DEFAULT_MAX_INSTANCES),
                   token=environ.get("SERVING_TOKEN", "").strip())

    def public(self) -> dict:
        """What ``/healthz`` shows an authenticated caller (the platform checks it is what it configured)."""
        return {"auth": bool(self.token), "max_body_bytes": self.max_body_bytes, "max_instances": self.max_instances}


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


def parse_json(raw: bytes) -> Any:
    """The body as JSON; 400 for what is not JSON, ``NaN``/``Infinity``, and nesting too deep to parse."""
    if not raw:
        raise RequestError(400, "the body is empty; send a JSON object", field="body")
    try:
        return json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:  # the C decoder recurses per level: 100,000 '[' would otherwise be a 500
        raise RequestError(400, "the body is nested too deeply", field="body") from None
    except ValueError as error:
        raise RequestError(400, f"the body is not valid JSON: {error}", field="body") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def check_predict_body(body: Any, max_instances: int) -> None:
    """The shape and size of a ``:predict`` body, checked before any model is touched."""
    if not isinstance(body, dict):
        raise RequestError(400, "the body must be a JSON object with 'instances' or 'inputs'", field="body")
    has_instances, has_inputs = "instances" in body, "inputs" in body
    if has_instances == has_inputs:
        raise RequestError(400, "the body needs exactly one of 'instances' (row format) or 'inputs' (columnar format)",
                           field="body")
    values = body.get("instances") if has_instances else body.get("inputs")
    columns = values.items() if isinstance(values, dict) else [("", values)]
    for name, column in columns:
        if isinstance(column, list) and len(column) > max_instances:
            where = "instances" if has_instances else f"inputs.{name}" if name else "inputs"
            raise RequestError(400, f"{where} holds {len(column):,} rows; at most {max_instances:,} are accepted "
                                    f"per request (SERVING_MAX_INSTANCES): split the request", field=where)


def unix_seconds(name: str, value: Any) -> int:
    """Unix seconds from a JSON number or a query-string value; 400 naming ``name`` unless 0..year 9999."""
    number = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str):
        try:
            number = float(value) if not value.strip().isdigit() else int(value)
        except ValueError:
            number = None
    if number is None or (isinstance(number, float) and not math.isfinite(number)) \
            or not 0 <= number <= MAX_TIMESTAMP:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise RequestError(400, f"{name} must be Unix seconds between 0 and {MAX_TIMESTAMP} (the year 9999), "
                                f"not {shown}", field=name)
    return int(number)


def _check_value(where: str, value: Any, dtype: str) -> None:
    """One input value against its input's dtype (as ``Recommender`` converts it); 400 naming ``where``."""
    if value is None or value == "":  # a missing value: the null the training data would have had
        return
    if isinstance(value, (list, dict)):
        raise RequestError(400, f"{where} must be one {dtype} value, not a {type(value).__name__}", field=where)
    if dtype == "string":
        return
    if dtype == "int64":  # timestamp inputs
        unix_seconds(where, value)
        return
    number = None
    if not isinstance(value, bool):
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = None
    if number is None or not math.isfinite(number) or abs(number) > FLOAT32_MAX:
        raise RequestError(400, f"{where} must be a finite {dtype} number, not {value!r:.40}", field=where)


def _check_values(model: ServedModel, signature: str, rows: list[dict] | None, columns: dict | None) -> None:
    from ml_pipeline.model.inputs import input_name

    dtypes = {name: spec.dtype.name for name, spec in model.recommender.input_specs(signature).items()}

    def dtype_of(key: str) -> str | None:
        return dtypes.get(key) or dtypes.get(input_name(str(key)))

    for index, row in enumerate(rows or []):
        for key, value in row.items():
            dtype = dtype_of(key)
            if dtype is not None:
                _check_value(f"instances[{index}].{key}", value, dtype)
    for key, values in (columns or {}).items():
        dtype = dtype_of(key)
        if dtype is None:
            continue
        for index, value in enumerate(values if isinstance(values, list) else [values]):
            _check_value(f"inputs.{key}[{index}]" if isinstance(values, list) else f"inputs.{key}", value, dtype)


def predict(model: ServedModel, body: Any, max_instances: int = DEFAULT_MAX_INSTANCES) -> dict:
    """A TF Serving ``:predict`` body (row or columnar format) run on ``model``."""
    check_predict_body(body, max_instances)
    has_instances = "instances" in body
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
            _check_values(model, signature, instances, None)
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
        _check_values(model, signature, None, inputs)
        result = model.recommender.predict(inputs, signature)
    except (ValueError, TypeError, KeyError, OverflowError) as error:
        raise RequestError(400, f"could not run signature '{signature}': {error}") from None
    if len(outputs) == 1:
        return {"outputs": _plain(result[outputs[0]])}
    return {"outputs": _plain(result)}


def _request_time(raw: str | None, latest: Any) -> int:
    if raw is None or raw == "" or raw == "now":
        return int(time.time())
    if raw == "latest":
        if latest is None:
            raise RequestError(400, "at=latest: the buyers lookup has no timestamp for this buyer; use at=now",
                               field="at")
        return int(latest)
    return unix_seconds("at", raw)


def parse_k(raw: str | None) -> int | None:
    """``k`` of ``/recommend``: a whole number from 1 (the model's K bounds it from above); None when not given."""
    if raw is None or raw == "":
        return None
    if not re.fullmatch(r"[0-9]{1,9}", raw) or int(raw) < 1:
        shown = repr(raw) if len(raw) <= 40 else repr(raw[:37] + "...")
        raise RequestError(400, f"k must be a whole number from 1 up to the model's K, not {shown}", field="k")
    return int(raw)


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
        raise RequestError(400, f"k must be between 1 and {recommender.k} (the K this model was exported with)",
                           field="k")
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

    @property
    def options(self) -> ServerOptions:
        return self.server.options  # type: ignore[attr-defined]

    def setup(self):
        # A client that sends its headers and then stalls (or trickles nothing) times out and frees the thread.
        self.timeout = self.options.read_timeout
        super().setup()

    def finish(self):
        super().finish()
        if self.close_connection and getattr(self, "_body_pending", False):
            self._linger()

    def _linger(self) -> None:
        """After an answer to a request whose body was not read: end our side, then discard what the client
        still sends for a moment, so it reads the answer instead of a reset (closing a socket with unread
        input resets the connection). Nothing is kept: one 64 KiB buffer, reused."""
        try:
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(0.5)
            buffer, deadline = bytearray(64 * 1024), time.monotonic() + LINGER_SECONDS
            while time.monotonic() < deadline and self.connection.recv_into(buffer):
                pass
        except OSError:  # the client is gone, or silent: either way we are done
            pass

    # plumbing --------------------------------------------------------------------
    def _send(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
        if getattr(self, "_body_pending", True):
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

    def send_error(self, code, message=None, explain=None):
        """The standard library's own refusals (a malformed request line, a header line over 64 KiB, more
        than 100 headers) in the endpoint's JSON shape."""
        self.log_error("code %d, message %s", code, message)
        self._send(code, {"error": message or HTTPStatus(code).phrase}, {"Connection": "close"})

    def _begin(self) -> None:
        """A new request on this connection: nothing of its body is read yet, nothing of it is checked."""
        lengths = self.headers.get_all("Content-Length") or []
        self._body_pending = bool(self.headers.get("Transfer-Encoding")) or any(v.strip() != "0" for v in lengths)
        self._length = 0
        self._admitted = False

    def _admit(self) -> None:
        """What is checked before a byte of the body is read: the token, then the body's declared length."""
        if self.options.token and urlsplit(self.path).path not in HEALTH_PATHS and not self._authorized():
            given = bool(self.headers.get("Authorization"))
            raise RequestError(401, "the bearer token is not valid" if given else
                               "this endpoint needs 'Authorization: Bearer <SERVING_TOKEN>'",
                               {"WWW-Authenticate": 'Bearer realm="serving"'}, field="Authorization")
        self._length = self._content_length()
        self._admitted = True

    def _authorized(self) -> bool:
        if not self.options.token:
            return True
        scheme, _, given = (self.headers.get("Authorization") or "").strip().partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.options.token.encode())

    def _content_length(self) -> int:
        if self.headers.get("Transfer-Encoding"):
            raise RequestError(411, "send the body with a Content-Length; chunked transfer encoding is not accepted",
                               field="Transfer-Encoding")
        values = {value.strip() for value in self.headers.get_all("Content-Length") or []}
        if not values:
            if self.command in BODY_METHODS:
                raise RequestError(411, "a Content-Length header is required", field="Content-Length")
            return 0
        if len(values) > 1:
            raise RequestError(400, "conflicting Content-Length headers", field="Content-Length")
        [raw] = values
        if not re.fullmatch(r"[0-9]{1,19}", raw):
            shown = repr(raw) if len(raw) <= 40 else repr(raw[:37] + "...")
            raise RequestError(400, f"Content-Length must be a number of bytes, not {shown}", field="Content-Length")
        length, limit = int(raw), self.options.max_body_bytes
        if length > limit:
            raise RequestError(413, f"the body is {length:,} bytes; at most {limit:,} are accepted "
                                    f"(SERVING_MAX_BODY_BYTES)", field="Content-Length")
        return length

    def handle_expect_100(self):
        # curl sends bodies over 1 MiB with "Expect: 100-continue": a refusal here means the body is never sent.
        self._begin()
        try:
            self._admit()
        except RequestError as error:
            self._send(error.status, error.body(), error.headers)
            return False
        return super().handle_expect_100()

    def _body(self) -> Any:
        """The body as JSON; at most ``max_body_bytes`` are ever read (the length was checked by :meth:`_admit`)."""
        try:
            raw = self.rfile.read(self._length) if self._length else b""
        except TimeoutError:
            raise RequestError(408, f"the body did not arrive ({self.options.read_timeout:.0f}s without a byte)",
                               field="body") from None
        if len(raw) < self._length:
            raise RequestError(400, f"the body ended after {len(raw):,} of its {self._length:,} bytes",
                               field="Content-Length")
        self._body_pending = False
        return parse_json(raw)

    def _handle(self, method: str) -> None:
        if not getattr(self, "_admitted", False):
            self._begin()
        try:
            try:
                if not self._admitted:
                    self._admit()
                status, body = self._route(method)
                self._send(status, body)
            except RequestError as error:
                self._send(error.status, error.body(), error.headers)
            except (ConnectionError, TimeoutError):
                raise
            except Exception:  # noqa: BLE001 - answer, never drop the connection
                log.exception("%s %s failed", method, self.path)
                self._send(500, {"error": "internal error; the serving log has the details"})
        except (ConnectionError, TimeoutError):  # the client went away or stopped reading: nothing to answer
            self.close_connection = True
        finally:
            self._admitted = False

    def do_GET(self):  # noqa: N802 - the stdlib's name
        self._handle("GET")

    def do_POST(self):  # noqa: N802
        self._handle("POST")

    def do_PUT(self):  # noqa: N802 - answered 405 in JSON, not the stdlib's HTML 501
        self._handle("PUT")

    def do_PATCH(self):  # noqa: N802
        self._handle("PATCH")

    def do_DELETE(self):  # noqa: N802
        self._handle("DELETE")

    # routes --------------------------------------------------------------------------
    def _route(self, method: str) -> tuple[int, dict]:
        url = urlsplit(self.path)
        path = url.path
        if path in HEALTH_PATHS:
            self._only(method, "GET")
            if not self._authorized():  # open to load balancers, but what is served is for the token's holders
                return 200, {"status": "ok"}
            return 200, {"status": "ok", "pid": os.getpid(), "config": str(self.store.config_path),
                         "config_error": self.store.config_error, "models": self.store.summary(),
                         "options": self.options.public()}
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
            check_predict_body(body, self.options.max_instances)  # before the model: a refusal costs nothing
            return 200, predict(self._served(name, version), body, self.options.max_instances)
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
        k, at = parse_k(one("k")), one("at")
        if at not in (None, "", "now", "latest"):
            unix_seconds("at", at)  # refused before the model and the buyer are looked up
        return recommend(self._served(name), buyer_id, k, at)


class ServingServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, store: ModelStore, options: ServerOptions | None = None):
        super().__init__(address, ServingHandler)
        self.store = store
        self.options = options or ServerOptions()


def serve(config: str | Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          poll_seconds: float = POLL_SECONDS, options: ServerOptions | None = None) -> None:
    """Serve until SIGTERM/SIGINT; the config is watched by a background thread."""
    store = ModelStore(config)
    options = options or ServerOptions.from_env()
    server = ServingServer((host, port), store, options)
    stop = threading.Event()
    watcher = threading.Thread(target=store.watch, args=(stop, poll_seconds), daemon=True, name="config-watch")

    def terminate(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, terminate)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda signum, frame: store.wake())
    if host not in ("127.0.0.1", "localhost", "::1") and not options.token:
        log.warning("listening on %s without SERVING_TOKEN: anyone who reaches the port may use the models; "
                    "set SERVING_TOKEN or keep the port behind a firewall", host)
    log.info("serving on http://%s:%s (pid %s), models from %s; %s", host, server.server_address[1], os.getpid(),
             config, options)
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
    parser.add_argument("--read-timeout", type=float, default=READ_TIMEOUT_SECONDS,
                        help="seconds a connection may stay silent (mid-request or idle) before it is closed")
    parser.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:  # the token comes from the environment, never the command line (which every local user can read)
        options = ServerOptions.from_env()
    except ValueError as error:
        parser.error(str(error))
    options = replace(options, read_timeout=args.read_timeout)
    try:
        serve(args.config, args.host, args.port, args.poll_seconds, options)
    except OSError as error:  # the port is taken, the address is not ours
        log.error("cannot listen on %s:%s: %s", args.host, args.port, error)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
