"""Documents rebuilt from a finished ``tokenmill prepare`` output's packed shards, for ``export-megatron``.

Documents are rebuilt from the shards' real tokens (padding dropped) in manifest shard order and row order: a
document ends at every segment boundary inside a row (``cu_seqlens``) and at the end of a row whose last real token
is EOS. Inside a row this is exact even when a text contains the EOS token's text (which the tokenizer turns into
the EOS id); a document is only cut wrongly when such an id falls on the last token of a row. Real tokens after the
last document end (a truncated stream) are exported as one more, incomplete, document. Packings that store the
pieces of a cut document apart (best-fit, decompose) cannot be put back together and are refused unless no
document was cut.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from schemas import manifest as m
from schemas.manifest import E_PATH, E_TOKENS
from schemas.shards import (
    CU_SEQLENS,
    INPUT_IDS,
    MANIFEST_FILE,
    NUM_PAD,
    PACKED_COLUMNS,
    PackedBatch,
    join_url,
    open_packed_shard,
    read_output_manifest,
)
from transforms.export.megatron import ExportError

CONCAT = "concat"  # the packing whose token stream is the documents in order
DOCS_SPLIT = "docs_split"  # counts: documents whose tokens are in more than one row
TOKENS_DROPPED = "tokens_dropped"  # counts: decompose remainders left out of the shards


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


def load_packed_source(out_dir: str) -> PackedSource:
    """Read and check OUT_DIR's manifest: a finished ``tokenmill prepare`` output with token shards."""
    _, _, manifest = read_output_manifest(out_dir, "OUT_DIR", ExportError)
    return packed_source(manifest, out_dir)


def packed_source(manifest: dict[str, Any], out_dir: str) -> PackedSource:
    """The shard list and token facts of a parsed manifest (``out_dir`` resolves its relative shard paths)."""
    where = join_url(out_dir, MANIFEST_FILE)
    if manifest.get(m.K_FORMAT) == m.DOCUMENTS_FORMAT or (m.K_DOCUMENTS in manifest and m.K_SHARDS not in manifest):
        raise ExportError(
            f"OUT_DIR {out_dir!r} is a tokenmill filter output (documents, no token shards): run tokenmill prepare "
            f"--input {join_url(out_dir, 'documents/')} on it first and export that"
        )
    tokenizer = manifest.get(m.K_TOKENIZER)
    shards = manifest.get(m.K_SHARDS)
    if not isinstance(tokenizer, dict) or not isinstance(shards, list):
        raise ExportError(f"{where} lists no token shards or tokenizer: not a tokenmill prepare output")
    eos_id = tokenizer.get(m.T_EOS_ID)
    if not isinstance(eos_id, int):
        raise ExportError(f"{where}: the tokenizer section has no {m.T_EOS_ID}")
    check_packing(manifest, out_dir)
    paths, tokens = [], []
    for i, shard in enumerate(shards):
        rel = shard.get(E_PATH) if isinstance(shard, dict) else None
        if not isinstance(rel, str) or not rel or rel.startswith("/") or "://" in rel:
            raise ExportError(f"{where}: shard {i} has no relative path ({shard!r})")
        paths.append(join_url(out_dir, rel))
        tokens.append(shard.get(E_TOKENS) if isinstance(shard.get(E_TOKENS), int) else None)
    vocab, seq_len = tokenizer.get(m.T_VOCAB_SIZE), manifest.get(m.K_SEQ_LEN)
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
    if batch_rows is None:
        batch_rows = max(1, (1 << 20) // max(1, source.seq_len or 1024))  # about a million tokens per batch
    for path, expected in zip(source.shards, source.shard_tokens):
        seen = 0
        try:
            with open_packed_shard(path) as shard:
                if shard.missing_columns:
                    raise ExportError(f"shard {path}: no column {', '.join(sorted(shard.missing_columns))}")
                for batch in shard.iter_batches(batch_rows, PACKED_COLUMNS):
                    tokens, ends = _block(batch, source.eos_id, path)
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


def _block(batch: PackedBatch, eos_id: int, path: str) -> tuple[np.ndarray, np.ndarray]:
    """One batch of rows → its real tokens back to back and the document ends within them."""
    id_off, values = batch.ids_offsets, batch.input_ids
    cu_off, cu_values = batch.cu_offsets, batch.cu_seqlens.astype(np.int64)
    num_pad = batch.num_pad.astype(np.int64)
    real_end = id_off[1:] - num_pad
    last = values[np.clip(real_end - 1, 0, max(values.size - 1, 0))] if values.size else np.zeros(len(num_pad))
    try:
        ends = document_ends(id_off, num_pad, cu_values, cu_off, last, eos_id)
    except InconsistentRowError as exc:
        raise ExportError(f"shard {path}, row {batch.first_row + exc.row}: {CU_SEQLENS} does not match its "
                          f"{INPUT_IDS} and {NUM_PAD}") from None
    pad_rows = np.flatnonzero(num_pad)
    if pad_rows.size:
        delta = np.zeros(values.size + 1, np.int64)
        np.add.at(delta, real_end[pad_rows], 1)
        np.add.at(delta, id_off[pad_rows + 1], -1)
        values = values[np.cumsum(delta[:-1]) == 0]
    return values, ends
