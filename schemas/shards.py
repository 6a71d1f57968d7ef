"""Packed token shards: Arrow schema, column names and a reader that yields rows as numpy arrays.

A shard row holds exactly ``seq_len`` token ids. ``cu_seqlens`` lists the segment starts and the end of the
real tokens: ``[0, e1, ..., e_k]`` with ``e_k = seq_len - num_pad``; a document that continues from the
previous row starts a segment at 0. Padding (``num_pad`` ids of the pad token) is always at the end of a row.

Reading back::

    import datasets
    ds = datasets.load_dataset("parquet", data_files="out/shards/*.parquet", split="train")

    from schemas.shards import iter_packed_rows
    for row in iter_packed_rows("out/"):
        row.input_ids, row.cu_seqlens, row.num_pad     # numpy arrays / int
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import pyarrow as pa

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


def shard_paths(output_dir: str) -> list[str]:
    """Shard paths of a finished output directory, in manifest (training) order."""
    import fsspec

    with fsspec.open(_join(output_dir, MANIFEST_FILE), "rb") as fh:
        manifest = json.load(fh)
    return [_join(output_dir, shard["path"]) for shard in manifest["shards"]]


def iter_packed_rows(output_dir: str) -> Iterator[PackedRow]:
    """Iterate every packed row of a finished output directory, in shard and row order."""
    import fsspec
    import pyarrow.parquet as pq

    for path in shard_paths(output_dir):
        with fsspec.open(path, "rb") as fh:
            pf = pq.ParquetFile(fh)
            for batch in pf.iter_batches(batch_size=1024):
                ids = batch.column(INPUT_IDS)
                cus = batch.column(CU_SEQLENS)
                pads = batch.column(NUM_PAD).to_numpy()
                ids_flat = ids.values.to_numpy(zero_copy_only=False)
                ids_off = ids.offsets.to_numpy()
                cu_flat = cus.values.to_numpy(zero_copy_only=False)
                cu_off = cus.offsets.to_numpy()
                for i in range(len(batch)):
                    yield PackedRow(
                        ids_flat[ids_off[i] : ids_off[i + 1]],
                        cu_flat[cu_off[i] : cu_off[i + 1]],
                        int(pads[i]),
                    )


def _join(base: str, name: str) -> str:
    return base.rstrip("/") + "/" + name


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
    path = root.rstrip("/") + "/" + MANIFEST_FILE
    shown = url.rstrip("/") + "/" + MANIFEST_FILE
    if not fs.exists(path):
        unfinished = fs.exists(root.rstrip("/") + "/" + TEMP_DIR)
        raise error(f"{label} {url!r} has no {MANIFEST_FILE}: "
                    + ("an unfinished tokenmill job (rerun its command to finish it)" if unfinished
                       else "not a finished tokenmill output (the manifest is written last)"))
    try:
        with fs.open(path, "rb") as fh:
            manifest = json.load(fh)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise error(f"{shown} is damaged ({exc})") from exc
    if not isinstance(manifest, dict):
        raise error(f"{shown} is a JSON {type(manifest).__name__}, not an object")
    return fs, root, manifest
