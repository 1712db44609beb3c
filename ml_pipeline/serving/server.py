"""The local serving endpoint: serving SavedModels over a TensorFlow-Serving-compatible REST API.

::

    python -m ml_pipeline.serving.server --config models.json --host 127.0.0.1 --port 8501

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

(Over the usual module size on purpose: a fifth of it is this reference, kept
next to the handler it describes; the request checks themselves live in
:mod:`ml_pipeline.serving.requests`.)
"""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
from dataclasses import replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ml_pipeline.serving.requests import (
    READ_TIMEOUT_SECONDS,
    RequestError,
    ServerOptions,
    check_predict_body,
    parse_json,
    parse_k,
    predict,
    recommend,
    unix_seconds,
)
from ml_pipeline.serving.store import POLL_SECONDS, ModelStore, ServedModel

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8501
HEALTH_PATHS = ("/healthz", "/healthz/")
LINGER_SECONDS = 2.0  # after refusing an unread body: how long what the client still sends is discarded
BODY_METHODS = ("POST", "PUT", "PATCH")


class ServingHandler(BaseHTTPRequestHandler):
    server_version = "ml-platform-serving/1"
    protocol_version = "HTTP/1.1"

    @property
    def store(self) -> ModelStore:
        return self.server.store  # type: ignore[attr-defined]

    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        # Status polls (the platform's, a load balancer's) at DEBUG; predictions and errors at INFO.
        quiet = self.command == "GET" and (
            self.path.startswith("/healthz") or ":" not in self.path and self.path.startswith("/v1/models/")
        )
        log.log(logging.DEBUG if quiet else logging.INFO, "%s %s", self.address_string(), format % args)

    @property
    def options(self) -> ServerOptions:
        return self.server.options  # type: ignore[attr-defined]

    def setup(self):
        # A client that sends its headers and then stalls (or trickles nothing) times out and frees the thread.
        self.timeout = self.options.read_timeout
        super().setup()
        # An answer is two writes (headers, then body): with Nagle's algorithm the body waited for the client's
        # delayed ACK of the headers, 40 ms on every kept-alive request (bench/serving.py measured it).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

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
            raise RequestError(
                401,
                "the bearer token is not valid"
                if given
                else "this endpoint needs 'Authorization: Bearer <SERVING_TOKEN>'",
                {"WWW-Authenticate": 'Bearer realm="serving"'},
                field="Authorization",
            )
        self._length = self._content_length()
        self._admitted = True

    def _authorized(self) -> bool:
        if not self.options.token:
            return True
        scheme, _, given = (self.headers.get("Authorization") or "").strip().partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.options.token.encode())

    def _content_length(self) -> int:
        if self.headers.get("Transfer-Encoding"):
            raise RequestError(
                411,
                "send the body with a Content-Length; chunked transfer encoding is not accepted",
                field="Transfer-Encoding",
            )
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
            raise RequestError(
                413,
                f"the body is {length:,} bytes; at most {limit:,} are accepted (SERVING_MAX_BODY_BYTES)",
                field="Content-Length",
            )
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
            raise RequestError(
                408, f"the body did not arrive ({self.options.read_timeout:.0f}s without a byte)", field="body"
            ) from None
        if len(raw) < self._length:
            raise RequestError(
                400, f"the body ended after {len(raw):,} of its {self._length:,} bytes", field="Content-Length"
            )
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
            return 200, {
                "status": "ok",
                "pid": os.getpid(),
                "config": str(self.store.config_path),
                "config_error": self.store.config_error,
                "models": self.store.summary(),
                "options": self.options.public(),
            }
        if path.rstrip("/") == "/recommend":
            self._only(method, "GET")
            return 200, self._recommend(parse_qs(url.query))
        if path.startswith("/v1/models/"):
            return self._models(method, path[len("/v1/models/") :])
        raise RequestError(
            404, f"no route {path}; try /v1/models/<name>, /v1/models/<name>:predict, /recommend or /healthz"
        )

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
            return 200, {
                "model_spec": {"name": name, "version": str(model.version)},
                "metadata": {
                    "signatures": config.get("signatures", {}),
                    "k": model.recommender.k,
                    "model_type": config.get("model_type"),
                    "retrieval": config.get("retrieval"),
                    "catalog_size": config.get("catalog_size"),
                },
            }
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


def serve(
    config: str | Path,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    poll_seconds: float = POLL_SECONDS,
    options: ServerOptions | None = None,
) -> None:
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
        log.warning(
            "listening on %s without SERVING_TOKEN: anyone who reaches the port may use the models; "
            "set SERVING_TOKEN or keep the port behind a firewall",
            host,
        )
    log.info(
        "serving on http://%s:%s (pid %s), models from %s; %s",
        host,
        server.server_address[1],
        os.getpid(),
        config,
        options,
    )
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
    parser = argparse.ArgumentParser(prog="python -m ml_pipeline.serving.server", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="the models config JSON file (re-read when it changes)")
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument("--poll-seconds", type=float, default=POLL_SECONDS, help="how often the config is checked")
    parser.add_argument(
        "--read-timeout",
        type=float,
        default=READ_TIMEOUT_SECONDS,
        help="seconds a connection may stay silent (mid-request or idle) before it is closed",
    )
    parser.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
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
