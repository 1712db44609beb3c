"""A split as a source of training batches: streamed from its Parquet parts, or held in NumPy arrays.

:class:`ParquetSplit` (the Trainer's default) reads a split in bounded
chunks (one row group at a time, ``CHUNK_ROWS`` rows per Arrow record
batch, strings dictionary-encoded so that a chunk's conversion makes one
Python string per distinct value, not per row) and converts each chunk to
model inputs on the way, ``PREFETCH_BATCHES`` ahead of the loop, so memory
grows with ``SHUFFLE_BUFFER_ROWS`` and the batch size, never with the
split. Shuffling, seeded by (seed, epoch): the row groups are read in a
permuted order, ``INTERLEAVE_UNITS`` of them side by side, rows are pooled
up to the buffer and the pool permuted before its batches go out. A split no larger than the buffer is one pool
read in file order, so its batches are exactly those of :class:`ArraySplit`
(the whole split in memory, permuted by the same generator): the small
runs of the tests, and the planted-data margins, see no difference.

Either way an epoch's order is a function of (seed, epoch) alone, so a run
resumed from an epoch checkpoint sees what an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import tensorflow as tf

from ml_pipeline.model.training import batches, tensor_spec

SHUFFLE_BUFFER_ROWS = 65_536  # rows pooled and permuted together (at least one batch)
CHUNK_ROWS = 16_384  # rows per Arrow record batch read
PREFETCH_BATCHES = 8  # batches made ahead of the training loop
INTERLEAVE_UNITS = 4  # row groups read side by side into a shuffled pool, so one pool mixes distant rows

Convert = Callable[[pa.Table], dict[str, np.ndarray]]


@dataclass
class ArraySplit:
    """A whole split as NumPy arrays (model input name -> values)."""

    arrays: dict[str, np.ndarray]

    @property
    def rows(self) -> int:
        return len(next(iter(self.arrays.values())))

    def head(self, n: int) -> dict[str, np.ndarray]:
        return {name: values[:n] for name, values in self.arrays.items()}

    def batches(self, batch_size: int, seed=None, epoch=None, drop_remainder: bool = False) -> tf.data.Dataset:
        return batches(self.arrays, batch_size, seed=seed, epoch=epoch, drop_remainder=drop_remainder)


class ParquetSplit:
    """A split's Parquet parts, converted to model inputs chunk by chunk as they are read."""

    def __init__(self, folder, columns: list[str], convert: Convert, buffer_rows: int | None = None):
        self.dataset = ds.dataset(str(folder), format="parquet")
        self.files = list(self.dataset.files)  # the order pq.read_table(folder) concatenates them in
        schema = self.dataset.schema
        self.columns = [c for c in dict.fromkeys(columns) if c in schema.names]
        # strings read dictionary-encoded: converting a chunk makes one Python string per distinct value
        self.dictionary = [
            c
            for c in self.columns
            if pa.types.is_string(schema.field(c).type) or pa.types.is_large_string(schema.field(c).type)
        ]
        self.convert = convert
        self.buffer_rows = buffer_rows or SHUFFLE_BUFFER_ROWS
        self.units: list[tuple[int, int]] = []  # (file, row group), each read on its own
        self.rows = 0
        for index, path in enumerate(self.files):
            metadata = pq.ParquetFile(path).metadata
            self.rows += metadata.num_rows
            self.units += [(index, g) for g in range(metadata.num_row_groups) if metadata.row_group(g).num_rows]
        # converting the empty table checks the columns (a missing one is a DataError) and gives the dtypes
        self.signature = {
            name: tensor_spec(values) for name, values in convert(self.dataset.schema.empty_table()).items()
        }

    def chunks(self, units: list[tuple[int, int]] | None = None, interleave: int = 1) -> Iterator[dict]:
        """Model inputs of ``CHUNK_ROWS`` rows at most, row group by row group (in file order by default);
        with ``interleave`` > 1 that many row groups are read side by side, a chunk from each in turn."""
        pending = iter(self.units if units is None else units)
        readers: list[Iterator[pa.RecordBatch]] = []
        while True:
            while len(readers) < interleave and (unit := next(pending, None)) is not None:
                readers.append(self._read(*unit))
            if not readers:
                return
            for reader in list(readers):
                batch = next(reader, None)
                if batch is None:
                    readers.remove(reader)
                else:
                    yield self.convert(pa.Table.from_batches([batch]))

    def _read(self, index: int, group: int) -> Iterator[pa.RecordBatch]:
        parquet = pq.ParquetFile(self.files[index], read_dictionary=self.dictionary, pre_buffer=True)
        return parquet.iter_batches(batch_size=CHUNK_ROWS, row_groups=[group], columns=self.columns)

    def head(self, n: int) -> dict[str, np.ndarray]:
        """The first ``n`` rows in file order (what ``ArraySplit.head`` gives)."""
        taken: list[dict[str, np.ndarray]] = []
        count = 0
        for chunk in self.chunks():
            taken.append(chunk)
            count += len(next(iter(chunk.values())))
            if count >= n:
                break
        return {name: values[:n] for name, values in _concat(taken).items()}

    def take(self, indices: np.ndarray) -> pa.Table:
        """The rows at ``indices`` (sorted) of the split in file order, as a table of the needed columns."""
        return self.dataset.take(pa.array(indices), columns=self.columns)

    def batches(self, batch_size: int, seed=None, epoch=None, drop_remainder: bool = False) -> tf.data.Dataset:
        """Batches of ``batch_size`` rows; with ``seed``, shuffled per epoch within the bounded buffer."""
        pool_rows = max(self.buffer_rows, batch_size)
        whole = self.rows <= pool_rows  # one pool: exactly the in-memory permutation

        def generate():
            rng = None if seed is None else np.random.default_rng([seed, epoch() if epoch else 0])
            units = self.units
            if rng is not None and not whole:
                units = [units[i] for i in rng.permutation(len(units))]
            pool: list[dict[str, np.ndarray]] = []
            pooled = 0
            for chunk in self.chunks(units, 1 if rng is None or whole else INTERLEAVE_UNITS):
                pool.append(chunk)
                pooled += len(next(iter(chunk.values())))
                if pooled > pool_rows:
                    rest = yield from _drain(pool, rng, batch_size, last=False, drop_remainder=drop_remainder)
                    pool, pooled = ([rest], len(next(iter(rest.values())))) if rest else ([], 0)
            if pool:
                yield from _drain(pool, rng, batch_size, last=True, drop_remainder=drop_remainder)

        # autotune off and a fixed prefetch, as for the in-memory batches (see training.batches), deep enough
        # to cover refilling the pool (reading and converting SHUFFLE_BUFFER_ROWS rows) between two batches
        options = tf.data.Options()
        options.autotune.enabled = False
        dataset = tf.data.Dataset.from_generator(generate, output_signature=self.signature)
        dataset = dataset.prefetch(PREFETCH_BATCHES)
        return dataset.with_options(options)


def _concat(chunks: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if len(chunks) == 1:
        return chunks[0]
    return {name: np.concatenate([c[name] for c in chunks]) for name in chunks[0]}


def _drain(pool, rng, batch_size: int, last: bool, drop_remainder: bool):
    """Yield the pool's full batches (permuted first with ``rng``); return the rows left over, unless
    ``last`` (then they go out as a short batch, or are dropped with ``drop_remainder``)."""
    arrays = _concat(pool)
    n = len(next(iter(arrays.values())))
    order = np.arange(n) if rng is None else rng.permutation(n)
    full = n - n % batch_size
    for start in range(0, full, batch_size):
        index = order[start : start + batch_size]
        yield {name: values[index] for name, values in arrays.items()}
    rest = order[full:]
    if not len(rest):
        return None
    leftover = {name: values[rest] for name, values in arrays.items()}
    if not last:
        return leftover
    if not drop_remainder:
        yield leftover
    return None
