"""What every benchmark script does the same way: count the CPUs it may use, and print and save its table.

The scripts run as files (``.venv/bin/python bench/<name>.py``), put the repository root on ``sys.path``
and import this module as ``bench.common``.
"""

from __future__ import annotations

import os
from pathlib import Path


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity where the OS has one), not the machine's count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def publish(text: str, passed: bool, results: Path) -> int:
    """Print the table, save it at ``results`` and answer the exit status: 1 when a target failed."""
    print(text, end="")
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(text)
    return 0 if passed else 1
