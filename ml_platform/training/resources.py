"""Resource utilisation of the process running a pipeline: CPU, memory, and GPUs when visible."""

from __future__ import annotations

import shutil
import subprocess

import psutil

_process = psutil.Process()
_process.cpu_percent(None)  # the first call only starts the measurement window


def gpu_utilisation() -> list[dict]:
    """Each visible GPU's memory and utilisation, read with nvidia-smi (absent: no GPUs)."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            [
                "nvidia-smi",
                "--query-gpu=index,name,memory.used,memory.total,utilization.gpu",
                "--format=csv,noheader,nounits",
            ],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        index, name, used, total, util = [part.strip() for part in line.split(",")]
        gpus.append(
            {
                "index": int(index),
                "name": name,
                "memory_used_mb": float(used),
                "memory_total_mb": float(total),
                "utilization_pct": float(util),
            }
        )
    return gpus


def sample() -> dict:
    return {
        "cpu_pct": _process.cpu_percent(None),
        "rss_mb": round(_process.memory_info().rss / 2**20, 1),
        "gpus": gpu_utilisation(),
    }
