"""Verification of a finished prepare or filter output: every file and total against what the manifest records.

It recomputes, for each file the manifest lists: that it exists, its size and sha256 (shards, document files and
the dedup index's), its rows (shards, document files) or records (rejected/ and modified/ files); for shards, every row's
length, ``cu_seqlens`` and padding, and the shard's real and padding tokens. Then the totals: the shards' rows,
real tokens and padding against ``counts.sequences``, ``counts.tokens`` and ``counts.pad_tokens`` (``tokens``
counts what the shards hold, EOS/BOS included, padding and dropped decompose remainders excluded), the document
files' rows against ``counts.docs_written`` (plus the documents packing rejected as too short, which prepare writes
before packing), the rejected records per reason against ``counts.docs_rejected``, ``records == docs_written +
Σ docs_rejected``, the ``packing_stats`` and ``dedup`` sections recomputed from the files and counts, the
``sources`` section against the totals (each field summed over the sources), and files under the result
directories that the manifest does not list.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from schemas import manifest as m
from schemas.documents import DOC_ID, DOC_SOURCE, DOC_TEXT
from schemas.manifest import E_BYTES, E_PAD_TOKENS, E_PATH, E_RECORDS, E_ROWS, E_SEQ_LEN, E_SHA256, E_TOKENS, Counts
from schemas.shards import (
    CU_SEQLENS,
    INPUT_IDS,
    LOSS_MASK,
    MANIFEST_FILE,
    NUM_PAD,
    REJECTED_DIR,
    PackedBatch,
    PackedShard,
)
from transforms.inspection.output import OutputDir
from transforms.inspection.summary import manifest_counts, plain_value
from transforms.output.guard import walk

HASH_CHUNK = 8 << 20  # bytes read at a time while hashing a file
BATCH_ROWS = 1024  # rows decoded at a time while checking a shard


@dataclass(frozen=True)
class Problem:
    """One mismatch: the file (or manifest.json), what was checked, what the manifest expects and what was found."""

    file: str
    what: str
    expected: Any
    found: Any

    def __str__(self) -> str:
        return f"{self.file}: {self.what}: expected {self.expected}, found {self.found}"


@dataclass
class _Found:
    """What a shard or document file holds, as recomputed."""

    rows: int
    tokens: int = 0
    pad_tokens: int = 0


def file_digest(fs: Any, path: str) -> tuple[int, str]:
    """(size, sha256 hex) of a file, read in chunks."""
    h = hashlib.sha256()
    size = 0
    with fs.open(path, "rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


def _unreachable(rel: str, exc: OSError) -> Problem:
    """The problem of a listed file that is missing or cannot be read."""
    if isinstance(exc, FileNotFoundError):
        return Problem(rel, "file", "present (listed in the manifest)", "missing")
    return Problem(rel, "file", "readable", f"unreadable ({exc})")


def _check_bytes(out: OutputDir, entry: dict[str, Any], problems: list[Problem]) -> bool:
    """Existence, size and sha256 of a listed file; False when it is missing or unreadable."""
    rel = entry[E_PATH]
    fs, path = out.locate(rel)
    try:
        size, sha = file_digest(fs, path)
    except OSError as exc:
        problems.append(_unreachable(rel, exc))
        return False
    if E_BYTES in entry and size != entry[E_BYTES]:
        problems.append(Problem(rel, E_BYTES, entry[E_BYTES], size))
    if E_SHA256 in entry and sha != entry[E_SHA256]:
        problems.append(Problem(rel, E_SHA256, entry[E_SHA256], sha))
    return True


def _bad_rows(problems: list[Problem], rel: str, what: str, bad: np.ndarray, first_row: int,
              expected: Any, found: Any) -> None:
    """Report rows of a batch that fail a check: the first one, and how many."""
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        more = int(bad.sum()) - 1
        problems.append(Problem(rel, f"row {first_row + k}: {what}" + (f" (and {more} more rows)" if more else ""),
                                expected(k) if callable(expected) else expected,
                                found(k) if callable(found) else found))


def check_shard(out: OutputDir, entry: dict[str, Any], problems: list[Problem]) -> _Found | None:
    """Rows of one shard against its seq_len and the tokenizer's pad id; its rows and tokens against the entry."""
    rel = entry[E_PATH]
    seq_len = entry.get(E_SEQ_LEN, out.manifest.get(m.K_SEQ_LEN))
    tok = out.manifest.get(m.K_TOKENIZER) or {}
    pad_id, vocab = tok.get(m.T_PAD_ID), tok.get(m.T_VOCAB_SIZE)
    fs, path = out.locate(rel)
    found = _Found(0)
    try:
        with PackedShard(fs, path) as shard:
            if shard.missing_columns:
                problems.append(Problem(rel, "columns", f"{INPUT_IDS}, {CU_SEQLENS}, {NUM_PAD}",
                                        f"no {', '.join(shard.missing_columns)}"))
                return None
            if shard.num_rows != entry.get(E_ROWS):
                problems.append(Problem(rel, E_ROWS, entry.get(E_ROWS), shard.num_rows))
            for batch in shard.iter_batches(BATCH_ROWS):  # with the loss mask when the shard has one
                _check_rows(batch, found.rows, seq_len, pad_id, vocab, rel, problems, found)
                found.rows += batch.rows
    except (OSError, ValueError) as exc:  # a truncated or damaged Parquet file
        problems.append(Problem(rel, "Parquet contents", "a readable shard", f"unreadable ({exc})"))
        return None
    for key, value in ((E_TOKENS, found.tokens), (E_PAD_TOKENS, found.pad_tokens)):
        if key in entry and entry[key] != value:
            problems.append(Problem(rel, key, entry[key], value))
    return found


def _check_rows(batch: PackedBatch, first: int, seq_len: int | None, pad_id: int | None, vocab: int | None,
                rel: str, problems: list[Problem], found: _Found) -> None:
    """One batch of shard rows: lengths, cu_seqlens, padding, token ids and loss mask; adds its tokens to found."""
    pads = batch.num_pad.astype(np.int64)
    ids_off = batch.ids_offsets
    ids_flat = batch.input_ids
    lens = np.diff(ids_off)
    real = lens - pads
    found.tokens += int(np.clip(real, 0, None).sum())
    found.pad_tokens += int(pads.sum())
    if seq_len is not None:
        _bad_rows(problems, rel, f"{INPUT_IDS} length", lens != seq_len, first, seq_len, lambda k: int(lens[k]))
    _bad_rows(problems, rel, NUM_PAD, (pads < 0) | (real < 0), first, f"0..{seq_len}", lambda k: int(pads[k]))
    cu_off = batch.cu_offsets
    cu_vals = batch.cu_seqlens.astype(np.int64)
    counts = np.diff(cu_off)
    empty = counts < 1
    _bad_rows(problems, rel, CU_SEQLENS, empty, first, "at least one offset", "none")
    ok = ~empty
    if ok.any():
        firsts = np.where(ok, cu_vals[np.minimum(cu_off[:-1], max(cu_vals.size - 1, 0))], 0)
        lasts = np.where(ok, cu_vals[np.maximum(cu_off[1:] - 1, 0)], 0)
        _bad_rows(problems, rel, f"{CU_SEQLENS} start", ok & (firsts != 0), first, 0, lambda k: int(firsts[k]))
        _bad_rows(problems, rel, f"{CU_SEQLENS} end (row length - {NUM_PAD})", ok & (lasts != real), first,
                  lambda k: int(real[k]), lambda k: int(lasts[k]))
        down = np.zeros(cu_vals.size, bool)
        down[1:] = np.diff(cu_vals) < 0
        down[cu_off[:-1][ok]] = False  # a row's first offset follows another row's
        rows_of = np.repeat(np.arange(len(counts)), counts)
        _bad_rows(problems, rel, f"{CU_SEQLENS} order", np.bincount(rows_of[down], minlength=len(counts)) > 0,
                  first, "ascending offsets", "a decreasing offset")
    position = np.arange(ids_flat.size, dtype=np.int64) - np.repeat(ids_off[:-1], lens)
    in_pad = position >= np.repeat(real, lens)
    rows_of_ids = np.repeat(np.arange(len(lens)), lens)
    if pad_id is not None:
        wrong = in_pad & (ids_flat != pad_id)
        _bad_rows(problems, rel, "padding", np.bincount(rows_of_ids[wrong], minlength=len(lens)) > 0, first,
                  f"pad id {pad_id}", "other ids")
    if vocab is not None:
        big = ids_flat >= vocab
        _bad_rows(problems, rel, "token ids", np.bincount(rows_of_ids[big], minlength=len(lens)) > 0, first,
                  f"below the vocabulary size {vocab}", "larger ids")
    if batch.loss_mask is not None:
        mask_lens = np.diff(batch.loss_offsets)
        _bad_rows(problems, rel, f"{LOSS_MASK} length", mask_lens != lens, first, lambda k: int(lens[k]),
                  lambda k: int(mask_lens[k]))
        if np.array_equal(mask_lens, lens):
            on_pad = in_pad & (batch.loss_mask != 0)
            _bad_rows(problems, rel, f"{LOSS_MASK} on padding", np.bincount(rows_of_ids[on_pad], minlength=len(lens))
                      > 0, first, 0, 1)


def check_document_file(out: OutputDir, entry: dict[str, Any], problems: list[Problem]) -> _Found | None:
    """A document file's row count (Parquet footer) against its entry."""
    import pyarrow.parquet as pq

    rel = entry[E_PATH]
    fs, path = out.locate(rel)
    try:
        with fs.open(path, "rb") as fh:
            pf = pq.ParquetFile(fh)
            missing = [c for c in (DOC_ID, DOC_TEXT, DOC_SOURCE) if c not in pf.schema_arrow.names]
            rows = pf.metadata.num_rows
    except (OSError, ValueError) as exc:
        problems.append(Problem(rel, "Parquet contents", "a readable document file", f"unreadable ({exc})"))
        return None
    if missing:
        problems.append(Problem(rel, "columns", f"{DOC_ID}, {DOC_TEXT}, {DOC_SOURCE}", f"no {', '.join(missing)}"))
    if rows != entry.get(E_ROWS):
        problems.append(Problem(rel, E_ROWS, entry.get(E_ROWS), rows))
    return _Found(rows)


def rejection_key(record: dict[str, Any]) -> str:
    """The counts.docs_rejected key a rejected/ record is counted under: its reason for read rejections, the
    filter's "<stage>/<reason>" (its detail) for filter rejections, "<stage>/<reason>" for the other stages."""
    stage, reason = record.get(m.REJ_STAGE), record.get(m.REJ_REASON)
    if stage in (None, m.STAGE_READ):
        return str(reason)
    if stage == m.STAGE_FILTER and "/" in str(record.get(m.REJ_DETAIL, "")):
        return str(record[m.REJ_DETAIL])
    return f"{stage}/{reason}"


def check_jsonl_file(out: OutputDir, entry: dict[str, Any], problems: list[Problem],
                     keys: dict[str, int] | None = None) -> int | None:
    """A rejected/ or modified/ file's records against its entry; counts each record's rejection key into keys."""
    rel = entry[E_PATH]
    fs, path = out.locate(rel)
    n = 0
    try:
        with fs.open(path, "rb") as fh:
            for line_no, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                n += 1
                if keys is None:
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    problems.append(Problem(rel, f"line {line_no}", "a JSON record", line[:60]))
                    continue
                key = rejection_key(record) if isinstance(record, dict) else "?"
                keys[key] = keys.get(key, 0) + 1
    except OSError as exc:
        problems.append(_unreachable(rel, exc))
        return None
    if E_RECORDS in entry and n != entry[E_RECORDS]:
        problems.append(Problem(rel, E_RECORDS, entry[E_RECORDS], n))
    return n


def verify_output(out: OutputDir) -> list[Problem]:
    """Every mismatch between the output's files and its manifest (empty: consistent); see the module docstring."""
    from transforms.output.commit import dedup_summary, packing_stats

    man = out.manifest
    problems: list[Problem] = []
    c = manifest_counts(man)
    where = MANIFEST_FILE
    rejected_total = sum(c["docs_rejected"].values())
    if c["records"] != c["docs_written"] + rejected_total:
        problems.append(Problem(where, "counts.records (docs_written + Σ docs_rejected)",
                                c["docs_written"] + rejected_total, c["records"]))
    listed: set[str] = set()

    if out.packed:
        found_shards = []
        for entry in man[m.K_SHARDS]:
            listed.add(entry[E_PATH])
            found = check_shard(out, entry, problems) if _check_bytes(out, entry, problems) else None
            # a missing or unreadable shard is reported once; the totals go on with what the manifest lists for it
            found_shards.append({**entry, E_ROWS: found.rows, E_TOKENS: found.tokens,
                                 E_PAD_TOKENS: found.pad_tokens} if found else entry)
        for field, key in (("sequences", E_ROWS), ("tokens", E_TOKENS), ("pad_tokens", E_PAD_TOKENS)):
            total = sum(int(s.get(key) or 0) for s in found_shards)
            if c[field] != total:
                problems.append(Problem(where, f"counts.{field} (the shards' {'rows' if key == E_ROWS else key})",
                                        c[field], total))
        stats = man.get(m.K_PACKING_STATS)
        if isinstance(stats, dict):
            again = packing_stats(Counts.from_dict(c), found_shards)
            for key, value in again.items():
                if stats.get(key) != value:
                    problems.append(Problem(where, f"{m.K_PACKING_STATS}.{key}", plain_value(stats.get(key)),
                                            plain_value(value)))
        lengths = (man.get(m.K_PACKING_SETTINGS) or {}).get(m.K_LENGTHS)
        for s in man[m.K_SHARDS]:
            if lengths and s.get(E_SEQ_LEN) not in lengths:
                problems.append(Problem(s[E_PATH], E_SEQ_LEN, f"one of {lengths}", s.get(E_SEQ_LEN)))

    documents = man.get(m.K_DOCUMENTS)
    if isinstance(documents, list):
        rows = 0
        for entry in documents:
            listed.add(entry[E_PATH])
            found = check_document_file(out, entry, problems) if _check_bytes(out, entry, problems) else None
            rows += found.rows if found else int(entry.get(E_ROWS) or 0)
        # prepare writes a document before packing may reject it as too short for decompose
        packed_out = sum(v for k, v in c["docs_rejected"].items() if k.startswith(f"{m.STAGE_PACK}/"))
        if documents or man.get(m.K_FORMAT) == m.DOCUMENTS_FORMAT:
            if rows != c["docs_written"] + packed_out:
                what = "counts.docs_written (the document files' rows" + (
                    f" less {packed_out:,} rejected by packing)" if packed_out else ")")
                problems.append(Problem(where, what, c["docs_written"], rows - packed_out))

    keys: dict[str, int] = {}
    complete = True  # every rejected file was read: the per-reason totals can be recounted
    for entry in man.get(m.K_REJECTED) or []:
        listed.add(entry[E_PATH])
        complete &= check_jsonl_file(out, entry, problems, keys) is not None
    if complete:
        for key in sorted(set(keys) | set(c["docs_rejected"])):
            if keys.get(key, 0) != c["docs_rejected"].get(key, 0):
                problems.append(Problem(where, f"counts.docs_rejected[{key!r}] (records in {REJECTED_DIR}/)",
                                        c["docs_rejected"].get(key, 0), keys.get(key, 0)))
    for entry in man.get(m.K_MODIFIED) or []:
        listed.add(entry[E_PATH])
        check_jsonl_file(out, entry, problems)

    sources = man.get(m.K_SOURCES)
    if isinstance(sources, dict):  # older manifests have none
        totals = {f: c[f] for f in m.SOURCE_FIELDS if f != "docs_rejected"} | {"docs_rejected": rejected_total}
        for f in m.SOURCE_FIELDS:
            total = sum(int(row.get(f) or 0) for row in sources.values())
            if total != totals[f]:
                what = "Σ docs_rejected" if f == "docs_rejected" else f
                problems.append(Problem(where, f"counts.{what} (summed over {m.K_SOURCES})", totals[f], total))

    dedup = man.get(m.K_DEDUP)
    if isinstance(dedup, dict):
        again = dedup_summary(Counts.from_dict(c), man.get(m.K_RECIPE))
        for key, value in again.items():
            if dedup.get(key) != value:
                problems.append(Problem(where, f"{m.K_DEDUP}.{key}", value, dedup.get(key)))

    index = man.get(m.K_DEDUP_INDEX)
    for entry in (index.get(m.DI_FILES) or []) if isinstance(index, dict) else []:  # dedup.save_index: bytes, sha256
        listed.add(entry[E_PATH])
        _check_bytes(out, entry, problems)

    listed |= {MANIFEST_FILE, m.REPORT_HTML}
    for rel, link in sorted(walk(out.fs, out.root)):  # every file anywhere: top level, temp folder, symlinks
        if rel not in listed:
            what = "symbolic link" if link else "file"
            problems.append(Problem(rel, f"{what} the manifest does not list", f"no such {what}", "present"))
    return problems
