"""ExampleGen: read the mapped, filtered rows once and write the train/eval/test splits as Parquet.

DuckDB does all the work in one streaming ``COPY ... PARTITION_BY``: rows are
never pulled into Python, and memory stays within DuckDB's ``memory_limit``
whatever the size of the data.

Sampling and the ``random`` split are decided by an MD5 of the row's key and
the seed (``hash_key`` "row": buyer, product and timestamp; "buyer": the
buyer alone, so all of a buyer's rows land in the same split). MD5 rather
than DuckDB's ``hash()``: the same spec gives the same splits on every
machine and every DuckDB version. The split reads the digest's last six
decimal digits and the sample the six before them, so a row's split does not
depend on the sample size, and a smaller sample is a subset of a larger one.

A BigQuery source is kept and mapped by BigQuery itself (the shared query builder's statement, exported as
Parquet: :mod:`ml_pipeline.data.bigquery`); the exported rows are then split here exactly as local rows are.

Output (under ``output/``):

* ``train/``, ``eval/``, ``test/``: Parquet parts (``part-<i>.parquet``) with
  the columns of the mapped rows (``buyer_id``, ``product_id``,
  ``timestamp``, ``target``, features under their source names). An empty
  split (``test`` with ``time_holdout`` or ``test_ratio`` 0) holds one
  Parquet file with the schema and no rows, so every split reads the same way.
* ``catalog.parquet``: one row per product seen in any split, sorted by
  ``product_id``: ``product_id``, the mapping's product feature columns
  (latest non-null value by timestamp; the largest value without a
  timestamp) and ``train_count`` (rows in train, 0 if none).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from contextlib import ExitStack, closing
from datetime import datetime
from pathlib import Path

from ml_pipeline.artifact_types import Examples
from ml_pipeline.config.dataset import DatasetConfig
from ml_pipeline.data import sources, splits
from ml_pipeline.data.access import DataAccess, lock_down
from ml_pipeline.data.query import DUCKDB
from ml_pipeline.data.sql import ident, literal
from ml_pipeline.errors import ConfigError, DataError, Problem
from ml_pipeline.spec import PipelineSpec, SplitConfig
from ml_pipeline.stages.base import Stage, StageContext, StageFailure, StageParams, StageResult

SPLITS = Examples.SPLITS
LARGE_FILE_BYTES = 1 << 30  # larger files are fingerprinted by size and mtime, not content
_SPLIT_COLUMN = splits.SPLIT_COLUMN


class ExampleGenParams(StageParams):
    """The source, its mapping and filters, and how rows are sampled and split."""

    dataset: DatasetConfig
    split: SplitConfig


# -- the source fingerprint ----------------------------------------------------
def _file_fingerprint(source, access: DataAccess | None) -> str:
    path = Path(source.path).expanduser()
    if access is not None and not access.permits(path):
        return f"unavailable:{uuid.uuid4().hex}"  # Compile refuses the source; nothing here reads it
    if path.is_dir():
        pattern = "**/*.parquet" if source.resolved_format() == "parquet" else "**/*.csv"
        files = sorted((p.relative_to(path).as_posix(), p) for p in path.glob(pattern) if p.is_file())
        if access is not None and not all(access.permits(file) for _, file in files):
            return f"unavailable:{uuid.uuid4().hex}"
    elif path.is_file():
        files = [(path.name, path)]
    else:
        files = []
    if not files:
        # Compile (or ExampleGen) reports the missing source; a fingerprint that
        # never matches keeps anything from being reused for it meanwhile.
        return f"unavailable:{uuid.uuid4().hex}"
    digest = hashlib.sha256()
    for relative, file in files:
        stat = file.stat()
        digest.update(f"{relative}\0{stat.st_size}\0".encode())
        if stat.st_size > LARGE_FILE_BYTES:
            digest.update(f"mtime:{stat.st_mtime_ns}\0".encode())
        else:
            digest.update(_content_digest(file, stat))
    return f"sha256:{digest.hexdigest()}"


_DIGESTS: dict[tuple, bytes] = {}  # (path, inode, size, mtime_ns) -> sha256, for this process


def _content_digest(file: Path, stat: os.stat_result) -> bytes:
    """sha256 of a file's bytes, streamed; remembered while the file's size and mtime stay the same.

    Every plan of a run fingerprints the source; the memo keeps a worker that
    plans the same pipeline repeatedly from reading the same files each time.
    """
    key = (str(file.resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns)
    digest = _DIGESTS.get(key)
    if digest is None:
        with open(file, "rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").digest()
        if len(_DIGESTS) > 10_000:
            _DIGESTS.clear()
        _DIGESTS[key] = digest
    return digest


def _sql_fingerprint(source, access: DataAccess | None) -> str:
    """Row count and an order-independent sum of row hashes of the query's result.

    DuckDB files are queried in place; SQLite and PostgreSQL results are read
    once more (the price of knowing whether the data changed).
    """
    con = sources.connect()
    try:
        sources.register_source(con, source, access=access)
        count, total = con.execute(
            "SELECT count(*), coalesce(sum(hash(r)::HUGEINT), 0) FROM source_rows AS r"
        ).fetchone()
    except DataError:
        return f"unavailable:{uuid.uuid4().hex}"
    finally:
        con.close()
    return f"rows:{count}:{total}"


def source_fingerprint(dataset: DatasetConfig, access: DataAccess | None) -> str:
    source = dataset.source
    if source.kind == "file":
        return _file_fingerprint(source, access)
    if source.kind == "sql":
        return _sql_fingerprint(source, access)
    return _bigquery_fingerprint(dataset)


def _bigquery_fingerprint(dataset: DatasetConfig) -> str:
    """The source's tables as BigQuery describes them (identity, last-modified time, row count: see
    :meth:`ml_pipeline.data.bigquery.BigQueryRows.fingerprint`). Where BigQuery cannot be asked (no
    credentials here: Compile reports it) the fingerprint must not raise, and matches nothing."""
    from ml_pipeline.data import bigquery

    try:
        return bigquery.BigQueryRows.open(dataset).fingerprint()
    except DataError:
        return f"unavailable:{uuid.uuid4().hex}"


# -- SQL pieces ------------------------------------------------------------------
def examples_sql(spec: ExampleGenParams, max_timestamp: datetime | None = None) -> str:
    """The sampled rows of the ``rows`` view with their split in ``__split`` (:mod:`ml_pipeline.data.splits`)."""
    has_time = spec.dataset.mapping.timestamp is not None
    newest = literal(max_timestamp) if max_timestamp is not None else None
    return splits.examples_sql(DUCKDB, spec.split, has_time, "rows", newest)


def _prefixed(error: ConfigError | DataError) -> Exception:
    problems = [Problem(f"dataset.{p.field}" if p.field else "dataset", p.message) for p in error.problems]
    if isinstance(error, DataError):
        return DataError(problems[0].message, field=problems[0].field)
    return ConfigError(problems)


def _fmt_time(value) -> str:
    return value.isoformat(sep=" ") if value is not None else "?"


class ExampleGen(Stage[ExampleGenParams]):
    name = "ExampleGen"
    output = Examples
    Params = ExampleGenParams

    def params(self, spec: PipelineSpec) -> ExampleGenParams:
        return ExampleGenParams(dataset=spec.dataset, split=spec.split)

    def external_fingerprint(self, params: ExampleGenParams, access: DataAccess | None) -> str | None:
        return source_fingerprint(params.dataset, access)

    def run(self, ctx: StageContext, params: ExampleGenParams) -> StageResult:
        if params.dataset.source.kind == "bigquery":
            return self._run_bigquery(ctx, params)
        stack = ExitStack()
        try:
            con = stack.enter_context(
                sources.open_rows(params.dataset, access=ctx.data_access, write=[ctx.output], lookup_ids=True)
            )
        except (ConfigError, DataError) as error:
            stack.close()
            raise _prefixed(error) from None
        with stack:
            return self._run(ctx, params, con)

    def _run_bigquery(self, ctx: StageContext, params: ExampleGenParams) -> StageResult:
        """BigQuery keeps the rows (the shared query builder's statement) and exports them to Parquet on GCS;
        they are fetched into a local temp dir, because DuckDB splits them from local files, then split as
        local rows are."""
        import fsspec

        from ml_pipeline.data import bigquery

        root = bigquery.export_uri()
        if root is None:
            raise DataError("BigQuery sources run on the Vertex AI runner, not locally", field="dataset.source.kind")
        uri = f"{root.rstrip('/')}/{ctx.run_id}/{uuid.uuid4().hex[:8]}"
        try:
            files = bigquery.BigQueryRows.open(params.dataset).export(uri)
        except (ConfigError, DataError) as error:
            raise _prefixed(error) from None
        fs, _, found = fsspec.get_fs_token_paths(files)
        with tempfile.TemporaryDirectory(prefix="bigquery-export-") as folder:
            local = [Path(folder) / f"part-{i}.parquet" for i in range(len(found))]
            for remote, path in zip(found, local):
                fs.get(remote, str(path))
            ctx.log.info("exported %s Parquet files from BigQuery to %s", len(local), uri)
            with closing(sources.connect()) as con:
                if local:
                    target = "[" + ", ".join(literal(str(p)) for p in local) + "]"
                    con.execute(f"CREATE VIEW exported AS SELECT * FROM read_parquet({target})")
                    con.execute("SET TimeZone = 'UTC'")  # BigQuery's TIMESTAMPs are UTC; ours are naive UTC
                    naive = [
                        f"CAST({ident(name)} AS TIMESTAMP) AS {ident(name)}"
                        for name, kind, *_ in con.execute("DESCRIBE exported").fetchall()
                        if kind == "TIMESTAMP WITH TIME ZONE"
                    ]
                    replace = f" REPLACE ({', '.join(naive)})" if naive else ""
                    con.execute(f"CREATE VIEW source_rows AS SELECT *{replace} FROM exported")
                else:  # BigQuery writes no file for no rows
                    con.execute("CREATE VIEW source_rows AS SELECT NULL AS buyer_id WHERE FALSE")
                con.execute("CREATE VIEW rows AS SELECT * FROM source_rows")
                lock_down(con, read=local, write=[ctx.output])
                return self._run(ctx, params, con)

    def _run(self, ctx: StageContext, spec: ExampleGenParams, con) -> StageResult:
        out = ctx.output
        examples = Examples(out)
        has_time = spec.dataset.mapping.timestamp is not None
        if con.execute("SELECT 1 FROM rows LIMIT 1").fetchone() is None:
            source_rows = con.execute("SELECT count(*) FROM source_rows").fetchone()[0]
            needs = "a buyer, a product" + (" and a timestamp" if has_time else "")
            raise DataError(
                f"no rows left after filters ({source_rows:,} source rows; a row also needs {needs})",
                field="dataset.filters",
            )
        max_timestamp = None
        if spec.split.strategy == "time_holdout":  # the newest row (none after the dataset's as_of is read)
            max_timestamp = con.execute('SELECT max("timestamp") FROM rows').fetchone()[0]
        con.execute(f"CREATE OR REPLACE TEMP VIEW examples AS {examples_sql(spec, max_timestamp)}")

        staging = out / "_partitioned"
        ctx.log.info("writing splits (%s, sample %s%%)", spec.split.strategy, spec.split.sample_percent)
        con.execute(
            f"COPY examples TO {literal(str(staging))} (FORMAT parquet, COMPRESSION zstd, "
            f"PARTITION_BY ({_SPLIT_COLUMN}), FILENAME_PATTERN 'part-{{i}}', FILE_SIZE_BYTES '256MB', "
            f"OVERWRITE_OR_IGNORE)"
        )
        for split in SPLITS:
            written = staging / f"{_SPLIT_COLUMN}={split}"
            if written.is_dir():
                os.replace(written, out / split)
            else:
                (out / split).mkdir()
                con.execute(
                    f"COPY (SELECT * EXCLUDE ({_SPLIT_COLUMN}) FROM examples LIMIT 0) "
                    f"TO {literal(str(out / split / 'part-0.parquet'))} (FORMAT parquet)"
                )
        shutil.rmtree(staging, ignore_errors=True)

        counts = {
            s: con.execute(f"SELECT count(*) FROM read_parquet({literal(examples.split_glob(s))})").fetchone()[0]
            for s in SPLITS
        }
        self._check_splits(con, spec, counts, max_timestamp)

        all_parts = "[" + ", ".join(literal(examples.split_glob(s)) for s in SPLITS) + "]"
        buyers = con.execute(f"SELECT count(DISTINCT buyer_id) FROM read_parquet({all_parts})").fetchone()[0]
        products = self._write_catalog(con, spec, examples)
        total = sum(counts.values())
        parts = [f"{name} {counts[name]:,}" for name in SPLITS if counts[name] or name != "test"]
        summary = f"{total:,} examples ({' · '.join(parts)})"
        ctx.log.info("%s; %s buyers, %s products", summary, f"{buyers:,}", f"{products:,}")
        return StageResult(summary, {"splits": counts, "rows": total, "products": products, "buyers": buyers})

    def _check_splits(self, con, spec: ExampleGenParams, counts: dict[str, int], max_timestamp) -> None:
        split = spec.split
        total = sum(counts.values())
        if total == 0:
            kept = con.execute("SELECT count(*) FROM rows").fetchone()[0]
            raise StageFailure(
                f"split.sample_percent: no rows left after sampling {split.sample_percent:g}% "
                f"of {kept:,} rows; raise sample_percent"
            )
        for name in ("train", "eval"):
            if counts[name]:
                continue
            if split.strategy == "random":
                ratio = split.train_ratio if name == "train" else split.eval_ratio
                raise StageFailure(
                    f"split.{name}_ratio: the {name} split is empty ({total:,} rows, {name}_ratio {ratio:g}); "
                    f"use more data or a larger {name}_ratio"
                )
            first, last = con.execute('SELECT min("timestamp"), max("timestamp") FROM rows').fetchone()
            span = f"the data runs from {_fmt_time(first)} to {_fmt_time(last)}"
            if split.strategy == "time_holdout":
                if name == "train":
                    raise StageFailure(
                        f"split.holdout_days: the train split is empty: every row is in the last "
                        f"{split.holdout_days} days before {_fmt_time(max_timestamp)} ({span}); use fewer holdout_days"
                    )
                # The newest row is eval, unless the sample left it out.
                raise StageFailure(
                    f"split.holdout_days: the eval split is empty: the sample kept no rows from the last "
                    f"{split.holdout_days} days before {_fmt_time(max_timestamp)}; use more holdout_days or a larger "
                    f"split.sample_percent"
                )
            if name == "train":
                raise StageFailure(
                    f"split.train_end: the train split is empty: no rows before "
                    f"{_fmt_time(splits.naive_utc(split.train_end))} ({span})"
                )
            raise StageFailure(
                f"split.eval_end: the eval split is empty: no rows from {_fmt_time(splits.naive_utc(split.train_end))} "
                f"to before {_fmt_time(splits.naive_utc(split.eval_end))} ({span})"
            )

    def _write_catalog(self, con, spec: ExampleGenParams, examples: Examples) -> int:
        has_time = spec.dataset.mapping.timestamp is not None
        columns = []
        for feature in spec.dataset.mapping.product_features:
            col = ident(feature.column)
            if has_time:
                pick = f'arg_max({col}, ("timestamp", {col})) FILTER (WHERE {col} IS NOT NULL)'
            else:
                pick = f"max({col})"
            columns.append(f"{pick} AS {col}")
        union = " UNION ALL ".join(
            f"SELECT *, {literal(s)} AS {_SPLIT_COLUMN} FROM read_parquet({literal(examples.split_glob(s))})"
            for s in SPLITS
        )
        train_count = f"count(*) FILTER (WHERE {_SPLIT_COLUMN} = 'train') AS train_count"
        select = ", ".join(["product_id", *columns, train_count])
        con.execute(
            f"COPY (SELECT {select} FROM ({union}) AS examples GROUP BY product_id ORDER BY product_id) "
            f"TO {literal(str(examples.catalog_path))} (FORMAT parquet, COMPRESSION zstd)"
        )
        return con.execute(f"SELECT count(*) FROM read_parquet({literal(str(examples.catalog_path))})").fetchone()[0]
