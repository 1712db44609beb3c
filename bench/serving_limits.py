"""Benchmark: what refused requests cost the serving endpoint's memory, against the same server without limits.

    .venv/bin/python bench/serving_limits.py [--repeats 10] [--instances 520000]

Two serving processes (``python -m ml_pipeline.serving.server``, as the
platform starts them, an empty models config) on free loopback ports:

* **limited**: the defaults (``SERVING_MAX_BODY_BYTES`` 4 MiB,
  ``SERVING_MAX_INSTANCES`` 1,000);
* **baseline**: the old limits (a 64 MiB body, no instance limit): what the
  same requests cost when the server reads and parses them.

Each gets the same requests, ``--repeats`` times, one at a time, on a new
connection each:

* the attack of the hardening issue: a ``:predict`` body of 520,000
  instances (53 MB), sent in full before the answer is read (the limited server
  answers 413 without reading it and discards what arrives; the baseline
  reads and parses it, then answers 404: no model is served);
* the same request announced with only its headers (``Content-Length``), no
  body sent: the limited server must answer at once;
* the largest body the limited server accepts (4 MiB) holding too many
  instances (400), and the same size of JSON nested 2 million levels (400).

The server's RSS (psutil) is sampled every 5 ms while each phase runs: the
peak, and the RSS after the phase, against the RSS before the first request.
Targets (limited server): a refused oversized request grows RSS by less than
8 MiB at its peak and leaves less than 4 MiB behind; a full 4 MiB body of
too many instances peaks below 256 MiB of growth and leaves less than 64 MiB
behind; every answer is the expected status. The table is also saved to
``bench/results/serving_limits.txt``; the exit status is 1 when a target
fails.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import publish  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "serving_limits.txt"
MIB = 1024 * 1024
PREDICT = "/v1/models/b2b-recs.recs:predict"
INSTANCE = {"buyer_id": "B000001", "buyer_segment": "retail", "buyer_city": "Berlin", "timestamp": 1_700_000_000}
TARGETS = {  # phase: (peak growth, growth left behind), MiB, limited server only
    "oversized, sent in full": (8, 4),
    "oversized, headers only": (8, 4),
    "4 MiB of too many instances": (256, 64),
    "4 MiB nested 2M levels": (256, 64),
}
EXPECTED = {
    "limited": {
        "oversized, sent in full": 413,
        "oversized, headers only": 413,
        "4 MiB of too many instances": 400,
        "4 MiB nested 2M levels": 400,
    },
    "baseline": {
        "oversized, sent in full": 404,
        "oversized, headers only": None,
        "4 MiB of too many instances": 404,
        "4 MiB nested 2M levels": 400,
    },
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    name: str
    process: subprocess.Popen
    port: int

    @property
    def rss(self) -> int:
        return psutil.Process(self.process.pid).memory_info().rss


def start(name: str, folder: Path, env: dict[str, str]) -> Server:
    config = folder / f"{name}.json"
    config.write_text(json.dumps({"models": {}}))
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ml_pipeline.serving.server",
            "--config",
            str(config),
            "--port",
            str(port),
            "--log-level",
            "WARNING",
        ],
        cwd=ROOT,
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return Server(name, process, port)
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit(f"the {name} server did not start")


def request(port: int, head: list[str], body: bytes, timeout: float = 120.0) -> int | None:
    """Send the head and body, then read the status; None when the server answered nothing (it waits)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
            response = http.client.HTTPResponse(sock)
            response.begin()
            response.read()
            return response.status
        except (TimeoutError, ConnectionError):
            return None


@dataclass
class Phase:
    server: str
    name: str
    before: int
    statuses: list = field(default_factory=list)
    peak: int = 0
    after: int = 0
    seconds: list = field(default_factory=list)


def run_phase(
    server: Server, name: str, head: list[str], body: bytes, repeats: int, baseline_rss: int, timeout: float = 120.0
) -> Phase:
    phase = Phase(server.name, name, baseline_rss)
    stop, peak = threading.Event(), [server.rss]

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], server.rss)
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    for _ in range(repeats):
        started = time.perf_counter()
        phase.statuses.append(request(server.port, head, body, timeout))
        phase.seconds.append(time.perf_counter() - started)
    stop.set()
    sampler.join()
    time.sleep(0.3)  # let the handler threads finish their lingering close
    phase.peak, phase.after = max(peak[0], server.rss), server.rss
    return phase


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--instances", type=int, default=520_000, help="instances of the oversized body")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()

    oversized = json.dumps({"instances": [INSTANCE] * args.instances}).encode()
    row = json.dumps(INSTANCE).encode() + b","
    many = b'{"instances": [' + row * ((4 * MIB - 64) // len(row)) + b"{}]}"
    deep = b"[" * (2 * MIB - 1) + b"]" * (2 * MIB - 1)
    post = ["POST " + PREDICT + " HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]

    phases: list[Phase] = []
    with tempfile.TemporaryDirectory(prefix="serving-bench-") as folder:
        servers = [
            start("limited", Path(folder), {"SERVING_MAX_BODY_BYTES": str(4 * MIB), "SERVING_MAX_INSTANCES": "1000"}),
            start(
                "baseline", Path(folder), {"SERVING_MAX_BODY_BYTES": str(64 * MIB), "SERVING_MAX_INSTANCES": str(10**9)}
            ),
        ]
        try:
            for server in servers:
                request(server.port, ["GET /healthz HTTP/1.1", "Host: 127.0.0.1"], b"")
                baseline_rss = server.rss
                for name, body, send in (
                    ("oversized, sent in full", oversized, True),
                    ("oversized, headers only", oversized, False),
                    ("4 MiB of too many instances", many, True),
                    ("4 MiB nested 2M levels", deep, True),
                ):
                    if server.name == "baseline" and not send:
                        continue  # the baseline would wait for the body: nothing to measure
                    head = post + [f"Content-Length: {len(body)}"]
                    phases.append(
                        run_phase(
                            server,
                            name,
                            head,
                            body if send else b"",
                            args.repeats,
                            baseline_rss,
                            timeout=10.0 if not send else 120.0,
                        )
                    )
        finally:
            for server in servers:
                server.process.terminate()
                server.process.wait(timeout=10)

    lines = [
        f"Serving endpoint limits: memory of refused requests — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"{os.cpu_count()} CPUs, {psutil.virtual_memory().total / 1024**3:.0f} GB RAM, Python "
        f"{platform.python_version()}; {args.repeats} requests per phase, one at a time, each on a new "
        f"loopback connection; the oversized body: {len(oversized) / 1e6:.0f} MB, {args.instances:,} instances",
        "RSS of the serving process (psutil, sampled every 5 ms), MiB; 'before' is before the first request",
        "",
        f"{'server':<9} {'phase':<28} {'status':>7} {'before':>7} {'peak':>7} {'after':>7} {'+peak':>7} "
        f"{'+after':>7} {'s/req':>6}  target",
    ]
    ok = True
    for phase in phases:
        growth_peak, growth_after = (phase.peak - phase.before) / MIB, (phase.after - phase.before) / MIB
        statuses = sorted({str(s) for s in phase.statuses})
        expected = EXPECTED[phase.server][phase.name]
        right = all(s == expected for s in phase.statuses)
        verdict = ""
        if phase.server == "limited":
            peak_target, after_target = TARGETS[phase.name]
            passed = right and growth_peak < peak_target and growth_after < after_target
            ok = ok and passed
            verdict = f"+peak < {peak_target}, +after < {after_target}, {expected}: {'PASS' if passed else 'FAIL'}"
        lines.append(
            f"{phase.server:<9} {phase.name:<28} {','.join(statuses):>7} {phase.before / MIB:>7.0f} "
            f"{phase.peak / MIB:>7.0f} {phase.after / MIB:>7.0f} {growth_peak:>+7.1f} {growth_after:>+7.1f} "
            f"{sum(phase.seconds) / len(phase.seconds):>6.2f}  {verdict}"
        )
    return publish("\n".join(lines) + "\n", ok, args.results)


if __name__ == "__main__":
    sys.exit(main())
