"""Training-side loader for packed token shards: a pure numpy core and an optional PyTorch wrapper.

``PackedShardDataset`` reads a ``tokenmill prepare`` output directory (local or any fsspec URL) through its
manifest and yields batches of numpy arrays for one consumer (a rank, and a DataLoader worker inside it)::

    from schemas.loader import PackedShardDataset

    ds = PackedShardDataset("out/", rank=0, world_size=8, seed=1234)
    for batch in ds.batches(batch_size=8):
        batch["input_ids"]      # (B, L) int64 (ids_dtype=None: the shards' uint32)
        batch["position_ids"]   # (B, L) int64, 0 at every segment start (padding is a segment of its own)
        batch["cu_seqlens"]     # (S + 1,) int32 segment offsets of the flattened (B * L) batch, ends at B * L
        batch["max_seqlen"]     # int, the longest segment
        batch["loss_mask"]      # (B, L) uint8: the shards' loss_mask column, else 1 on real tokens, 0 on padding
        batch["row_index"]      # (B,) int64 global row index (cumulative rows of earlier shards + row in shard)

Epoch order. The rows of each row length are cut into blocks (by default one block per Parquet row group); for
epoch ``e`` the blocks are put in the order of a permutation drawn with ``numpy.random.Generator(PCG64)`` seeded by
``(seed, e)``: the same on every rank and worker. That sequence of rows is split into ``world_size * num_workers``
contiguous spans, consumer ``rank * num_workers + worker_id`` taking span number that index, so every row belongs
to exactly one consumer and each consumer reads its own row groups. Inside a span, the rows of each window of
``shuffle_window`` consecutive blocks are permuted together (again seeded by seed, epoch and consumer), which mixes
rows from that many places of the corpus into every batch while holding only one window in memory.

Uneven partitions. With ``drop_last=False`` (the default) every row is read exactly once per epoch: span sizes
differ by at most one row, and a consumer's last batch of each length may be short (so consumers may yield a
different number of batches). With ``drop_last=True`` every consumer gets the same ``rows // consumers`` rows
(the rows at the end of the epoch's block order are left out, different ones every epoch) and only full batches
are yielded, so every rank and worker yields the same number of batches, with the same row length at each step.

Padding. Padding (``num_pad`` pad ids at the end of a row) is a segment of its own in ``cu_seqlens`` and
``position_ids`` restart at 0 at its start, exactly as at every other segment start. ``cu_seqlens`` therefore
covers the whole flattened batch (its last value is ``B * L``), so ``flash_attn_varlen_func`` runs on the
``(B * L, ...)`` tensors as they are, and the segments that ``position_ids == 0`` mark (how Hugging Face
transformers finds packed sequences) are exactly those of ``cu_seqlens``. ``loss_mask`` is 0 on padding.
A segment at the start of a row may be the continuation of a document from the previous row; it restarts at 0.

Several row lengths (``--packing decompose``: shards with a ``seq_len`` of their own in the manifest). Each batch
holds rows of one length. ``batch_size`` counts rows of the longest length; a batch of length ``L`` holds
``batch_size * multiplier(L)`` rows, the multipliers coming from the manifest's ``decompose.curriculum
.batch_multipliers`` (default: longest // L), so tokens per batch stay constant. The length of the next batch is
drawn with the curriculum's ``sampling_odds`` (default: proportional to each length's batches in the epoch) from a
generator seeded by ``(seed, epoch)``, among the lengths that still have batches this epoch for this consumer;
with ``drop_last=True`` all consumers draw the same sequence of lengths (with ``drop_last=False`` a consumer may
have one batch more or less of a length, and once one runs out of a length earlier than another their sequences
can differ). A ``curriculum`` under ``packing_stats`` is read when there is no ``decompose`` section.

Resuming. ``state_dict()`` records the dataset, the world layout, the seed, the epoch and the batches yielded in it;
after ``load_state_dict(state)`` the next batches are exactly those an uninterrupted run would have produced next.
When an epoch's batches are exhausted the dataset moves to the next epoch; ``set_epoch(e)`` starts epoch ``e``
from its beginning, except when the dataset is already inside epoch ``e`` (after ``load_state_dict``), where it
keeps its position, so a training loop that calls ``set_epoch(epoch)`` at the top of each epoch resumes correctly.

Options (keywords of ``PackedShardDataset``): ``worker=(id, count)`` this consumer's DataLoader worker (set by
``PackedShardIterable``); ``shuffle`` (False: manifest order, blocks dealt out in order, no permutation);
``drop_last``; ``shuffle_window`` blocks per window (default 16); ``block_rows`` rows per block (default: the
row count of the first row group of each length's first shard); ``ids_dtype`` (default int64; int32 is a free view
of the stored uint32 ids, which are below 2**31; None keeps uint32); ``position_dtype`` (default int64);
``batch_multipliers`` / ``sampling_odds`` ({length: value}, instead of the manifest's curriculum);
``cache_row_groups`` decoded row groups kept (default 2); ``fast_decode`` (default True: the token ids of shards
laid out as tokenmill writes them, data pages of BYTE_STREAM_SPLIT or PLAIN uint32 values, are decoded by the
loader itself from the decompressed pages, about twice as fast as pyarrow's list decoding, and for int64 ids a
row group whose ids are all below 2**16 is decoded to 2-byte values, widened once when batches are gathered; any
other layout is read by pyarrow); ``storage_options`` for fsspec.

Batches are views of arrays computed for about 2**20 tokens at a time. An array is reused for later batches only
once no batch refers to it any more, so a batch that is kept stays valid; memory is about ``shuffle_window`` row
groups (4 MB of ids each in prepare's shards) per row length in use plus a few such arrays.

``PackedShardIterable`` (only when PyTorch is installed: ``pip install 'tokenmill[torch]'``) wraps the core as a
``torch.utils.data.IterableDataset`` yielding whole batches as tensors; use it with ``DataLoader(ds,
batch_size=None, num_workers=N)``. Each DataLoader worker reads its own part (``get_worker_info``); rank and
world size default to ``torch.distributed``'s. Call ``set_epoch(e)`` before each epoch (workers receive a copy of
the dataset). Its ``state_dict``/``load_state_dict`` are per worker, as torchdata's ``StatefulDataLoader`` calls
them.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from schemas.manifest import K_FINGERPRINT, K_FORMAT, K_SEQ_LEN, K_SHARDS, MANIFEST_FORMAT
from schemas.shards import CU_SEQLENS, INPUT_IDS, MANIFEST_FILE, NUM_PAD

LOSS_MASK = "loss_mask"  # optional shard column: list of 0/1 (any integer or bool type), one per token
STATE_FORMAT = "tokenmill.loader/1"

# The manifest's decompose section (several row lengths) and the keys the loader reads from it.
K_DECOMPOSE = "decompose"
K_CURRICULUM = "curriculum"
K_BATCH_MULTIPLIERS = "batch_multipliers"
K_SAMPLING_ODDS = "sampling_odds"
K_PACKING_STATS = "packing_stats"
SHARD_SEQ_LEN = "seq_len"  # a shard entry's own row length (decompose); else the manifest's seq_len

_CHUNK_TOKENS = 1 << 20  # batch arrays are computed for about this many tokens at a time

# Seed-sequence tags: each random choice has its own stream.
_BLOCK_ORDER, _WINDOW_ORDER, _LENGTH_ORDER = 1, 2, 3


@dataclass(frozen=True)
class _Shard:
    url: str
    path: str
    rows: int
    seq_len: int
    first_row: int  # global index of the shard's row 0


@dataclass
class _Pool:
    """Every row of one length: blocks of consecutive rows (shard, start, stop) in manifest order."""

    seq_len: int
    blocks: np.ndarray
    rows: int
    multiplier: int = 1
    odds: float = 0.0


@dataclass
class _Rows:
    """Rows of one length as numpy arrays (views where possible)."""

    ids: np.ndarray  # (R, L)
    cu: np.ndarray  # cu_seqlens values of every row, back to back (int32)
    cu_off: np.ndarray  # (R + 1,) int64 offsets into cu (may not start at 0)
    num_pad: np.ndarray  # (R,) int32
    loss: np.ndarray | None  # (R, L) or None
    index: np.ndarray  # (R,) int64 global row index

    def __len__(self) -> int:
        return self.ids.shape[0]

    def slice(self, a: int, b: int) -> "_Rows":
        """Rows a..b as views."""
        return _Rows(self.ids[a:b], self.cu, self.cu_off[a:b + 1], self.num_pad[a:b],
                     None if self.loss is None else self.loss[a:b], self.index[a:b])

    def cu_parts(self) -> tuple[np.ndarray, np.ndarray]:
        """The rows' cu_seqlens values and their offsets starting at 0."""
        lo, hi = int(self.cu_off[0]), int(self.cu_off[-1])
        return self.cu[lo:hi], self.cu_off - lo

    @staticmethod
    def concat(parts: list["_Rows"]) -> "_Rows":
        """Rows of several parts, in order (copies)."""
        if len(parts) == 1:
            return parts[0]
        loss = None if parts[0].loss is None else np.concatenate([p.loss for p in parts])
        return _Rows(np.concatenate([p.ids for p in parts]), *_joined_cu(parts),
                     np.concatenate([p.num_pad for p in parts]), loss, np.concatenate([p.index for p in parts]))


def _joined_cu(parts: list[_Rows]) -> tuple[np.ndarray, np.ndarray]:
    """The cu_seqlens values of the parts' rows back to back and their offsets (starting at 0)."""
    cus, offs, base = [], [np.zeros(1, np.int64)], 0
    for part in parts:
        values, off = part.cu_parts()
        cus.append(values)
        offs.append(off[1:] + base)
        base += len(values)
    return np.concatenate(cus), np.concatenate(offs)


def _ragged_take(values: np.ndarray, off: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lists (values split at offsets starting at 0) in a new order: the new values and offsets."""
    lens = np.diff(off)[order]
    new_off = np.zeros(len(order) + 1, np.int64)
    np.cumsum(lens, out=new_off[1:])
    take = np.repeat(off[:-1][order] - new_off[:-1], lens) + np.arange(new_off[-1], dtype=np.int64)
    return values[take], new_off


@dataclass
class _OpenShard:
    pf: Any  # pyarrow.parquet.ParquetFile
    starts: np.ndarray  # first row of each row group, and the row count at the end
    raw: Any  # (filesystem, path) for byte ranges, or an OS file descriptor for a local file
    handle: Any  # the fsspec file pyarrow reads (remote), else None
    ids_leaf: int | None  # Parquet column of the token ids when tokenmill decodes them itself, else None
    columns: list[str]  # the columns pyarrow reads
    wide: bool = False  # ids found that do not fit 2 bytes: decode to uint32

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
        if isinstance(self.raw, int):
            import os

            os.close(self.raw)

    def read_bytes(self, start: int, size: int) -> bytes:
        """Bytes start..start + size of the file."""
        if isinstance(self.raw, int):
            import os

            data = os.pread(self.raw, size, start)
        else:
            fs, path = self.raw
            data = fs.cat_file(path, start=start, end=start + size)
        if len(data) != size:
            raise OSError(f"short read: {len(data)} of {size} bytes at {start}")
        return data


class _Reader:
    """Reads row ranges of shards, keeping a few files open and a few decoded row groups cached."""

    def __init__(self, shards: list[_Shard], storage_options: dict[str, Any], cache_row_groups: int,
                 fast_decode: bool = True, open_files: int = 8) -> None:
        self.shards = shards
        self.storage_options = storage_options
        self.cache_row_groups = cache_row_groups
        self.fast_decode = fast_decode
        self.open_files = open_files
        self._files: OrderedDict[int, _OpenShard] = OrderedDict()
        self._groups: OrderedDict[tuple[int, int], _Rows] = OrderedDict()
        self.buffers = _Buffers(0)  # for decoded ids; sized by the dataset (the row groups a window holds)
        self.narrow = False  # decode ids below 2**16 to uint16 (set when batches widen the ids anyway)

    def close(self) -> None:
        """Close every open file and drop the cache."""
        for f in self._files.values():
            f.close()
        self._files.clear()
        self._groups.clear()

    def _file(self, s: int) -> _OpenShard:
        if s in self._files:
            self._files.move_to_end(s)
            return self._files[s]
        import os

        import fsspec
        import pyarrow.parquet as pq
        from fsspec.implementations.local import LocalFileSystem

        shard = self.shards[s]
        fs, path = fsspec.core.url_to_fs(shard.url, **self.storage_options)
        handle = None
        try:
            if isinstance(fs, LocalFileSystem):
                pf = pq.ParquetFile(path)  # pyarrow's own file reads (no Python in the read path)
                raw: Any = os.open(path, os.O_RDONLY) if hasattr(os, "pread") else (fs, path)
            else:
                handle = fs.open(path, "rb")
                pf = pq.ParquetFile(handle)
                raw = (fs, path)
        except FileNotFoundError:
            raise FileNotFoundError(f"shard {shard.path} listed in the manifest is missing ({shard.url})") from None
        meta = pf.metadata
        names = pf.schema_arrow.names
        for name in (INPUT_IDS, CU_SEQLENS, NUM_PAD):
            if name not in names:
                raise ValueError(f"shard {shard.url} has no {name!r} column: not a tokenmill packed shard")
        if meta.num_rows != shard.rows:
            raise ValueError(f"shard {shard.url} has {meta.num_rows} rows but the manifest says {shard.rows}: "
                             f"the directory was changed after the manifest was written")
        starts = np.zeros(meta.num_row_groups + 1, np.int64)
        np.cumsum([meta.row_group(g).num_rows for g in range(meta.num_row_groups)], out=starts[1:])
        columns = [INPUT_IDS, CU_SEQLENS, NUM_PAD] + ([LOSS_MASK] if LOSS_MASK in names else [])
        f = _OpenShard(pf, starts, raw, handle, _ids_leaf(pf) if self.fast_decode else None, columns)
        self._files[s] = f
        while len(self._files) > self.open_files:
            self._files.popitem(last=False)[1].close()
        return f

    def first_group_rows(self, s: int) -> int:
        """Rows of the first row group of shard ``s`` (the default block size)."""
        starts = self._file(s).starts
        return int(starts[1] - starts[0]) if len(starts) > 1 else 1

    def read(self, s: int, start: int, stop: int) -> _Rows:
        """Rows start..stop of shard ``s``."""
        starts = self._file(s).starts
        g0 = int(np.searchsorted(starts, start, side="right")) - 1
        g1 = int(np.searchsorted(starts, stop, side="left"))
        parts = []
        for g in range(g0, g1):
            rows = self._group(s, g)
            a = max(start, int(starts[g])) - int(starts[g])
            b = min(stop, int(starts[g + 1])) - int(starts[g])
            parts.append(rows if (a, b) == (0, len(rows)) else rows.slice(a, b))
        return _Rows.concat(parts)

    def _group(self, s: int, g: int) -> _Rows:
        key = (s, g)
        if key in self._groups:
            self._groups.move_to_end(key)
            return self._groups[key]
        f = self._file(s)
        shard = self.shards[s]
        n = int(f.starts[g + 1] - f.starts[g])
        ids = None
        if f.ids_leaf is not None:
            try:
                if self.narrow and not f.wide:
                    try:
                        ids = _read_ids(f, g, self.buffers.get((n, shard.seq_len), np.dtype(np.uint16)))
                    except _Wide:
                        f.wide = True  # 4-byte decoding for this file from now on
                if ids is None:
                    ids = _read_ids(f, g, self.buffers.get((n, shard.seq_len), np.dtype(np.uint32)))
            except Exception:  # not the layout the fast path reads: pyarrow reads this file from now on
                f.ids_leaf = None
        columns = f.columns if ids is None else f.columns[1:]
        table = f.pf.read_row_group(g, columns=columns, use_threads=False)
        rows = _decode(table, shard, int(f.starts[g]), ids)
        if self.cache_row_groups > 0:
            self._groups[key] = rows
            while len(self._groups) > self.cache_row_groups:
                self._groups.popitem(last=False)
        return rows


# The token ids are decoded by the loader itself when a shard is laid out as tokenmill writes it (data pages of
# PLAIN or BYTE_STREAM_SPLIT uint32 values under one list level, no dictionary, no nulls): the decompressed pages
# are read straight into numpy, about twice as fast as pyarrow's list decoding. Anything else (other encodings or
# codecs, a dictionary, nulls, empty lists, a page it cannot parse) is left to pyarrow.
_CODECS = {"UNCOMPRESSED": None, "ZSTD": "zstd", "SNAPPY": "snappy", "GZIP": "gzip", "BROTLI": "brotli",
           "LZ4_RAW": "lz4_raw"}
_PLAIN, _RLE, _BYTE_STREAM_SPLIT = 0, 3, 9  # parquet.thrift Encoding
_DATA_PAGE, _INDEX_PAGE, _DATA_PAGE_V2 = 0, 1, 3  # parquet.thrift PageType
# PageHeader fields read: 1 type, 2 uncompressed size, 3 compressed size, 5 DataPageHeader (1 num_values,
# 2 encoding, 3 definition and 4 repetition level encodings), 8 DataPageHeaderV2 (1 num_values, 2 num_nulls,
# 4 encoding, 5 and 6 definition and repetition level byte lengths, 7 is_compressed)
_PAGE_HEADER = {1: None, 2: None, 3: None, 5: {1: None, 2: None, 3: None, 4: None},
                8: {1: None, 2: None, 4: None, 5: None, 6: None, 7: None}}


class _Wide(Exception):
    """A row group's ids do not fit the 2-byte decoding (ids of 2**16 and above, or PLAIN pages)."""


class _NotFast(Exception):
    """The column chunk is not laid out as the fast path reads it."""


def _ids_leaf(pf: Any) -> int | None:
    """The Parquet column of the token ids if the fast path can read this file, else None."""
    import pyarrow as pa

    kind = pf.schema_arrow.field(INPUT_IDS).type
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)) or kind.value_type != pa.uint32():
        return None
    schema = pf.metadata.schema
    for i in range(len(schema)):
        col = schema.column(i)
        if col.path.split(".")[0] == INPUT_IDS:
            ok = col.physical_type == "INT32" and col.max_repetition_level == 1 and col.max_definition_level >= 1
            return i if ok else None
    return None


def _varint(b: Any, i: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        x = b[i]
        i += 1
        out |= (x & 0x7F) << shift
        shift += 7
        if x < 0x80:
            return out, i


def _thrift_skip(b: Any, i: int, kind: int) -> int:
    if kind in (1, 2):  # booleans live in the field header
        return i
    if kind == 3:
        return i + 1
    if kind in (4, 5, 6):
        return _varint(b, i)[1]
    if kind == 7:
        return i + 8
    if kind == 8:
        n, i = _varint(b, i)
        return i + n
    if kind == 12:
        return _thrift_struct(b, i, {})[1]
    if kind in (9, 10):
        head = b[i]
        i += 1
        n, elem = head >> 4, head & 0x0F
        if n == 15:
            n, i = _varint(b, i)
        for _ in range(n):
            i = _thrift_skip(b, i, elem)
        return i
    raise _NotFast(f"thrift type {kind}")


def _thrift_struct(b: Any, i: int, fields: dict[int, Any]) -> tuple[dict[int, Any], int]:
    """A Thrift compact-protocol struct: the integer, boolean and nested-struct fields asked for."""
    out: dict[int, Any] = {}
    fid = 0
    while True:
        head = b[i]
        i += 1
        if head == 0:
            return out, i
        kind, delta = head & 0x0F, head >> 4
        if delta:
            fid += delta
        else:
            raw, i = _varint(b, i)
            fid = (raw >> 1) ^ -(raw & 1)
        if fid in fields and kind in (1, 2):
            out[fid] = kind == 1
        elif fid in fields and kind in (4, 5, 6):
            raw, i = _varint(b, i)
            out[fid] = (raw >> 1) ^ -(raw & 1)
        elif fid in fields and kind == 12 and fields[fid] is not None:
            out[fid], i = _thrift_struct(b, i, fields[fid])
        else:
            i = _thrift_skip(b, i, kind)


def _read_ids(f: _OpenShard, g: int, rows: np.ndarray) -> np.ndarray:
    """The token ids of row group ``g``, decoded from its pages into ``rows`` (an uninitialised uint32 or uint16
    array; uint16 raises _Wide unless every page is BYTE_STREAM_SPLIT with its two high bytes zero)."""
    import pyarrow as pa

    out = rows.reshape(-1)
    count = out.size

    meta = f.pf.metadata.row_group(g).column(f.ids_leaf)
    if meta.compression not in _CODECS or meta.has_dictionary_page or meta.num_values != count:
        raise _NotFast("layout")
    codec = pa.Codec(_CODECS[meta.compression]) if _CODECS[meta.compression] else None
    data = f.read_bytes(meta.data_page_offset, meta.total_compressed_size)
    view = memoryview(data)
    at = pos = 0
    while pos < len(data):
        head, pos = _thrift_struct(view, pos, _PAGE_HEADER)
        size = head[3]
        body = view[pos:pos + size]
        pos += size
        if head[1] == _DATA_PAGE:
            page = head[5]
            if page.get(3) != _RLE or page.get(4) != _RLE:
                raise _NotFast("level encoding")
            n, encoding = page[1], page[2]
            body = codec.decompress(body, decompressed_size=head[2]) if codec else body
            p = 0
            for _ in range(2):  # repetition, then definition levels, each behind its 4-byte length
                p += 4 + int.from_bytes(bytes(body[p:p + 4]), "little")
            values = body[p:]
        elif head[1] == _DATA_PAGE_V2:
            page = head[8]
            if page.get(2, 0):
                raise _NotFast("nulls")
            n, encoding, levels = page[1], page[4], page[5] + page[6]
            values = body[levels:]
            if codec and page.get(7, True):
                values = codec.decompress(values, decompressed_size=head[2] - levels)
        elif head[1] == _INDEX_PAGE:
            continue
        else:
            raise _NotFast("dictionary page")
        if len(values) != 4 * n or at + n > count:  # fewer values than levels: nulls or empty lists
            raise _NotFast("value count")
        dst = out[at:at + n]
        if encoding == _PLAIN:
            if dst.dtype != np.uint32:
                raise _Wide()
            dst[:] = np.frombuffer(values, "<u4", count=n)
        elif encoding == _BYTE_STREAM_SPLIT:  # byte k of every value, then byte k + 1...
            planes = np.frombuffer(values, np.uint8, count=4 * n).reshape(4, n)
            if dst.dtype == np.uint16:
                if planes[2:].any():
                    raise _Wide()
                np.left_shift(planes[1], 8, out=dst, dtype=np.uint16)
                np.bitwise_or(dst, planes[0], out=dst)
                at += n
                continue
            np.left_shift(planes[1], 8, out=dst, dtype=np.uint32)
            np.bitwise_or(dst, planes[0], out=dst)
            for k in (2, 3):
                if planes[k].any():
                    dst |= np.left_shift(planes[k], 8 * k, dtype=np.uint32)
        else:
            raise _NotFast(f"encoding {encoding}")
        at += n
    if at != count:
        raise _NotFast("value count")
    return rows


def _single(column: Any) -> Any:
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def _as_numpy(arr: Any, what: str, where: str) -> np.ndarray:
    """A numeric or boolean Arrow array without nulls as numpy, a view of its buffer when it can be (pyarrow's
    own to_numpy would import pandas)."""
    import pyarrow as pa

    if arr.null_count:
        raise ValueError(f"{where}: {what} has null values")
    kind = arr.type
    if len(arr) == 0:
        return np.zeros(0, np.uint8 if pa.types.is_boolean(kind) else np.int64)
    if pa.types.is_boolean(kind):
        bits = np.frombuffer(arr.buffers()[1], np.uint8)
        return np.unpackbits(bits, bitorder="little")[arr.offset:arr.offset + len(arr)]
    if pa.types.is_integer(kind):
        dtype = np.dtype(f"{'i' if pa.types.is_signed_integer(kind) else 'u'}{kind.bit_width // 8}")
    elif pa.types.is_floating(kind) and kind.bit_width in (32, 64):
        dtype = np.dtype(f"f{kind.bit_width // 8}")
    else:
        raise ValueError(f"{where}: {what} has type {kind}, expected integers")
    return np.frombuffer(arr.buffers()[1], dtype, count=len(arr), offset=arr.offset * dtype.itemsize)


def _fixed_lists(column: Any, n: int, seq_len: int, what: str, where: str) -> np.ndarray:
    """A list column whose lists all hold seq_len values, as an (n, seq_len) array (zero-copy when possible)."""
    arr = _single(column)
    off = _as_numpy(arr.offsets, f"{what} offsets", where)
    if not np.array_equal(off - off[0], np.arange(0, n * seq_len + 1, seq_len, dtype=off.dtype)):
        lens = np.diff(off)
        bad = int(np.flatnonzero(lens != seq_len)[0])
        raise ValueError(f"{where}: row {bad} has {int(lens[bad])} {what} values, expected seq_len {seq_len}")
    values = _as_numpy(arr.values, what, where)
    return values[int(off[0]):int(off[0]) + n * seq_len].reshape(n, seq_len)


def _decode(table: Any, shard: _Shard, group_start: int, ids: np.ndarray | None = None) -> _Rows:
    """A row group as _Rows (with its ids when they were decoded already), checking the shard row format."""
    n, seq_len = table.num_rows, shard.seq_len
    where = f"shard {shard.url}, rows from {group_start}"
    if ids is None:
        ids = _fixed_lists(table.column(INPUT_IDS), n, seq_len, INPUT_IDS, where)
    cus = _single(table.column(CU_SEQLENS))
    cu_off = _as_numpy(cus.offsets, f"{CU_SEQLENS} offsets", where).astype(np.int64)
    cu = _as_numpy(cus.values, CU_SEQLENS, where)
    num_pad = _as_numpy(_single(table.column(NUM_PAD)), NUM_PAD, where).astype(np.int32, copy=False)
    loss = None
    if LOSS_MASK in table.column_names:
        loss = _fixed_lists(table.column(LOSS_MASK), n, seq_len, LOSS_MASK, where)
    if n:
        counts = np.diff(cu_off)
        if (counts < 1).any():
            raise ValueError(f"{where}: row {int(np.argmax(counts < 1))} has an empty cu_seqlens")
        wrong = (cu[cu_off[:-1]] != 0) | (cu[cu_off[1:] - 1] != seq_len - num_pad) | (num_pad < 0)
        steps = np.diff(cu[cu_off[0]:cu_off[-1]].astype(np.int64))
        falling = steps < 0
        falling[cu_off[1:-1] - cu_off[0] - 1] = False  # from one row's end to the next row's 0
        if falling.any():
            wrong[np.searchsorted(cu_off - cu_off[0], np.flatnonzero(falling), side="right") - 1] = True
        if wrong.any():
            r = int(np.argmax(wrong))
            raise ValueError(f"{where}: row {r}: cu_seqlens {cu[cu_off[r]:cu_off[r + 1]].tolist()} must rise from 0 "
                             f"to seq_len - num_pad = {seq_len} - {int(num_pad[r])}")
    index = np.arange(shard.first_row + group_start, shard.first_row + group_start + n, dtype=np.int64)
    return _Rows(ids, cu, cu_off, num_pad, loss, index)


@dataclass
class _Span:
    """A consumer's rows of one length for one epoch: pieces of blocks in epoch order, cut into windows."""

    pieces: np.ndarray  # (P, 3): shard, start, stop
    window_pieces: np.ndarray  # piece index where each window starts, and P at the end
    window_rows: np.ndarray  # row offset where each window starts, and the span's rows at the end
    seed: list[int]  # entropy of the window permutations (the window index is appended)

    @property
    def rows(self) -> int:
        return int(self.window_rows[-1])


class _Buffers:
    """Arrays for batch data, reused once nothing outside holds a view of them (fresh memory costs page faults)."""

    def __init__(self, keep: int, minimum: int = 0) -> None:
        self.keep = keep
        self.minimum = minimum  # elements of a new array at least (later requests may be larger)
        self.arrays: dict[str, list[np.ndarray]] = {}
        self.unused = self._references([np.empty(0)])  # the count of an array nothing else refers to

    @staticmethod
    def _references(arrays: list[np.ndarray]) -> int:
        for array in arrays:  # the same references as in get: the list, the loop variable (if counted), the call
            return sys.getrefcount(array)
        return 0

    def get(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """An uninitialised array of this shape and dtype."""
        size = int(np.prod(shape))
        arrays = self.arrays.setdefault(np.dtype(dtype).str, [])
        for array in arrays:
            if array.size >= size and sys.getrefcount(array) <= self.unused:  # no view of it is alive
                return array[:size].reshape(shape)
        array = np.empty(max(size, self.minimum), dtype)
        if len(arrays) < self.keep:
            arrays.append(array)
        return array[:size].reshape(shape)


class _Window:
    """The rows of a window of a span: the decoded pieces and, per window row, where it is among them."""

    def __init__(self, parts: list[_Rows], order: np.ndarray | None) -> None:
        self.parts = parts
        n = sum(len(part) for part in parts)
        bounds = np.zeros(len(parts) + 1, np.int64)
        np.cumsum([len(part) for part in parts], out=bounds[1:])
        src = np.arange(n, dtype=np.int64) if order is None else order  # window row i is the src[i]-th row read
        self.ordered = order is None
        self.part_of = np.searchsorted(bounds, src, side="right") - 1
        self.row_in = src - bounds[self.part_of]
        cu, cu_off = _joined_cu(parts)
        self.num_pad = np.concatenate([part.num_pad for part in parts])
        self.index = np.concatenate([part.index for part in parts])
        if order is not None:
            cu, cu_off = _ragged_take(cu, cu_off, order)
            self.num_pad, self.index = self.num_pad[order], self.index[order]
        self.cu, self.cu_off = cu, cu_off
        self.has_loss = parts[0].loss is not None

    def __len__(self) -> int:
        return len(self.part_of)

    def view(self, r0: int, r1: int, column: str) -> np.ndarray | None:
        """Rows r0..r1 of a token column as a view, when they are consecutive rows of one piece."""
        p = int(self.part_of[r0])
        if self.ordered and int(self.part_of[r1 - 1]) == p:
            a = int(self.row_in[r0])
            return getattr(self.parts[p], column)[a:a + r1 - r0]
        return None

    def fill(self, out: np.ndarray, r0: int, r1: int, column: str) -> None:
        """Copy rows r0..r1 of a token column ("ids" or "loss") into ``out`` (converting to its dtype)."""
        arrays = [getattr(part, column) for part in self.parts]
        part_of, row_in = self.part_of[r0:r1], self.row_in[r0:r1]
        if self.ordered:  # runs of consecutive rows of one piece
            cuts = np.flatnonzero(np.diff(part_of)) + 1
            for a, b in zip([0, *cuts.tolist()], [*cuts.tolist(), r1 - r0]):
                first = int(row_in[a])
                out[a:b] = arrays[int(part_of[a])][first:first + b - a]
        elif out.shape[1] >= 512:  # long rows: one copy per row, straight into place
            for k, (p, r) in enumerate(zip(part_of.tolist(), row_in.tolist())):
                out[k] = arrays[p][r]
        else:  # short rows: gather by piece
            for p in np.unique(part_of).tolist():
                where = np.flatnonzero(part_of == p)
                out[where] = arrays[p][row_in[where]]


class _Cursor:
    """Reads a span's rows in order, one window at a time."""

    def __init__(self, span: _Span, reader: _Reader, shuffle: bool) -> None:
        self.span = span
        self.reader = reader
        self.shuffle = shuffle
        self.index = -1
        self.window: _Window | None = None

    def take(self, a: int, b: int) -> list[tuple[_Window, int, int]]:
        """Rows a..b of the span (in epoch order): (window, first row, end row) per window they come from."""
        bounds = self.span.window_rows
        parts = []
        while a < b:
            w = int(np.searchsorted(bounds, a, side="right")) - 1
            if w != self.index:
                self.window = None  # release the previous window before reading the next
                self.window = self._load(w)
                self.index = w
            lo, hi = int(bounds[w]), min(b, int(bounds[w + 1]))
            parts.append((self.window, a - lo, hi - lo))
            a = hi
        return parts

    def _load(self, w: int) -> _Window:
        span = self.span
        pieces = span.pieces[span.window_pieces[w]:span.window_pieces[w + 1]]
        parts = [self.reader.read(int(s), int(a), int(b)) for s, a, b in pieces]
        order = None
        if self.shuffle:
            n = int(span.window_rows[w + 1] - span.window_rows[w])
            order = np.random.Generator(np.random.PCG64(np.random.SeedSequence(span.seed + [w]))).permutation(n)
        return _Window(parts, order)


@dataclass
class _Chunk:
    """Batch arrays of consecutive rows of one length; a batch is a slice of them."""

    first: int  # span row of the chunk's first row
    rows: int
    seq_len: int
    ids: np.ndarray
    positions: np.ndarray
    loss: np.ndarray
    index: np.ndarray
    starts: np.ndarray  # segment starts in flattened token coordinates, increasing
    lens: np.ndarray  # their lengths

    def batch(self, a: int, b: int) -> dict[str, Any]:
        """The batch of span rows a..b."""
        r0, r1 = a - self.first, b - self.first
        t0, t1 = r0 * self.seq_len, r1 * self.seq_len
        if t1 - t0 >= 2 ** 31:
            raise ValueError(f"a batch of {r1 - r0} rows x {self.seq_len} tokens does not fit int32 cu_seqlens")
        i0, i1 = np.searchsorted(self.starts, (t0, t1))
        cu = np.empty(i1 - i0 + 1, np.int32)
        np.subtract(self.starts[i0:i1], t0, out=cu[:-1], casting="unsafe")
        cu[-1] = t1 - t0
        return {
            "input_ids": self.ids[r0:r1],
            "position_ids": self.positions[r0:r1],
            "cu_seqlens": cu,
            "max_seqlen": int(self.lens[i0:i1].max()),
            "loss_mask": self.loss[r0:r1],
            "row_index": self.index[r0:r1],
        }


@dataclass
class _Plan:
    """One consumer's epoch: spans per length and the batches (length, first row, rows) in order."""

    epoch: int
    batch_size: int
    spans: list[_Span]
    pools: np.ndarray  # pool of each batch
    starts: np.ndarray  # first row of each batch in its pool's span
    sizes: np.ndarray  # rows of each batch


class PackedShardDataset:
    """Batches of packed rows for one rank (and worker) of a tokenmill prepare output, deterministic and resumable."""

    def __init__(
        self,
        path: str,
        *,
        rank: int = 0,
        world_size: int = 1,
        worker: tuple[int, int] = (0, 1),
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
        shuffle_window: int = 16,
        block_rows: int | None = None,
        ids_dtype: Any = np.int64,
        position_dtype: Any = np.int64,
        batch_multipliers: dict[int, int] | None = None,
        sampling_odds: dict[int, float] | None = None,
        cache_row_groups: int = 2,
        fast_decode: bool = True,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        """Read the manifest of ``path`` and set up this consumer (no shard data is read yet)."""
        _check_int("world_size", world_size, 1)
        _check_int("rank", rank, 0)
        if rank >= world_size:
            raise ValueError(f"rank must be in 0..world_size-1 = 0..{world_size - 1}, got {rank}")
        if not (isinstance(worker, (tuple, list)) and len(worker) == 2):
            raise ValueError(f"worker must be (worker_id, num_workers), got {worker!r}")
        worker_id, num_workers = worker
        _check_int("num_workers", num_workers, 1)
        _check_int("worker_id", worker_id, 0)
        if worker_id >= num_workers:
            raise ValueError(f"worker id must be in 0..num_workers-1 = 0..{num_workers - 1}, got {worker_id}")
        _check_int("seed", seed, 0)
        _check_int("shuffle_window", shuffle_window, 1)
        _check_int("cache_row_groups", cache_row_groups, 0)
        if block_rows is not None:
            _check_int("block_rows", block_rows, 1)
        self.path = str(path).rstrip("/")
        self.rank, self.world_size = int(rank), int(world_size)
        self.worker = (int(worker_id), int(num_workers))
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.shuffle_window = int(shuffle_window)
        self.ids_dtype = None if ids_dtype is None else np.dtype(ids_dtype)
        self.position_dtype = np.dtype(position_dtype)
        self.storage_options = dict(storage_options or {})
        self.manifest = _read_manifest(self.path, self.storage_options)
        self._shards = _shards_of(self.manifest, self.path)
        self._reader = _Reader(self._shards, self.storage_options, cache_row_groups, fast_decode)
        self._reader.narrow = self.ids_dtype is not None and self.ids_dtype.itemsize > 4
        self._pools = self._make_pools(block_rows, batch_multipliers, sampling_odds)
        self._reader.buffers.keep = len(self._pools) * (self.shuffle_window + 1) + cache_row_groups + 2
        if self.ids_dtype is not None and (self.ids_dtype.kind not in "iu" or self.ids_dtype.itemsize < 4):
            raise ValueError(f"ids_dtype must be an integer type of 4 or 8 bytes (or None), got {self.ids_dtype}")
        longest = max(self.lengths, default=1)
        if self.position_dtype.kind not in "iu" or np.iinfo(self.position_dtype).max < longest - 1:
            raise ValueError(f"position_dtype must be an integer type that holds {longest - 1}, "
                             f"got {self.position_dtype}")
        self.fingerprint = _dataset_fingerprint(self.manifest, self._shards)
        self._epoch = 0
        self._batches = 0  # batches of the current epoch already yielded
        self._batch_size: int | None = None  # batch size of the position (set once a batch is yielded)
        self._plan: _Plan | None = None
        self._ramp = np.arange(0, dtype=self.position_dtype)  # 0, 1, ..., seq_len - 1 for the positions
        self._buffers = _Buffers(2 * (len(self._pools) + 2), _CHUNK_TOKENS)  # ids and positions may share a dtype
        self._token = 0  # changes whenever the position is set from outside: stale iterators stop

    # -- layout ---------------------------------------------------------------------------------------------------

    @property
    def consumer(self) -> int:
        """This consumer's index among all ranks x workers: rank * num_workers + worker_id."""
        return self.rank * self.worker[1] + self.worker[0]

    @property
    def consumers(self) -> int:
        """Ranks x workers reading the dataset together."""
        return self.world_size * self.worker[1]

    @property
    def num_rows(self) -> int:
        """Rows in the whole dataset (every length)."""
        return sum(p.rows for p in self._pools)

    @property
    def lengths(self) -> list[int]:
        """Row lengths present, shortest first."""
        return [p.seq_len for p in self._pools]

    @property
    def epoch(self) -> int:
        """The epoch the next batch comes from."""
        return self._epoch

    def batch_rows(self, batch_size: int) -> dict[int, int]:
        """Rows per batch for each row length: batch_size * multiplier(length)."""
        return {p.seq_len: batch_size * p.multiplier for p in self._pools}

    def num_batches(self, batch_size: int, epoch: int | None = None) -> int:
        """Batches this consumer yields in an epoch (the current one by default), from its beginning."""
        return len(self._plan_for(self._epoch if epoch is None else epoch, batch_size).pools)

    def _make_pools(self, block_rows: int | None, multipliers: dict[int, int] | None,
                    odds: dict[int, float] | None) -> list[_Pool]:
        by_len: dict[int, list[int]] = {}
        for i, shard in enumerate(self._shards):
            by_len.setdefault(shard.seq_len, []).append(i)
        curriculum = _curriculum(self.manifest)
        if multipliers is None:
            multipliers = {int(k): v for k, v in (curriculum.get(K_BATCH_MULTIPLIERS) or {}).items()}
        if odds is None:
            odds = {int(k): v for k, v in (curriculum.get(K_SAMPLING_ODDS) or {}).items()} or None
        longest = max(by_len, default=0)
        pools = []
        for length in sorted(by_len):
            members = [i for i in by_len[length] if self._shards[i].rows > 0]
            size = block_rows or (self._reader.first_group_rows(members[0]) if members else 1)
            blocks = [(i, a, min(a + size, self._shards[i].rows))
                      for i in members for a in range(0, self._shards[i].rows, size)]
            mult = multipliers.get(length) if multipliers else None
            if mult is None:
                if len(by_len) > 1 and longest % length:
                    raise ValueError(f"no batch multiplier for row length {length} in the manifest's curriculum, "
                                     f"and {length} does not divide the longest length {longest}: pass "
                                     f"batch_multipliers={{{length}: N, ...}}")
                mult = longest // length
            if not isinstance(mult, (int, np.integer)) or mult < 1:
                raise ValueError(f"batch multiplier of row length {length} must be a whole number >= 1, got {mult!r}")
            pool = _Pool(length, np.array(blocks, np.int64).reshape(-1, 3), sum(b - a for _, a, b in blocks),
                         int(mult))
            if odds is not None and len(by_len) > 1:
                p = odds.get(length)
                if p is None or not p > 0:
                    raise ValueError(f"sampling odds of row length {length} must be > 0 (its rows would never be "
                                     f"read), got {p!r}; odds given: {dict(sorted(odds.items()))}")
                pool.odds = float(p)
            pools.append(pool)
        return pools

    # -- epochs and positions -------------------------------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` from its beginning (keeping the position if already inside that epoch)."""
        _check_int("epoch", epoch, 0)
        if epoch == self._epoch:
            return
        self._epoch, self._batches, self._batch_size = int(epoch), 0, None
        self._token += 1

    def state_dict(self) -> dict[str, Any]:
        """The position (epoch, batches yielded in it) with what it is valid for: dataset, layout, seed, options."""
        rows = {}
        if self._batches and self._batch_size is not None:
            plan = self._plan_for(self._epoch, self._batch_size)
            for p, pool in enumerate(self._pools):
                mask = plan.pools[:self._batches] == p
                rows[str(pool.seq_len)] = int(plan.sizes[:self._batches][mask].sum())
        return {
            "format": STATE_FORMAT,
            "dataset": self.fingerprint,
            "rows": self.num_rows,
            "world_size": self.world_size,
            "rank": self.rank,
            "worker": list(self.worker),
            "seed": self.seed,
            "shuffle": self.shuffle,
            "drop_last": self.drop_last,
            "shuffle_window": self.shuffle_window,
            "blocks": [len(p.blocks) for p in self._pools],
            "epoch": self._epoch,
            "batches": self._batches,
            "batch_size": self._batch_size,
            "rows_read": rows,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a saved position; refuse a state of another dataset, world layout, seed or options."""
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ValueError(f"not a loader state (expected format {STATE_FORMAT!r}, got "
                             f"{state.get('format') if isinstance(state, dict) else type(state).__name__!r})")
        if state.get("dataset") != self.fingerprint:
            raise ValueError(f"the state is from another dataset ({state.get('rows')} rows, fingerprint "
                             f"{str(state.get('dataset'))[:12]}) than {self.path} ({self.num_rows} rows, "
                             f"fingerprint {self.fingerprint[:12]})")
        mine = self.state_dict()
        for key, what in (("world_size", "world_size"), ("rank", "rank"), ("worker", "worker (id, num_workers)"),
                          ("seed", "seed"), ("shuffle", "shuffle"), ("drop_last", "drop_last"),
                          ("shuffle_window", "shuffle_window"), ("blocks", "blocks per row length (block_rows)")):
            if list(np.atleast_1d(state.get(key))) != list(np.atleast_1d(mine[key])):
                raise ValueError(f"the state was saved with {what} = {state.get(key)!r} but this dataset has "
                                 f"{mine[key]!r}: a position only continues exactly in the same layout")
        epoch, batches, batch_size = state.get("epoch"), state.get("batches"), state.get("batch_size")
        _check_int("state epoch", epoch, 0)
        _check_int("state batches", batches, 0)
        if batches:
            _check_int("state batch_size", batch_size, 1)
            total = self.num_batches(batch_size, epoch)
            if batches > total:
                raise ValueError(f"the state is at batch {batches} of epoch {epoch}, which has only {total}")
        self._epoch, self._batches = int(epoch), int(batches)
        self._batch_size = int(batch_size) if batches else None
        self._token += 1

    # -- batches --------------------------------------------------------------------------------------------------

    def batches(self, batch_size: int) -> Iterator[dict[str, Any]]:
        """The rest of the current epoch's batches for this consumer; then the dataset moves to the next epoch."""
        _check_int("batch_size", batch_size, 1)
        if self._batches and self._batch_size != batch_size:
            raise ValueError(f"the dataset is inside epoch {self._epoch} after {self._batches} batches of "
                             f"batch_size={self._batch_size}; continue with that batch size (got {batch_size})")
        plan = self._plan_for(self._epoch, batch_size)
        self._token += 1
        return self._iterate(plan, self._token)

    def _iterate(self, plan: _Plan, token: int) -> Iterator[dict[str, Any]]:
        cursors = [_Cursor(span, self._reader, self.shuffle) for span in plan.spans]
        chunks: list[_Chunk | None] = [None] * len(plan.spans)
        ends = [int((plan.starts + plan.sizes)[plan.pools == p].max(initial=0)) for p in range(len(plan.spans))]
        k = self._batches
        while k < len(plan.pools):
            p = int(plan.pools[k])
            a = int(plan.starts[k])
            b = a + int(plan.sizes[k])
            chunk = chunks[p]
            if chunk is None or not chunk.first <= a < b <= chunk.first + chunk.rows:
                chunks[p] = None  # release the previous chunk before preparing the next
                per = int(plan.sizes[k])
                stop = min(ends[p], a + per * max(1, _CHUNK_TOKENS // (per * self._pools[p].seq_len)))
                chunk = chunks[p] = self._chunk(cursors[p].take(a, stop), a, self._pools[p].seq_len)
            batch = chunk.batch(a, b)
            if token != self._token:
                raise RuntimeError("the dataset's position was changed (set_epoch, load_state_dict or another "
                                   "batches() iterator) while this iterator was open; call batches() again")
            k += 1
            self._batches, self._batch_size = k, plan.batch_size
            yield batch
        if token == self._token:
            self._epoch, self._batches, self._batch_size = plan.epoch + 1, 0, None

    def _chunk(self, parts: list[tuple[_Window, int, int]], first: int, seq_len: int) -> _Chunk:
        """The batch arrays of consecutive rows (the next batches of one length), computed together."""
        n = sum(r1 - r0 for _, r0, r1 in parts)
        total = n * seq_len
        stored = parts[0][0].parts[0].ids.dtype  # uint32, or uint16 when the reader narrows (int64 ids only)
        want = np.dtype(np.uint32) if self.ids_dtype is None else self.ids_dtype
        # same-size integers (uint32 ids as int32: ids are below 2**31) are a view, not a conversion
        as_view = want.itemsize == stored.itemsize == 4
        ids = parts[0][0].view(parts[0][1], parts[0][2], "ids") if len(parts) == 1 and as_view else None
        if ids is None:
            ids = self._buffers.get((n, seq_len), stored if as_view else want)
            at = 0
            for window, r0, r1 in parts:
                window.fill(ids[at:at + r1 - r0], r0, r1, "ids")  # one pass: gather, copy and widen
                at += r1 - r0
        if as_view and ids.dtype != want:
            ids = ids.view(want)
        num_pad = np.concatenate([window.num_pad[r0:r1] for window, r0, r1 in parts])
        loss = self._buffers.get((n, seq_len), np.dtype(np.uint8))
        if parts[0][0].has_loss:
            at = 0
            for window, r0, r1 in parts:
                window.fill(loss[at:at + r1 - r0], r0, r1, "loss")
                at += r1 - r0
        else:
            loss.fill(1)
            for r in np.flatnonzero(num_pad).tolist():
                loss[r, seq_len - num_pad[r]:] = 0
        # segment starts in flattened token coordinates: each row's cu_seqlens but its real end, which starts
        # the padding segment when there is padding; rows follow each other
        starts, row0 = [], 0
        for window, r0, r1 in parts:
            lo, hi = int(window.cu_off[r0]), int(window.cu_off[r1])
            values, off = window.cu[lo:hi], window.cu_off[r0:r1 + 1] - lo
            keep = np.ones(len(values), bool)
            keep[off[1:] - 1] = window.num_pad[r0:r1] > 0
            row_of = np.repeat(np.arange(row0, row0 + r1 - r0, dtype=np.int64) * seq_len, np.diff(off))
            starts.append((row_of + values)[keep])
            row0 += r1 - r0
        flat = np.concatenate(starts) if len(starts) > 1 else starts[0]
        if len(flat) > 1:
            flat = flat[np.concatenate(([True], flat[1:] > flat[:-1]))]  # empty segments (all-padding rows)
        lens = np.diff(np.append(flat, total))
        # every row starts a segment: position = column - the row-relative start of the token's segment
        small = np.dtype(np.uint16 if seq_len <= 1 << 16 else np.uint32)
        if small.itemsize >= self.position_dtype.itemsize:
            small = self.position_dtype
        if len(self._ramp) != seq_len or self._ramp.dtype != small:
            self._ramp = np.arange(seq_len, dtype=small)
        positions = self._buffers.get((n, seq_len), self.position_dtype)
        seg = np.repeat((flat % seq_len).astype(small), lens).reshape(n, seq_len)
        if small == self.position_dtype:
            np.subtract(self._ramp, seg, out=positions)
        else:  # in the narrow type, then widened once (cheaper than a mixed-type subtraction)
            np.subtract(self._ramp, seg, out=seg)
            np.copyto(positions, seg)
        index = np.concatenate([window.index[r0:r1] for window, r0, r1 in parts])
        return _Chunk(first, n, seq_len, ids, positions, loss, index, flat, lens)

    # -- the epoch plan -------------------------------------------------------------------------------------------

    def _plan_for(self, epoch: int, batch_size: int) -> _Plan:
        if self._plan is not None and (self._plan.epoch, self._plan.batch_size) == (epoch, batch_size):
            return self._plan
        spans = [self._span(pool, epoch) for pool in self._pools]
        counts, sizes_by_pool = [], []
        for pool, span in zip(self._pools, spans):
            per = batch_size * pool.multiplier
            full, rest = divmod(span.rows, per)
            sizes = [per] * full + ([rest] if rest and not self.drop_last else [])
            counts.append(len(sizes))
            sizes_by_pool.append(np.array(sizes, np.int64))
        if len(self._pools) > 1:
            odds = [pool.odds or pool.rows / (batch_size * pool.multiplier) for pool in self._pools]
            rng = _rng(self.seed, epoch, _LENGTH_ORDER)
            order = _draw_lengths(counts, odds, rng)
        else:
            order = np.zeros(sum(counts), np.int64)
        starts = np.zeros(len(order), np.int64)
        sizes = np.zeros(len(order), np.int64)
        for p, pool_sizes in enumerate(sizes_by_pool):
            at = order == p
            sizes[at] = pool_sizes
            starts[at] = np.cumsum(pool_sizes) - pool_sizes
        self._plan = _Plan(epoch, batch_size, spans, order, starts, sizes)
        return self._plan

    def _span(self, pool: _Pool, epoch: int) -> _Span:
        blocks = pool.blocks
        if self.shuffle and len(blocks):
            blocks = blocks[_rng(self.seed, epoch, _BLOCK_ORDER, pool.seq_len).permutation(len(blocks))]
        sizes = blocks[:, 2] - blocks[:, 1]
        ends = np.cumsum(sizes)
        n, c, cs = pool.rows, self.consumer, self.consumers
        if self.drop_last:
            a, b = c * (n // cs), (c + 1) * (n // cs)
        else:
            base, extra = divmod(n, cs)
            a = c * base + min(c, extra)
            b = a + base + (c < extra)
        first = int(np.searchsorted(ends, a, side="right"))
        last = int(np.searchsorted(ends, b, side="left")) + 1 if b > a else first
        pieces = blocks[first:last].copy()
        if len(pieces):
            begins = ends[first:last] - sizes[first:last]
            pieces[0, 1] += a - begins[0]
            pieces[-1, 2] -= ends[last - 1] - b
        rows = pieces[:, 2] - pieces[:, 1]
        window_pieces = np.append(np.arange(0, len(pieces), self.shuffle_window), len(pieces))
        window_rows = np.zeros(len(window_pieces), np.int64)
        window_rows[1:] = np.cumsum(rows)[window_pieces[1:] - 1] if len(pieces) else []
        return _Span(pieces, window_pieces, window_rows,
                     [self.seed, epoch, _WINDOW_ORDER, pool.seq_len, self.consumers, c])

    def close(self) -> None:
        """Close open shard files and drop cached row groups."""
        self._reader.close()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_reader"] = _Reader(self._shards, self.storage_options, self._reader.cache_row_groups,
                                   self._reader.fast_decode)
        state["_reader"].buffers.keep = self._reader.buffers.keep
        state["_plan"] = None
        state["_ramp"] = np.arange(0, dtype=self.position_dtype)
        state["_buffers"] = _Buffers(self._buffers.keep, _CHUNK_TOKENS)
        return state

    def __repr__(self) -> str:
        return (f"PackedShardDataset({self.path!r}, rows={self.num_rows}, lengths={self.lengths}, rank={self.rank}, "
                f"world_size={self.world_size}, worker={self.worker}, seed={self.seed}, epoch={self._epoch})")


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")


def _rng(*entropy: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(x) for x in entropy])))


def _draw_lengths(counts: list[int], odds: list[float], rng: np.random.Generator) -> np.ndarray:
    """The pool of each batch: drawn by odds among the pools that still have batches (one uniform per batch)."""
    total = sum(counts)
    out = np.empty(total, np.int64)
    remaining = list(counts)
    draws = rng.random(total).tolist()
    for k, u in enumerate(draws):
        weights = [o if r else 0.0 for o, r in zip(odds, remaining)]
        x = u * sum(weights)
        choice, acc = -1, 0.0
        for i, w in enumerate(weights):
            if w:
                choice, acc = i, acc + w
                if x < acc:
                    break
        out[k] = choice
        remaining[choice] -= 1
    return out


def _join(base: str, name: str) -> str:
    return base.rstrip("/") + "/" + name


def _read_manifest(path: str, storage_options: dict[str, Any]) -> dict[str, Any]:
    import fsspec

    url = _join(path, MANIFEST_FILE)
    try:
        with fsspec.open(url, "rb", **storage_options) as fh:
            manifest = json.load(fh)
    except FileNotFoundError:
        raise FileNotFoundError(f"no {MANIFEST_FILE} in {path}: not a finished tokenmill prepare output "
                                f"(the manifest is written last)") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{url} is not valid JSON: {e}") from None
    if not isinstance(manifest, dict) or manifest.get(K_FORMAT) != MANIFEST_FORMAT or K_SHARDS not in manifest:
        fmt = manifest.get(K_FORMAT) if isinstance(manifest, dict) else None
        raise ValueError(f"{url} is not a packed-shard manifest (format {fmt!r}, expected {MANIFEST_FORMAT!r} "
                         f"with a {K_SHARDS!r} list, as tokenmill prepare writes)")
    return manifest


def _shards_of(manifest: dict[str, Any], path: str) -> list[_Shard]:
    shards, first = [], 0
    default_len = manifest.get(K_SEQ_LEN)
    for i, entry in enumerate(manifest[K_SHARDS]):
        try:
            rel, rows = entry["path"], int(entry["rows"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"manifest shard entry {i} needs 'path' and 'rows', got {entry!r}") from None
        seq_len = entry.get(SHARD_SEQ_LEN, default_len)
        if not isinstance(seq_len, int) or seq_len < 1:
            raise ValueError(f"manifest shard {rel}: no usable seq_len (the shard's own or the manifest's), "
                             f"got {seq_len!r}")
        url = rel if "://" in rel or rel.startswith("/") else _join(path, rel)
        shards.append(_Shard(url, rel, rows, seq_len, first))
        first += rows
    return shards


def _curriculum(manifest: dict[str, Any]) -> dict[str, Any]:
    """The curriculum of a decompose manifest: its decompose section's, else one under packing_stats."""
    section = manifest.get(K_DECOMPOSE)
    if isinstance(section, dict) and isinstance(section.get(K_CURRICULUM), dict):
        return section[K_CURRICULUM]
    stats = manifest.get(K_PACKING_STATS)
    if isinstance(stats, dict):
        for holder in (stats, stats.get(K_DECOMPOSE)):
            if isinstance(holder, dict) and isinstance(holder.get(K_CURRICULUM), dict):
                return holder[K_CURRICULUM]
    return {}


def _dataset_fingerprint(manifest: dict[str, Any], shards: list[_Shard]) -> str:
    listing = [manifest.get(K_FINGERPRINT), [(s.path, s.rows, s.seq_len) for s in shards]]
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()


# -- PyTorch ----------------------------------------------------------------------------------------------------------

def _torch_iterable() -> type:
    """Build PackedShardIterable (imports torch)."""
    try:
        import torch
        import torch.distributed as dist
        from torch.utils.data import IterableDataset, get_worker_info
    except ImportError as e:
        raise ImportError("PackedShardIterable needs PyTorch: pip install 'tokenmill[torch]' "
                          "(PackedShardDataset, the numpy core, does not)") from e

    class PackedShardIterable(IterableDataset):
        """PackedShardDataset as a torch IterableDataset: each DataLoader worker reads its part, batches as tensors."""

        def __init__(self, path: str, batch_size: int, *, rank: int | None = None, world_size: int | None = None,
                     seed: int = 0, **options: Any) -> None:
            """Like PackedShardDataset; rank and world_size default to torch.distributed's (else 0 and 1)."""
            if "worker" in options:
                raise ValueError("PackedShardIterable sets worker itself (one part per DataLoader worker)")
            if rank is None or world_size is None:
                ready = dist.is_available() and dist.is_initialized()
                rank = (dist.get_rank() if ready else 0) if rank is None else rank
                world_size = (dist.get_world_size() if ready else 1) if world_size is None else world_size
            _check_int("batch_size", batch_size, 1)
            self.path, self.batch_size, self.rank, self.world_size, self.seed = path, batch_size, rank, world_size, seed
            self.options = options
            self.epoch: int | None = None
            self._state: dict[str, Any] | None = None
            self._core: PackedShardDataset | None = None
            PackedShardDataset(path, rank=rank, world_size=world_size, seed=seed, **options).close()  # checks

        def set_epoch(self, epoch: int) -> None:
            """The epoch the next iteration reads (call it before each epoch)."""
            _check_int("epoch", epoch, 0)
            self.epoch = epoch

        def _make_core(self) -> PackedShardDataset:
            info = get_worker_info()
            worker = (info.id, info.num_workers) if info is not None else (0, 1)
            return PackedShardDataset(self.path, rank=self.rank, world_size=self.world_size, worker=worker,
                                      seed=self.seed, **self.options)

        def __iter__(self) -> Iterator[dict[str, Any]]:
            core = self._make_core()
            if self._state is not None:
                core.load_state_dict(self._state)
                self._state = None
            if self.epoch is not None:
                core.set_epoch(self.epoch)
            self._core = core
            for batch in core.batches(self.batch_size):
                yield {k: (torch.from_numpy(v if v.flags.writeable else v.copy()) if isinstance(v, np.ndarray)
                           else v) for k, v in batch.items()}

        def state_dict(self) -> dict[str, Any]:
            """This worker's (or, without workers, this process's) position."""
            if self._core is None:
                core = self._make_core()
                if self._state is not None:
                    core.load_state_dict(self._state)
                elif self.epoch is not None:
                    core.set_epoch(self.epoch)
                return core.state_dict()
            return self._core.state_dict()

        def load_state_dict(self, state: dict[str, Any]) -> None:
            """Continue from ``state`` at the next iteration (in the worker that saved it)."""
            self._state = state
            self._core = None

        def __getstate__(self) -> dict[str, Any]:
            d = dict(self.__dict__)
            d["_core"] = None
            return d

    PackedShardIterable.__qualname__ = "PackedShardIterable"  # picklable as schemas.loader.PackedShardIterable
    PackedShardIterable.__module__ = __name__
    return PackedShardIterable


def __getattr__(name: str) -> Any:
    if name == "PackedShardIterable":
        cls = _torch_iterable()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
