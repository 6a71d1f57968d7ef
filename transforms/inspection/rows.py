"""Rows of a finished output read back for reading: packed rows split at their ``cu_seqlens`` into decoded
segments (prepare), or kept documents (filter)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from schemas import manifest as m
from schemas.documents import DOC_ID, DOC_LINE, DOC_ROW, DOC_SOURCE, DOC_TEXT
from schemas.manifest import E_PATH, E_ROWS
from schemas.options import DEFAULT_MAX_CHARS
from schemas.shards import CU_SEQLENS, MANIFEST_FILE, PACKED_COLUMNS, PackedShard, join_url, open_parquet
from transforms.inspection.output import InspectError, OutputDir
from transforms.inspection.summary import DOC_MARK, plural


@dataclass(frozen=True)
class Segment:
    """One segment of a packed row (a document or a piece of one) between two cu_seqlens offsets."""

    ids: list[int]  # every token id of the segment, BOS and EOS included
    text: str  # the decoded text, without a leading BOS and a trailing EOS
    ends_document: bool  # its last token is EOS (else the document goes on in another row, or was cut)


@dataclass(frozen=True)
class DecodedRow:
    """A packed row read back: where it is, its segments and its padding."""

    index: int  # row index over all shards in manifest order
    shard: str  # the shard's path as the manifest lists it
    row: int  # row within the shard
    seq_len: int
    num_pad: int
    segments: list[Segment]


def row_segments(input_ids: Sequence[int], cu_seqlens: Sequence[int], num_pad: int,
                 decode: Callable[[list[int]], str], eos_id: int | None, bos_id: int | None = None) -> list[Segment]:
    """Split a row at its cu_seqlens and decode each segment (its BOS and EOS are kept in ids, left out of text)."""
    ids = [int(x) for x in input_ids]
    cu = [int(x) for x in cu_seqlens]
    if not cu or cu[0] != 0 or cu[-1] != len(ids) - num_pad or any(b < a for a, b in zip(cu, cu[1:])):
        raise ValueError(f"{CU_SEQLENS} {cu[:8]}... do not match a row of {len(ids)} ids with {num_pad} padding")
    out = []
    for a, b in zip(cu[:-1], cu[1:]):
        seg = ids[a:b]
        ends = bool(seg) and eos_id is not None and seg[-1] == eos_id
        body = seg[:-1] if ends else seg
        if body and bos_id is not None and body[0] == bos_id:
            body = body[1:]
        out.append(Segment(seg, decode(body), ends))
    return out


def shorten(text: str, max_chars: int) -> str:
    """``text`` cut to ``max_chars`` characters with a note of what was left out (0: no limit)."""
    if max_chars <= 0 or len(text) <= max_chars:
        return text
    return f"{text[:max_chars]}… [+{len(text) - max_chars:,} chars]"


def format_row(row: DecodedRow, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """A decoded row for reading: a header, each segment after its ⟦doc N⟧ marker, and a padding note."""
    real = row.seq_len - row.num_pad
    lines = [f"── row {row.index:,}: {row.shard} row {row.row:,} · {row.seq_len:,} tokens: "
             f"{plural(len(row.segments), 'segment')}, {real:,} real, {row.num_pad:,} padding"]
    for n, seg in enumerate(row.segments, 1):
        end = "ends with EOS" if seg.ends_document else "no EOS: the document continues in another row or was cut"
        lines.append(f"{DOC_MARK.format(n=n)} {len(seg.ids):,} tokens, {end}")
        lines.append(shorten(seg.text, max_chars))
    if row.num_pad:
        lines.append(f"⟦padding⟧ {row.num_pad:,} pad tokens end the row")
    return "\n".join(lines)


def pick_rows(total: int, n: int, seed: int | None) -> list[int]:
    """Row indices to show: the first ``n`` (seed None) or ``n`` distinct ones drawn with ``seed``, ascending."""
    n = min(max(n, 0), total)
    if seed is None:
        return list(range(n))
    rng = np.random.Generator(np.random.PCG64(seed))
    return sorted(int(i) for i in rng.choice(total, size=n, replace=False))


def _entries(out: OutputDir) -> list[dict[str, Any]]:
    """The files holding rows: the shards of a prepare output, the document files of a filter output."""
    return out.manifest.get(m.K_SHARDS) if out.packed else out.manifest.get(m.K_DOCUMENTS) or []


class _RowFile:
    """A file holding rows, open for reading them by row group: a shard through the packed-row reader (rows as
    PackedRow), a document file through pyarrow (rows as dicts of ``columns``)."""

    def __init__(self, fs: Any, path: str, packed: bool, columns: list[str] | None) -> None:
        self.columns = columns
        self.shard = self.handle = self.pf = None
        if packed:
            self.shard = PackedShard(fs, path)
            self.starts = self.shard.row_group_starts
            return
        self.pf, self.handle = open_parquet(fs, path)
        self.starts = np.zeros(self.pf.metadata.num_row_groups + 1, np.int64)
        np.cumsum([self.pf.metadata.row_group(g).num_rows for g in range(self.pf.metadata.num_row_groups)],
                  out=self.starts[1:])

    def group(self, g: int) -> Callable[[int], Any]:
        """Row group ``g``: its row k by k."""
        if self.shard is not None:
            return self.shard.read_row_group(g, PACKED_COLUMNS).row
        return self.pf.read_row_group(g, columns=self.columns).to_pylist().__getitem__

    def close(self) -> None:
        for f in (self.shard, self.handle):
            if f is not None:
                f.close()


def read_rows(out: OutputDir, indices: list[int], columns: list[str] | None = None) -> Iterator[tuple[int, dict[
        str, Any], int, Any]]:
    """(index, file entry, row in file, row) for ascending row ``indices`` over the files the manifest lists, in
    manifest order: a shard's rows as ``schemas.shards.PackedRow``, a document file's as dicts of ``columns``
    (None: all)."""
    entries = _entries(out)
    starts = np.zeros(len(entries) + 1, np.int64)
    np.cumsum([int(e.get(E_ROWS) or 0) for e in entries], out=starts[1:])
    wanted: dict[int, list[int]] = {}
    for i in indices:
        f = int(np.searchsorted(starts, i, side="right")) - 1
        wanted.setdefault(f, []).append(i)
    for f, rows in sorted(wanted.items()):
        entry = entries[f]
        fs, path = out.locate(entry[E_PATH])
        try:
            file = _RowFile(fs, path, out.packed, columns)
            try:
                group_starts = file.starts
                cached: tuple[int, Callable[[int], Any]] | None = None
                for i in rows:
                    r = i - int(starts[f])
                    g = int(np.searchsorted(group_starts, r, side="right")) - 1
                    if g >= len(group_starts) - 1:
                        raise InspectError(f"{entry[E_PATH]} has {int(group_starts[-1]):,} rows, fewer than the "
                                           f"manifest's {entry.get(E_ROWS)}: run --verify")
                    if cached is None or cached[0] != g:
                        cached = (g, file.group(g))
                    yield i, entry, r, cached[1](r - int(group_starts[g]))
            finally:
                file.close()
        except FileNotFoundError:
            raise InspectError(f"{entry[E_PATH]} listed in the manifest is missing from {out.url}: run --verify") \
                from None
        except (OSError, ValueError) as exc:
            if isinstance(exc, InspectError):
                raise
            raise InspectError(f"{entry[E_PATH]} cannot be read ({exc}): run --verify") from exc


def total_rows(out: OutputDir) -> int:
    """Rows (packed rows or documents) the manifest lists."""
    return sum(int(e.get(E_ROWS) or 0) for e in _entries(out))


def decoded_rows(out: OutputDir, indices: list[int], decode: Callable[[list[int]], str]) -> Iterator[DecodedRow]:
    """Packed rows at ``indices`` (ascending), each split into decoded segments."""
    tok = out.manifest.get(m.K_TOKENIZER) or {}
    for i, entry, r, row in read_rows(out, indices):
        try:
            segments = row_segments(row.input_ids, row.cu_seqlens, row.num_pad, decode, tok.get(m.T_EOS_ID),
                                    tok.get(m.T_BOS_ID))
        except ValueError as exc:
            raise InspectError(f"{entry[E_PATH]} row {r}: {exc}: run --verify") from exc
        yield DecodedRow(i, entry[E_PATH], r, len(row.input_ids), row.num_pad, segments)


def format_document(index: int, entry: dict[str, Any], row: int, doc: dict[str, Any], max_chars: int) -> str:
    """A kept document of a filter output for reading: a header naming its file and origin, then its text."""
    where = doc.get(DOC_SOURCE) or "?"
    if doc.get(DOC_LINE) is not None:
        where += f":{doc[DOC_LINE]}"
    elif doc.get(DOC_ROW) is not None:
        where += f" row {doc[DOC_ROW]}"
    text = doc.get(DOC_TEXT) or ""
    return (f"── document {index:,}: {entry[E_PATH]} row {row:,} · id {doc.get(DOC_ID)!r} from {where}, "
            f"{len(text):,} chars\n{shorten(text, max_chars)}")


def load_decoder(out: OutputDir, override: str | None = None) -> tuple[Callable[[list[int]], str], str | None]:
    """The decode function of the output's tokenizer (``override``: another path to the same tokenizer), and a
    warning when the file is not the one the manifest records (sha256 differs)."""
    import fsspec

    tok = out.manifest.get(m.K_TOKENIZER) or {}
    path = override or tok.get(m.T_PATH)
    option = "--tokenizer" if override else f"the tokenizer recorded in {join_url(out.url, MANIFEST_FILE)}"
    if not path:
        raise InspectError(f"{join_url(out.url, MANIFEST_FILE)} records no tokenizer path: pass --tokenizer PATH")
    try:
        with fsspec.open(path, "rb") as fh:
            data = fh.read()
    except (OSError, ValueError) as exc:
        raise InspectError(f"{option} {path!r} cannot be read ({exc}); pass --tokenizer PATH to the same "
                           "tokenizer file") from exc
    warning = None
    if tok.get(m.T_SHA256) and hashlib.sha256(data).hexdigest() != tok[m.T_SHA256]:
        warning = (f"warning: {path} is not the tokenizer the shards were made with (its sha256 differs from the "
                   f"manifest's {tok[m.T_SHA256][:16]}...): the text below may be wrong")
    try:
        if tok.get(m.T_FORMAT) == "tiktoken":
            import tiktoken

            from transforms.tokenize.tokenizer import tiktoken_definition

            enc = tiktoken.Encoding(**tiktoken_definition(path, data, tok.get(m.T_TIKTOKEN_SCHEME)))
            return (lambda ids: enc.decode_bytes(ids).decode("utf-8", "replace")), warning
        from tokenizers import Tokenizer

        hf = Tokenizer.from_str(data.decode("utf-8"))
        return (lambda ids: hf.decode(ids, skip_special_tokens=False)), warning
    except Exception as exc:  # tokenizers and tiktoken raise plain Exception subclasses for unusable files
        raise InspectError(f"{option} {path!r} is not a loadable {tok.get(m.T_FORMAT) or 'hf'} tokenizer ({exc}); "
                           "pass --tokenizer PATH to the same tokenizer file") from exc
