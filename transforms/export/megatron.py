"""Megatron-LM indexed datasets (``PREFIX.bin`` + ``PREFIX.idx``): documents rebuilt from packed shards, written and
read back.

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
so the document indices are ``[0, 1, ..., S]``, as preprocess_data writes them.

Documents are rebuilt from the shards' real tokens (padding dropped) in manifest shard order and row order: a
document ends at every segment boundary inside a row (``cu_seqlens``) and at the end of a row whose last real token
is EOS. Inside a row this is exact even when a text contains the EOS token's text (which the tokenizer turns into
the EOS id); a document is only cut wrongly when such an id falls on the last token of a row. Real tokens after the
last document end (a truncated stream) are exported as one more, incomplete, document. Packings that store the
pieces of a cut document apart (best-fit, decompose) cannot be put back together and are refused unless no
document was cut.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from schemas import manifest as m
from schemas.shards import CU_SEQLENS, INPUT_IDS, MANIFEST_FILE, NUM_PAD, read_output_manifest
from transforms.errors import TokenmillError

INDEX_HEADER = b"MMIDIDX\x00\x00"
INDEX_VERSION = 1
DTYPE_CODES: dict[str, int] = {
    "uint8": 1, "int8": 2, "int16": 3, "int32": 4, "int64": 5, "float64": 6, "float32": 7, "uint16": 8,
}
DTYPE_CHOICES = ("auto", "uint16", "int32")
UINT16_VOCAB_LIMIT = 65500  # Megatron's DType.optimal_dtype: uint16 below this vocabulary size, else int32
CONCAT = "concat"  # the packing whose token stream is the documents in order
DOCS_SPLIT = "docs_split"  # counts: documents whose tokens are in more than one row
TOKENS_DROPPED = "tokens_dropped"  # counts: decompose remainders left out of the shards
_PREFIX_BYTES = len(INDEX_HEADER) + 8 + 1 + 8 + 8  # 34: header, version, dtype code, two counts
_INT32_MAX = 2**31 - 1


class ExportError(TokenmillError, ValueError):
    """A problem with the export's OUT_DIR, --output or --dtype, or with a Megatron dataset being read."""


class InconsistentRowError(ValueError):
    """A packed row whose ``cu_seqlens`` disagree with its ids and padding (``row``: its index in the block)."""

    def __init__(self, row: int) -> None:
        super().__init__(f"row {row}: {CU_SEQLENS} does not match its {INPUT_IDS} and {NUM_PAD}")
        self.row = row


@dataclass(frozen=True)
class PackedSource:
    """A finished ``prepare`` output: its shards (fsspec URLs, manifest order) and the token facts the export needs."""

    out_dir: str
    shards: list[str]
    shard_tokens: list[int | None]  # real tokens per shard as the manifest lists them (None: not listed)
    eos_id: int
    vocab_size: int | None
    seq_len: int | None


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


def _join(base: str, name: str) -> str:
    return base.rstrip("/") + "/" + name


def load_packed_source(out_dir: str) -> PackedSource:
    """Read and check OUT_DIR's manifest: a finished ``tokenmill prepare`` output with token shards."""
    _, _, manifest = read_output_manifest(out_dir, "OUT_DIR", ExportError)
    return packed_source(manifest, out_dir)


def packed_source(manifest: dict[str, Any], out_dir: str) -> PackedSource:
    """The shard list and token facts of a parsed manifest (``out_dir`` resolves its relative shard paths)."""
    where = _join(out_dir, MANIFEST_FILE)
    if manifest.get(m.K_FORMAT) == m.DOCUMENTS_FORMAT or (m.K_DOCUMENTS in manifest and m.K_SHARDS not in manifest):
        raise ExportError(
            f"OUT_DIR {out_dir!r} is a tokenmill filter output (documents, no token shards): run tokenmill prepare "
            f"--input {_join(out_dir, 'documents/')} on it first and export that"
        )
    tokenizer = manifest.get(m.K_TOKENIZER)
    shards = manifest.get(m.K_SHARDS)
    if not isinstance(tokenizer, dict) or not isinstance(shards, list):
        raise ExportError(f"{where} lists no token shards or tokenizer: not a tokenmill prepare output")
    eos_id = tokenizer.get("eos_id")
    if not isinstance(eos_id, int):
        raise ExportError(f"{where}: the tokenizer section has no eos_id")
    check_packing(manifest, out_dir)
    paths, tokens = [], []
    for i, shard in enumerate(shards):
        rel = shard.get("path") if isinstance(shard, dict) else None
        if not isinstance(rel, str) or not rel or rel.startswith("/") or "://" in rel:
            raise ExportError(f"{where}: shard {i} has no relative path ({shard!r})")
        paths.append(_join(out_dir, rel))
        tokens.append(shard.get("tokens") if isinstance(shard.get("tokens"), int) else None)
    vocab, seq_len = tokenizer.get("vocab_size"), manifest.get(m.K_SEQ_LEN)
    return PackedSource(
        out_dir=out_dir, shards=paths, shard_tokens=tokens, eos_id=eos_id,
        vocab_size=vocab if isinstance(vocab, int) else None, seq_len=seq_len if isinstance(seq_len, int) else None,
    )


def check_packing(manifest: dict[str, Any], out_dir: str) -> None:
    """Refuse a packing whose rows do not hold the documents in order: best-fit or decompose with cut documents.

    ``concat`` keeps the token stream in document order, so every document can be rebuilt. ``best-fit`` and
    ``decompose`` store the pieces of a cut document in rows of their own (decompose may drop remainders), and no
    column says which pieces belong together; without any cut or dropped token every row segment is a whole document.
    """
    packing = manifest.get(m.K_PACKING) or CONCAT
    if packing == CONCAT:
        return
    counts = manifest.get(m.K_COUNTS) or {}
    split, dropped = counts.get(DOCS_SPLIT), counts.get(TOKENS_DROPPED) or 0
    if split == 0 and not dropped:
        return
    if not isinstance(split, int) or not isinstance(dropped, int):
        why = "its manifest does not say whether documents were cut into pieces"
    else:
        why = f"{split:,} documents were cut into pieces stored in separate rows" + (
            f" and {dropped:,} remainder tokens dropped" if dropped else "")
    raise ExportError(f"OUT_DIR {out_dir!r} was packed with --packing {packing}: {why}, so documents cannot be "
                      f"rebuilt; export a prepare output packed with --packing {CONCAT} (the default)")


def choose_dtype(requested: str, vocab_size: int | None) -> np.dtype:
    """The token dtype: ``auto`` is Megatron's rule (uint16 if the vocabulary has fewer than 65500 ids, else int32)."""
    if requested == "auto":
        requested = "uint16" if vocab_size is not None and vocab_size < UINT16_VOCAB_LIMIT else "int32"
    if requested not in ("uint16", "int32"):
        raise ExportError(f"--dtype {requested!r}: expected one of {', '.join(DTYPE_CHOICES)}")
    return np.dtype(requested).newbyteorder("<")


def document_ends(
    ids_offsets: np.ndarray, num_pad: np.ndarray, cu_values: np.ndarray, cu_offsets: np.ndarray,
    last_tokens: np.ndarray, eos_id: int,
) -> np.ndarray:
    """Where documents end in a block of rows' real tokens laid back to back (exclusive ends, ascending).

    ``ids_offsets``/``cu_offsets`` delimit each row's ids and cu_seqlens; ``last_tokens`` is each row's last real
    token (any value for a row without real tokens). A document ends at each segment boundary inside a row and at
    the end of a row whose last real token is ``eos_id``. Raises InconsistentRowError for the first bad row.
    """
    n = num_pad.size
    real = np.diff(ids_offsets).astype(np.int64) - num_pad
    cu_counts = np.diff(cu_offsets)
    row_of = np.repeat(np.arange(n), cu_counts)
    bad = (real < 0) | (num_pad < 0) | (cu_counts < 1)
    if not bad.any() and n:
        bad = (cu_values[cu_offsets[:-1]] != 0) | (cu_values[cu_offsets[1:] - 1] != real)
        step_down = np.zeros(cu_values.size, bool)
        step_down[1:] = np.diff(cu_values) < 0
        step_down[cu_offsets[:-1]] = False  # a row's first value follows another row's
        bad |= np.bincount(row_of[step_down], minlength=n) > 0
    if bad.any():
        raise InconsistentRowError(int(np.flatnonzero(bad)[0]))
    starts = np.zeros(n, np.int64)
    np.cumsum(real[:-1], out=starts[1:])
    interior = np.ones(cu_values.size, bool)
    interior[cu_offsets[:-1]] = False
    interior[cu_offsets[1:] - 1] = False
    interior &= cu_values > 0
    inner = starts[row_of[interior]] + cu_values[interior]
    row_ends = (starts + real)[(real > 0) & (last_tokens == eos_id)]
    return np.unique(np.concatenate([inner, row_ends]))


def iter_token_blocks(
    source: PackedSource, batch_rows: int | None = None,
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """``(shard URL, real tokens, document ends within them)`` for every batch of rows, in shard and row order."""
    import fsspec
    import pyarrow.parquet as pq

    if batch_rows is None:
        batch_rows = max(1, (1 << 20) // max(1, source.seq_len or 1024))  # about a million tokens per batch
    for path, expected in zip(source.shards, source.shard_tokens):
        seen = 0
        try:
            with fsspec.open(path, "rb") as fh:
                pf = pq.ParquetFile(fh)
                missing = {INPUT_IDS, CU_SEQLENS, NUM_PAD} - set(pf.schema_arrow.names)
                if missing:
                    raise ExportError(f"shard {path}: no column {', '.join(sorted(missing))}")
                row = 0
                for batch in pf.iter_batches(batch_size=batch_rows, columns=[INPUT_IDS, CU_SEQLENS, NUM_PAD]):
                    tokens, ends = _block(batch, source.eos_id, path, row)
                    row += batch.num_rows
                    seen += tokens.size
                    yield path, tokens, ends
        except ExportError:
            raise
        except FileNotFoundError as exc:
            raise ExportError(f"shard {path} listed in the manifest does not exist") from exc
        except (OSError, ValueError) as exc:  # pyarrow's errors are OSErrors (I/O) or ValueErrors (ArrowInvalid)
            raise ExportError(f"shard {path} cannot be read ({str(exc).splitlines()[0] if str(exc) else exc!r})") \
                from exc
        if expected is not None and seen != expected:
            raise ExportError(f"shard {path} holds {seen:,} real tokens but the manifest lists {expected:,}")


def _block(batch: Any, eos_id: int, path: str, first_row: int) -> tuple[np.ndarray, np.ndarray]:
    """One record batch → its real tokens back to back and the document ends within them."""
    ids, cus = batch.column(INPUT_IDS), batch.column(CU_SEQLENS)
    id_off = ids.offsets.to_numpy().astype(np.int64)
    values = ids.values.to_numpy(zero_copy_only=False)[id_off[0] : id_off[-1]]
    id_off -= id_off[0]
    cu_off = cus.offsets.to_numpy().astype(np.int64)
    cu_values = cus.values.to_numpy(zero_copy_only=False)[cu_off[0] : cu_off[-1]].astype(np.int64)
    cu_off -= cu_off[0]
    num_pad = batch.column(NUM_PAD).to_numpy(zero_copy_only=False).astype(np.int64)
    real_end = id_off[1:] - num_pad
    last = values[np.clip(real_end - 1, 0, max(values.size - 1, 0))] if values.size else np.zeros(len(num_pad))
    try:
        ends = document_ends(id_off, num_pad, cu_values, cu_off, last, eos_id)
    except InconsistentRowError as exc:
        raise ExportError(f"shard {path}, row {first_row + exc.row}: {CU_SEQLENS} does not match its "
                          f"{INPUT_IDS} and {NUM_PAD}") from None
    pad_rows = np.flatnonzero(num_pad)
    if pad_rows.size:
        delta = np.zeros(values.size + 1, np.int64)
        np.add.at(delta, real_end[pad_rows], 1)
        np.add.at(delta, id_off[pad_rows + 1], -1)
        values = values[np.cumsum(delta[:-1]) == 0]
    return values, ends


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
    width = max(len(k) for k, _ in rows)
    rule = "-" * (width + 2 + max(len(v) for _, v in rows))
    return "\n".join([rule, *(f"{k.ljust(width)}  {v}" for k, v in rows), rule])
