"""Writes packed rows into Parquet shards under temporary names, hashing the bytes as they are written."""

from __future__ import annotations

import hashlib
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from schemas.manifest import E_BYTES, E_PAD_TOKENS, E_ROWS, E_SHA256, E_TEMP_URL, E_TOKENS
from schemas.shards import INPUT_IDS_LEAF, MASKED_SHARD_SCHEMA, SHARD_SCHEMA
from transforms.pack.rows import PackedRows

ROW_GROUP_BYTES = 4 << 20  # of input_ids: small groups keep the writer close behind the tokenizer
COMPRESSION = "zstd"
COMPRESSION_LEVEL = 1


class HashingFile:
    """A write-only file object that hashes and counts what passes through it."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.closed = False

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.sha256.update(view)
        self.size += view.nbytes
        self._raw.write(view)
        return view.nbytes

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self._raw.flush()

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
            self.closed = True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return False


def rows_to_table(rows: PackedRows) -> pa.Table:
    """PackedRows as an Arrow table of SHARD_SCHEMA (MASKED_SHARD_SCHEMA when the rows carry a loss mask)."""
    n, seq_len = rows.input_ids.shape
    row_offsets = pa.array(np.arange(0, n * seq_len + 1, seq_len, dtype=np.int32))
    ids = pa.ListArray.from_arrays(row_offsets, pa.array(np.ascontiguousarray(rows.input_ids).reshape(-1)))
    cus = pa.ListArray.from_arrays(pa.array(rows.cu_offsets.astype(np.int32)), pa.array(rows.cu_values))
    columns = [ids, cus, pa.array(rows.num_pad, pa.int32())]
    if rows.loss_mask is None:
        return pa.Table.from_arrays(columns, schema=SHARD_SCHEMA)
    mask = pa.array(np.ascontiguousarray(rows.loss_mask, dtype=np.uint8).reshape(-1))
    return pa.Table.from_arrays(columns + [pa.ListArray.from_arrays(row_offsets, mask)], schema=MASKED_SHARD_SCHEMA)


class ShardWriter:
    """Cuts a stream's rows into shards of ``shard_rows`` rows and row groups of a fixed row count.

    Row-group and shard boundaries depend only on row counts, so the same rows give the same bytes.
    """

    def __init__(self, temp_prefix: str, seq_len: int, shard_rows: int, loss_mask: bool = False) -> None:
        self.temp_prefix = temp_prefix
        self.schema = MASKED_SHARD_SCHEMA if loss_mask else SHARD_SCHEMA
        self.seq_len = seq_len
        self.shard_rows = shard_rows
        self.group_rows = max(1, min(shard_rows, ROW_GROUP_BYTES // (4 * seq_len)))
        self.shards: list[dict[str, Any]] = []
        self._pending: list[PackedRows] = []
        self._pending_rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._file: HashingFile | None = None
        self._shard_rows_written = 0
        self._shard_tokens = 0
        self._shard_pad = 0

    def write(self, rows: PackedRows) -> None:
        """Add rows (flushing whole row groups as they fill)."""
        if len(rows):
            self._pending.append(rows)
            self._pending_rows += len(rows)
        while self._pending_rows >= self._next_group_size():
            self._flush(self._next_group_size())

    def close(self) -> list[dict[str, Any]]:
        """Flush what is left and return the shards written: temp url, rows, bytes, sha256, tokens, pad."""
        while self._pending_rows:
            self._flush(min(self._pending_rows, self._next_group_size()))
        self._close_shard()
        return self.shards

    def abort(self) -> None:
        """Close and delete every file written so far (an attempt that is being redone)."""
        if self._writer is not None:
            self._writer.close()
            self._file.close()
            self._writer = None
        for shard in self.shards:
            fs, path = fsspec.core.url_to_fs(shard[E_TEMP_URL])
            if fs.exists(path):
                fs.rm(path)
        self.shards = []
        self._pending, self._pending_rows = [], 0

    def _next_group_size(self) -> int:
        return min(self.group_rows, self.shard_rows - self._shard_rows_written)

    def _flush(self, n: int) -> None:
        block = PackedRows.concat(self._pending, self.seq_len)
        group, rest = block.slice(0, n), block.slice(n, len(block))
        self._pending = [rest] if len(rest) else []
        self._pending_rows = len(rest)
        if self._writer is None:
            url = f"{self.temp_prefix}-{len(self.shards):04d}.parquet"
            self._file = HashingFile(fsspec.open(url, "wb").open())
            self._writer = pq.ParquetWriter(
                self._file,
                self.schema,
                compression=COMPRESSION,
                compression_level=COMPRESSION_LEVEL,
                use_dictionary=False,
                write_statistics=False,
                # token ids are small integers in 4 bytes: split into byte planes, the high ones compress to
                # almost nothing and zstd runs about a third faster (readable by pyarrow >= 16)
                column_encoding={INPUT_IDS_LEAF: "BYTE_STREAM_SPLIT"},
            )
            self.shards.append({E_TEMP_URL: url})
        self._writer.write_table(rows_to_table(group), row_group_size=n)
        self._shard_rows_written += n
        self._shard_tokens += group.real_tokens()
        self._shard_pad += int(group.num_pad.sum())
        if self._shard_rows_written >= self.shard_rows:
            self._close_shard()

    def _close_shard(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        self._file.close()
        self.shards[-1].update({
            E_ROWS: self._shard_rows_written,
            E_BYTES: self._file.size,
            E_SHA256: self._file.sha256.hexdigest(),
            E_TOKENS: self._shard_tokens,
            E_PAD_TOKENS: self._shard_pad,
        })
        self._writer = None
        self._file = None
        self._shard_rows_written = self._shard_tokens = self._shard_pad = 0
