"""The pipeline images (no Docker engine here): their pins are pyproject.toml's, and what they run exists."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def dockerfile(name: str) -> str:
    return (ROOT / name).read_text()


def tensorflow_pin() -> str:
    [pin] = [d for d in PROJECT["dependencies"] if d.startswith("tensorflow-cpu")]
    return re.search(r"~=(\d+\.\d+)", pin).group(1)


def test_the_cpu_image_has_the_python_pyproject_requires():
    assert PROJECT["requires-python"] == ">=3.11,<3.12"
    assert re.search(r"^FROM python:3\.11-", dockerfile("Dockerfile"), re.MULTILINE)


def test_the_gpu_image_is_tensorflows_official_gpu_image_of_the_pinned_version():
    assert re.search(
        rf"^FROM tensorflow/tensorflow:{re.escape(tensorflow_pin())}\.\d+-gpu$",
        dockerfile("Dockerfile.gpu"),
        re.MULTILINE,
    )
    assert "REQUIRE_GPUS=1" in dockerfile("Dockerfile.gpu")


def test_both_images_start_with_the_gpu_check():
    for name in ("Dockerfile", "Dockerfile.gpu"):
        assert 'ENTRYPOINT ["python", "-m", "ml_pipeline.kfp.entrypoint", "--"]' in dockerfile(name)


def test_the_images_install_pyprojects_dependencies_and_the_gpu_one_leaves_out_tensorflow_cpu(tmp_path):
    """The RUN line that writes /tmp/requirements.txt, run here on the real pyproject.toml."""
    for name, has_cpu_tf in (("Dockerfile", True), ("Dockerfile.gpu", False)):
        script = re.search(r'RUN python -c "(.*?)" > /tmp/requirements.txt', dockerfile(name), re.DOTALL).group(1)
        script = script.replace("\\\n", "")
        done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
        requirements = done.stdout.splitlines()
        assert ("tensorflow-cpu~=2.20.0" in requirements) is has_cpu_tf
        assert set(PROJECT["optional-dependencies"]["cloud"]) <= set(requirements)


def test_the_docker_context_holds_only_the_packages_and_the_dependency_list():
    kept = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line.startswith("!")]
    assert kept == ["!pyproject.toml", "!README.md", "!ml_pipeline/", "!ml_platform/"]
