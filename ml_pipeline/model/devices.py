"""Where training runs: the ``tf.distribute`` strategy for the GPUs requested and the devices visible.

* ``training.hardware.gpu_count`` 0: the CPU (even where GPUs are visible, with a note);
* 1 GPU (or 1 requested): ``OneDeviceStrategy`` on it; more: ``MirroredStrategy``
  over the first ``gpu_count`` GPUs (the global batch is ``batch_size``);
* GPUs requested but none visible: a failure naming ``training.hardware.gpu_count``,
  unless ``allow_cpu_fallback``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ml_pipeline.errors import ConfigError, Problem
from ml_pipeline.spec import HardwareConfig


@dataclass
class Placement:
    strategy: Any  # tf.distribute.Strategy
    name: str
    devices: list[str]
    note: str = ""


def choose_strategy(hardware: HardwareConfig, log, visible_gpus: list[str] | None = None) -> Placement:
    """The tf.distribute strategy for the requested GPUs and what is visible."""
    import tensorflow as tf

    gpus = visible_gpus if visible_gpus is not None else [d.name for d in tf.config.list_logical_devices("GPU")]
    wanted = hardware.gpu_count
    log.info("GPUs requested: %d; visible to TensorFlow: %d %s", wanted, len(gpus), gpus)
    if wanted == 0:
        if gpus:
            return Placement(
                tf.distribute.OneDeviceStrategy("/cpu:0"),
                "OneDeviceStrategy",
                ["/cpu:0"],
                f"{len(gpus)} GPU(s) visible but training.hardware.gpu_count is 0",
            )
        return Placement(tf.distribute.get_strategy(), "default (CPU)", ["/cpu:0"])
    if not gpus:
        if not hardware.allow_cpu_fallback:
            raise ConfigError(
                Problem(
                    "training.hardware.gpu_count",
                    f"{wanted} GPU(s) requested but TensorFlow sees no GPU on this worker; run it on a GPU "
                    "worker, set gpu_count to 0, or set training.hardware.allow_cpu_fallback to train on the CPU",
                )
            )
        return Placement(
            tf.distribute.get_strategy(),
            "default (CPU)",
            ["/cpu:0"],
            f"{wanted} GPU(s) requested, none visible: training on the CPU (allow_cpu_fallback)",
        )
    use = gpus[:wanted]
    note = f"{wanted} GPUs requested, only {len(gpus)} visible" if len(gpus) < wanted else ""
    if len(use) == 1:
        return Placement(tf.distribute.OneDeviceStrategy(use[0]), "OneDeviceStrategy", use, note)
    return Placement(tf.distribute.MirroredStrategy(use), "MirroredStrategy", use, note)
