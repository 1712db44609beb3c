"""Benchmark: writing the demo purchase log, against the pure-I/O floor.

    .venv/bin/python bench/demo_data.py [--rows 1000000]

Each measurement runs in a fresh (spawned) child process, so its peak RSS is
its own: the generator writing Parquet and CSV, and, side by side, a baseline
writing the same number of rows of the same schema filled with uniform random
values through the same writer (no structure: the I/O floor). The difference
is what the planted structure costs. Targets (1M rows): under 10 s, peak
memory under 1.5 GB. The printed table is also saved to
bench/results/demo_data.txt; the exit status is 1 when a target fails.
"""

from __future__ import annotations

import argparse
import multiprocessing
import platform
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import pyarrow as pa  # noqa: E402

from bench.common import publish, usable_cpus  # noqa: E402
from ml_pipeline import demo_data  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "demo_data.txt"
SECONDS_PER_MILLION_ROWS = 10.0
PEAK_MEMORY_BYTES = 1.5 * 1024**3
MB = 1024**2


def uniform_batches(spec: demo_data.DemoSpec, batch_rows: int = demo_data.ROW_GROUP_ROWS):
    """Rows of the demo schema with every value drawn uniformly and independently: nothing to learn."""
    rng = np.random.default_rng(spec.seed)
    buyer_ids = demo_data._ids("B", np.arange(1, spec.n_buyers + 1))
    product_ids = demo_data._ids("P", np.arange(1, spec.n_products + 1))
    segments = pa.array([s.name for s in demo_data.SEGMENTS])
    cities = pa.array([c[0] for c in demo_data.CITIES])
    subcategories = pa.array([s for c in demo_data.CATEGORIES for s in c.subcategories])
    categories = pa.array([c.name for c in demo_data.CATEGORIES for _ in c.subcategories])
    start_us = np.datetime64(spec.start, "us").astype(np.int64)
    span_us = spec.days * 86_400 * 1_000_000
    for first in range(0, spec.rows, batch_rows):
        n = min(batch_rows, spec.rows - first)
        sub = rng.integers(0, len(subcategories), n)
        yield pa.RecordBatch.from_arrays(
            [
                buyer_ids.take(rng.integers(0, len(buyer_ids), n)),
                product_ids.take(rng.integers(0, len(product_ids), n)),
                pa.array(start_us + rng.integers(0, span_us // 1_000_000, n) * 1_000_000, pa.timestamp("us")),
                pa.array(rng.integers(1, 50, n).astype(np.float64)),
                pa.array(np.round(rng.uniform(0.5, 300.0, n), 2)),
                segments.take(rng.integers(0, len(segments), n)),
                cities.take(rng.integers(0, len(cities), n)),
                categories.take(sub),
                subcategories.take(sub),
            ],
            schema=demo_data.SCHEMA,
        )


def measure(source: str, format: str, rows: int, folder: str) -> dict:
    """In a child process: write once; seconds, peak RSS and file size."""
    imported_rss = psutil.Process().memory_info().rss
    spec = demo_data.DemoSpec(rows=rows, seed=0)
    path = Path(folder) / f"{source}.{format}"
    started = time.perf_counter()
    if source == "generator":
        written = demo_data.write(spec, path, format)["rows"]
    else:
        written = demo_data.write_batches(uniform_batches(spec), path, format)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    size = path.stat().st_size
    path.unlink()
    return {
        "source": source,
        "format": format,
        "rows": written,
        "seconds": seconds,
        "peak": peak,
        "imported": imported_rss,
        "size": size,
    }


def run_child(*args) -> dict:
    """``measure`` in a fresh spawned process, so that its peak RSS is its own."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(measure, *args).result()


def report(rows: int, measured: list[dict]) -> tuple[str, bool]:
    by = {(m["source"], m["format"]): m for m in measured}
    cpus = usable_cpus()
    lines = [
        f"Demo data benchmark: {rows:,} rows, seed 0 — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"{cpus} CPUs, {psutil.virtual_memory().total / 1024**3:.0f} GB RAM, Python {platform.python_version()}, "
        f"numpy {np.__version__}, pyarrow {pa.__version__}",
        "",
        f"{'source':<10} {'format':<8} {'seconds':>8} {'rows/s':>11} {'peak RSS':>10} {'after imports':>14} "
        f"{'file':>9}",
    ]
    for m in measured:
        lines.append(
            f"{m['source']:<10} {m['format']:<8} {m['seconds']:>8.2f} {m['rows'] / m['seconds']:>11,.0f} "
            f"{m['peak'] / MB:>7.0f} MB {m['imported'] / MB:>11.0f} MB {m['size'] / MB:>6.1f} MB"
        )
    lines += ["", "generator cost over the I/O floor (uniform rows, same schema, same writer):"]
    for format in demo_data.FORMATS:
        generator, floor = by["generator", format], by["uniform", format]
        lines.append(
            f"  {format:<8} +{generator['seconds'] - floor['seconds']:.2f} s, "
            f"+{(generator['peak'] - floor['peak']) / MB:.0f} MB peak"
        )
    time_target = SECONDS_PER_MILLION_ROWS * rows / 1_000_000
    lines += [
        "",
        f"targets for the generator: under {time_target:g} s ({SECONDS_PER_MILLION_ROWS:g} s per 1M rows), "
        f"peak memory under {PEAK_MEMORY_BYTES / 1024**3:g} GB",
    ]
    passed = True
    for format in demo_data.FORMATS:
        m = by["generator", format]
        for label, ok, value in (
            (f"time under {time_target:g} s", m["seconds"] < time_target, f"{m['seconds']:.2f} s"),
            (
                f"peak under {PEAK_MEMORY_BYTES / 1024**3:g} GB",
                m["peak"] < PEAK_MEMORY_BYTES,
                f"{m['peak'] / MB:.0f} MB",
            ),
        ):
            passed &= ok
            lines.append(f"  {format:<8} {label:<22} {value:>10}  {'PASS' if ok else 'FAIL'}")
    return "\n".join(lines) + "\n", passed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--results", type=Path, default=RESULTS, help="where to save the table")
    args = parser.parse_args(argv)
    demo_data.DemoSpec(rows=args.rows)  # refuse a bad size before starting children
    with tempfile.TemporaryDirectory(prefix="bench-demo-data-") as folder:
        measured = [
            run_child(source, format, args.rows, folder)
            for format in demo_data.FORMATS
            for source in ("generator", "uniform")
        ]
    text, passed = report(args.rows, measured)
    return publish(text, passed, args.results)


if __name__ == "__main__":
    sys.exit(main())
