"""Deterministic global shuffle of packed rows (``--shuffle-seed``), without holding the dataset in memory.

Every row gets a 64-bit key from the seed and its place in the job, (output group, stream, row within the stream's
output): places that do not depend on the runner or the number of workers, so the same seed gives the same
shuffle everywhere. A group is one row layout (all rows, or one bucket / one decompose length). Two passes:

1. each written shard (in parallel) sends each of its rows to destination ``key % D`` of its group (``D`` =
   the rows of the group / ``--shard-rows``, rounded up): one part per (shard, destination) with rows, written as
   a file (local runs, whose runner would hold shuffled data in memory) or carried by the runner's shuffle as
   compressed Parquet bytes (remote runners: no part files, whose number grows with the square of the shards);
2. each destination (in parallel) reads its parts, orders the rows by key and writes them as the final shards.
   Keys are distinct, so the order, and the bytes written, do not depend on how the parts travelled.

Each worker holds one shard's rows at a time; the output is a permutation of the rows, the same bytes on every run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from schemas.manifest import E_BUCKET, E_ROWS, E_SEQ_LEN, E_TEMP_URL
from schemas.shards import CU_SEQLENS, INPUT_IDS, LOSS_MASK, NUM_PAD
from schemas.stream_result import StreamResult
from transforms.pack.rows import PackedRows
from transforms.output.shard_writer import ShardWriter
from transforms.hashing import splitmix64

KEY = "_shuffle_key"


def row_keys(seed: int, group: int, stream: int, first_row: int, rows: int) -> np.ndarray:
    """The shuffle keys of rows ``first_row ..`` of a stream's output in a group."""
    base = splitmix64(np.array([seed & 0xFFFF_FFFF_FFFF_FFFF], np.uint64))
    base = splitmix64(base ^ np.uint64(group))
    base = splitmix64(base ^ np.uint64(stream))
    return splitmix64(base ^ np.arange(first_row, first_row + rows, dtype=np.uint64))


@dataclass(frozen=True)
class Source:
    """One written shard to shuffle: where it is, its group and its rows' place in their stream."""

    group: int
    layout: tuple  # (bucket or None, seq_len of its rows or None): what the final shards carry
    temp_url: str
    stream: int
    first_row: int
    rows: int
    destinations: int


def plan_sources(results: list[StreamResult], shard_rows: int) -> list[Source]:
    """The shards of every stream result, with their groups and the number of destinations per group."""
    layouts: dict[tuple, int] = {}
    rows_of: dict[tuple, int] = {}
    listed = []
    for r in sorted(results, key=lambda r: r.stream):
        seen: dict[tuple, int] = {}
        for shard in r.shards:
            layout = (shard.get(E_BUCKET), shard.get(E_SEQ_LEN))
            layouts.setdefault(layout, len(layouts))
            listed.append((layout, shard, r.stream, seen.get(layout, 0)))
            seen[layout] = seen.get(layout, 0) + shard[E_ROWS]
            rows_of[layout] = rows_of.get(layout, 0) + shard[E_ROWS]
    groups = {layout: i for i, layout in enumerate(sorted(layouts, key=lambda x: (x[0] or -1, x[1] or -1)))}
    return [Source(groups[layout], layout, shard[E_TEMP_URL], stream, first, shard[E_ROWS],
                   max(1, math.ceil(rows_of[layout] / shard_rows)))
            for layout, shard, stream, first in listed]


def split_source(source: Source, seed: int, temp_prefix: str,
                 inline: bool = False) -> list[tuple[tuple[int, int], tuple[str | bytes, int]]]:
    """Pass 1: a shard's rows to parts by destination; ((group, destination), (part url, rows)) each, or with
    ``inline`` ((group, destination), (the part as Parquet bytes, rows))."""
    table = pq.read_table(source.temp_url)
    keys = row_keys(seed, source.group, source.stream, source.first_row, table.num_rows)
    dest = (keys % np.uint64(source.destinations)).astype(np.int64)
    table = table.append_column(KEY, pa.array(keys, pa.uint64()))
    out = []
    for d in np.unique(dest).tolist():
        url = f"{temp_prefix}-g{source.group:03d}-s{source.stream:06d}-r{source.first_row:09d}-d{d:06d}.parquet"
        part = table.take(pa.array(np.flatnonzero(dest == d)))
        if inline:
            sink = pa.BufferOutputStream()
            pq.write_table(part, sink, compression="zstd", compression_level=1)
            out.append(((source.group, d), (sink.getvalue().to_pybytes(), part.num_rows)))
            continue
        with fsspec.open(url, "wb") as fh:
            pq.write_table(part, fh, compression="zstd", compression_level=1)
        out.append(((source.group, d), (url, part.num_rows)))
    return out


def _rows(table: pa.Table) -> PackedRows:
    """A table of shard rows (one row length) as PackedRows."""
    ids_col = table[INPUT_IDS].combine_chunks()
    n = table.num_rows
    values = ids_col.values.to_numpy(zero_copy_only=False).astype(np.uint32, copy=False)
    input_ids = values.reshape(n, values.size // n if n else 0)
    cu = table[CU_SEQLENS].combine_chunks()
    mask = None
    if LOSS_MASK in table.column_names:
        mask = table[LOSS_MASK].combine_chunks().values.to_numpy(zero_copy_only=False).reshape(input_ids.shape)
    return PackedRows(input_ids, cu.values.to_numpy(zero_copy_only=False).astype(np.int32, copy=False),
                      cu.offsets.to_numpy().astype(np.int64), table[NUM_PAD].to_numpy().astype(np.int32), mask)


def write_destination(element: tuple[tuple[int, int], Iterable[tuple[str | bytes, int]]], layouts: dict[int, tuple],
                      shard_rows: int, temp_prefix: str) -> list[dict[str, Any]]:
    """Pass 2: one destination's rows in key order, written as shards (their items, with group and destination)."""
    (group, d), parts = element
    payloads = [payload for payload, _ in parts]
    urls = sorted(p for p in payloads if isinstance(p, str))
    table = pa.concat_tables([pq.read_table(u) for u in urls]
                             + [pq.read_table(pa.BufferReader(p)) for p in payloads if isinstance(p, bytes)])
    table = table.take(pa.compute.sort_indices(table, sort_keys=[(KEY, "ascending")])).drop_columns([KEY])
    bucket, seq_len = layouts[group]
    rows = _rows(table)
    writer = ShardWriter(f"{temp_prefix}-g{group:03d}-d{d:06d}", rows.input_ids.shape[1], shard_rows,
                         rows.loss_mask is not None)
    writer.write(rows)
    shards = writer.close()
    for url in urls:
        fs, path = fsspec.core.url_to_fs(url)
        fs.rm(path)
    out = []
    for k, shard in enumerate(shards):
        item = {**shard, "order": (group, d, k)}
        if bucket is not None:
            item[E_BUCKET] = bucket
        if seq_len is not None:
            item[E_SEQ_LEN] = seq_len
        out.append(item)
    return out


def ordered(shards: Iterable[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """All shuffled shard items in their final order (group, destination, piece), without the ordering field."""
    items = sorted((s for batch in shards for s in batch), key=lambda s: s["order"])
    return [{k: v for k, v in s.items() if k != "order"} for s in items]

