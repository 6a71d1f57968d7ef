"""Looking inside a finished prepare or filter output: a summary of its manifest, packed rows decoded into their
document segments, and a verification of every file and total against what the manifest records.

Verification recomputes, for each file the manifest lists: that it exists, its size and sha256 (shards and document
files), its rows (shards, document files) or records (rejected/ and modified/ files); for shards, every row's
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
import posixpath
import shlex
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from schemas import manifest as m
from schemas.documents import DOC_ID, DOC_LINE, DOC_ROW, DOC_SOURCE, DOC_TEXT
from schemas.manifest import Counts
from schemas.shards import (
    CU_SEQLENS,
    INPUT_IDS,
    LOSS_MASK,
    MANIFEST_FILE,
    NUM_PAD,
    REJECTED_DIR,
    read_output_manifest,
)
from transforms.output.guard import walk
from transforms.report.summary import summary_table
from transforms.errors import TokenmillError

# Keys of a file entry in the manifest, as the commit step writes them.
E_PATH, E_ROWS, E_BYTES, E_SHA256 = "path", "rows", "bytes", "sha256"
E_TOKENS, E_PAD_TOKENS, E_RECORDS, E_SEQ_LEN, E_BUCKET = "tokens", "pad_tokens", "records", "seq_len", "bucket"
K_PADDING_FRACTION = "padding_fraction"

HASH_CHUNK = 8 << 20  # bytes read at a time while hashing a file
BATCH_ROWS = 1024  # rows decoded at a time while checking a shard
DEFAULT_MAX_CHARS = 400
DOC_MARK = "⟦doc {n}⟧"  # printed before each segment of a decoded row


class InspectError(TokenmillError, ValueError):
    """A problem with OUTPUT_DIR, --tokenizer, --rows or --seed that stops the inspection."""


@dataclass(frozen=True)
class OutputDir:
    """A finished prepare or filter output: its location, filesystem and manifest."""

    url: str
    fs: Any  # fsspec.AbstractFileSystem
    root: str
    manifest: dict[str, Any]

    @property
    def packed(self) -> bool:
        """Whether it holds token shards (a prepare output)."""
        return isinstance(self.manifest.get(m.K_SHARDS), list)

    def locate(self, rel: str) -> tuple[Any, str]:
        """(filesystem, path) of a path the manifest lists (relative to the directory, or an absolute URL/path)."""
        if "://" in rel:
            from fsspec.core import url_to_fs

            return url_to_fs(rel)
        return self.fs, rel if rel.startswith("/") else posixpath.join(self.root, rel)


def open_output(url: str) -> OutputDir:
    """Read OUTPUT_DIR's manifest (local path or fsspec URL); InspectError says what is wrong with it."""
    fs, root, manifest = read_output_manifest(url, "OUTPUT_DIR", InspectError)
    fmt = manifest.get(m.K_FORMAT)
    if fmt not in (m.MANIFEST_FORMAT, m.DOCUMENTS_FORMAT):
        raise InspectError(f"{_join(url, MANIFEST_FILE)} has format {fmt!r}, expected {m.MANIFEST_FORMAT!r} "
                           f"(tokenmill prepare) or {m.DOCUMENTS_FORMAT!r} (tokenmill filter)")
    if not isinstance(manifest.get(m.K_COUNTS), dict):
        raise InspectError(f"{_join(url, MANIFEST_FILE)} has no {m.K_COUNTS!r} section")
    return OutputDir(url, fs, root, manifest)


# -- summary ----------------------------------------------------------------------------------------------------------

def _counts(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest's counts with every field present (older manifests lack some)."""
    known = Counts().totals()
    return {**known, **{k: v for k, v in manifest.get(m.K_COUNTS, {}).items() if k in known}}


def _size(n: int | float) -> str:
    """Bytes as '12.3 MB' / '4.5 kB' / '17 B'."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n:,.0f} B"


def plural(n: int, word: str) -> str:
    """'1 file', '2 files', '1,024 rows'."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _kv_table(rows: list[tuple[str, str]]) -> str:
    """Key/value lines aligned like the end-of-run summary."""
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}".rstrip() for k, v in rows)


def _file_groups(entries: list[dict[str, Any]], unit: str) -> list[tuple[str, str]]:
    """One line for a list of files (count, bytes, rows or records), and one per subdirectory when there are several."""
    def line(items: list[dict[str, Any]]) -> str:
        size = sum(e.get(E_BYTES) or 0 for e in items)
        n = sum(e.get(E_ROWS, e.get(E_RECORDS)) or 0 for e in items)
        return plural(len(items), "file") + (f", {_size(size)}" if size else "") + f", {plural(n, unit)}"

    rows = [("", line(entries))]
    by_dir: dict[str, list[dict[str, Any]]] = {}
    for e in entries:
        by_dir.setdefault(posixpath.dirname(str(e.get(E_PATH, ""))), []).append(e)
    if len(by_dir) > 1:
        rows += [(f"  {d}/", line(items)) for d, items in sorted(by_dir.items())]
    return rows


def summary_text(manifest: dict[str, Any], output: str, max_inputs: int = 5) -> str:
    """A human summary of a prepare or filter output's manifest: job, inputs, tokenizer, packing, counts, files,
    and the dedup and selection sections when present."""
    packed = isinstance(manifest.get(m.K_SHARDS), list)
    job = manifest.get(m.K_JOB) or {}
    argv = job.get("argv")
    head: list[tuple[str, str]] = [
        ("output", f"{output.rstrip('/')}  (tokenmill {'prepare: token shards' if packed else 'filter: documents'})"),
        ("format", f"{manifest.get(m.K_FORMAT)}, written by tokenmill {manifest.get(m.K_VERSION, '?')}"),
        ("job", shlex.join(argv) if isinstance(argv, list) else str(job.get("command", "?"))),
        ("fingerprint", str(manifest.get(m.K_FINGERPRINT))),
    ]
    inputs = manifest.get(m.K_INPUTS) or []
    total = sum(i.get("size") or 0 for i in inputs)
    head.append(("inputs", f"{plural(len(inputs), 'file')}, {_size(total)}"))
    for i in inputs[:max_inputs]:
        comp = f", {i['compression']}" if i.get("compression") else ""
        head.append(("", f"  {i.get('url')} ({i.get('format')}{comp}, {_size(i.get('size') or 0)})"))
    if len(inputs) > max_inputs:
        head.append(("", f"  ... and {len(inputs) - max_inputs:,} more"))
    runner = manifest.get(m.K_RUNNER) or {}
    if runner:
        head.append(("runner", f"{runner.get('runner')}, {runner.get('workers')} worker(s)"))
    recipe = manifest.get(m.K_RECIPE)
    if recipe:
        stages = [f.get("name") for f in recipe.get("filters", [])]
        head.append(("recipe", f"{recipe.get('name')} (engine {recipe.get('engine')}; filters: "
                               f"{', '.join(map(str, stages)) or 'none'})"))
    if packed:
        tok = manifest.get(m.K_TOKENIZER) or {}
        sha = str(tok.get("sha256") or "?")
        head.append(("tokenizer", f"{tok.get('path')} ({tok.get('format')}, sha256 {sha[:16]}...)"))
        head.append(("", f"  vocab {tok.get('vocab_size')}, eos_id {tok.get('eos_id')}, pad_id {tok.get('pad_id')}, "
                         f"bos_id {tok.get('bos_id')}, backend {tok.get('backend')}"))
        head.append(("seq_len", str(manifest.get(m.K_SEQ_LEN))))
        settings = {k: v for k, v in (manifest.get(m.K_PACKING_SETTINGS) or {}).items() if k != "name"}
        head.append(("packing", f"{manifest.get(m.K_PACKING, 'concat')}"
                                + (f" ({', '.join(f'{k} {v}' for k, v in settings.items())})" if settings else "")))
    manifest_full = dict(manifest, **{m.K_COUNTS: _counts(manifest)})
    blocks = [_kv_table(head), summary_table(manifest_full, output)]

    files: list[tuple[str, str]] = []
    for key, unit in ((m.K_SHARDS, "row"), (m.K_DOCUMENTS, "document"), (m.K_REJECTED, "record"),
                      (m.K_MODIFIED, "record")):
        entries = manifest.get(key)
        if isinstance(entries, list) and (entries or key in (m.K_SHARDS, m.K_DOCUMENTS)):
            groups = _file_groups(entries, unit)
            files.append((f"{key}/", groups[0][1]))
            files += groups[1:]
    if files:
        blocks.append("files\n" + _indent(_kv_table(files)))

    stats = manifest.get(m.K_PACKING_STATS) or {}
    if isinstance(stats.get("lengths"), dict):
        curriculum = stats.get("curriculum") or {}
        mult, odds = curriculum.get("batch_multipliers", {}), curriculum.get("sampling_odds", {})
        lines = [(f"len {n}", f"{v.get('sequences', 0):,} sequences, {v.get('tokens', 0):,} tokens; batch x"
                              f"{mult.get(n, '?')}, sampling odds {odds.get(n, '?')}")
                 for n, v in stats["lengths"].items()]
        blocks.append("decompose lengths\n" + _indent(_kv_table(lines)))
    dedup = manifest.get(m.K_DEDUP)
    if isinstance(dedup, dict):
        blocks.append("dedup\n" + _indent(_kv_table([(k, _plain(v)) for k, v in dedup.items()])))
    selection = manifest.get(m.K_SELECTION)
    if isinstance(selection, dict):
        blocks.append("selection\n" + _indent(_kv_table(_selection_lines(selection))))
    return "\n\n".join(blocks)


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def _plain(value: Any) -> str:
    """A manifest value on one line: numbers with separators, dicts as 'k v, k v'."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.6g}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_plain(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_plain(v) for v in value)
    return str(value)


def _selection_lines(selection: dict[str, Any]) -> list[tuple[str, str]]:
    """The selection section: what was selected, candidates, buckets, upsampling, score quantiles, cut-points."""
    rows: list[tuple[str, str]] = []
    for key in ("selection", "candidates", "selected"):
        if key in selection:
            rows.append((key, _plain(selection[key])))
    for key in ("buckets", "upsampled"):
        for bucket, value in (selection.get(key) or {}).items():
            rows.append((f"{key[:-1] if key == 'buckets' else key} {bucket}", _plain(value)))
    for scorer, q in (selection.get("scores") or {}).items():
        rows.append((f"score {scorer}", _plain(q)))
    for scorer, cuts in (selection.get("cut_points") or {}).items():
        rows.append((f"cut points {scorer}", _plain(cuts)))
    known = {"selection", "candidates", "selected", "buckets", "upsampled", "scores", "cut_points"}
    rows += [(k, _plain(v)) for k, v in selection.items() if k not in known]
    return rows or [("", "(empty)")]


# -- reading rows -----------------------------------------------------------------------------------------------------

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


def read_rows(out: OutputDir, indices: list[int], columns: list[str] | None) -> Iterator[tuple[int, dict[str, Any], int,
                                                                                          dict[str, Any]]]:
    """(index, file entry, row in file, row as a dict of ``columns``) for ascending row ``indices`` over the files
    the manifest lists (shards or document files), in manifest order."""
    import pyarrow.parquet as pq

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
            with fs.open(path, "rb") as fh:
                pf = pq.ParquetFile(fh)
                group_starts = np.zeros(pf.metadata.num_row_groups + 1, np.int64)
                np.cumsum([pf.metadata.row_group(g).num_rows for g in range(pf.metadata.num_row_groups)],
                          out=group_starts[1:])
                cached: tuple[int, list[dict[str, Any]]] | None = None
                for i in rows:
                    r = i - int(starts[f])
                    g = int(np.searchsorted(group_starts, r, side="right")) - 1
                    if g >= pf.metadata.num_row_groups:
                        raise InspectError(f"{entry[E_PATH]} has {int(group_starts[-1]):,} rows, fewer than the "
                                           f"manifest's {entry.get(E_ROWS)}: run --verify")
                    if cached is None or cached[0] != g:
                        cached = (g, pf.read_row_group(g, columns=columns).to_pylist())
                    yield i, entry, r, cached[1][r - int(group_starts[g])]
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
    for i, entry, r, row in read_rows(out, indices, [INPUT_IDS, CU_SEQLENS, NUM_PAD]):
        try:
            segments = row_segments(row[INPUT_IDS], row[CU_SEQLENS], row[NUM_PAD], decode, tok.get("eos_id"),
                                    tok.get("bos_id"))
        except ValueError as exc:
            raise InspectError(f"{entry[E_PATH]} row {r}: {exc}: run --verify") from exc
        yield DecodedRow(i, entry[E_PATH], r, len(row[INPUT_IDS]), int(row[NUM_PAD]), segments)


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
    path = override or tok.get("path")
    option = "--tokenizer" if override else f"the tokenizer recorded in {_join(out.url, MANIFEST_FILE)}"
    if not path:
        raise InspectError(f"{_join(out.url, MANIFEST_FILE)} records no tokenizer path: pass --tokenizer PATH")
    try:
        with fsspec.open(path, "rb") as fh:
            data = fh.read()
    except (OSError, ValueError) as exc:
        raise InspectError(f"{option} {path!r} cannot be read ({exc}); pass --tokenizer PATH to the same "
                           "tokenizer file") from exc
    warning = None
    if tok.get("sha256") and hashlib.sha256(data).hexdigest() != tok["sha256"]:
        warning = (f"warning: {path} is not the tokenizer the shards were made with (its sha256 differs from the "
                   f"manifest's {tok['sha256'][:16]}...): the text below may be wrong")
    try:
        if tok.get("format") == "tiktoken":
            import tiktoken

            from transforms.tokenize.tokenizer import tiktoken_definition

            enc = tiktoken.Encoding(**tiktoken_definition(path, data, tok.get("tiktoken_scheme")))
            return (lambda ids: enc.decode_bytes(ids).decode("utf-8", "replace")), warning
        from tokenizers import Tokenizer

        hf = Tokenizer.from_str(data.decode("utf-8"))
        return (lambda ids: hf.decode(ids, skip_special_tokens=False)), warning
    except Exception as exc:  # tokenizers and tiktoken raise plain Exception subclasses for unusable files
        raise InspectError(f"{option} {path!r} is not a loadable {tok.get('format') or 'hf'} tokenizer ({exc}); "
                           "pass --tokenizer PATH to the same tokenizer file") from exc


# -- verification -----------------------------------------------------------------------------------------------------

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
    import pyarrow.parquet as pq

    rel = entry[E_PATH]
    seq_len = entry.get(E_SEQ_LEN, out.manifest.get(m.K_SEQ_LEN))
    tok = out.manifest.get(m.K_TOKENIZER) or {}
    pad_id, vocab = tok.get("pad_id"), tok.get("vocab_size")
    fs, path = out.locate(rel)
    found = _Found(0)
    try:
        with fs.open(path, "rb") as fh:
            pf = pq.ParquetFile(fh)
            names = pf.schema_arrow.names
            missing = [c for c in (INPUT_IDS, CU_SEQLENS, NUM_PAD) if c not in names]
            if missing:
                problems.append(Problem(rel, "columns", f"{INPUT_IDS}, {CU_SEQLENS}, {NUM_PAD}",
                                        f"no {', '.join(missing)}"))
                return None
            if pf.metadata.num_rows != entry.get(E_ROWS):
                problems.append(Problem(rel, E_ROWS, entry.get(E_ROWS), pf.metadata.num_rows))
            columns = [INPUT_IDS, CU_SEQLENS, NUM_PAD] + ([LOSS_MASK] if LOSS_MASK in names else [])
            for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=columns):
                _check_rows(batch, found.rows, seq_len, pad_id, vocab, rel, problems, found)
                found.rows += batch.num_rows
    except (OSError, ValueError) as exc:  # a truncated or damaged Parquet file
        problems.append(Problem(rel, "Parquet contents", "a readable shard", f"unreadable ({exc})"))
        return None
    for key, value in ((E_TOKENS, found.tokens), (E_PAD_TOKENS, found.pad_tokens)):
        if key in entry and entry[key] != value:
            problems.append(Problem(rel, key, entry[key], value))
    return found


def _check_rows(batch: Any, first: int, seq_len: int | None, pad_id: int | None, vocab: int | None, rel: str,
                problems: list[Problem], found: _Found) -> None:
    """One batch of shard rows: lengths, cu_seqlens, padding, token ids and loss mask; adds its tokens to found."""
    ids = batch.column(INPUT_IDS)
    cus = batch.column(CU_SEQLENS)
    pads = batch.column(NUM_PAD).to_numpy(zero_copy_only=False).astype(np.int64)
    ids_off = ids.offsets.to_numpy().astype(np.int64)
    ids_flat = ids.values.to_numpy(zero_copy_only=False)
    lens = np.diff(ids_off)
    real = lens - pads
    found.tokens += int(np.clip(real, 0, None).sum())
    found.pad_tokens += int(pads.sum())
    if seq_len is not None:
        _bad_rows(problems, rel, f"{INPUT_IDS} length", lens != seq_len, first, seq_len, lambda k: int(lens[k]))
    _bad_rows(problems, rel, NUM_PAD, (pads < 0) | (real < 0), first, f"0..{seq_len}", lambda k: int(pads[k]))
    cu_off = cus.offsets.to_numpy().astype(np.int64)
    cu_vals = cus.values.to_numpy(zero_copy_only=False).astype(np.int64)
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
    if LOSS_MASK in batch.schema.names:
        mask = batch.column(LOSS_MASK)
        mask_lens = np.diff(mask.offsets.to_numpy().astype(np.int64))
        _bad_rows(problems, rel, f"{LOSS_MASK} length", mask_lens != lens, first, lambda k: int(lens[k]),
                  lambda k: int(mask_lens[k]))
        if np.array_equal(mask_lens, lens):
            on_pad = in_pad & (mask.values.to_numpy(zero_copy_only=False) != 0)
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
    c = _counts(man)
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
                    problems.append(Problem(where, f"{m.K_PACKING_STATS}.{key}", _plain(stats.get(key)),
                                            _plain(value)))
        lengths = (man.get(m.K_PACKING_SETTINGS) or {}).get("lengths")
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

    listed |= {MANIFEST_FILE, m.REPORT_HTML}
    for rel, link in sorted(walk(out.fs, out.root)):  # every file anywhere: top level, temp folder, symlinks
        if rel not in listed:
            what = "symbolic link" if link else "file"
            problems.append(Problem(rel, f"{what} the manifest does not list", f"no such {what}", "present"))
    return problems


def _join(base: str, name: str) -> str:
    return base.rstrip("/") + "/" + name
