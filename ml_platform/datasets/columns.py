"""The columns a dataset's source holds, each with its type and a few values: what the mapping is picked from.

The source is resolved and confined exactly as a dataset's is (``services.resolve_config``: uploads to their
files, paths and databases checked against the project's data policy) and read with the execution plane's
``register_source``, so a column shown here is a column the mapping may name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ml_pipeline.data import sources
from ml_pipeline.data.sql import ident
from ml_platform.datasets import services
from ml_platform.datasets.access import data_access_for

# resolve_config checks a whole dataset; the mapping is what the columns are for, so two names that collide
# with no role stand in for it (they are never looked up in the source).
_PLACEHOLDER_MAPPING = {"buyer_id": "\x00buyer", "product_id": "\x00product"}
SAMPLE_ROWS = 200
SAMPLES_SHOWN = 3


@dataclass(frozen=True)
class DetectedColumn:
    name: str
    type: str  # DuckDB's
    samples: list[str] = field(default_factory=list)

    @property
    def dtype(self) -> str:
        """The mapping's feature type this column reads as best (ColumnMapping's FeatureColumn.dtype)."""
        base = self.type.split("(")[0].upper()
        if base in sources.INTEGER_TYPES:
            return "int"
        if base in sources.FLOAT_TYPES or base == "DECIMAL":
            return "float"
        if base.startswith(sources.TEMPORAL_PREFIXES):
            return "timestamp"
        return "string"


def detect(project, source: dict) -> list[DetectedColumn]:
    """The source's columns, in order. Raises ConfigError / DataError as saving the dataset would.

    A BigQuery source is not read here: it has no columns to show (its mapping is typed by hand).
    """
    config = services.resolve_config(project, source, _PLACEHOLDER_MAPPING, None)
    if config.source.kind == "bigquery":
        return []
    read = config.source
    if read.kind == "sql" and read.engine != "duckdb":  # copied into DuckDB whole: copy only what is shown
        read = read.model_copy(update={"query": f"SELECT * FROM ({read.query}) AS q LIMIT {SAMPLE_ROWS}"})
    con = sources.connect()
    try:
        sources.register_source(con, read, access=data_access_for(project))
        types = sources.source_columns(con)
        samples: dict[str, list[str]] = {name: [] for name in types}
        for name in types:
            rows = con.execute(
                f"SELECT DISTINCT CAST({ident(name)} AS VARCHAR) AS v FROM "
                f"(SELECT {ident(name)} FROM source_rows LIMIT {SAMPLE_ROWS}) WHERE v IS NOT NULL LIMIT {SAMPLES_SHOWN}"
            ).fetchall()
            samples[name] = [row[0] for row in rows]
    finally:
        con.close()
    return [DetectedColumn(name, dtype, samples[name]) for name, dtype in types.items()]
