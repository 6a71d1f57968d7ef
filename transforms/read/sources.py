"""Input discovery and split planning: fsspec paths/globs → files → splits → packing streams.

Pure functions (no Beam). A *split* is the unit a reader streams (a whole file, a line-aligned byte range of a
large plain JSONL file, or a run of Parquet row groups); a *stream* is a run of consecutive splits that is
tokenized and packed in order by one worker. The plan depends only on the inputs and ``stream_bytes``, never
on the runner or the worker count, so the shards are the same bytes whatever runs them.
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import asdict, dataclass
from typing import Any

import fsspec

from schemas.options import ARROW, DEFAULT_STREAM_BYTES, FORMATS, JSONL, PARQUET, TEXT, WARC
from transforms.errors import TokenmillError
from transforms.read.gzip_members import cut_offsets

COMPRESSIONS = {".gz": "gzip", ".zst": "zstd", ".bz2": "bz2", ".xz": "xz"}
EXTENSIONS = {
    ".jsonl": JSONL,
    ".json": JSONL,
    ".ndjson": JSONL,
    ".parquet": PARQUET,
    ".pq": PARQUET,
    ".txt": TEXT,
    ".text": TEXT,
    ".arrow": ARROW,
    ".warc": WARC,
    ".wet": WARC,  # .warc.wet.gz too
}
_SCAN_CHUNK = 8 * 1024 * 1024


class InputError(TokenmillError, ValueError):
    """A problem with --input found before any work starts."""


def escaped_name(path: str) -> str:
    """``path`` with the bytes of a non-UTF-8 file name (held as lone surrogates) written as ``\\xNN`` escapes."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


_ESCAPED_BYTE = re.compile(r"\\x([89a-f][0-9a-f])")  # what escaped_name writes for a byte that is not UTF-8


def unescaped_name(name: str) -> str:
    """The real name an ``escaped_name`` stands for (``\\xNN`` of a byte >= 0x80 back to that byte)."""
    return _ESCAPED_BYTE.sub(lambda mo: chr(0xDC00 + int(mo[1], 16)), name)


def _existing_name(pattern: str) -> str:
    """``pattern``, or the real name it escapes when only that exists (an input copied from a manifest or
    rejected/ record)."""
    real = unescaped_name(pattern)
    if real == pattern:
        return pattern
    try:
        fs, path = fsspec.core.url_to_fs(pattern)
        real_fs, real_path = fsspec.core.url_to_fs(real)
        return real if not fs.exists(path) and real_fs.exists(real_path) else pattern
    except (ImportError, ValueError, OSError):
        return pattern


def escaped_names(value: Any) -> Any:
    """``value`` (str, or lists/dicts of them) with every string passed through ``escaped_name``."""
    if isinstance(value, str):
        return escaped_name(value)
    if isinstance(value, dict):
        return {escaped_names(k): escaped_names(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [escaped_names(v) for v in value]
    return value


@dataclass(frozen=True)
class InputFile:
    """One input file: its fsspec URL, format, compression and size in bytes.

    ``url`` names the file everywhere it is written (escaped if the name is not UTF-8, see ``escaped_name``);
    ``path`` is the real name to open when it differs, else empty.
    """

    url: str
    format: str
    compression: str | None
    size: int
    path: str = ""

    @property
    def open_url(self) -> str:
        """The name to open the file by."""
        return self.path or self.url

    def to_dict(self) -> dict[str, Any]:
        """JSON form, as the manifest's ``inputs`` record it (without the real name to open)."""
        d = asdict(self)
        del d["path"]
        return d


@dataclass(frozen=True)
class Split:
    """A piece of one input file read by one reader, in order.

    For plain JSONL, ``start``/``end`` are byte offsets of whole lines and ``first_record`` the 1-based line number
    of the first line; for Parquet, ``start``/``end`` are row-group indices and ``first_record`` the 0-based row
    index of the first row; for a .warc.gz cut in ranges, ``start``/``end`` are byte offsets of gzip member starts
    (the split reads the members starting in it); otherwise the split is the whole file (``start=0, end=-1``).
    """

    file_index: int
    split_index: int
    url: str
    format: str
    compression: str | None
    start: int
    end: int
    first_record: int
    size: int
    path: str = ""  # the real name to open, when ``url`` is escaped (see InputFile)

    @property
    def open_url(self) -> str:
        """The name to open the file by."""
        return self.path or self.url

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)


@dataclass(frozen=True)
class Stream:
    """Consecutive splits packed in order by one worker; ``index`` orders streams (and so shards)."""

    index: int
    splits: tuple[Split, ...]

    @property
    def size(self) -> int:
        """Input bytes (compressed size for compressed files)."""
        return sum(s.size for s in self.splits)


def detect_format(url: str, forced: str | None = None) -> tuple[str, str | None]:
    """(format, compression) of a file from its name, or ``forced`` format; raises InputError if unknown."""
    name = posixpath.basename(url.rstrip("/")).lower()
    compression = None
    stem, ext = posixpath.splitext(name)
    if ext in COMPRESSIONS:
        compression = COMPRESSIONS[ext]
        stem, ext = posixpath.splitext(stem)
    fmt = forced or EXTENSIONS.get(ext)
    if fmt is None:
        raise InputError(
            f"cannot tell the format of input file {url!r} from its name; supported endings are "
            f"{', '.join(sorted(EXTENSIONS))} (optionally with {', '.join(sorted(COMPRESSIONS))}), "
            f"or pass --input-format {'|'.join(FORMATS)}"
        )
    if fmt in (PARQUET, ARROW) and compression:
        raise InputError(f"input file {url!r}: {fmt} files cannot be read through {compression} compression")
    if fmt == WARC and compression not in (None, "gzip"):
        raise InputError(f"input file {url!r}: WARC files are read plain or gzip-compressed (.warc.gz), "
                         f"not through {compression} compression")
    return fmt, compression


def expand_inputs(patterns: list[str], forced_format: str | None = None) -> list[InputFile]:
    """Expand --input paths, globs and directories into files, in a stable order; raises InputError."""
    if not patterns:
        raise InputError("no --input given: name at least one file, glob or directory")
    files: list[InputFile] = []
    seen: set[str] = set()
    for pattern in map(_existing_name, patterns):
        try:
            fs, _, paths = fsspec.get_fs_token_paths(pattern)
        except (ImportError, ValueError) as exc:
            raise InputError(f"--input {pattern!r}: cannot open this location ({exc})") from exc
        if not paths:
            raise InputError(f"--input {pattern!r} matches no file")
        found = []
        for path in sorted(paths):
            try:
                if fs.isdir(path):
                    found.extend(_expand_directory(fs, path, forced_format))
                    continue
                if not fs.exists(path):
                    raise InputError(f"--input {pattern!r}: {path!r} does not exist")
                fmt, comp = detect_format(path, forced_format)
                found.append(_input_file(fs, path, fmt, comp, int(fs.size(path) or 0)))
            except (PermissionError, FileNotFoundError) as exc:
                raise InputError(f"--input {pattern!r}: cannot access {path!r} ({exc})") from exc
        if not found:
            raise InputError(f"--input {pattern!r} holds no readable input file")
        for f in found:
            if f.open_url not in seen:
                seen.add(f.open_url)
                files.append(f)
    return files


def check_field_options(files: list[InputFile], text_field: str = "text", id_field: str = "id") -> None:
    """Refuse --text-field/--id-field other than the defaults when an input is WARC (its records have no fields)."""
    warc = next((f for f in files if f.format == WARC), None)
    if warc is None:
        return
    for option, value, default in (("--text-field", text_field, "text"), ("--id-field", id_field, "id")):
        if value != default:
            raise InputError(f"{option} {value!r} does not apply to WARC input {warc.url!r}: its "
                             "documents are the HTML payloads, their id the WARC-Record-ID; leave the option out")


def _input_file(fs: fsspec.AbstractFileSystem, path: str, fmt: str, comp: str | None, size: int) -> InputFile:
    url = _unstrip(fs, path)
    shown = escaped_name(url)  # a non-UTF-8 name cannot be written to JSON, Parquet or HTML as it is
    return InputFile(shown, fmt, comp, size, url if shown != url else "")


def _unstrip(fs: fsspec.AbstractFileSystem, path: str) -> str:
    return fs.unstrip_protocol(path) if not _is_local(fs) else path


def _is_local(fs: fsspec.AbstractFileSystem) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")


_SKIPPED_FILES = ("dataset_info.json", "state.json", "dataset_dict.json")


def _expand_directory(fs: fsspec.AbstractFileSystem, path: str, forced_format: str | None) -> list[InputFile]:
    """A saved Hugging Face dataset (save_to_disk) or a directory tree of supported files, in sorted order.

    Hidden and underscore entries (``.ipynb_checkpoints/``, ``_temporary/``, ``_SUCCESS``) are skipped; a saved
    dataset found anywhere in the tree is read through its own metadata (DatasetDict splits in their saved order).
    """
    if fs.exists(posixpath.join(path, "dataset_dict.json")):
        with fs.open(posixpath.join(path, "dataset_dict.json"), "rb") as fh:
            splits = json.load(fh).get("splits", [])
        out: list[InputFile] = []
        for split in splits:
            out.extend(_expand_directory(fs, posixpath.join(path, split), forced_format))
        return out
    state = _saved_dataset_state(fs, path)
    if state is not None:
        data_files = [d["filename"] for d in state["_data_files"]]
        return [
            _input_file(fs, p, ARROW, None, int(fs.size(p) or 0))
            for p in (posixpath.join(path, name) for name in data_files)
        ]
    out = []
    entries = sorted(fs.ls(path, detail=True), key=lambda e: e["name"])
    for entry in entries:
        p = entry["name"].rstrip("/")
        name = posixpath.basename(p)
        if name.startswith((".", "_")) or name in _SKIPPED_FILES:
            continue
        if entry["type"] == "directory":
            out.extend(_expand_directory(fs, p, forced_format))
            continue
        try:
            fmt, comp = detect_format(p, forced_format)
        except InputError:
            continue
        out.append(_input_file(fs, p, fmt, comp, int(entry.get("size") or 0)))
    return out


def _saved_dataset_state(fs: fsspec.AbstractFileSystem, path: str) -> dict[str, Any] | None:
    """The state.json of a ``Dataset.save_to_disk`` directory, or None if ``path`` is not one."""
    state_path = posixpath.join(path, "state.json")
    if not fs.exists(state_path):
        return None
    try:
        with fs.open(state_path, "rb") as fh:
            state = json.load(fh)
    except ValueError:
        return None
    return state if isinstance(state, dict) and isinstance(state.get("_data_files"), list) else None


def plan_splits(file_index: int, f: InputFile, stream_bytes: int = DEFAULT_STREAM_BYTES) -> list[Split]:
    """Cut one file into splits of at least ``stream_bytes`` (only plain JSONL, Parquet and .warc.gz can be cut)."""
    first = 0 if f.format in (PARQUET, ARROW) else 1  # rows are 0-based, lines 1-based
    whole = [Split(file_index, 0, f.url, f.format, f.compression, 0, -1, first, f.size, f.path)]
    try:
        if f.format == PARQUET:
            return _parquet_splits(file_index, f, stream_bytes)
        if f.format == JSONL and f.compression is None and f.size >= 2 * stream_bytes:
            # n near-equal ranges of at least stream_bytes: a file under two streams' worth stays whole (its
            # ranges would not add parallelism, only a small tail stream and a scan for line starts)
            return _jsonl_splits(file_index, f, f.size // (f.size // stream_bytes))
        if f.format == WARC and f.compression == "gzip" and f.size >= 2 * stream_bytes:
            return _warc_splits(file_index, f, stream_bytes) or whole
    except (OSError, ValueError):
        return whole  # unreadable here: the reader reports it, with its reason, as a rejected record
    return whole


def _jsonl_splits(file_index: int, f: InputFile, stream_bytes: int) -> list[Split]:
    """Line-aligned byte ranges, with the line number each range starts at (one sequential scan)."""
    cuts = [(0, 1)]  # (byte offset, 1-based line number) of each range start
    target = stream_bytes
    pos = 0
    lines = 0
    with fsspec.open(f.open_url, "rb") as fh:
        while True:
            chunk = fh.read(_SCAN_CHUNK)
            if not chunk:
                break
            offset = 0
            while pos + len(chunk) > target:
                nl = chunk.find(b"\n", max(target - pos, offset))
                if nl < 0:
                    break
                lines += chunk.count(b"\n", offset, nl + 1)
                offset = nl + 1
                if pos + offset < f.size:
                    cuts.append((pos + offset, lines + 1))
                target = pos + offset + stream_bytes
            lines += chunk.count(b"\n", offset)
            pos += len(chunk)
    bounds = [c[0] for c in cuts] + [f.size]
    return [
        Split(file_index, i, f.url, JSONL, None, bounds[i], bounds[i + 1], cuts[i][1], bounds[i + 1] - bounds[i],
              f.path)
        for i in range(len(cuts))
    ]


def _warc_splits(file_index: int, f: InputFile, stream_bytes: int) -> list[Split]:
    """Byte ranges of a .warc.gz, each starting at a gzip member whose data begins with ``WARC/`` (a few small
    reads per cut, see transforms.read.gzip_members); empty when no cut is found."""
    with fsspec.open(f.open_url, "rb") as fh:
        cuts = cut_offsets(fh, f.size, stream_bytes)
    bounds = cuts + [f.size]
    return [
        Split(file_index, i, f.url, WARC, "gzip", bounds[i], bounds[i + 1], 1, bounds[i + 1] - bounds[i], f.path)
        for i in range(len(cuts))
    ] if len(cuts) > 1 else []


def _parquet_splits(file_index: int, f: InputFile, stream_bytes: int) -> list[Split]:
    """Runs of consecutive row groups of about ``stream_bytes`` (uncompressed) each."""
    import pyarrow.parquet as pq

    with fsspec.open(f.open_url, "rb") as fh:
        meta = pq.ParquetFile(fh).metadata
    splits: list[Split] = []
    start, rows_before, acc, first_row = 0, 0, 0, 0
    for rg in range(meta.num_row_groups):
        g = meta.row_group(rg)
        acc += g.total_byte_size
        rows_before += g.num_rows
        if acc >= stream_bytes or rg == meta.num_row_groups - 1:
            splits.append(Split(file_index, len(splits), f.url, PARQUET, None, start, rg + 1, first_row, acc,
                                f.path))
            start, acc, first_row = rg + 1, 0, rows_before
    if not splits:  # no row groups: an empty file, still read (and counted as zero records)
        splits.append(Split(file_index, 0, f.url, PARQUET, None, 0, 0, 0, 0, f.path))
    return splits


def group_into_streams(splits: list[Split], stream_bytes: int = DEFAULT_STREAM_BYTES) -> list[Stream]:
    """Group splits (in file and split order) into streams of at least ``stream_bytes`` where possible."""
    ordered = sorted(splits, key=lambda s: (s.file_index, s.split_index))
    streams: list[Stream] = []
    current: list[Split] = []
    size = 0
    for s in ordered:
        current.append(s)
        size += s.size
        if size >= stream_bytes:
            streams.append(Stream(len(streams), tuple(current)))
            current, size = [], 0
    if current:
        streams.append(Stream(len(streams), tuple(current)))
    return streams


def plan_streams(files: list[InputFile], stream_bytes: int = DEFAULT_STREAM_BYTES) -> list[Stream]:
    """The whole plan in one call (for tests and small inputs; the pipeline plans files in parallel)."""
    splits = [s for i, f in enumerate(files) for s in plan_splits(i, f, stream_bytes)]
    return group_into_streams(splits, stream_bytes)
