"""The buyers lookup ``GET /recommend`` reads: each buyer's latest features, built from ExampleGen's output.

One row per buyer seen in any split (train, eval, test): ``buyer_id``, every
other column of the buyer tower (its latest non-null value by timestamp; the
largest value without a timestamp; timestamp features as Unix seconds) and
``__latest_timestamp`` (the buyer's newest interaction, Unix seconds; null
without timestamps). The event ``timestamp`` itself is not a buyer attribute:
the server fills it with the time of the request.

:func:`write_buyers_lookup` (run by whoever deploys a model: the platform)
has DuckDB read the splits' Parquet in one streaming ``GROUP BY``; nothing is
pulled into Python. :class:`BuyerLookup` is the server's side.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from ml_pipeline.artifact_types import Examples
from ml_pipeline.data.sql import ident, literal

BUYER_ID = "buyer_id"
LATEST_TIMESTAMP = "__latest_timestamp"  # the buyer's newest interaction, Unix seconds


class BuyersLookupError(Exception):
    """The lookup cannot be built from these examples; the message says why, for the user."""


TIME_TYPES = ("TIMESTAMP", "DATE")


def _seconds(expr: str) -> str:
    return f"CAST(floor(epoch({expr})) AS BIGINT)"


def write_buyers_lookup(examples: str | Path, buyer_features: list[dict], out: Path, memory_limit: str = "1GB") -> int:
    """Write the lookup for the buyer tower ``buyer_features`` to ``out`` (atomically); the number of buyers."""
    import duckdb

    examples = Examples(examples)
    parts = [examples.split_glob(split) for split in examples.splits()]
    if not parts:
        raise BuyersLookupError(f"the run's examples are gone ({examples} has no splits); retrain to deploy it")
    con = duckdb.connect()
    try:
        con.execute("SET enable_progress_bar = false")
        con.execute(f"SET memory_limit = {literal(memory_limit)}")
        sources = "[" + ", ".join(literal(p) for p in parts) + "]"
        con.execute(f"CREATE TEMP VIEW examples AS SELECT * FROM read_parquet({sources}, union_by_name = true)")
        types = {name: str(kind).upper() for name, kind, *_ in con.execute("DESCRIBE examples").fetchall()}
        has_time = "timestamp" in types
        selects = [BUYER_ID]
        for feature in buyer_features:
            column, kind = feature["column"], feature.get("kind")
            if column == BUYER_ID or (column == "timestamp" and has_time):
                continue  # the key, and the event time (the request's time at serving)
            if column not in types:
                raise BuyersLookupError(f"the run's examples have no column '{column}', which the buyer tower needs")
            col = ident(column)
            if has_time:
                pick = f'arg_max({col}, ("timestamp", {col})) FILTER (WHERE {col} IS NOT NULL)'
            else:
                pick = f"max({col})"
            if kind == "timestamp" and types[column].startswith(TIME_TYPES):
                pick = _seconds(pick)
            selects.append(f"{pick} AS {col}")
        latest = _seconds('max("timestamp")') if has_time else "CAST(NULL AS BIGINT)"
        selects.append(f"{latest} AS {ident(LATEST_TIMESTAMP)}")
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
        con.execute(
            f"COPY (SELECT {', '.join(selects)} FROM examples WHERE {BUYER_ID} IS NOT NULL "
            f"GROUP BY {BUYER_ID} ORDER BY {BUYER_ID}) TO {literal(str(staging))} (FORMAT parquet, COMPRESSION zstd)"
        )
        count = con.execute(f"SELECT count(*) FROM read_parquet({literal(str(staging))})").fetchone()[0]
        os.replace(staging, out)
        return count
    except duckdb.Error as error:
        raise BuyersLookupError(f"could not build the buyers lookup from {examples}: {error}") from None
    finally:
        con.close()


class BuyerLookup:
    """The lookup as the server reads it: one row per buyer (its latest raw features), indexed by buyer id."""

    def __init__(self, path: str | Path):
        import pyarrow.parquet as pq

        self.path = Path(path)
        self.table = pq.read_table(self.path)
        if BUYER_ID not in self.table.column_names:
            raise ValueError(f"{self.path} has no '{BUYER_ID}' column")
        ids = self.table.column(BUYER_ID).to_pylist()
        self.index = {str(buyer): row for row, buyer in enumerate(ids) if buyer is not None}

    def __len__(self) -> int:
        return len(self.index)

    def features(self, buyer_id: str) -> dict[str, Any] | None:
        row = self.index.get(buyer_id)
        return None if row is None else self.table.slice(row, 1).to_pylist()[0]
