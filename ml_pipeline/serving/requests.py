"""What a request may ask and how it is answered: the limits, the checks, ``:predict`` and ``/recommend``.

Every refusal is a :class:`RequestError`, answered as ``{"error": ...}`` (with
``"errors": [{"field", "message"}]`` when one field is at fault); the checks
run before any model is touched, so a refusal costs nothing (see the limits in
:mod:`ml_pipeline.serving.server`).
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

from ml_pipeline.model.inputs import input_name
from ml_pipeline.serving.buyers import LATEST_TIMESTAMP
from ml_pipeline.serving.store import ServedModel

DEFAULT_K = 10
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_INSTANCES = 1000
READ_TIMEOUT_SECONDS = 30.0
MAX_TIMESTAMP = 253_402_300_799  # 9999-12-31T23:59:59Z: Unix seconds beyond it are a mistake or an attack
FLOAT32_MAX = 3.4028234663852886e38


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
    def from_env(cls, environ: dict[str, str] | None = None) -> ServerOptions:
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

        return cls(
            max_body_bytes=number("SERVING_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
            max_instances=number("SERVING_MAX_INSTANCES", DEFAULT_MAX_INSTANCES),
            token=environ.get("SERVING_TOKEN", "").strip(),
        )

    def public(self) -> dict:
        """What ``/healthz`` shows an authenticated caller (the platform checks it is what it configured)."""
        return {"auth": bool(self.token), "max_body_bytes": self.max_body_bytes, "max_instances": self.max_instances}


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
    names = set(given) | {input_name(str(key)) for key in given}
    return [name for name in model.recommender.input_specs(signature) if name not in names]


def _signature(model: ServedModel, body: dict) -> str:
    signature = body.get("signature_name") or "serving_default"
    if not isinstance(signature, str) or signature not in model.recommender.signatures:
        raise RequestError(
            400,
            f"model '{model.name}' has no signature {signature!r}; it has "
            f"{', '.join(sorted(model.recommender.signatures))}",
        )
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
        raise RequestError(
            400, "the body needs exactly one of 'instances' (row format) or 'inputs' (columnar format)", field="body"
        )
    values = body.get("instances") if has_instances else body.get("inputs")
    columns = values.items() if isinstance(values, dict) else [("", values)]
    for name, column in columns:
        if isinstance(column, list) and len(column) > max_instances:
            where = "instances" if has_instances else f"inputs.{name}" if name else "inputs"
            raise RequestError(
                400,
                f"{where} holds {len(column):,} rows; at most {max_instances:,} are accepted "
                f"per request (SERVING_MAX_INSTANCES): split the request",
                field=where,
            )


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
    if number is None or (isinstance(number, float) and not math.isfinite(number)) or not 0 <= number <= MAX_TIMESTAMP:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise RequestError(
            400, f"{name} must be Unix seconds between 0 and {MAX_TIMESTAMP} (the year 9999), not {shown}", field=name
        )
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
                    raise RequestError(
                        400,
                        f"instances[{index}] is missing input '{missing[0]}' of signature "
                        f"'{signature}' (it needs {_needs(model, signature)})",
                    )
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
            raise RequestError(
                400, f"missing input '{missing[0]}' of signature '{signature}' (it needs {_needs(model, signature)})"
            )
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
            raise RequestError(
                400, "at=latest: the buyers lookup has no timestamp for this buyer; use at=now", field="at"
            )
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
        raise RequestError(
            400,
            f"model '{model.name}' was deployed without a buyers lookup; send the buyer's "
            f"features to POST /v1/models/{model.name}:predict",
        )
    features = model.buyers.features(buyer_id)
    if features is None:
        raise RequestError(
            404,
            f"unknown buyer '{buyer_id}': model '{model.name}' version {model.version} knows "
            f"{len(model.buyers):,} buyers (those in its training data); send the buyer's "
            f"features to POST /v1/models/{model.name}:predict instead",
        )
    latest = features.pop(LATEST_TIMESTAMP, None)
    k = min(DEFAULT_K, recommender.k) if k is None else k
    if not 1 <= k <= recommender.k:
        raise RequestError(
            400, f"k must be between 1 and {recommender.k} (the K this model was exported with)", field="k"
        )
    timestamp = _request_time(at, latest)
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
