"""Megatron-LM indexed datasets (``PREFIX.bin`` + ``PREFIX.idx``): the format, written and read back.

The format is Megatron-LM's MMapIndexedDataset (``megatron/core/datasets/indexed_dataset.py``, what
``tools/preprocess_data.py`` writes). ``PREFIX.idx``, little-endian::

    b"MMIDIDX\\x00\\x00"   header
    <Q 1                  version
    <B code               token dtype: uint8=1 int8=2 int16=3 int32=4 int64=5 float64=6 float32=7 uint16=8
    <Q S                  sequence count
    <Q D                  document count: len(document_indices)
    int32[S]              sequence lengths (tokens)
    int64[S]              sequence pointers: byte offset of each sequence in PREFIX.bin
    int64[D]              document indices: the first sequence of each document, then S

``PREFIX.bin`` holds every sequence's tokens back to back in the dtype. tokenmill writes one sequence per document,
so the document indices are ``[0, 1, ..., S]``, as preprocess_data writes them. The documents come from
``transforms.export.packed_source`` (rebuilt from a prepare output's shards).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from transforms.errors import TokenmillError
from transforms.report.summary import key_value_table

INDEX_HEADER = b"MMIDIDX\x00\x00"
INDEX_VERSION = 1
DTYPE_CODES: dict[str, int] = {
    "uint8": 1, "int8": 2, "int16": 3, "int32": 4, "int64": 5, "float64": 6, "float32": 7, "uint16": 8,
}
DTYPE_CHOICES = ("auto", "uint16", "int32")
UINT16_VOCAB_LIMIT = 65500  # Megatron's DType.optimal_dtype: uint16 below this vocabulary size, else int32
_PREFIX_BYTES = len(INDEX_HEADER) + 8 + 1 + 8 + 8  # 34: header, version, dtype code, two counts
_INT32_MAX = 2**31 - 1


class ExportError(TokenmillError, ValueError):
    """A problem with the export's OUT_DIR, --output or --dtype, or with a Megatron dataset being read."""


@dataclass(frozen=True)
class MegatronIndex:
    """The contents of a ``PREFIX.idx`` file."""

    dtype: np.dtype
    sequence_lengths: np.ndarray  # int32
    sequence_pointers: np.ndarray  # int64, bytes into PREFIX.bin
    document_indices: np.ndarray  # int64


@dataclass(frozen=True)
class ExportSummary:
    """What an export wrote."""

    documents: int
    incomplete_documents: int
    tokens: int
    dtype: str
    bin_path: str
    idx_path: str
    bin_bytes: int
    source: str
    shards: int


def choose_dtype(requested: str, vocab_size: int | None) -> np.dtype:
    """The token dtype: ``auto`` is Megatron's rule (uint16 if the vocabulary has fewer than 65500 ids, else int32)."""
    if requested == "auto":
        requested = "uint16" if vocab_size is not None and vocab_size < UINT16_VOCAB_LIMIT else "int32"
    if requested not in ("uint16", "int32"):
        raise ExportError(f"--dtype {requested!r}: expected one of {', '.join(DTYPE_CHOICES)}")
    return np.dtype(requested).newbyteorder("<")


def check_output_prefix(prefix: str, overwrite: bool) -> tuple[str, str]:
    """``(PREFIX.bin, PREFIX.idx)``; refuses URLs, directories, a .bin/.idx suffix, existing files unless overwrite."""
    if "://" in prefix:
        raise ExportError(f"--output {prefix!r}: expected a local path prefix (Megatron memory-maps its files)")
    if not prefix or prefix.endswith(("/", os.sep)) or os.path.isdir(prefix):
        raise ExportError(f"--output {prefix!r}: expected a file prefix such as data/corpus (writes data/corpus.bin "
                          "and data/corpus.idx), not a directory")
    if prefix.endswith((".bin", ".idx")):
        raise ExportError(f"--output {prefix!r}: give the prefix without .bin/.idx (writes "
                          f"{prefix[:-4]}.bin and {prefix[:-4]}.idx)")
    paths = (prefix + ".bin", prefix + ".idx")
    for path in paths:
        if os.path.isdir(path):
            raise ExportError(f"--output {prefix!r}: {path} is a directory")
        if os.path.exists(path) and not overwrite:
            raise ExportError(f"--output {prefix!r}: {path} already exists; pass --overwrite to replace it")
    parent = os.path.dirname(prefix) or "."
    if os.path.exists(parent) and not os.path.isdir(parent):
        raise ExportError(f"--output {prefix!r}: {parent} is not a directory")
    return paths


class IndexedDatasetWriter:
    """Writes ``PREFIX.bin`` as token blocks arrive and ``PREFIX.idx`` at the end, under temporary names until
    ``commit()`` renames both into place; ``abort()`` (or leaving the ``with`` block by an exception) removes them."""

    def __init__(self, prefix: str, dtype: np.dtype, overwrite: bool = False) -> None:
        self.bin_path, self.idx_path = check_output_prefix(prefix, overwrite)
        self.dtype = np.dtype(dtype).newbyteorder("<")
        if self.dtype.name not in DTYPE_CODES:
            raise ExportError(f"--dtype {self.dtype.name!r}: Megatron has no code for it")
        self._limit = min(np.iinfo(self.dtype).max, np.iinfo(np.uint32).max)
        parent = os.path.dirname(prefix) or "."
        hidden = os.path.join(parent, f".{os.path.basename(prefix)}")
        self._bin_tmp, self._idx_tmp = f"{hidden}.bin.tmp-{os.getpid()}", f"{hidden}.idx.tmp-{os.getpid()}"
        try:
            os.makedirs(parent, exist_ok=True)
            self._bin = open(self._bin_tmp, "wb")
        except OSError as exc:
            self.abort()
            raise ExportError(f"--output {prefix!r}: cannot write there ({exc})") from exc
        self.tokens = 0
        self._ends: list[np.ndarray] = []

    def __enter__(self) -> "IndexedDatasetWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()

    def add(self, tokens: np.ndarray, ends: np.ndarray, where: str = "") -> None:
        """Append real tokens (uint32) and the exclusive ends, relative to ``tokens``, of the documents ending there."""
        if tokens.size:
            top = int(tokens.max())
            if top > self._limit:
                raise ExportError(
                    f"--dtype {self.dtype.name}: token id {top:,}{' in ' + where if where else ''} does not fit "
                    f"({self.dtype.name} holds ids up to {self._limit:,})"
                    + ("; use --dtype int32" if self.dtype.itemsize < 4 else "")
                )
            self._bin.write(np.ascontiguousarray(tokens, dtype=self.dtype).data)
        if ends.size:
            self._ends.append(np.asarray(ends, np.int64) + self.tokens)
        self.tokens += int(tokens.size)

    def commit(self) -> tuple[int, int]:
        """Write the index, rename both files into place; returns (documents, incomplete documents)."""
        self._bin.close()
        ends = np.concatenate(self._ends) if self._ends else np.empty(0, np.int64)
        self._ends = []
        incomplete = int(self.tokens > (int(ends[-1]) if ends.size else 0))
        if incomplete:
            ends = np.append(ends, self.tokens)
        lengths = np.diff(ends, prepend=0)
        if lengths.size and int(lengths.max()) > _INT32_MAX:
            raise ExportError(f"a document of {int(lengths.max()):,} tokens is longer than Megatron's int32 lengths")
        pointers = (ends - lengths) * self.dtype.itemsize
        with open(self._idx_tmp, "wb") as fh:
            fh.write(INDEX_HEADER)
            fh.write(struct.pack("<Q", INDEX_VERSION))
            fh.write(struct.pack("<B", DTYPE_CODES[self.dtype.name]))
            fh.write(struct.pack("<Q", lengths.size))
            fh.write(struct.pack("<Q", lengths.size + 1))
            fh.write(lengths.astype("<i4").tobytes())
            fh.write(pointers.astype("<i8").tobytes())
            fh.write(np.arange(lengths.size + 1, dtype="<i8").tobytes())
        os.replace(self._bin_tmp, self.bin_path)
        os.replace(self._idx_tmp, self.idx_path)
        return int(lengths.size), incomplete

    def abort(self) -> None:
        """Close and remove the temporary files (the outputs are untouched)."""
        f = getattr(self, "_bin", None)
        if f is not None and not f.closed:
            f.close()
        for path in (getattr(self, "_bin_tmp", None), getattr(self, "_idx_tmp", None)):
            if path and os.path.exists(path):
                os.remove(path)


def read_megatron_index(prefix: str) -> MegatronIndex:
    """Read and check ``PREFIX.idx`` (and that ``PREFIX.bin`` has the size it implies)."""
    idx_path, bin_path = prefix + ".idx", prefix + ".bin"
    try:
        with open(idx_path, "rb") as fh:
            data = fh.read()
        bin_size = os.path.getsize(bin_path)
    except OSError as exc:
        raise ExportError(f"{exc.filename}: cannot read ({exc.strerror})") from exc
    if len(data) < _PREFIX_BYTES or data[: len(INDEX_HEADER)] != INDEX_HEADER:
        raise ExportError(f"{idx_path}: not a Megatron index (no MMIDIDX header)")
    (version,) = struct.unpack_from("<Q", data, 9)
    (code,) = struct.unpack_from("<B", data, 17)
    n_seq, n_doc = struct.unpack_from("<QQ", data, 18)
    names = {v: k for k, v in DTYPE_CODES.items()}
    if version != INDEX_VERSION or code not in names:
        raise ExportError(f"{idx_path}: unsupported version {version} or dtype code {code}")
    if len(data) < _PREFIX_BYTES + 12 * n_seq + 8 * n_doc:
        raise ExportError(f"{idx_path}: truncated ({len(data)} bytes for {n_seq} sequences, {n_doc} documents)")
    off = _PREFIX_BYTES
    lengths = np.frombuffer(data, "<i4", n_seq, off)
    pointers = np.frombuffer(data, "<i8", n_seq, off + 4 * n_seq)
    docs = np.frombuffer(data, "<i8", n_doc, off + 12 * n_seq)
    dtype = np.dtype(names[code]).newbyteorder("<")
    if n_seq and int((pointers + lengths.astype(np.int64) * dtype.itemsize).max()) > bin_size:
        raise ExportError(f"{bin_path}: {bin_size} bytes, shorter than {idx_path} says")
    return MegatronIndex(dtype, lengths, pointers, docs)


def read_megatron(prefix: str) -> Iterator[np.ndarray]:
    """Every sequence of the Megatron dataset ``PREFIX.bin``/``PREFIX.idx``, in order, as a numpy array."""
    index = read_megatron_index(prefix)
    if not index.sequence_lengths.size:
        return
    data = np.memmap(prefix + ".bin", dtype=np.uint8, mode="r")
    try:
        for pointer, length in zip(index.sequence_pointers.tolist(), index.sequence_lengths.tolist()):
            yield np.frombuffer(data, index.dtype, length, pointer).copy()
    finally:
        del data


def summary_table(summary: ExportSummary) -> str:
    """A compact human summary of an export."""
    rows = [
        ("documents", f"{summary.documents:,} (one Megatron sequence each)"),
        ("incomplete documents", f"{summary.incomplete_documents:,}"
                                 + (" (the last one: no EOS at the end of the shards)"
                                    if summary.incomplete_documents else "")),
        ("tokens (incl. EOS)", f"{summary.tokens:,}"),
        ("dtype", summary.dtype),
        ("source", f"{summary.source} ({summary.shards} shards)"),
        ("data", f"{summary.bin_path} ({summary.bin_bytes / 1e6:,.1f} MB)"),
        ("index", summary.idx_path),
    ]
    return key_value_table(rows)
