"""The images' entrypoint on a machine without GPUs (this one): it says so, and a GPU run never starts."""

from __future__ import annotations

import os
import subprocess
import sys

from ml_pipeline.kfp.entrypoint import NO_GPU_EXIT


def entrypoint(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "ml_pipeline.kfp.entrypoint", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def test_a_gpu_run_with_no_gpu_visible_is_refused_before_its_command_starts():
    done = entrypoint("--gpus", "2", "--", sys.executable, "-c", "print('training started')")
    assert done.returncode == NO_GPU_EXIT
    assert "GPUs visible to TensorFlow: 0" in done.stdout
    assert "asks for 2 GPU(s) and TensorFlow sees none" in done.stderr
    assert "training started" not in done.stdout


def test_the_gpu_image_asks_for_gpus_through_its_environment():
    done = entrypoint("--", sys.executable, "-c", "print('training started')", env={**os.environ, "REQUIRE_GPUS": "1"})
    assert done.returncode == NO_GPU_EXIT


def test_a_cpu_run_prints_the_visible_gpus_and_runs_its_command():
    done = entrypoint("--", sys.executable, "-c", "print('training started')")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "GPUs visible to TensorFlow: 0"
    assert "training started" in done.stdout
