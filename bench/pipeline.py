"""Benchmark: the whole 8-stage pipeline on generated data, and the Trainer against a plain Keras script.

    .venv/bin/python bench/pipeline.py [--rows 1000000] [--epochs 2] [--batch-size 1024] [--cpus 2]
        [--input-rounds 2] [--no-plain]

One run prints, side by side:

1. **Every stage's wall time and peak memory** on ``--rows`` rows of demo data
   (:mod:`ml_pipeline.demo_data`, seed 0) with the demo configs
   (:mod:`ml_pipeline.demo_configs`: the "Retrieval two-tower" model), a
   ``time_holdout`` split and ``--epochs`` epochs. The pipeline runs in one
   fresh (spawned) child process, as ``PipelineRunner`` runs it in production,
   so every stage pays what it pays there (TensorFlow, for one, is imported
   by the Trainer). Wall time per stage comes from the child's reporter
   events (a JSON-lines file: ``stage_started`` -> ``stage_completed``).
   Memory is measured two ways, and both are printed:

   * *sampled*: a thread in this (parent) process reads the child's RSS with
     psutil every 50 ms, and each sample is attributed to the stage whose
     event window it falls in. It is what the task asked for and shows the
     start-up, but a stage shorter than a few samples, or a spike between
     two samples, can be missed;
   * *exact*: the child's reporter resets the kernel's RSS high-water mark
     (``/proc/self/clear_refs``, Linux >= 4.0) when a stage starts and reads
     it (``VmHWM``) when the stage ends: the true peak RSS of that stage,
     however short. ``n/a`` where the kernel does not allow it.

   Running each stage-prefix in its own child was rejected: it would run
   the pipeline eight times (minutes of extra training) and would charge
   every stage its own imports, which a real run pays once.

2. **Trainer throughput** (examples/s from the Trainer's
   ``trainer_summary.json``: train rows x epochs / seconds spent in the
   epochs' training loops) against a **plain Keras script** run in its own
   child after the pipeline: the same towers built with the project's
   ``build_models`` from the run's Transform artifact, the same loss (in-batch
   softmax with the log-Q sampling correction and accidental-hit removal of
   keras_rs, as the Trainer's), the same optimizer and learning rate, the same
   train split Parquet from the run's ExampleGen, the same batch size, epochs,
   seed and remainder dropping, trained with ``model.fit`` (a ``train_step``
   override) and an ordinary tf.data pipeline (each epoch: a shuffled
   permutation of row indices, batches gathered from in-memory tensors,
   prefetch), with no validation, no per-epoch metrics, no checkpoints and
   no reporting. It runs after the pipeline, on its ExampleGen and
   Transform outputs, so both train on exactly the same rows and
   vocabularies; the final training losses are printed side by side as a
   check that they train the same model.

   *Included on both sides*: every training step of every epoch, the input
   pipeline's work during the epoch (shuffling, slicing/gathering batches,
   handing them to TensorFlow) and the first epoch's tracing of the train
   step (both sides trace once). *Excluded on both sides*: reading Parquet,
   building the numpy arrays and tensors, building the models and the
   optimizer, and everything the Trainer does between epochs (validation
   loss, Recall@K over the catalog, weight statistics, checkpoints,
   reporting) and after them (export). The Trainer counts all train rows per
   epoch although it drops the last partial batch (at most batch_size - 1
   rows, 0.1% at 1M rows); the plain script counts the rows it trained on.
   The first and last epochs are printed too: the last is the steady state.
   A Trainer epoch that lasted exactly 10 ms x (2^k - 1) is flagged: that is
   how long an epoch takes when tearing down its tf.data iterator waits for
   the autotune thread's next wake-up (see ``autotune_boundary``).

2b. **Streaming vs in-memory Trainer input**: after the plain script, the
   Trainer alone runs in ``--input-rounds`` pairs of children (default 2) on
   the same cached ExampleGen and Transform outputs, one with
   ``trainer.STREAM_SPLITS = False`` (the splits loaded whole into NumPy, the
   path before streaming) and one streaming, the order swapped every round
   (memory, streaming, streaming, memory), so that a shared machine's load
   weighs on both sides alike; each run's examples/s, exact peak RSS and the
   other processes' load during its training loops, and the ratio of the
   two sides' means. (Comparing with the pipeline run's own Trainer instead
   set a busier minute against a quieter one: 0.72x at 1M rows, where the
   alternated pairs measure about 1.0x.)

3. **Recall@100 (and @10)** of the trained model against the popularity
   baseline, from the Evaluator's properties (eval split, full catalog).

Targets: the stages other than the Trainer together under 30 s up to 1M rows
(scaled linearly above, and 60 s from 10M rows on), the pipeline child's peak memory under
4 GB, Trainer throughput at least 0.9x the plain script's, and Recall@100 at
least 1.25x the popularity baseline's (the end-to-end tests' promise).

The children are pinned to the first ``--cpus`` CPUs (default 2) when the
machine has more. Timings on a shared machine move with whatever else runs
on it (Linux shares the CPUs between sessions, so a test suite running
next to the benchmark can halve a training loop's speed), and the Trainer
and the plain script run one after the other, not side by side. So the
parent also reads the machine's CPU counters with every sample and prints
how many cores other processes kept busy during the pipeline run, the
plain run, and each side's training loops; when that is above 0.25 cores
the throughput comparison is flagged as noisy and should be rerun on a
quiet machine. The printed table is also saved to
``bench/results/pipeline.txt``; the exit status is 1 when a target fails or
the pipeline fails.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import resource
import sys
import tempfile
import threading
import time
import traceback
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from bench.common import publish, usable_cpus  # noqa: E402
from ml_pipeline.demo_configs import DEMO_FEATURE_CONFIG, DEMO_MAPPING, DEMO_MODEL_CONFIGS  # noqa: E402
from ml_pipeline.reporting import JsonLinesReporter  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "pipeline.txt"
MODEL = "Retrieval two-tower"
STAGE_SECONDS_PER_MILLION_ROWS = 30.0  # all stages but the Trainer, up to 1M rows
STAGE_SECONDS_AT_10M = 60.0  # the same from 10M rows on (the scale-up issue's target)
PEAK_MEMORY_BYTES = 4 * 1024**3
THROUGHPUT_RATIO = 0.9  # Trainer examples/s over the plain script's
STREAMING_RATIO = 0.95  # the streaming Trainer's examples/s over the in-memory one's
RECALL_RATIO = 1.25  # Recall@100 over the popularity baseline's
SAMPLE_SECONDS = 0.05
MB = 1024**2


def pipeline_spec(data_path: str, epochs: int, batch_size: int, holdout_days: int) -> dict:
    """The spec both children use (as JSON), built like the end-to-end tests' ``demo_spec``."""
    return {
        "name": "bench-pipeline",
        "dataset": {"source": {"kind": "file", "path": str(data_path)}, "mapping": DEMO_MAPPING},
        "split": {"strategy": "time_holdout", "holdout_days": holdout_days},
        "features": DEMO_FEATURE_CONFIG,
        "model": DEMO_MODEL_CONFIGS[MODEL],
        "training": {"epochs": epochs, "batch_size": batch_size},
    }


# -- in the children -----------------------------------------------------------------------------
def _child_setup(cpus: int, log_path: str) -> None:
    """Pin to ``cpus`` CPUs, send the child's output (TensorFlow's chatter) to a log file."""
    if hasattr(os, "sched_setaffinity"):
        allowed = sorted(os.sched_getaffinity(0))
        if len(allowed) > cpus:
            os.sched_setaffinity(0, allowed[:cpus])
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _write_result(path: str, result: dict) -> None:
    tmp = f"{path}.tmp"
    Path(tmp).write_text(json.dumps(result, default=str))
    os.replace(tmp, path)


def _guarded(target, result_path: str, *args) -> None:
    try:
        result = target(*args)
    except BaseException:
        result = {"crash": traceback.format_exc()}
    result["cpu_seconds"] = _cpu_seconds()
    result["ru_maxrss"] = _peak_rss()
    _write_result(result_path, result)


def _child_main(target, result_path: str, cpus: int, log_path: str, *args) -> None:
    _child_setup(cpus, log_path)
    _guarded(target, result_path, *args)


class _StagePeaks(JsonLinesReporter):
    """The run's events as JSON lines, plus the exact peak RSS of each stage (``bench_rss`` events).

    The kernel's high-water mark is reset when a stage starts and read when it
    ends; the stretches outside stages (imports, the runner's bookkeeping) are
    read the same way.
    """

    def __init__(self, path):
        super().__init__(path)
        self.phase = "startup"
        self.exact = self._reset()

    @staticmethod
    def _reset() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
            return True
        except OSError:
            return False

    def _close_phase(self, next_phase: str) -> None:
        peak = None
        if self.exact:
            try:
                with open("/proc/self/status") as handle:
                    peak = next(int(line.split()[1]) * 1024 for line in handle if line.startswith("VmHWM:"))
            except (OSError, StopIteration, ValueError):
                peak = None
        self.emit({"event": "bench_rss", "time": time.time(), "phase": self.phase, "peak": peak})
        self.phase = next_phase
        if self.exact:
            self.exact = self._reset()

    def stage_started(self, stage, info):
        self._close_phase(stage)
        super().stage_started(stage, info)

    def stage_completed(self, stage, summary, properties, cached):
        super().stage_completed(stage, summary, properties, cached)
        self._close_phase("between stages")

    def stage_failed(self, stage, message, traceback):
        super().stage_failed(stage, message, traceback)
        self._close_phase("between stages")

    def stage_skipped(self, stage, reason):
        super().stage_skipped(stage, reason)
        self._close_phase("between stages")

    def run_finished(self, status, summary):
        self._close_phase("finished")
        super().run_finished(status, summary)


def generate_child(rows: int, path: str) -> dict:
    from ml_pipeline import demo_data

    started = time.perf_counter()
    written = demo_data.write(demo_data.DemoSpec(rows=rows, seed=0), path)
    return {"rows": written["rows"], "seconds": time.perf_counter() - started}


def pipeline_child(spec_json: dict, root: str, events_path: str) -> dict:
    reporter = _StagePeaks(events_path)  # first, so that "startup" covers the imports below
    import logging

    from ml_pipeline.runner import PipelineRunner
    from ml_pipeline.spec import PipelineSpec

    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # the Pusher's retracing notes: noise here
    spec = PipelineSpec.model_validate(spec_json)
    result = PipelineRunner(spec, root, run_id="bench", reporter=reporter).run()
    out: dict = {
        "status": result.status,
        "error": result.error,
        "exact_memory": reporter.exact,
        "properties": {name: a.properties for name, a in result.artifacts.items()},
        "paths": {name: str(a.path) for name, a in result.artifacts.items()},
    }
    if "Trainer" in result.artifacts:
        folder = result.artifacts["Trainer"].path
        summary = json.loads((folder / "trainer_summary.json").read_text())
        out["trainer_summary"] = {k: v for k, v in summary.items() if k not in ("parameters", "configured_parameters")}
        history = json.loads((folder / "history.json").read_text())
        out["history"] = [
            {k: h.get(k) for k in ("epoch", "epoch_seconds", "examples_per_second", "loss")} for h in history
        ]
    return out


def trainer_child(spec_json: dict, root: str, events_path: str, streaming: bool, run_id: str) -> dict:
    """The Trainer alone on the pipeline run's cached ExampleGen and Transform, its splits streamed from
    Parquet or loaded whole into memory (``trainer.STREAM_SPLITS``): one side of the input comparison."""
    reporter = _StagePeaks(events_path)
    from ml_pipeline.runner import PipelineRunner
    from ml_pipeline.spec import PipelineSpec
    from ml_pipeline.stages import trainer

    trainer.STREAM_SPLITS = streaming
    spec = PipelineSpec.model_validate({**spec_json, "stages": ["ExampleGen", "Transform", "Trainer"]})
    result = PipelineRunner(spec, root, run_id=run_id, reporter=reporter).run(from_stage="Trainer")
    out: dict = {"status": result.status, "error": result.error}
    if "Trainer" in result.artifacts:
        summary = json.loads((result.artifacts["Trainer"].path / "trainer_summary.json").read_text())
        out["examples_per_second"] = summary.get("examples_per_second")
    return out


def trainer_peak(events: list[dict]) -> int | None:
    """The Trainer's exact peak RSS from a child's events (``None`` where the kernel did not allow it)."""
    return next((e.get("peak") for e in events if e.get("event") == "bench_rss" and e.get("phase") == "Trainer"), None)


def loop_load(cpu: list, windows: list[tuple[float, float]]) -> float | None:
    """Cores other processes kept busy during the training loops (``windows``), time-weighted."""
    busy = [others_cores(cpu, *w) for w in windows]
    if not busy or None in busy:
        return None
    return sum(b * (w[1] - w[0]) for b, w in zip(busy, windows)) / sum(w[1] - w[0] for w in windows)


def input_rounds(spec: dict, root: Path, folder: Path, rounds: int, cpus: int, say) -> list[dict]:
    """``rounds`` pairs of Trainer-only children, in memory and streaming, the order swapped every round
    (memory first, then streaming first, ...) so that a machine getting busier or quieter over the run
    weighs on both sides alike; each with its examples/s, exact peak and the others' load in its loops."""
    sides = []
    for number in range(rounds):
        order = (False, True) if number % 2 == 0 else (True, False)
        for streaming in order:
            name = f"{'streaming' if streaming else 'in_memory'}_{number + 1}"
            say(f"Trainer alone, splits {'streamed' if streaming else 'in memory'} (child log: {name}.log) …")
            events_path = folder / f"{name}_events.jsonl"
            events_path.unlink(missing_ok=True)
            done = run_child(
                trainer_child,
                (spec, str(root), str(events_path), streaming, f"bench-{name}"),
                folder,
                name,
                cpus,
                sample=True,
            )
            events = read_events(events_path)
            sides.append(
                {
                    "streaming": streaming,
                    "round": number + 1,
                    "rate": done.get("examples_per_second"),
                    "peak": trainer_peak(events),
                    "others": loop_load(done.get("cpu", []), trainer_epoch_windows(events)),
                    "why": done.get("crash") or (done.get("error") or {}).get("message"),
                }
            )
    return sides


def input_comparison(run: dict, events: list[dict], sides: list[dict]) -> tuple[list[str], float | None]:
    """Lines comparing the Trainer on streamed splits with the same Trainer on in-memory splits: the
    alternated Trainer-only runs (the ratio of their mean examples/s), and the pipeline run's for reference."""
    lines = ["", "2b. Trainer input: streamed from Parquet (the default) vs whole splits in memory"]
    if not sides:
        return [*lines, "   not measured (--input-rounds 0)"], None
    failed = [s for s in sides if not s["rate"]]
    if failed:
        why = str(failed[0]["why"] or "no Trainer output").strip().splitlines()[-1]
        return [*lines, f"   not measured: {why}"], None
    lines.append(
        "   the Trainer alone on the cached ExampleGen/Transform, one child per side, alternated "
        "(memory first, then streaming first, ...)"
    )
    lines.append(f"   {'':<12} {'round':>5} {'examples/s':>11} {'Trainer peak RSS':>17}  other processes")
    for side in sides:
        label = "streaming" if side["streaming"] else "in memory"
        load = f"{side['others']:.2f} cores busy" if side["others"] is not None else "n/a"
        lines.append(f"   {label:<12} {side['round']:>5} {side['rate']:>11,.0f} {_mb(side['peak']):>17}  {load}")

    def mean(streaming: bool) -> float:
        rates = [s["rate"] for s in sides if s["streaming"] is streaming]
        return sum(rates) / len(rates)

    ratio = mean(True) / mean(False)
    lines += [
        f"   {'mean':<12} {'':>5} streaming {mean(True):,.0f} / in memory {mean(False):,.0f} = {ratio:.3f}x",
        f"   (the pipeline run's streaming Trainer above: "
        f"{run.get('trainer_summary', {}).get('examples_per_second') or 0:,.0f} examples/s, peak "
        f"{_mb(trainer_peak(events))})",
    ]
    loads = [s["others"] for s in sides if s["others"] is not None]
    if loads and max(loads) - min(loads) > 0.25:
        lines.append(
            "   NOTE: the other processes' load differed between these runs by "
            f"{max(loads) - min(loads):.2f} cores, so the ratio is noisy"
        )
    return lines, ratio


def plain_child(spec_json: dict, examples: str, transform: str) -> dict:
    """The same model, data and objective, trained by a plain ``model.fit``; seconds per epoch."""
    import logging

    import keras
    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    import tensorflow as tf
    from keras_rs.layers import RemoveAccidentalHits, SamplingProbabilityCorrection

    from ml_pipeline.model.build import build_models
    from ml_pipeline.model.inputs import tower_batch
    from ml_pipeline.model.transform import TransformArtifact
    from ml_pipeline.spec import PipelineSpec

    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    spec = PipelineSpec.model_validate(spec_json)
    training, model_config = spec.training, spec.model
    batch_size, epochs = training.batch_size, training.epochs
    keras.utils.set_random_seed(training.seed)

    # -- setup (not timed): the train split into tensors, the towers, the optimizer
    setup_started = time.perf_counter()
    table = pq.read_table(Path(examples) / "train")
    arrays = {**tower_batch(table, spec.features, "buyer"), **tower_batch(table, spec.features, "product")}
    product = pc.dictionary_encode(table.column("product_id")).combine_chunks()
    candidate_index = product.indices.to_numpy().astype(np.int64)
    counts = np.bincount(candidate_index).astype(np.float64)
    sampling_probability = (counts / counts.sum()).astype(np.float32)[candidate_index]
    rows = len(candidate_index)
    tensors = {
        name: tf.constant(values, dtype=tf.string if values.dtype == object else None)
        for name, values in arrays.items()
    }
    tensors["__candidate_index"] = tf.constant(candidate_index)
    tensors["__sampling_probability"] = tf.constant(sampling_probability)
    del table, arrays

    built = build_models(TransformArtifact.load(transform), model_config)
    query, candidate = built.query, built.candidate
    query_names, candidate_names = list(query.input), list(candidate.input)
    correction, remove_hits = SamplingProbabilityCorrection(), RemoveAccidentalHits()

    class TwoTower(keras.Model):
        def __init__(self):
            super().__init__()
            self.query, self.candidate = query, candidate
            self.train_loss = keras.metrics.Mean(name="train_loss")

        def train_step(self, batch):
            with tf.GradientTape() as tape:
                buyers = self.query({n: batch[n] for n in query_names}, training=True)
                products = self.candidate({n: batch[n] for n in candidate_names}, training=True)
                logits = tf.matmul(buyers, products, transpose_b=True)
                labels = tf.eye(tf.shape(logits)[0], dtype=logits.dtype)
                logits = correction(logits, tf.expand_dims(batch["__sampling_probability"], 0))
                logits = remove_hits(logits, labels, batch["__candidate_index"])
                loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits))
                loss += sum(self.losses) if self.losses else 0.0
            variables = self.trainable_variables
            self.optimizer.apply(tape.gradient(loss, variables), variables)
            self.train_loss.update_state(loss)
            return {"train_loss": self.train_loss.result()}

    optimizers = {"adam": keras.optimizers.Adam, "adagrad": keras.optimizers.Adagrad, "sgd": keras.optimizers.SGD}
    optimizer_kwargs = {"learning_rate": training.learning_rate or model_config.learning_rate}
    if model_config.clipnorm:
        optimizer_kwargs["clipnorm"] = model_config.clipnorm
    model = TwoTower()
    model.compile(optimizer=optimizers[model_config.optimizer](**optimizer_kwargs), jit_compile=False)

    drop = rows >= 2 * batch_size  # the Trainer's rule
    steps = rows // batch_size if drop else -(-rows // batch_size)

    def one_epoch(_):
        order = tf.random.shuffle(tf.range(rows, dtype=tf.int64))
        return tf.data.Dataset.range(steps).map(
            lambda i: {
                name: tf.gather(values, order[i * batch_size : (i + 1) * batch_size])
                for name, values in tensors.items()
            }
        )

    dataset = tf.data.Dataset.range(epochs).flat_map(one_epoch).prefetch(tf.data.AUTOTUNE)
    setup_seconds = time.perf_counter() - setup_started

    # -- training (timed per epoch, like the Trainer's train_seconds)
    epoch_seconds: list[float] = []
    losses: list[float] = []
    windows: list[tuple[float, float]] = []  # wall clock, for the parent's CPU readings

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.wall = time.time()
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            epoch_seconds.append(time.perf_counter() - self.started)
            windows.append((self.wall, time.time()))
            losses.append(float((logs or {}).get("train_loss", float("nan"))))

    model.fit(dataset, epochs=epochs, steps_per_epoch=steps, verbose=0, callbacks=[Timer()])
    trained = rows if not drop else steps * batch_size
    return {
        "rows": rows,
        "examples_per_epoch": trained,
        "epoch_seconds": epoch_seconds,
        "losses": losses,
        "windows": windows,
        "setup_seconds": setup_seconds,
        "keras": keras.__version__,
        "tensorflow": tf.__version__,
    }


# -- in the parent ---------------------------------------------------------------------------------
class Sampler(threading.Thread):
    """Every ``SAMPLE_SECONDS``: the child's RSS (and its descendants', re-listed once a second), and the
    CPU seconds used so far by the whole machine, by the child and by this process (to tell how much
    of the CPUs other processes took during any stretch of the run)."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.samples: list[tuple[float, int]] = []
        self.cpu: list[tuple[float, float, float, float]] = []  # (time, busy CPU s: machine, child, us)
        self.stopping = threading.Event()

    def run(self):
        family, listed = [self.process], 0.0
        while not self.stopping.is_set():
            now = time.time()
            if now - listed > 1.0:
                try:
                    family = [self.process, *self.process.children(recursive=True)]
                except psutil.Error:
                    break
                listed = now
            rss = 0
            for process in family:
                with contextlib.suppress(psutil.Error):
                    rss += process.memory_info().rss
            if rss:
                self.samples.append((now, rss))
            try:
                times = self.process.cpu_times()
                self.cpu.append((now, _busy_cpu_seconds(), times.user + times.system, sum(os.times()[:2])))
            except psutil.Error:
                pass
            self.stopping.wait(SAMPLE_SECONDS)


def _busy_cpu_seconds() -> float:
    """CPU seconds the machine has spent running anything (guest time is already in user time)."""
    times = psutil.cpu_times()
    return sum(getattr(times, field, 0.0) for field in ("user", "nice", "system", "irq", "softirq"))


def run_child(target, args: tuple, folder: Path, name: str, cpus: int, sample: bool = False) -> dict:
    """``target(*args)`` in a fresh spawned process; its result, RSS samples and who else used the CPUs."""
    result_path, log_path = folder / f"{name}.result.json", folder / f"{name}.log"
    context = multiprocessing.get_context("spawn")
    child = context.Process(target=_child_main, args=(target, str(result_path), cpus, str(log_path), *args))
    busy_before, own_before, started = _busy_cpu_seconds(), _cpu_seconds(), time.time()
    child.start()
    sampler = Sampler(child.pid) if sample else None
    if sampler:
        sampler.start()
    child.join()
    wall = time.time() - started
    if sampler:
        sampler.stopping.set()
        sampler.join()
    busy, own = _busy_cpu_seconds() - busy_before, _cpu_seconds() - own_before
    if result_path.is_file():
        result = json.loads(result_path.read_text())
    else:
        result = {"crash": f"the child exited with status {child.exitcode} and no result"}
    if "crash" in result and log_path.is_file():
        result["crash"] += "\n--- child log (tail) ---\n" + log_path.read_text()[-3000:]
    result["wall"] = wall
    result["others_cores"] = max(0.0, busy - own - result.get("cpu_seconds", 0.0)) / max(wall, 1e-9)
    result["samples"] = sampler.samples if sampler else []
    result["cpu"] = sampler.cpu if sampler else []
    return result


def _at(cpu: list, when: float, column: int) -> float | None:
    """A sampler column (cumulative CPU seconds) at ``when``, interpolated between the readings around it."""
    for before, after in zip(cpu, cpu[1:]):
        if before[0] <= when <= after[0]:
            share = (when - before[0]) / max(after[0] - before[0], 1e-9)
            return before[column] + share * (after[column] - before[column])
    return None


def others_cores(cpu: list, start: float, end: float) -> float | None:
    """Average cores busy with other processes between ``start`` and ``end`` (from the sampler's readings)."""
    values = [(_at(cpu, start, c), _at(cpu, end, c)) for c in (1, 2, 3)]
    if end - start < 0.2 or any(v is None for pair in values for v in pair):
        return None
    (machine0, machine1), (child0, child1), (ours0, ours1) = values
    return max(0.0, (machine1 - machine0) - (child1 - child0) - (ours1 - ours0)) / (end - start)


def trainer_epoch_windows(events: list[dict]) -> list[tuple[float, float]]:
    """Wall-clock (start, end) of each Trainer epoch's training loop, from the epoch events.

    Epoch k's loop starts right after epoch k-1's ``epoch_completed`` event and
    lasts its ``epoch_seconds``; the first epoch's loop is assumed to end as
    long before its event as the second's did (validation, Recall@K,
    statistics and the checkpoint take about the same time every epoch).
    """
    epochs = [(e["time"], e["metrics"].get("epoch_seconds")) for e in events if e["event"] == "epoch_completed"]
    if not epochs or any(seconds is None for _, seconds in epochs):
        return []
    windows = [(previous, previous + seconds) for (previous, _), (_, seconds) in zip(epochs, epochs[1:])]
    after = (epochs[1][0] - windows[0][1]) if windows else 0.0
    first_end = epochs[0][0] - after
    return [(first_end - epochs[0][1], first_end), *windows]


def read_events(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def stage_table(events: list[dict], samples: list[tuple[float, int]]) -> tuple[list[dict], dict]:
    """Per stage: wall seconds, exact peak (VmHWM) and sampled peak; and the phases outside stages."""
    stages: dict[str, dict] = {}
    for event in events:
        if event["event"] == "stage_started":
            stages[event["stage"]] = {
                "stage": event["stage"],
                "start": event["time"],
                "end": None,
                "status": "running",
                "exact": None,
                "sampled": None,
            }
        elif event["event"] in ("stage_completed", "stage_failed", "stage_skipped") and event["stage"] in stages:
            stages[event["stage"]]["end"] = event["time"]
            stages[event["stage"]]["status"] = event["event"].removeprefix("stage_")
    outside = {"startup": {"exact": None, "sampled": None}, "between stages": {"exact": None, "sampled": None}}
    for event in events:
        if event["event"] == "bench_rss" and event["peak"] is not None:
            phase = event["phase"]
            slot = stages.get(phase) or outside.setdefault(
                "startup" if phase == "startup" else "between stages", {"exact": None, "sampled": None}
            )
            slot["exact"] = max(slot["exact"] or 0, event["peak"])
    first = min((s["start"] for s in stages.values()), default=float("inf"))
    for when, rss in samples:
        slot = next((s for s in stages.values() if s["start"] <= when <= (s["end"] or float("inf"))), None)
        if slot is None:
            slot = outside["startup"] if when < first else outside["between stages"]
        slot["sampled"] = max(slot["sampled"] or 0, rss)
    for stage in stages.values():
        stage["seconds"] = (stage["end"] - stage["start"]) if stage["end"] is not None else None
    return list(stages.values()), outside


def trainer_breakdown(events: list[dict]) -> dict | None:
    """Where the Trainer's wall time goes, from its log lines and epoch events."""
    start = next((e["time"] for e in events if e["event"] == "stage_started" and e["stage"] == "Trainer"), None)
    end = next(
        (e["time"] for e in events if e["event"] in ("stage_completed", "stage_failed") and e["stage"] == "Trainer"),
        None,
    )
    if start is None or end is None:
        return None
    logs = [e for e in events if e["event"] == "log" and e["stage"] == "Trainer"]
    placed = next((e["time"] for e in logs if e["message"].startswith("training with")), None)
    loaded = next((e["time"] for e in logs if "train rows" in e["message"]), None)
    epochs = [e for e in events if e["event"] == "epoch_completed"]
    if placed is None or loaded is None or not epochs:
        return None
    training = sum(e["metrics"].get("epoch_seconds", 0.0) for e in epochs)
    return {
        "import TensorFlow, choose devices": placed - start,
        "open the splits, load the catalog and eval samples": loaded - placed,
        "training loops (train_seconds)": training,
        "build models; per epoch: val loss, Recall@K, weight stats, checkpoint": epochs[-1]["time"] - loaded - training,
        "export (and restore best weights)": end - epochs[-1]["time"],
    }


def autotune_boundary(seconds: float | None) -> bool:
    """Whether a duration ends within 30 ms of 10 ms x (2^k - 1), k >= 8 (2.55 s, 5.11 s, ... 20.47 s, 40.95 s).

    tf.data's autotune thread sleeps in periods that double from 10 ms; an
    epoch whose input iterator is torn down by waiting for that thread lasts
    until the next such boundary after the iterator was made.
    """
    if seconds is None:
        return False
    return any(abs(seconds - 0.01 * (2**k - 1)) < 0.03 for k in range(8, 20))


def _mb(value) -> str:
    return f"{value / MB:,.0f} MB" if value else "n/a"


def report(
    args, generated: dict, run: dict, plain: dict | None, events: list[dict], comparison=([], None)
) -> tuple[str, bool]:
    cpus = usable_cpus()
    props = run.get("properties", {})
    summary = run.get("trainer_summary", {})
    example_gen = props.get("ExampleGen", {})
    lines = [
        f"Pipeline benchmark: {args.rows:,} demo rows (seed 0), {MODEL}, time_holdout {args.holdout_days} days, "
        f"{args.epochs} epoch{'s' if args.epochs != 1 else ''} x batch {args.batch_size} — "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"{cpus} CPUs here, children pinned to {min(cpus, args.cpus)}; "
        f"{psutil.virtual_memory().total / 1024**3:.0f} GB RAM, Python {platform.python_version()}, "
        f"TensorFlow {_version('tensorflow', 'tensorflow-cpu')}, Keras {_version('keras')}",
        f"data: {generated.get('rows', 0):,} rows generated in {generated.get('seconds', 0):.1f} s; "
        f"split train {example_gen.get('splits', {}).get('train', 0):,} · eval "
        f"{example_gen.get('splits', {}).get('eval', 0):,}; {example_gen.get('buyers', 0):,} buyers, "
        f"{example_gen.get('products', 0):,} products",
        f"other processes kept {run['others_cores']:.2f} cores busy on average during the pipeline run"
        + (f", {plain['others_cores']:.2f} during the plain Keras run" if plain else ""),
        "",
        "1. Stages (one child process, as PipelineRunner runs them)",
        f"   {'stage':<16} {'wall s':>8} {'peak RSS exact':>15} {'peak RSS sampled':>17}  status",
    ]
    stages, outside = stage_table(events, run.get("samples", []))
    lines.append(
        f"   {'(startup)':<16} {'':>8} {_mb(outside['startup']['exact']):>15} "
        f"{_mb(outside['startup']['sampled']):>17}  imports, spec"
    )
    for stage in stages:
        seconds = f"{stage['seconds']:.2f}" if stage["seconds"] is not None else "—"
        lines.append(
            f"   {stage['stage']:<16} {seconds:>8} {_mb(stage['exact']):>15} {_mb(stage['sampled']):>17}"
            f"  {stage['status']}"
        )
    non_training = sum(s["seconds"] or 0.0 for s in stages if s["stage"] != "Trainer")
    all_stages = sum(s["seconds"] or 0.0 for s in stages)
    peaks = [v for s in [*stages, *outside.values()] for v in (s["exact"], s["sampled"]) if v]
    peaks.append(run.get("ru_maxrss") or 0)
    peak = max(peaks)
    lines += [
        f"   {'all but Trainer':<16} {non_training:>8.2f}",
        f"   {'all stages':<16} {all_stages:>8.2f} {_mb(peak):>15}  (child's peak over the whole run; "
        f"child wall {run['wall']:.1f} s with start-up)",
    ]
    breakdown = trainer_breakdown(events)
    if breakdown:
        lines += ["", "   Trainer wall time:"]
        lines += [f"     {label:<72} {seconds:>6.2f} s" for label, seconds in breakdown.items()]

    lines += [
        "",
        "2. Training throughput (examples/s over the epochs' training loops; setup, data loading and "
        "between-epoch work excluded)",
    ]
    ratio = None
    if summary and plain and "crash" not in plain:
        history = run.get("history", [])
        trainer_windows = trainer_epoch_windows(events)
        plain_windows = [tuple(w) for w in plain.get("windows", [])]

        def side(label, rate, first, last, seconds, loss, windows, cpu):
            """One row: examples/s (all, first, last epoch), seconds, last loss, others' load in the loops."""
            load = loop_load(cpu, windows)
            return {
                "label": label,
                "rate": rate,
                "first": first,
                "last": last,
                "seconds": seconds,
                "loss": loss,
                "others": load,
            }

        trainer = side(
            "Trainer (trainer_summary)",
            summary.get("examples_per_second") or 0.0,
            history[0]["examples_per_second"] if history else float("nan"),
            history[-1]["examples_per_second"] if history else float("nan"),
            summary.get("train_seconds", 0.0),
            history[-1]["loss"] if history else float("nan"),
            trainer_windows,
            run.get("cpu", []),
        )
        examples = plain["examples_per_epoch"]
        seconds = plain["epoch_seconds"]
        baseline = side(
            "plain Keras model.fit",
            examples * len(seconds) / sum(seconds),
            examples / seconds[0],
            examples / seconds[-1],
            sum(seconds),
            plain["losses"][-1],
            plain_windows,
            plain.get("cpu", []),
        )
        ratio = trainer["rate"] / baseline["rate"]

        def number(value, spec):
            return format(value, spec) if value is not None else "n/a"

        lines.append(
            f"   {'':<26} {'all epochs':>10} {'1st epoch':>10} {'last epoch':>10} {'train s':>8} "
            f"{'last loss':>9}  other processes"
        )
        for row in (trainer, baseline):
            lines.append(
                f"   {row['label']:<26} {row['rate']:>10,.0f} {row['first']:>10,.0f} {row['last']:>10,.0f} "
                f"{row['seconds']:>8.1f} {row['loss']:>9.4f}  {number(row['others'], '.2f')} cores busy"
            )
        lines += [
            f"   {'Trainer / plain':<26} {ratio:>9.2f}x {trainer['first'] / baseline['first']:>9.2f}x "
            f"{trainer['last'] / baseline['last']:>9.2f}x",
            f"   plain script: setup {plain['setup_seconds']:.1f} s (not timed), peak RSS {_mb(plain['ru_maxrss'])}",
        ]
        stalled = [(h["epoch"], h["epoch_seconds"]) for h in history if autotune_boundary(h.get("epoch_seconds"))]
        if stalled:
            lines.append(
                "   NOTE: Trainer epoch(s) "
                + ", ".join(f"{e} ({s:.2f} s)" for e, s in stalled)
                + " ended on a tf.data autotune period boundary, 10 ms x (2^k - 1): the signature of "
                "the epoch's iterator teardown waiting for the autotune thread"
            )
        if max(trainer["others"] or 0.0, baseline["others"] or 0.0) > 0.25:
            lines.append(
                "   NOTE: other processes were busy on these CPUs during the training loops (last column), "
                "so the ratio is noisy: rerun on a quiet machine before acting on it"
            )
    else:
        why = (plain or {}).get("crash") or run.get("crash") or "no Trainer output"
        if args.no_plain and "trainer_summary" in run:
            why = "skipped (--no-plain)"
        lines.append("   not measured: " + why.strip().splitlines()[-1])

    lines += comparison[0]
    lines += ["", "3. Quality (Evaluator, eval split, full catalog)"]
    evaluation = props.get("Evaluator", {})
    recall_ratio = None
    if "recall_at_100" in evaluation:
        recall_ratio = evaluation["recall_at_100"] / max(evaluation["popularity_recall_at_100"], 1e-12)
        lines += [
            f"   {'':<12} {'Recall@10':>10} {'Recall@100':>11}   ({evaluation.get('buyers', 0):,} buyers)",
            f"   {'model':<12} {evaluation['recall_at_10']:>10.4f} {evaluation['recall_at_100']:>11.4f}",
            f"   {'popularity':<12} {evaluation['popularity_recall_at_10']:>10.4f} "
            f"{evaluation['popularity_recall_at_100']:>11.4f}",
            f"   {'model / pop.':<12} "
            f"{evaluation['recall_at_10'] / max(evaluation['popularity_recall_at_10'], 1e-12):>9.2f}x "
            f"{recall_ratio:>10.2f}x",
        ]
    else:
        lines.append("   not measured")

    stage_target = STAGE_SECONDS_PER_MILLION_ROWS * max(1.0, args.rows / 1_000_000)
    if args.rows >= 10_000_000:
        stage_target = STAGE_SECONDS_AT_10M
    completed = run.get("status") == "completed"
    checks = [
        ("pipeline completed", completed, run.get("status") or "error"),
        (
            f"stages but Trainer under {stage_target:g} s",
            completed and non_training < stage_target,
            f"{non_training:.2f} s",
        ),
        (f"peak memory under {PEAK_MEMORY_BYTES / 1024**3:g} GB", completed and peak < PEAK_MEMORY_BYTES, _mb(peak)),
        (
            f"Trainer >= {THROUGHPUT_RATIO:g}x plain Keras",
            None if args.no_plain else ratio is not None and ratio >= THROUGHPUT_RATIO,
            f"{ratio:.3f}x" if ratio is not None else "n/a",
        ),
        (
            f"streaming >= {STREAMING_RATIO:g}x in-memory Trainer",
            None if not args.input_rounds else comparison[1] is not None and comparison[1] >= STREAMING_RATIO,
            f"{comparison[1]:.3f}x" if comparison[1] is not None else "n/a",
        ),
        (
            f"Recall@100 >= {RECALL_RATIO:g}x popularity",
            recall_ratio is not None and recall_ratio >= RECALL_RATIO,
            f"{recall_ratio:.3f}x" if recall_ratio is not None else "n/a",
        ),
    ]
    lines += ["", "targets"]
    verdict = {True: "PASS", False: "FAIL", None: "skipped"}
    lines += [f"   {label:<36} {value:>10}  {verdict[ok]}" for label, ok, value in checks]
    if run.get("error"):
        lines += ["", f"pipeline failed at {run['error'].get('stage')}: {run['error'].get('message')}"]
    if run.get("crash"):
        lines += ["", "pipeline child crashed:", run["crash"]]
    if (plain or {}).get("crash"):
        lines += ["", "plain Keras child crashed:", plain["crash"]]
    return "\n".join(lines) + "\n", all(ok is not False for _, ok, _ in checks)


def _version(*packages: str) -> str:
    """The installed version of the first of ``packages`` there is (TensorFlow ships as tensorflow or
    tensorflow-cpu), from the package metadata: importing TensorFlow here would cost seconds."""
    for package in packages:
        try:
            return version(package)
        except PackageNotFoundError:
            continue
    return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--holdout-days", type=int, default=45)
    parser.add_argument("--cpus", type=int, default=2, help="pin the children to this many CPUs (default 2)")
    parser.add_argument(
        "--input-rounds",
        type=int,
        default=2,
        help="pairs of Trainer-only runs, in memory and streaming, alternated (default 2; 0 skips the comparison)",
    )
    parser.add_argument("--no-plain", action="store_true", help="skip the plain Keras baseline")
    parser.add_argument("--workdir", type=Path, help="keep the data, artifacts and child logs here")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where to save the table")
    args = parser.parse_args(argv)

    from ml_pipeline import demo_data
    from ml_pipeline.spec import PipelineSpec

    demo_data.DemoSpec(rows=args.rows)  # refuse a bad size before starting children
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as temporary:
        folder = args.workdir or Path(temporary)
        folder.mkdir(parents=True, exist_ok=True)
        data_path = folder / "purchases.parquet"
        spec = pipeline_spec(str(data_path), args.epochs, args.batch_size, args.holdout_days)
        PipelineSpec.model_validate(spec)  # refuse a bad spec before starting children

        def say(text):
            print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

        say(f"generating {args.rows:,} rows …")
        generated = run_child(generate_child, (args.rows, str(data_path)), folder, "generate", args.cpus)
        if "crash" in generated:
            print(generated["crash"], file=sys.stderr)
            return 1
        say("running the pipeline (child log: pipeline.log) …")
        events_path = folder / "events.jsonl"
        events_path.unlink(missing_ok=True)
        root = folder / "root"
        if root.exists():
            import shutil

            shutil.rmtree(root)
        run = run_child(pipeline_child, (spec, str(root), str(events_path)), folder, "pipeline", args.cpus, sample=True)
        plain = None
        paths = run.get("paths", {})
        if "ExampleGen" in paths and "Transform" in paths and "trainer_summary" in run and not args.no_plain:
            say("training the same model with plain Keras (child log: plain.log) …")
            plain = run_child(
                plain_child, (spec, paths["ExampleGen"], paths["Transform"]), folder, "plain", args.cpus, sample=True
            )
        comparison = ([], None)
        if "trainer_summary" in run:
            sides = input_rounds(spec, root, folder, args.input_rounds, args.cpus, say)
            comparison = input_comparison(run, read_events(events_path), sides)
        text, passed = report(args, generated, run, plain, read_events(events_path), comparison)
    return publish(text, passed, args.results)


if __name__ == "__main__":
    sys.exit(main())
