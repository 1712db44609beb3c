"""Files as their owner wrote them: what is checked before DuckDB reads one, and its errors in words.

DuckDB's own messages run to a kilobyte: the server path of the file, the SQL
of the view being created, "Possible Solution: set ignore_errors=true". A user
can act on none of it. :func:`readable_error` turns the ones a user can fix
into a sentence naming the option to change; the full text travels on the
error as ``detail``, for the server log only.
"""

from __future__ import annotations

import codecs
import re
from pathlib import Path

from ml_pipeline.config.dataset import CsvOptions
from ml_pipeline.data.sql import literal
from ml_pipeline.errors import DataError

SNIFF_BYTES = 1 << 20  # how much of a file is checked before DuckDB reads it
NOT_A_DATA_FILE = "this is not a CSV or Parquet file"
NOT_UTF8 = "this file is not UTF-8: choose its encoding"
NO_DELIMITER = "could not find a delimiter: choose one"
EMPTY = "the file is empty"
HEADER_ONLY = "the file has a header but no rows"
NO_ROWS = "the file has no rows"
PARQUET_MAGIC = b"PAR1"


def check_file_content(path: Path, fmt: str, options: CsvOptions, field: str) -> None:
    """Refuse, before DuckDB guesses at it, a file that is empty, binary, or not in the encoding chosen."""
    with open(path, "rb") as handle:
        head = handle.read(SNIFF_BYTES)
        at_end = len(head) < SNIFF_BYTES
    if not head.strip():
        if at_end:
            raise DataError(EMPTY, field=field)
        return
    if fmt == "parquet":
        if not head.startswith(PARQUET_MAGIC):
            raise DataError(NOT_A_DATA_FILE, field=field)
        return
    if head.startswith(PARQUET_MAGIC):
        raise DataError(f"{NOT_A_DATA_FILE}: it looks like Parquet; choose the Parquet format", field=field)
    if options.encoding != "utf-16" and b"\0" in head:
        raise DataError(NOT_A_DATA_FILE, field=field)
    if options.encoding == "utf-8":
        try:
            codecs.getincrementaldecoder("utf-8")().decode(head, final=at_end)
        except UnicodeDecodeError:
            raise DataError(NOT_UTF8, field=f"{_options_field(field)}.encoding") from None


def _options_field(field: str) -> str:
    """``source.path`` -> ``source.csv``: the options live beside the path."""
    return field.rsplit(".", 1)[0] + ".csv" if "." in field else "csv"


def csv_scan(target: str, options: CsvOptions) -> str:
    """The ``read_csv`` call for ``target`` (a quoted path or list of them) with the options chosen."""
    args = ["auto_detect = true", "sample_size = 200000", "union_by_name = true"]
    if options.encoding != "utf-8":
        args.append(f"encoding = {literal(options.encoding)}")
    if options.delimiter is not None:
        args.append(f"delim = {literal(options.delimiter)}")
    if options.quote is not None:
        args.append(f"quote = {literal(options.quote)}")
    if options.header is not None:
        args.append(f"header = {literal(options.header)}")
    return f"read_csv({target}, {', '.join(args)})"


def check_columns_found(columns: dict[str, str], options: CsvOptions, field: str) -> None:
    """A CSV read as one column: no delimiter was found (a dataset needs a buyer and a product)."""
    if len(columns) == 1:
        name = next(iter(columns))
        shown = name if len(name) <= 60 else name[:57] + "..."
        said = NO_DELIMITER if options.delimiter is None else f"the delimiter {options.delimiter!r} is not in the file"
        raise DataError(
            f"{said} (the first line reads as one column, '{shown}')", field=f"{_options_field(field)}.delimiter"
        )


_LINE = re.compile(r"CSV Error on Line: (\d+)")
_COLUMNS = re.compile(r"Expected Number of Columns: (\d+) Found: (\d+)")


def readable_error(error: Exception, field: str = "source") -> DataError:
    """The DataError a user is shown for a DuckDB (or driver) error; the original text is its ``detail``."""
    text = str(error)
    options = _options_field(field) if field != "source" else "source.csv"
    if "not utf-8" in text.lower() or "Invalid unicode" in text:
        found = DataError(NOT_UTF8, field=f"{options}.encoding")
    elif "sniffing file" in text or "automatically detect the CSV" in text:
        found = DataError(NO_DELIMITER, field=f"{options}.delimiter")
    elif "Parquet file" in text or "magic bytes" in text.lower():
        found = DataError(NOT_A_DATA_FILE, field=field)
    elif (columns := _COLUMNS.search(text)) is not None:
        line = _LINE.search(text)
        where = f"line {line[1]}" if line else "a line"
        more = "more" if int(columns[2]) > int(columns[1]) else "fewer"
        found = DataError(
            f"{where} has {more} values than the first line's {columns[1]}: choose the delimiter and quote",
            field=f"{options}.delimiter",
        )
    elif (line := _LINE.search(text)) is not None:
        found = DataError(
            f"line {line[1]} cannot be read: check the delimiter, quote and header options",
            field=f"{options}.delimiter",
        )
    else:
        found = DataError("the source cannot be read", field=field)
    found.detail = text
    return found
