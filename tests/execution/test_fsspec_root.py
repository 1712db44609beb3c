"""The whole pipeline over a non-local fsspec artifact root (``memory://``, as ``gs://`` through gcsfs in
production): every stage's artifact, manifest, log and the run record live only there, and a second run
reuses them from there."""

import uuid
from pathlib import Path

import fsspec
import pytest

from ml_pipeline import demo_data
from ml_pipeline.artifact_types import Examples
from ml_pipeline.demo_configs import DEMO_FEATURE_CONFIG, DEMO_MAPPING, DEMO_MODEL_CONFIGS
from ml_pipeline.reporting import InMemoryReporter
from ml_pipeline.runner import PipelineRunner
from ml_pipeline.spec import STAGES, PipelineSpec

pytestmark = pytest.mark.slow


@pytest.fixture
def root():
    """A fresh in-memory root, removed afterwards (the memory filesystem is shared by the whole process)."""
    url = f"memory://artifacts-{uuid.uuid4().hex[:8]}"
    yield url
    fs = fsspec.filesystem("memory")
    if fs.exists(url):
        fs.rm(url, recursive=True)


@pytest.fixture
def spec(tmp_path) -> PipelineSpec:
    path = tmp_path / "purchases.parquet"
    demo_data.write(demo_data.DemoSpec(rows=3_000, seed=5, products=200), path)
    return PipelineSpec.model_validate(
        {
            "name": "fsspec-root",
            "dataset": {"source": {"kind": "file", "path": str(path)}, "mapping": DEMO_MAPPING},
            "split": {"strategy": "time_holdout", "holdout_days": 45},
            "features": DEMO_FEATURE_CONFIG,
            "model": DEMO_MODEL_CONFIGS["Retrieval two-tower"],
            "training": {"epochs": 1, "batch_size": 256},
        }
    )


def test_the_whole_pipeline_runs_over_a_memory_root_and_reuses_its_artifacts_from_there(spec, root):
    fs = fsspec.filesystem("memory")
    first = PipelineRunner(spec, root, run_id="r1", reporter=InMemoryReporter()).run()

    assert first.status == "completed", first.error
    assert {name: s["status"] for name, s in first.stages.items()} == {name: "completed" for name in STAGES}
    for name, artifact in first.artifacts.items():
        assert artifact.uri == f"memory:///{root.removeprefix('memory://')}/fsspec-root/runs/r1/{name}"
        assert fs.exists(f"{artifact.uri}/manifest.json") and fs.exists(f"{artifact.uri}/stage.log")
        assert not fs.exists(f"{artifact.uri}/output.partial")
        for relative, size in artifact.files.items():
            assert fs.size(f"{artifact.uri}/output/{relative}") == size
    examples = first.artifacts["ExampleGen"].files
    assert set(examples) >= {"catalog.parquet", "train/part-0.parquet", "eval/part-0.parquet"}
    assert "serving_model/saved_model.pb" in first.artifacts["Pusher"].files
    assert first.artifacts["Pusher"].properties["serving_model"].startswith("memory:///")
    assert fs.exists(f"{root}/fsspec-root/runs/r1/run.json")
    assert not Path("memory:").exists()  # not a local folder named like the URL, as a Path would make it

    second = PipelineRunner(spec, root, run_id="r2", reporter=InMemoryReporter()).run()
    assert {name: s["status"] for name, s in second.stages.items()} == {name: "cached" for name in STAGES}

    fs.rm(f"{first.artifacts['ExampleGen'].uri}/output/catalog.parquet")  # a file gone: that stage reruns
    third = PipelineRunner(spec, root, run_id="r3", reporter=InMemoryReporter())
    assert [step.action for step in third.plan()][:2] == ["reuse", "run"]
    assert third.run_one("ExampleGen") == "completed"
    assert Examples.FILES["catalog"] in third.store.completed("r3", "ExampleGen").files
