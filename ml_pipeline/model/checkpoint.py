"""The Trainer's checkpoints: what survives between epochs and between attempts of one stage run.

After every epoch the weights, the optimizer state and the :class:`LoopState`
(epoch, history, early-stopping state) are written to the stage's work
folder, arrays first and ``state.json`` pointing at them last, so a crash
at any moment leaves the previous complete checkpoint. A checkpoint
written under another key (a different config or different inputs) is
ignored.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ml_pipeline.artifacts import write_json_atomic

CHECKPOINT_DIR = "checkpoint"


class CheckpointError(Exception):
    """The checkpoint cannot give what was asked of it."""


class Checkpoint:
    """Weights, optimizer state and loop state of the last finished epoch, in the stage's work folder."""

    def __init__(self, folder: Path, key: str):
        self.folder, self.key = folder / CHECKPOINT_DIR, key
        self.state_file = self.folder / "state.json"
        self._best: str | None = None  # file of the best epoch's weights

    def load(self, log) -> dict | None:
        if not self.state_file.is_file():
            return None
        try:
            state = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            log.warning("ignoring an unreadable checkpoint in %s", self.folder)
            return None
        if state.get("key") != self.key:
            log.info("ignoring a checkpoint written for a different config or inputs")
            return None
        for name in (state["weights"], state["optimizer"], state.get("best_weights")):
            if name and not (self.folder / name).is_file():
                log.warning("ignoring an incomplete checkpoint (%s is missing)", name)
                return None
        self._best = state.get("best_weights")
        return state

    def arrays(self, name: str) -> list[np.ndarray]:
        with np.load(self.folder / name) as data:
            return [data[f"a{i}"] for i in range(len(data.files))]

    def save(
        self, state: dict, weights: list[np.ndarray], optimizer: list[np.ndarray], best: list[np.ndarray] | None
    ) -> None:
        """Write the arrays, then ``state.json`` pointing at them (atomically), then drop older arrays.

        ``best`` (the weights of a new best epoch: ``weights`` itself, or the averaged weights the epoch
        was evaluated with) is written when given; otherwise the previous best file is kept.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        epoch = state["epoch"]
        names = {"weights": f"weights-{epoch}.npz", "optimizer": f"optimizer-{epoch}.npz"}
        self._write(names["weights"], weights)
        self._write(names["optimizer"], optimizer)
        if best is weights:
            names["best_weights"] = names["weights"]  # the same arrays: one file
        elif best is not None:
            names["best_weights"] = f"best-{epoch}.npz"
            self._write(names["best_weights"], best)
        elif self._best:
            names["best_weights"] = self._best
        write_json_atomic(self.state_file, {**state, **names, "key": self.key})
        self._best = names.get("best_weights")
        keep = set(names.values())
        for path in self.folder.glob("*.npz"):
            if path.name not in keep:
                path.unlink(missing_ok=True)

    def best_weights_file(self) -> str:
        if not self._best:
            raise CheckpointError("no best weights were checkpointed")
        return self._best

    def _write(self, name: str, arrays: list[np.ndarray]) -> None:
        tmp = self.folder / f"{name}.tmp-{os.getpid()}.npz"
        np.savez(tmp, **{f"a{i}": a for i, a in enumerate(arrays)})
        os.replace(tmp, self.folder / name)

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


@dataclass
class LoopState:
    """What survives between epochs and attempts (it is checkpointed with the weights)."""

    epoch: int = 0  # epochs finished
    monitor: str | None = None  # the metric early stopping watches
    best_value: float | None = None  # its best value so far
    best_epoch: int | None = None
    wait: int = 0  # epochs since the best one
    stopped_at: int | None = None  # the epoch early stopping ended training at
    train_seconds: float = 0.0
    examples: int = 0
    history: list[dict] = field(default_factory=list)

    def record(
        self,
        epoch: int,
        metrics: dict,
        min_delta: float,
        patience: int | None,
        monitor: str = "val_loss",
        higher_is_better: bool = False,
    ) -> bool:
        """Add an epoch's metrics; True when its ``monitor`` is the best so far (``patience`` None: never stop)."""
        self.epoch, self.monitor = epoch, monitor
        self.history.append({"epoch": epoch, **metrics})
        value = metrics.get(monitor)
        if value is None:
            return False
        sign = 1.0 if higher_is_better else -1.0
        if self.best_value is None or (math.isfinite(value) and sign * (value - self.best_value) > min_delta):
            self.best_value, self.best_epoch, self.wait = value, epoch, 0
            return True
        self.wait += 1
        if patience is not None and self.wait >= patience:
            self.stopped_at = epoch
        return False

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}
