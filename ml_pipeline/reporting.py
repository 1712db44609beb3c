"""One reporter interface for everything a run tells the outside.

The runner and the stages only ever call a :class:`Reporter`; where the
events go (memory for tests, a JSON-lines file, the console, the platform's
database or a signed webhook) is the implementation's business.
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
import uuid
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, TextIO


class Reporter:
    """Receives run events. Every method is optional to override; the base ignores events."""

    def stage_started(self, stage: str, info: dict[str, Any]) -> None: ...

    def stage_completed(self, stage: str, summary: str, properties: dict[str, Any], cached: bool) -> None: ...

    def stage_failed(self, stage: str, message: str, traceback: str) -> None: ...

    def stage_skipped(self, stage: str, reason: str) -> None: ...

    def epoch_completed(self, epoch: int, total_epochs: int, metrics: dict[str, Any]) -> None: ...

    def log(self, stage: str, level: str, message: str) -> None: ...

    def run_finished(self, status: str, summary: dict[str, Any]) -> None: ...


class EventReporter(Reporter, ABC):
    """Turns every call into one event dict and hands it to :meth:`emit`."""

    @abstractmethod
    def emit(self, event: dict[str, Any]) -> None:
        """Deliver one event (subclasses decide where to)."""

    def _emit(self, kind: str, **fields) -> None:
        self.emit({"event": kind, "time": time.time(), **fields})

    def stage_started(self, stage, info):
        self._emit("stage_started", stage=stage, info=info)

    def stage_completed(self, stage, summary, properties, cached):
        self._emit("stage_completed", stage=stage, summary=summary, properties=properties, cached=cached)

    def stage_failed(self, stage, message, traceback):
        self._emit("stage_failed", stage=stage, message=message, traceback=traceback)

    def stage_skipped(self, stage, reason):
        self._emit("stage_skipped", stage=stage, reason=reason)

    def epoch_completed(self, epoch, total_epochs, metrics):
        self._emit("epoch_completed", epoch=epoch, total_epochs=total_epochs, metrics=metrics)

    def log(self, stage, level, message):
        self._emit("log", stage=stage, level=level, message=message)

    def run_finished(self, status, summary):
        self._emit("run_finished", status=status, summary=summary)


class InMemoryReporter(EventReporter):
    """Keeps events in a list: the test double."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def emit(self, event):
        with self._lock:
            self.events.append(event)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == kind]


class JsonLinesReporter(EventReporter):
    """Appends one JSON object per event to a file (flushed each time, so a crash loses nothing written)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def emit(self, event):
        line = json.dumps(event, default=str)
        with self._lock, open(self.path, "a") as handle:
            handle.write(line + "\n")
            handle.flush()


class ConsoleReporter(Reporter):
    """Human progress for the CLI: stage by stage, epoch by epoch."""

    HEADLINE = ("loss", "val_loss", "recall_at_", "rmse", "mae", "examples_per_second")

    def __init__(self, stream: TextIO = sys.stdout, verbose: bool = False) -> None:
        self.stream = stream
        self.verbose = verbose
        self._started: dict[str, float] = {}

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def stage_started(self, stage, info):
        self._started[stage] = time.monotonic()
        self._print(f"▶ {stage} …")

    def stage_completed(self, stage, summary, properties, cached):
        took = time.monotonic() - self._started.pop(stage, time.monotonic())
        label = "reused (cached)" if cached else f"done in {took:.1f}s"
        self._print(f"✓ {stage}: {summary} — {label}")

    def stage_failed(self, stage, message, traceback):
        self._print(f"✗ {stage} failed: {message}")

    def stage_skipped(self, stage, reason):
        self._print(f"· {stage} skipped: {reason}")

    def epoch_completed(self, epoch, total_epochs, metrics):
        # The weight statistics are for charts; people watch losses and quality.
        shown = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and k.startswith(self.HEADLINE)}
        text = "  ".join(f"{k}={v:.4g}" for k, v in sorted(shown.items()))
        self._print(f"    epoch {epoch}/{total_epochs}  {text}")

    def log(self, stage, level, message):
        if self.verbose or level in ("WARNING", "ERROR"):
            self._print(f"    [{stage}] {level}: {message}")

    def run_finished(self, status, summary):
        self._print(f"Run {status}.")


class FanOutReporter(Reporter):
    """Sends every event to several reporters, in order."""

    def __init__(self, *reporters: Reporter) -> None:
        self.reporters = [r for r in reporters if r is not None]

    def _each(self, method: str, *args) -> None:
        for reporter in self.reporters:
            getattr(reporter, method)(*args)

    def stage_started(self, stage, info):
        self._each("stage_started", stage, info)

    def stage_completed(self, stage, summary, properties, cached):
        self._each("stage_completed", stage, summary, properties, cached)

    def stage_failed(self, stage, message, traceback):
        self._each("stage_failed", stage, message, traceback)

    def stage_skipped(self, stage, reason):
        self._each("stage_skipped", stage, reason)

    def epoch_completed(self, epoch, total_epochs, metrics):
        self._each("epoch_completed", epoch, total_epochs, metrics)

    def log(self, stage, level, message):
        self._each("log", stage, level, message)

    def run_finished(self, status, summary):
        self._each("run_finished", status, summary)


def sign(secret: str, timestamp: str, delivery_id: str, body: bytes) -> str:
    """HMAC-SHA256 over "<timestamp>.<delivery id>.<body>": the signature a webhook receiver checks."""
    import hashlib
    import hmac

    message = f"{timestamp}.{delivery_id}.".encode() + body
    return f"sha256={hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()}"


def _json_safe(value):
    """NaN and infinities as null: JSON has no such numbers, and the platform refuses a body with them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(inner) for key, inner in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(inner) for inner in value]
    return value


WEBHOOK_PATHS = {
    "stage_started": "stage-started",
    "stage_completed": "stage-complete",
    "stage_skipped": "stage-complete",
    "stage_failed": "failed",
    "epoch_completed": "epoch-complete",
    "run_finished": "completed",
    "compute_attempt": "attempt",
}


class WebhookReporter(EventReporter):
    """Posts events to the platform, signed with the run's secret (for runners on other machines).

    ``base_url`` is the run's webhook root, e.g.
    ``https://ml.example.com/api/training-runs/42/webhook``. Each event goes
    to ``<base_url>/<event path>/`` with ``X-Timestamp``, ``X-Delivery-Id``
    and ``X-Signature`` headers; log lines are not sent (they stay in the
    stage logs). Every event gets its own delivery id, kept when the delivery
    is retried: the platform applies a delivery once, so a retry of one that
    did arrive (its answer lost) changes nothing. A delivery is retried a few
    times; a reporter must never fail the run.
    """

    def __init__(self, base_url: str, secret: str, timeout: float = 10.0, retries: int = 3) -> None:
        self.base_url = base_url.rstrip("/")
        self.secret = secret
        self.timeout = timeout
        self.retries = retries
        self.failures: list[str] = []

    def emit(self, event):
        import urllib.request

        path = WEBHOOK_PATHS.get(event["event"])
        if path is None:
            return
        body = json.dumps(_json_safe(event), default=str, allow_nan=False).encode()
        delivery_id = uuid.uuid4().hex
        for attempt in range(self.retries):
            timestamp = str(int(time.time()))
            request = urllib.request.Request(
                f"{self.base_url}/{path}/",
                data=body,
                method="POST",
                headers={
                    "Content-Type": "application/json",
                    "X-Timestamp": timestamp,
                    "X-Delivery-Id": delivery_id,
                    "X-Signature": sign(self.secret, timestamp, delivery_id, body),
                },
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout):
                    return
            except Exception as error:  # network trouble: retry, then remember and go on
                if getattr(error, "code", 500) < 500:
                    self.failures.append(f"{path}: {error}")
                    return
                if attempt + 1 < self.retries:
                    time.sleep(0.5 * (attempt + 1))
        self.failures.append(f"{path}: gave up after {self.retries} attempts")
