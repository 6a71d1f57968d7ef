"""The loader's speed path: a shard's token ids decoded straight from its Parquet data pages into numpy.

Why a decoder of its own beside ``schemas.shards.PackedShard`` (the one packed-row reader, which the loader uses for
everything else and for any other layout): for shards laid out as tokenmill writes them this is about twice as
fast as pyarrow's list decoding, and it can decode ids below 2**16 to 2-byte values (``WideIds`` when they do not
fit). ``PackedShardDataset(fast_decode=False)`` reads the ids through pyarrow instead.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from schemas.shards import INPUT_IDS

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


class WideIds(Exception):
    """A row group's ids do not fit the 2-byte decoding (ids of 2**16 and above, or PLAIN pages)."""


class _NotFast(Exception):
    """The column chunk is not laid out as the fast path reads it."""


def ids_leaf(pf: Any) -> int | None:
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


def decode_ids(meta: Any, read_bytes: Callable[[int, int], bytes], rows: np.ndarray) -> np.ndarray:
    """The token ids of one row group's ids column chunk (``meta``: its Parquet ColumnChunkMetaData; ``read_bytes``:
    bytes start..start + size of the file), decoded from its pages into ``rows`` (an uninitialised uint32 or uint16
    array; uint16 raises WideIds unless every page is BYTE_STREAM_SPLIT with its two high bytes zero)."""
    import pyarrow as pa

    out = rows.reshape(-1)
    count = out.size

    if meta.compression not in _CODECS or meta.has_dictionary_page or meta.num_values != count:
        raise _NotFast("layout")
    codec = pa.Codec(_CODECS[meta.compression]) if _CODECS[meta.compression] else None
    data = read_bytes(meta.data_page_offset, meta.total_compressed_size)
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
                raise WideIds()
            dst[:] = np.frombuffer(values, "<u4", count=n)
        elif encoding == _BYTE_STREAM_SPLIT:  # byte k of every value, then byte k + 1...
            planes = np.frombuffer(values, np.uint8, count=4 * n).reshape(4, n)
            if dst.dtype == np.uint16:
                if planes[2:].any():
                    raise WideIds()
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
