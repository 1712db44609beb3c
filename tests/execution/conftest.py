"""Fixtures of the execution-plane tests.

``serving_endpoint`` starts the serving server (``ml_pipeline.serving.server``)
in this process, on a real loopback socket, and talks raw HTTP to it: the
attacks on it are malformed requests that a well-behaved client library would
never send.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

import pytest

from ml_pipeline.serving.requests import ServerOptions
from ml_pipeline.serving.server import ServingServer
from ml_pipeline.serving.store import ModelStore, ServedModel

CLIENT_TIMEOUT = 10.0  # far below the server's read timeout: a server that waits for a body fails the test


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    json: Any
    sock: socket.socket = field(repr=False)

    def closed_by_server(self) -> bool:
        """Whether the server ended the connection after answering (its FIN, or a reset)."""
        self.sock.settimeout(CLIENT_TIMEOUT)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False


@dataclass
class Endpoint:
    port: int
    store: ModelStore
    sockets: list[socket.socket] = field(default_factory=list)

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=CLIENT_TIMEOUT)
        self.sockets.append(sock)
        return sock

    def send(self, head: list[str], body: bytes = b"", sock: socket.socket | None = None) -> Answer:
        """Send a request line and headers exactly as given (and ``body``), then read one answer."""
        sock = sock or self.connect()
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        return self.read_answer(sock)

    @staticmethod
    def read_answer(sock: socket.socket) -> Answer:
        response = http.client.HTTPResponse(sock)
        response.begin()
        raw = response.read()
        return Answer(
            response.status, {k.lower(): v for k, v in response.getheaders()}, json.loads(raw) if raw else None, sock
        )

    def call(
        self, method: str, path: str, body: Any = None, token: str | None = None, sock: socket.socket | None = None
    ) -> Answer:
        """A well-formed request (JSON ``body``, the right ``Content-Length``, keep-alive)."""
        data = b"" if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
        head = [f"{method} {path} HTTP/1.1", "Host: localhost"]
        if token is not None:
            head.append(f"Authorization: Bearer {token}")
        if data or method == "POST":
            head += ["Content-Type: application/json", f"Content-Length: {len(data)}"]
        return self.send(head, data, sock)


@pytest.fixture
def serving_endpoint(tmp_path):
    """``start(models, loader=..., options=...)``: a serving server on a free loopback port serving ``models``
    (a config's ``models`` object) loaded by ``loader`` (a stand-in for SavedModels, or the real one);
    every server and client socket is closed at teardown."""
    started: list[tuple[ServingServer, threading.Thread, Endpoint]] = []

    def start(models: dict | None = None, *, loader=ServedModel, options: ServerOptions | None = None) -> Endpoint:
        config = tmp_path / f"models-{len(started)}.json"
        config.write_text(json.dumps({"models": models or {}}))
        store = ModelStore(config, loader=loader)
        store.poll(force=True)  # loads now, in this thread: the endpoint serves them from its first request
        server = ServingServer(("127.0.0.1", 0), store, options)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        endpoint = Endpoint(server.server_address[1], store)
        started.append((server, thread, endpoint))
        return endpoint

    yield start
    for server, thread, endpoint in started:
        for sock in endpoint.sockets:
            sock.close()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
