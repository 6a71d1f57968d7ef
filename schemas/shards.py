"""Packed token shards: Arrow schema, column names, the reader of their rows, and the manifest reader.

A shard row holds exactly ``seq_len`` token ids. ``cu_seqlens`` lists the segment starts and the end of the
real tokens: ``[0, e1, ..., e_k]`` with ``e_k = seq_len - num_pad``; a document that continues from the
previous row starts a segment at 0. Padding (``num_pad`` ids of the pad token) is always at the end of a row.

Reading back::

    import datasets
    ds = datasets.load_dataset("parquet", data_files="out/shards/*.parquet", split="train")

    from schemas.shards import iter_packed_rows
    for row in iter_packed_rows("out/"):
        row.input_ids, row.cu_seqlens, row.num_pad     # numpy arrays / int

One implementation each, for every reader of an output (the training loader, ``inspect``, ``export-megatron``, the
tests): ``read_manifest`` reads a ``manifest.json`` (local path or fsspec URL), ``join_url`` puts a name under a
directory URL, and ``PackedShard`` (``open_packed_shard``) reads a shard's rows as numpy arrays (``PackedBatch``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import pyarrow as pa

from schemas.manifest import E_PATH, K_SHARDS

INPUT_IDS = "input_ids"
CU_SEQLENS = "cu_seqlens"
NUM_PAD = "num_pad"
LOSS_MASK = "loss_mask"  # optional (--loss-mask): per token 1 = train on it, 0 = padding or (boundaries) a document start
INPUT_IDS_LEAF = f"{INPUT_IDS}.list.element"  # the Parquet column path of the token ids

SHARDS_DIR = "shards"
BUCKET_DIR = "bucket"  # a bucket-partitioned ensemble: shards/bucket=NN/ (NN: the bucket, two digits)
LENGTH_DIR = "len"  # decompose packing: shards/len=NNNNN/ (NNNNN: the rows' length), each entry with its seq_len
REJECTED_DIR = "rejected"
MODIFIED_DIR = "modified"
MANIFEST_FILE = "manifest.json"
TEMP_DIR = "_tokenmill_tmp"
LOCK_FILE = ".tokenmill.lock"  # held by the run writing the output (see transforms.output.guard)
SHARD_NAME = "part-{index:05d}.parquet"
REJECTED_NAME = "part-{index:05d}.jsonl"

PACKED_COLUMNS = (INPUT_IDS, CU_SEQLENS, NUM_PAD)  # the columns every packed shard has (LOSS_MASK is optional)

SHARD_SCHEMA = pa.schema(
    [
        pa.field(INPUT_IDS, pa.list_(pa.uint32()), nullable=False),
        pa.field(CU_SEQLENS, pa.list_(pa.int32()), nullable=False),
        pa.field(NUM_PAD, pa.int32(), nullable=False),
    ]
)
MASKED_SHARD_SCHEMA = SHARD_SCHEMA.append(pa.field(LOSS_MASK, pa.list_(pa.uint8()), nullable=False))


@dataclass(frozen=True)
class PackedRow:
    """One packed training row read back from a shard."""

    input_ids: np.ndarray
    cu_seqlens: np.ndarray
    num_pad: int

    def documents(self) -> list[np.ndarray]:
        """The row's real-token segments (documents or pieces of documents), in order."""
        return [self.input_ids[a:b] for a, b in zip(self.cu_seqlens[:-1], self.cu_seqlens[1:])]


def join_url(base: str, name: str) -> str:
    """``name`` under the directory ``base`` (a local path or fsspec URL), with one "/" between them."""
    return base.rstrip("/") + "/" + name


class DamagedManifestError(ValueError):
    """A ``manifest.json`` that is not valid JSON; ``reason`` is what the JSON parser says."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url} is not valid JSON: {reason}")
        self.url = url
        self.reason = reason


def read_manifest(output_dir: str, storage_options: dict[str, Any] | None = None) -> Any:
    """The parsed ``manifest.json`` of ``output_dir`` (local path or fsspec URL), normally a dict (callers check the
    shape they need); FileNotFoundError or DamagedManifestError (a ValueError) names the file."""
    import fsspec

    url = join_url(output_dir, MANIFEST_FILE)
    try:
        with fsspec.open(url, "rb", **(storage_options or {})) as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise FileNotFoundError(f"{url} does not exist: the job did not finish (the manifest is written last)") \
            from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DamagedManifestError(url, str(exc)) from None


def read_output_manifest(url: str, label: str, error: type[Exception]) -> tuple[Any, str, dict[str, Any]]:
    """(filesystem, root path, manifest) of a finished tokenmill output directory (local path or fsspec URL);
    raises ``error`` naming the ``label`` option (e.g. "OUT_DIR") and what is wrong."""
    from fsspec.core import url_to_fs

    try:
        fs, root = url_to_fs(url)
    except (ImportError, ValueError) as exc:
        raise error(f"{label} {url!r}: cannot open this location ({exc})") from exc
    root = root.rstrip("/") or "/"
    if not fs.exists(root):
        raise error(f"{label} {url!r} does not exist")
    if not fs.isdir(root):
        raise error(f"{label} {url!r} is a file, not a tokenmill output directory")
    shown = join_url(url, MANIFEST_FILE)
    if not fs.exists(join_url(root, MANIFEST_FILE)):
        unfinished = fs.exists(join_url(root, TEMP_DIR))
        raise error(f"{label} {url!r} has no {MANIFEST_FILE}: "
                    + ("an unfinished tokenmill job (rerun its command to finish it)" if unfinished
                       else "not a finished tokenmill output (the manifest is written last)"))
    try:
        manifest = read_manifest(url)
    except DamagedManifestError as exc:
        raise error(f"{shown} is damaged ({exc.reason})") from exc
    if not isinstance(manifest, dict):
        raise error(f"{shown} is a JSON {type(manifest).__name__}, not an object")
    return fs, root, manifest


def shard_paths(output_dir: str) -> list[str]:
    """Shard paths of a finished output directory, in manifest (training) order."""
    return [join_url(output_dir, shard[E_PATH]) for shard in read_manifest(output_dir)[K_SHARDS]]


def iter_packed_rows(output_dir: str) -> Iterator[PackedRow]:
    """Iterate every packed row of a finished output directory, in shard and row order."""
    for path in shard_paths(output_dir):
        with open_packed_shard(path) as shard:
            for batch in shard.iter_batches(1024, PACKED_COLUMNS):
                for k in range(batch.rows):
                    yield batch.row(k)


@dataclass(frozen=True)
class PackedBatch:
    """Consecutive rows of a packed shard as numpy arrays (views of the Arrow buffers where possible): each list
    column as its values back to back and int64 offsets from 0. A column that was not read is None."""

    first_row: int  # the shard row of the batch's first row
    rows: int
    input_ids: np.ndarray | None
    ids_offsets: np.ndarray | None
    cu_seqlens: np.ndarray | None
    cu_offsets: np.ndarray | None
    num_pad: np.ndarray | None
    loss_mask: np.ndarray | None
    loss_offsets: np.ndarray | None

    def row(self, k: int) -> PackedRow:
        """Row ``k`` of the batch (views; needs the ids, cu_seqlens and num_pad columns)."""
        ids, cu = self.ids_offsets, self.cu_offsets
        return PackedRow(self.input_ids[ids[k]:ids[k + 1]], self.cu_seqlens[cu[k]:cu[k + 1]], int(self.num_pad[k]))


def open_parquet(fs: Any, path: str) -> tuple[Any, Any]:
    """(pyarrow ParquetFile, the open file handle under it) of ``path`` on the fsspec filesystem ``fs``; the handle
    is closed again when the file is not Parquet. The caller closes the handle when done."""
    import pyarrow.parquet as pq

    handle = fs.open(path, "rb")
    try:
        return pq.ParquetFile(handle), handle
    except BaseException:
        handle.close()
        raise


class PackedShard:
    """One packed shard open for reading: its columns, row groups and rows as ``PackedBatch``.

    A local file is read by pyarrow itself (no Python in the read path), any other through its fsspec filesystem.
    Values are checked as they are converted: ValueError names the shard and rows with nulls or a non-numeric type.
    """

    def __init__(self, fs: Any, path: str, url: str | None = None) -> None:
        """Open ``path`` on ``fs`` (``url``: how messages name it; default the path)."""
        import pyarrow.parquet as pq
        from fsspec.implementations.local import LocalFileSystem

        self.fs, self.path, self.url = fs, path, url or path
        self._handle = None
        if isinstance(fs, LocalFileSystem):
            self.parquet = pq.ParquetFile(path)
        else:
            self.parquet, self._handle = open_parquet(fs, path)
        meta = self.parquet.metadata
        self.num_rows: int = meta.num_rows
        self.row_group_starts = np.zeros(meta.num_row_groups + 1, np.int64)  # and the row count at the end
        np.cumsum([meta.row_group(g).num_rows for g in range(meta.num_row_groups)], out=self.row_group_starts[1:])
        names = self.parquet.schema_arrow.names
        self.missing_columns = [c for c in PACKED_COLUMNS if c not in names]  # a packed shard has none missing
        self.row_columns = [*PACKED_COLUMNS, *([LOSS_MASK] if LOSS_MASK in names else [])]

    def iter_batches(self, batch_rows: int, columns: Sequence[str] | None = None) -> Iterator[PackedBatch]:
        """The shard's rows in order, ``batch_rows`` at a time (``columns``: default ``row_columns``)."""
        first = 0
        for batch in self.parquet.iter_batches(batch_size=batch_rows, columns=self._columns(columns)):
            yield self._convert(batch, first)
            first += batch.num_rows

    def read_row_group(self, g: int, columns: Sequence[str] | None = None) -> PackedBatch:
        """The rows of row group ``g``, decoded in this thread (``columns``: default ``row_columns``)."""
        table = self.parquet.read_row_group(g, columns=self._columns(columns), use_threads=False)
        return self._convert(table, int(self.row_group_starts[g]))

    def close(self) -> None:
        """Close the file."""
        self.parquet.close()
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> "PackedShard":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _columns(self, columns: Sequence[str] | None) -> list[str]:
        return list(self.row_columns if columns is None else columns)

    def _convert(self, data: Any, first: int) -> PackedBatch:
        """A record batch or table of shard rows as a PackedBatch."""
        where = f"shard {self.url}, rows from {first}"
        names = data.schema.names

        def lists(name: str) -> tuple[np.ndarray | None, np.ndarray | None]:
            return _list_values(data.column(name), name, where) if name in names else (None, None)

        ids, ids_off = lists(INPUT_IDS)
        cu, cu_off = lists(CU_SEQLENS)
        num_pad = _as_numpy(_single(data.column(NUM_PAD)), NUM_PAD, where) if NUM_PAD in names else None
        loss, loss_off = lists(LOSS_MASK)
        return PackedBatch(first, data.num_rows, ids, ids_off, cu, cu_off, num_pad, loss, loss_off)


def open_packed_shard(url: str, storage_options: dict[str, Any] | None = None) -> PackedShard:
    """The packed shard at ``url`` (local path or fsspec URL), open for reading."""
    from fsspec.core import url_to_fs

    fs, path = url_to_fs(url, **(storage_options or {}))
    return PackedShard(fs, path, url)


def _single(column: Any) -> Any:
    """A column of a table (chunked) or of a record batch as one Arrow array."""
    if not isinstance(column, pa.ChunkedArray):
        return column
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def _list_values(column: Any, what: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    """A list column's values back to back and its offsets (int64, from 0)."""
    arr = _single(column)
    off = _as_numpy(arr.offsets, f"{what} offsets", where).astype(np.int64)
    values = _as_numpy(arr.values, what, where)  # every value of the child array: the offsets pick the rows'
    return values[int(off[0]):int(off[-1])], off - off[0]


def _as_numpy(arr: Any, what: str, where: str) -> np.ndarray:
    """A numeric or boolean Arrow array without nulls as numpy, a view of its buffer when it can be (pyarrow's
    own to_numpy would import pandas)."""
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
