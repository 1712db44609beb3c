"""The Trainer's splits streamed from Parquet: the batches, the results against the in-memory path, the memory.

Tolerance: with a shuffle buffer that holds the whole split the streamed
batches ARE the in-memory ones (same seed, same losses); with a buffer far
smaller than the split the order differs, and the final training loss agrees
within 10 % and Recall@10 on eval within 0.05 (absolute).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ml_pipeline import demo_data
from ml_pipeline.config.features import FeatureConfig
from ml_pipeline.demo_configs import DEMO_FEATURE_CONFIG, DEMO_MAPPING, DEMO_MODEL_CONFIGS
from ml_pipeline.model import stream
from ml_pipeline.model.inputs import tower_batch
from ml_pipeline.spec import PipelineSpec
from ml_pipeline.stages import trainer
from tests.execution.test_transform_trainer import purchases, run, spec_for

REPO = Path(__file__).resolve().parents[2]
PART_ROWS = (1_000, 2_500, 700)  # three parts with row groups of 300 rows
MEMORY_ROWS = 500_000
# How much higher the streaming Trainer may peak on 10x the rows. Its peak varies by about 50-120 MB from
# run to run on the same split (TensorFlow's threads and allocator), so the bound leaves room for that.
MEMORY_BOUND_MB = 160


def _convert(table: pa.Table) -> dict[str, np.ndarray]:
    return {
        "id": np.asarray(table.column("id").to_pylist(), dtype=object),
        "row": table.column("row").to_numpy(),
    }


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("split")
    start = 0
    for index, rows in enumerate(PART_ROWS):
        numbers = np.arange(start, start + rows, dtype=np.int64)
        table = pa.table({"id": [f"r{n}" for n in numbers], "row": numbers, "unused": numbers * 2})
        pq.write_table(table, folder / f"part-{index}.parquet", row_group_size=300)
        start += rows
    return folder


def rows_of(dataset) -> list[np.ndarray]:
    return [batch["row"].numpy() for batch in dataset]


def test_a_split_within_the_buffer_streams_exactly_the_in_memory_batches(split):
    in_memory = stream.ArraySplit(_convert(pq.read_table(split)))
    streamed = stream.ParquetSplit(split, ["id", "row"], _convert, buffer_rows=10_000)
    for kwargs in ({"seed": 7, "epoch": lambda: 3}, {"seed": 7, "epoch": lambda: 3, "drop_remainder": True}, {}):
        expected, got = rows_of(in_memory.batches(128, **kwargs)), rows_of(streamed.batches(128, **kwargs))
        assert len(got) == len(expected)
        assert all(np.array_equal(a, b) for a, b in zip(got, expected))
    assert np.array_equal(streamed.head(5)["row"], np.arange(5))


def test_a_split_larger_than_the_buffer_gives_every_row_once_in_an_order_set_by_seed_and_epoch(split):
    streamed = stream.ParquetSplit(split, ["id", "row"], _convert, buffer_rows=500)
    total = sum(PART_ROWS)

    def epoch_rows(seed, epoch):
        return np.concatenate(rows_of(streamed.batches(128, seed=seed, epoch=lambda: epoch)))

    first = epoch_rows(1, 1)
    assert sorted(first.tolist()) == list(range(total))
    assert np.array_equal(first, epoch_rows(1, 1))  # a resumed epoch reads what the first attempt read
    assert not np.array_equal(first, epoch_rows(1, 2))
    assert not np.array_equal(first, epoch_rows(2, 1))
    # without a seed (the eval split): file order, in full batches but the last
    plain = rows_of(streamed.batches(1_000))
    assert [len(b) for b in plain] == [1_000, 1_000, 1_000, 1_000, 200]
    assert np.array_equal(np.concatenate(plain), np.arange(total))


def test_a_streamed_split_reads_only_the_columns_the_model_needs(split):
    streamed = stream.ParquetSplit(split, ["row", "id", "not_there"], _convert)
    assert streamed.columns == ["row", "id"]
    assert streamed.rows == sum(PART_ROWS)


def test_dictionary_encoded_strings_become_the_same_model_inputs_as_plain_ones():
    """The streamed splits read string columns dictionary-encoded; a null still becomes the empty string."""
    features = FeatureConfig.model_validate(
        {
            "buyer_tower": {"features": [{"kind": "id", "column": "buyer_id"}]},
            "product_tower": {"features": [{"kind": "id", "column": "product_id"}]},
        }
    )
    rows = [["a", None], ["b", "a", None]]
    plain = pa.table({"buyer_id": pa.chunked_array([pa.array(chunk) for chunk in rows])})
    encoded = pa.table({"buyer_id": pa.chunked_array([pa.array(chunk).dictionary_encode() for chunk in rows])})
    expected = tower_batch(plain, features, "buyer")["buyer_id"]
    assert expected.tolist() == ["a", "", "b", "a", ""]
    assert tower_batch(encoded, features, "buyer")["buyer_id"].tolist() == expected.tolist()


def test_a_streamed_split_reads_its_string_columns_dictionary_encoded(split):
    seen = []

    def convert(table):
        seen.append(table.schema.field("id").type)
        return _convert(table)

    streamed = stream.ParquetSplit(split, ["id", "row"], convert)
    assert list(streamed.chunks())
    assert all(pa.types.is_dictionary(t) for t in seen[1:])  # seen[0]: the empty table the dtypes come from


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("streaming")
    pq.write_table(purchases(), folder / "purchases.parquet")
    return folder


RETRIEVAL = {"model_type": "retrieval", "output_dim": 16, "retrieval_k": [10]}


def _history(result) -> list[dict]:
    assert result.status == "completed", result.error
    return json.loads((result.artifacts["Trainer"].path / "history.json").read_text())


@pytest.fixture(scope="module")
def in_memory_history(workspace):
    spec = spec_for(workspace / "purchases.parquet", model=RETRIEVAL)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainer, "STREAM_SPLITS", False)
        return _history(run(workspace / "in-memory", spec, "r")[0])


def test_streaming_within_the_buffer_trains_exactly_as_the_in_memory_path(workspace, in_memory_history):
    spec = spec_for(workspace / "purchases.parquet", model=RETRIEVAL)
    streamed = _history(run(workspace / "streamed", spec, "r")[0])  # its own root: the Trainer is not reused
    assert [h["loss"] for h in streamed] == pytest.approx([h["loss"] for h in in_memory_history], rel=1e-5)
    assert [h["recall_at_10"] for h in streamed] == pytest.approx([h["recall_at_10"] for h in in_memory_history])


def test_streaming_through_a_small_buffer_matches_the_in_memory_path_within_tolerance(
    workspace, in_memory_history, monkeypatch
):
    monkeypatch.setattr(stream, "SHUFFLE_BUFFER_ROWS", 1_024)
    monkeypatch.setattr(stream, "CHUNK_ROWS", 256)
    spec = spec_for(workspace / "purchases.parquet", model=RETRIEVAL)
    streamed = _history(run(workspace / "small-buffer", spec, "r")[0])
    final, expected = streamed[-1], in_memory_history[-1]
    assert final["loss"] == pytest.approx(expected["loss"], rel=0.10)
    assert abs(final["recall_at_10"] - expected["recall_at_10"]) <= 0.05
    assert final["loss"] < streamed[0]["loss"]


PEAK_SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import tensorflow  # noqa: F401  (the baseline is an idle TensorFlow process)
    from ml_pipeline.artifact_types import Examples
    from ml_pipeline.model import stream
    from ml_pipeline.model.data import load_training_data
    from ml_pipeline.reporting import InMemoryReporter
    from ml_pipeline.runner import PipelineRunner
    from ml_pipeline.spec import PipelineSpec
    from ml_pipeline.stages import trainer

    def peak_mb():
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024

    mode, spec_json, root, examples, transform = sys.argv[1:]
    spec = PipelineSpec.model_validate_json(spec_json)
    stream.SHUFFLE_BUFFER_ROWS = 8_192
    before = peak_mb()
    if mode.startswith("train"):
        trainer.STREAM_SPLITS = mode == "train"
        result = PipelineRunner(spec, Path(root), run_id="peak", reporter=InMemoryReporter()).run()
        assert result.status == "completed", result.error
        assert result.artifacts["Trainer"].properties["epochs_run"] == 1
    else:  # only what loading the splits takes, without training on them
        from ml_pipeline.model.transform import TransformArtifact
        target = TransformArtifact.load(transform).target
        load_training_data(Examples(examples), spec.features, spec.model, spec.training, target,
                           __import__("logging").getLogger(), streaming=False)
    print(json.dumps({"before": before, "peak": peak_mb()}))
""")


def _growth_mb(mode: str, spec: PipelineSpec, root: Path, examples: Path, transform: Path) -> float:
    done = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT, mode, spec.model_dump_json(), str(root), str(examples), str(transform)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "MALLOC_ARENA_MAX": "2"},  # fewer per-thread malloc arenas: a steadier peak
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return figures["peak"] - figures["before"]


@pytest.mark.slow
def test_the_trainers_peak_memory_does_not_grow_with_the_split(tmp_path):
    """Measured in child processes (VmHWM over an idle TensorFlow process): the streaming Trainer on ten times
    the rows peaks less than ``MEMORY_BOUND_MB`` higher (TensorFlow, the model and its traced functions are
    a fixed ~500 MB either way), while merely loading the larger splits into memory takes over twice that."""
    small = _prepared(tmp_path / "small", MEMORY_ROWS // 10)
    large = _prepared(tmp_path / "large", MEMORY_ROWS)
    assert large[0] > 0  # the larger split holds rows to stream
    growth = _growth_mb("train", *large[1:]) - _growth_mb("train", *small[1:])
    loading = _growth_mb("load", *large[1:])
    figures = f"streaming on 10x the rows: +{growth:.0f} MB; loading the larger splits: +{loading:.0f} MB"
    assert growth < MEMORY_BOUND_MB, figures
    assert loading > 2 * MEMORY_BOUND_MB, figures


def _prepared(folder: Path, rows: int):
    """A generated split of ``rows`` rows with its ExampleGen and Transform done in this process, so that the
    child's run reuses them and runs only the Trainer: (train rows, spec, root, examples, transform)."""
    folder.mkdir()
    data = folder / "purchases.parquet"
    demo_data.write(demo_data.DemoSpec(rows=rows, seed=5, products=2_000), data)
    root = folder / "root"
    prepared = run_stages(peak_spec(data, ["ExampleGen", "Transform"]), root)
    examples, transform = prepared.artifacts["ExampleGen"].path, prepared.artifacts["Transform"].path
    train_rows = sum(pq.ParquetFile(f).metadata.num_rows for f in (examples / "train").glob("*.parquet"))
    return train_rows, peak_spec(data, ["ExampleGen", "Transform", "Trainer"]), root, examples, transform


def peak_spec(data: Path, stages: list[str]) -> PipelineSpec:
    return PipelineSpec.model_validate(
        {
            "name": "peak",
            "dataset": {"source": {"kind": "file", "path": str(data)}, "mapping": DEMO_MAPPING},
            "split": {"strategy": "time_holdout", "holdout_days": 45},
            "features": DEMO_FEATURE_CONFIG,
            "model": DEMO_MODEL_CONFIGS["Retrieval two-tower"],
            "training": {"epochs": 1, "batch_size": 4096, "eval_max_buyers": 500},
            "stages": stages,
        }
    )


def run_stages(spec: PipelineSpec, root: Path):
    """ExampleGen and Transform in this process, so the child's run reuses them and runs only the Trainer."""
    from ml_pipeline.reporting import InMemoryReporter
    from ml_pipeline.runner import PipelineRunner

    result = PipelineRunner(spec, root, run_id="prepare", reporter=InMemoryReporter()).run()
    assert result.status == "completed", result.error
    return result
