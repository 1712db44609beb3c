"""Reading a dataset's rows with DuckDB: source -> mapped, filtered rows.

``open_rows(config)`` gives a DuckDB connection with two views:

* ``source_rows``: the source as it is (CSV/Parquet files, or a SQL query
  streamed in as Arrow record batches);
* ``mapped_source``: every source row mapped (ids NULL where missing, the
  timestamp NULL where it does not read), with whether the filter conditions
  keep it: what the preview counts the dropped rows by;
* ``rows``: the mapped and filtered rows with canonical role columns
  (``buyer_id``, ``product_id``, ``timestamp``, ``target``) and feature
  columns under their source names.

With ``lookup_ids`` (ExampleGen, which reads every row) text and float ids are mapped through temp tables
of their distinct values (:func:`create_id_lookups`), so the id rules run once per id, not on every row; the
join does not keep the rows in file order, which the preview's sample rows show, so the preview maps in place.

Both the dataset preview and the pipeline's ExampleGen read ``rows``, so the
numbers a user sees before training are the numbers training uses. The views'
SQL comes from the query builder shared with BigQuery (:mod:`ml_pipeline.data.query`).
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import duckdb

from ml_pipeline.config.dataset import ColumnMapping, DatasetConfig, FileSource, Filters, SqlSource
from ml_pipeline.data.access import DataAccess, check_database_url, check_file, lock_down
from ml_pipeline.data.files import check_columns_found, check_file_content, csv_scan, readable_error
from ml_pipeline.data.query import CONDITION_OPS, DUCKDB, RowsQuery, id_columns, id_lookup_sql
from ml_pipeline.data.sql import column_kind, literal
from ml_pipeline.data.timestamps import check_text_timestamps, resolve_unit
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
    for file in files:
        check_file_content(file, fmt, source.csv, "source.path")
    target = literal(str(files[0])) if len(files) == 1 else "[" + ", ".join(literal(str(f)) for f in files) + "]"
    if fmt == "csv":
        # Sniff types from a large sample so ids like "17850.0" or late
        # text values in a numeric-looking column are typed correctly.
        return csv_scan(target, source.csv), files
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
            if source.resolved_format() == "csv":
                check_columns_found(source_columns(con), source.csv, "source.path")
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
            "the query may read only its database's tables; file access is off",
            field="source.query",
            detail=redact_text(str(error)),
        ) from None
    except duckdb.Error as error:
        raise _unreadable(source, error) from None
    except Exception as error:  # driver errors (adbc, psycopg) have no common base class
        if isinstance(error, DataError):
            raise
        raise _unreadable(source, error) from None


def _unreadable(source, error: Exception) -> DataError:
    """A file's error in words (see ml_pipeline.data.files); a query's first line, which names the table or
    column at fault (a user's own SQL: theirs to read), without the caret drawing of the query."""
    if source.kind == "file":
        found = readable_error(error, "source.path")
    else:
        found = DataError(f"the query failed: {redact_text(_first_line(error))}", field="source.query")
    found.detail = redact_text(str(error))
    return found


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
        # Text is parsed (and refused if it does not parse); numbers are Unix seconds or milliseconds.
        return (
            base.startswith(TEMPORAL_PREFIXES)
            or base in ("VARCHAR", "DECIMAL")
            or column_kind(base)
            in (
                "int",
                "float",
            )
        )
    return False


def _value_problem(value, duck_type: str) -> str | None:
    """Why a filter value cannot be compared with a column of ``duck_type`` (None: it can)."""
    kind = column_kind(duck_type)
    if duck_type.upper() == "BOOLEAN":
        if isinstance(value, bool) or str(value).lower() in ("true", "false"):
            return None
        return "is not true or false"
    if kind in ("int", "float"):
        if isinstance(value, bool):
            return "is not a number"
        try:
            number = float(value if isinstance(value, (int, float)) else str(value))
        except (ValueError, OverflowError):
            return "is not a number"
        return None if math.isfinite(number) else "is not a finite number"
    if kind == "timestamp":
        try:
            if not _DATE_OR_TIME.match(str(value)):
                raise ValueError
            datetime.fromisoformat(str(value))
        except ValueError:
            return "is not a date or time (write it as 2011-01-31 or 2011-01-31 09:30)"
    return None


_DATE_OR_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?$")


def _filter_value_problems(columns: dict[str, str], filters: Filters) -> list[Problem]:
    problems = []
    for index, condition in enumerate(filters.conditions):
        if condition.column not in columns or condition.op not in {*CONDITION_OPS, "in", "not_in"}:
            continue
        duck_type = columns[condition.column]
        values = condition.value if isinstance(condition.value, list) else [condition.value]
        for value in values:
            why = _value_problem(value, duck_type)
            if why:
                problems.append(
                    Problem(
                        f"filters.conditions[{index}].value",
                        f"{_shown(value)} {why}, and column '{condition.column}' is {duck_type}",
                    )
                )
                break
    return problems


def _shown(value) -> str:
    """A filter value as the message quotes it: text quoted, anything cut to 40 characters."""
    text = value if isinstance(value, str) else str(value)
    text = text if len(text) <= 40 else text[:37] + "..."
    return repr(text) if isinstance(value, str) else text


def check_mapping(columns: dict[str, str], mapping: ColumnMapping, filters: Filters) -> None:
    """Every mapped and filtered column exists in the source with a usable type, and every filter value
    can be compared with its column; all problems at once."""
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
    problems += _filter_value_problems(columns, filters)
    if problems:
        raise ConfigError(problems)


def mapped_source_sql(
    columns: dict[str, str], mapping: ColumnMapping, filters: Filters, units: dict, id_lookups: dict | None = None
) -> str:
    """SQL mapping every source row (none dropped yet), with whether the filter conditions keep it."""
    return RowsQuery(DUCKDB, columns, mapping, filters, units, id_lookups=id_lookups or {}).mapped_source()


def create_id_lookups(con, columns: dict[str, str], mapping: ColumnMapping) -> dict[str, str]:
    """Temp tables mapping each distinct text or float id to its mapped id (:func:`query.id_lookup_sql`);
    role -> table. Integer ids are only cast, which is cheaper inline than a join."""
    lookups = {}
    for role, column in id_columns(mapping):
        if column_kind(columns[column]) == "int":
            continue
        table = f"__{role}_lookup"
        lookup = id_lookup_sql(DUCKDB, role, column, columns[column], mapping.missing_ids)
        con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS {lookup}")
        lookups[role] = table
    return lookups


def mapped_rows_sql(mapping: ColumnMapping, filters: Filters, as_of: datetime | None = None) -> str:
    """SQL selecting the rows kept from ``mapped_source``: ids (and a timestamp) present, filters passed
    (a relative window ending at ``as_of``, when given)."""
    return RowsQuery(DUCKDB, {}, mapping, filters, as_of=as_of).rows()


def check_timestamps(con, columns: dict[str, str], mapping: ColumnMapping) -> dict[str, str]:
    """Every timestamp column reads as timestamps (from a sample of its values); the epoch unit of each
    numeric one. Raises ConfigError with every problem."""
    timestamp_columns = {"timestamp": mapping.timestamp} if mapping.timestamp else {}
    for group in ("buyer_features", "product_features"):
        for index, feature in enumerate(getattr(mapping, group)):
            if feature.dtype == "timestamp":
                timestamp_columns[f"{group}[{index}].column"] = feature.column
    units, problems = {}, []
    for field, column in timestamp_columns.items():
        unit = mapping.timestamp_unit if column == mapping.timestamp else "auto"
        units[column], found = resolve_unit(con, column, columns[column], unit, f"mapping.{field}")
        problems += found or check_text_timestamps(con, column, columns[column], mapping, f"mapping.{field}")
    if problems:
        raise ConfigError(problems)
    return units


@contextmanager
def open_rows(
    config: DatasetConfig,
    access: DataAccess | None = None,
    write: list[Path] = (),
    lookup_ids: bool = False,
    **connect_args,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection with ``source_rows`` and the mapped, filtered ``rows`` view, locked down to them
    (and to writing under ``write``): see :func:`register_source`. ``lookup_ids``: ids mapped through
    :func:`create_id_lookups` (the same rows, faster over a whole large source, in no particular order)."""
    con = connect(**connect_args)
    try:
        register_source(con, config.source, access=access, write=write)
        columns = source_columns(con)
        check_mapping(columns, config.mapping, config.filters)
        try:
            units = check_timestamps(con, columns, config.mapping)
            lookups = create_id_lookups(con, columns, config.mapping) if lookup_ids else {}
            mapped = mapped_source_sql(columns, config.mapping, config.filters, units, lookups)
            con.execute(f"CREATE OR REPLACE VIEW mapped_source AS {mapped}")
            rows = mapped_rows_sql(config.mapping, config.filters, config.as_of)
            con.execute(f"CREATE OR REPLACE VIEW rows AS {rows}")
        except duckdb.Error as error:
            raise _unreadable(config.source, error) from None
        yield con
    finally:
        con.close()
