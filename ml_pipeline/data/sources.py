"""Reading a dataset's rows with DuckDB: source -> mapped, filtered rows.

``open_rows(config)`` gives a DuckDB connection with two views:

* ``source_rows``: the source as it is (CSV/Parquet files, or a SQL query
  streamed in as Arrow record batches);
* ``rows``: the mapped and filtered rows with canonical role columns
  (``buyer_id``, ``product_id``, ``timestamp``, ``target``) and feature
  columns under their source names.

Both the dataset preview and the pipeline's ExampleGen read ``rows``, so the
numbers a user sees before training are the numbers training uses.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from ml_pipeline.config.dataset import ColumnMapping, DatasetConfig, FileSource, Filters, SqlSource
from ml_pipeline.data.access import DataAccess, check_database_url, check_file, lock_down
from ml_pipeline.data.sql import ident, literal, literal_list
from ml_pipeline.errors import ConfigError, DataError, Problem
from ml_pipeline.redact import redact_text

INTEGER_TYPES = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT"}
FLOAT_TYPES = {"FLOAT", "DOUBLE", "REAL"}
TEMPORAL_PREFIXES = ("TIMESTAMP", "DATE")


def connect(memory_limit: str | None = None, threads: int | None = None) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    con.execute(f"SET memory_limit = {literal(memory_limit or os.environ.get('DUCKDB_MEMORY_LIMIT', '2GB'))}")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    # Spill to disk rather than fail when a sort or join is larger than memory.
    con.execute(f"SET temp_directory = {literal(os.environ.get('DUCKDB_TEMP_DIR', '/tmp/duckdb_spill'))}")
    con.execute("SET preserve_insertion_order = false")
    con.execute("SET enable_progress_bar = false")  # no progress bars in a worker's logs
    return con


def _file_scan(source: FileSource, access: DataAccess | None) -> tuple[str, list[Path]]:
    """The DuckDB table function reading a file source, and the real paths of the files it reads.

    A folder is expanded here, not by DuckDB's glob, so that every file it
    holds (a symlink included) is checked against the policy by its real path.
    """
    path = check_file(access, source.path, source.path, "source.path")
    if not path.exists():
        raise DataError(f"'{source.path}' does not exist", field="source.path")
    fmt = source.resolved_format()
    if path.is_dir():
        pattern = "**/*.parquet" if fmt == "parquet" else "**/*.csv"
        files = [
            check_file(access, found, str(found.relative_to(path)), "source.path")
            for found in sorted(path.glob(pattern))
            if found.is_file()
        ]
        if not files:
            raise DataError(f"folder '{source.path}' holds no {fmt} files", field="source.path")
    else:
        files = [path]
    target = literal(str(files[0])) if len(files) == 1 else "[" + ", ".join(literal(str(f)) for f in files) + "]"
    if fmt == "csv":
        # Sniff types from a large sample so ids like "17850.0" or late
        # text values in a numeric-looking column are typed correctly.
        return f"read_csv({target}, auto_detect = true, sample_size = 200000, union_by_name = true)", files
    return f"read_parquet({target}, union_by_name = true)", files


@contextmanager
def _sql_reader(source: SqlSource, access: DataAccess | None):
    """Run a SQLite or PostgreSQL query, yielding a streaming Arrow RecordBatchReader.

    The ADBC connection must stay open while the stream is read, hence a
    context manager rather than a returned reader. A SQLite file is opened
    read-only; the query is a single SELECT (SqlSource checks it), and SQLite
    refuses ``load_extension`` to ADBC connections, so it reads only that file.
    """
    if source.engine == "sqlite":
        path = check_file(access, source.database, source.database, "source.database")
        if not path.is_file():
            raise DataError(f"'{source.database}' does not exist", field="source.database")
        import adbc_driver_sqlite.dbapi as driver

        uri = f"{path.as_uri()}?mode=ro"
    else:
        check_database_url(access, source.database, "source.database")
        import adbc_driver_postgresql.dbapi as driver

        uri = source.database
    with driver.connect(uri) as conn, conn.cursor() as cursor:
        cursor.execute(source.query)
        yield cursor.fetch_record_batch()


def register_source(
    con: duckdb.DuckDBPyConnection,
    source,
    schema_only: bool = False,
    access: DataAccess | None = None,
    write: list[Path] = (),
) -> None:
    """Create the ``source_rows`` view for a source, then lock the connection down.

    ``access`` is the project's data policy (None: no policy, as in the CLI).
    Afterwards the connection can read only the source and write only under
    ``write`` (a stage's output folder): a user's SQL cannot reach any other
    file. ``schema_only`` asks a SQL source for its columns without reading
    its rows (files are only sniffed by DESCRIBE anyway).
    """
    try:
        if source.kind == "file":
            scan, files = _file_scan(source, access)
            con.execute(f"CREATE OR REPLACE VIEW source_rows AS SELECT * FROM {scan}")
            lock_down(con, read=files, write=list(write))
        elif source.kind == "sql":
            if source.engine == "duckdb":
                # A DuckDB file is attached read-only and queried in place; the
                # search path lets the query name its tables unqualified.
                path = check_file(access, source.database, source.database, "source.database")
                if not path.is_file():
                    raise DataError(f"'{source.database}' does not exist", field="source.database")
                con.execute(f"ATTACH {literal(str(path))} AS src (READ_ONLY)")
                con.execute("SET search_path = 'memory.main,src.main'")
                lock_down(con, write=list(write))
                con.execute(f"CREATE OR REPLACE VIEW memory.main.source_rows AS SELECT * FROM ({source.query})")
            else:
                # An Arrow stream can be scanned once; the preview and the
                # pipeline read the rows several times, so copy them into a
                # DuckDB table (compressed, spilling to disk past memory_limit).
                if schema_only:
                    source = source.model_copy(update={"query": f"SELECT * FROM ({source.query}) AS q LIMIT 0"})
                with _sql_reader(source, access) as reader:
                    con.register("source_stream", reader)
                    con.execute("CREATE TABLE source_rows AS SELECT * FROM source_stream")
                    con.unregister("source_stream")
                lock_down(con, write=list(write))
        else:
            raise DataError("BigQuery sources are read by the Vertex AI runner, not locally", field="source.kind")
    except duckdb.PermissionException as error:
        raise DataError(
            f"the query may read only its database's tables; file access is off ({_first_line(error)})",
            field="source.query",
        ) from None
    except duckdb.Error as error:
        raise DataError(f"cannot read the source: {redact_text(_first_line(error))}", field="source") from None
    except Exception as error:  # driver errors (adbc, psycopg) have no common base class
        if isinstance(error, DataError):
            raise
        raise DataError(f"cannot read the source: {redact_text(_first_line(error))}", field="source") from None


def _first_line(error: Exception) -> str:
    """DuckDB's messages go on with a caret drawing of the query; the first line says it."""
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def source_columns(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Column name -> DuckDB type of the ``source_rows`` view."""
    return {row[0]: row[1] for row in con.execute("DESCRIBE source_rows").fetchall()}


def _closest(name: str, candidates) -> str:
    match = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    if not match:
        match = [c for c in candidates if c.lower() == name.lower()]
    return f" (did you mean '{match[0]}'?)" if match else ""


def _type_accepts(declared: str, duck_type: str) -> bool:
    base = duck_type.split("(")[0].upper()
    if declared == "string":
        return True
    if declared == "int":
        return base in INTEGER_TYPES
    if declared == "float":
        return base in INTEGER_TYPES or base in FLOAT_TYPES or base == "DECIMAL"
    if declared == "timestamp":
        return base.startswith(TEMPORAL_PREFIXES) or base == "VARCHAR"
    return False


def check_mapping(columns: dict[str, str], mapping: ColumnMapping, filters: Filters) -> None:
    """Every mapped and filtered column exists in the source with a usable type."""
    problems = []
    declared = {"buyer_id": "string", "product_id": "string", "timestamp": "timestamp", "target": "float"}
    for group in ("buyer_features", "product_features"):
        for index, feature in enumerate(getattr(mapping, group)):
            declared[f"{group}[{index}].column"] = feature.dtype
    for field, column in mapping.source_columns().items():
        path = f"mapping.{field}"
        if column not in columns:
            problems.append(Problem(path, f"column '{column}' is not in the source{_closest(column, columns)}"))
        elif not _type_accepts(declared[field], columns[column]):
            problems.append(
                Problem(path, f"column '{column}' is {columns[column]}, which cannot be read as {declared[field]}")
            )
    for index, condition in enumerate(filters.conditions):
        if condition.column not in columns:
            problems.append(
                Problem(
                    f"filters.conditions[{index}].column",
                    f"column '{condition.column}' is not in the source{_closest(condition.column, columns)}",
                )
            )
    if problems:
        raise ConfigError(problems)


def _id_expr(column: str, duck_type: str) -> str:
    """Ids become trimmed strings; integral floats ("17850.0") lose their ".0"."""
    col = ident(column)
    base = duck_type.split("(")[0].upper()
    if base in FLOAT_TYPES or base == "DECIMAL":
        return f"CASE WHEN {col} = floor({col}) THEN CAST(CAST({col} AS BIGINT) AS VARCHAR) ELSE CAST({col} AS VARCHAR) END"
    return f"NULLIF(trim(CAST({col} AS VARCHAR)), '')"


def _typed_expr(column: str, dtype: str, duck_type: str) -> str:
    if dtype == "string":
        return _id_expr(column, duck_type)
    cast = {"int": "BIGINT", "float": "DOUBLE", "timestamp": "TIMESTAMP"}[dtype]
    return f"TRY_CAST({ident(column)} AS {cast})"


_CONDITION_SQL = {"eq": "=", "ne": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def _condition_sql(condition) -> str:
    col = ident(condition.column)
    if condition.op in _CONDITION_SQL:
        return f"{col} {_CONDITION_SQL[condition.op]} {literal(condition.value)}"
    if condition.op == "in":
        return f"{col} IN {literal_list(condition.value)}"
    if condition.op == "not_in":
        return f"({col} IS NULL OR {col} NOT IN {literal_list(condition.value)})"
    if condition.op == "starts_with":
        return f"starts_with(CAST({col} AS VARCHAR), {literal(condition.value)})"
    if condition.op == "not_starts_with":
        return f"NOT coalesce(starts_with(CAST({col} AS VARCHAR), {literal(condition.value)}), FALSE)"
    if condition.op == "is_null":
        return f"{col} IS NULL"
    return f"{col} IS NOT NULL"


def mapped_rows_sql(columns: dict[str, str], mapping: ColumnMapping, filters: Filters) -> str:
    """SQL selecting the mapped, filtered rows from ``source_rows``."""
    select = [
        f"{_id_expr(mapping.buyer_id, columns[mapping.buyer_id])} AS buyer_id",
        f"{_id_expr(mapping.product_id, columns[mapping.product_id])} AS product_id",
    ]
    if mapping.timestamp:
        select.append(f'TRY_CAST({ident(mapping.timestamp)} AS TIMESTAMP) AS "timestamp"')
    if mapping.target:
        select.append(f"TRY_CAST({ident(mapping.target)} AS DOUBLE) AS target")
    for feature in [*mapping.buyer_features, *mapping.product_features]:
        select.append(
            f"{_typed_expr(feature.column, feature.dtype, columns[feature.column])} AS {ident(feature.column)}"
        )

    source_where = [_condition_sql(c) for c in filters.conditions] or ["TRUE"]
    where = ["buyer_id IS NOT NULL", "product_id IS NOT NULL"]
    if mapping.timestamp:
        where.append('"timestamp" IS NOT NULL')
    if filters.date_from:
        where.append(f'"timestamp" >= {literal(filters.date_from)}')
    if filters.date_to:
        where.append(f'"timestamp" < {literal(filters.date_to)} + INTERVAL 1 DAY')
    if filters.include_buyers:
        where.append(f"buyer_id IN {literal_list(filters.include_buyers)}")
    if filters.exclude_buyers:
        where.append(f"buyer_id NOT IN {literal_list(filters.exclude_buyers)}")
    mapped = f"SELECT {', '.join(select)} FROM source_rows WHERE {' AND '.join(source_where)}"
    sql = f"SELECT * FROM ({mapped}) AS mapped WHERE {' AND '.join(where)}"
    if filters.last_days:
        # "Last N days" is relative to the newest row, so a historical export
        # still yields data; the window is computed after the other filters.
        sql = (
            f'WITH kept AS ({sql}) SELECT * FROM kept WHERE "timestamp" > '
            f'(SELECT max("timestamp") FROM kept) - INTERVAL {int(filters.last_days)} DAY'
        )
    return sql


@contextmanager
def open_rows(
    config: DatasetConfig, access: DataAccess | None = None, write: list[Path] = (), **connect_args
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection with ``source_rows`` and the mapped, filtered ``rows`` view, locked down to them
    (and to writing under ``write``): see :func:`register_source`."""
    con = connect(**connect_args)
    try:
        register_source(con, config.source, access=access, write=write)
        columns = source_columns(con)
        check_mapping(columns, config.mapping, config.filters)
        con.execute(f"CREATE OR REPLACE VIEW rows AS {mapped_rows_sql(columns, config.mapping, config.filters)}")
        yield con
    finally:
        con.close()
