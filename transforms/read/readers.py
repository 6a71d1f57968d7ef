"""Streaming readers: one split → batches of documents (text + id) and rejections, never the whole file in memory.

Readers go through fsspec, so any installed protocol works (local, file://, memory://, s3://, gs://, hf://).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import IO, Any, Iterator

import fsspec
import pyarrow as pa

from schemas import manifest as m
from transforms.read.compressed import iter_decoded
from transforms.read.records import Rejection, Repairs, id_of, parse_json_line, raw_record, text_of
from transforms.read.sources import ARROW, JSONL, PARQUET, TEXT, WARC, Split
from transforms.read.warc import read_warc, warc_meta_fields
from transforms.errors import TokenmillError

DEFAULT_BATCH_BYTES = 2 << 20
_READ_CHUNK = 4 << 20
_PARQUET_BATCH_ROWS = 1024
_RAW_BYTES = 4 * m.REJECTED_RECORD_CHARS  # enough UTF-8 bytes for the characters a rejected/ record shows


class BadRecordError(TokenmillError, RuntimeError):
    """--strict: the first bad record, naming its file and line."""

    PREFIX = "tokenmill: bad record: "

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(
            f"{self.PREFIX}{rejection.where()}: {rejection.reason}"
            + (f" ({rejection.detail})" if rejection.detail else "")
        )
        self.rejection = rejection


@dataclass
class DocBatch:
    """Documents read from a split, in order, plus what was rejected or repaired on the way."""

    texts: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    lines: list[int | None] = field(default_factory=list)  # 1-based line (JSONL) of each document, else None
    rows: list[int | None] = field(default_factory=list)  # 0-based row (tables) of each document, else None
    metas: list[dict | str | None] = field(default_factory=list)  # signals per document (after a recipe), or empty
    # where each document's raw record is, for its rejected/ record if a later stage drops it: the JSON line (only
    # its first bytes when long), or (record batch, index) of a table row; empty when not known (staged documents)
    raws: list[Any] = field(default_factory=list)
    source: str = ""
    rejections: list[Rejection] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # input records that are no documents, by kind (WARC)
    repairs: dict[str, int] = field(default_factory=dict)
    records: int = 0
    bytes_read: int = 0
    seconds: float = 0.0  # time its reader spent reading and parsing it (set by whoever times the reader)
    token_ids: Any = None  # (encoder name, flat ids, lengths) of the texts when already tokenized, else None

    def raw_record(self, i: int) -> str:
        """The first KB of the i-th document's raw input record (its text when the record is not known)."""
        raw = self.raws[i] if self.raws else self.texts[i]
        return _row_json(*raw) if isinstance(raw, tuple) else raw_record(raw)


class _Batcher:
    """Collects documents into DocBatch objects of about ``batch_bytes`` of text; enforces --strict.

    Repairs noted while a record is validated stay pending: they count only if the record is kept.
    """

    def __init__(self, source: str, batch_bytes: int, strict: bool, meta_fields: tuple[str, ...] = ()) -> None:
        self.source = source
        self.meta_fields = meta_fields
        self.batch_bytes = batch_bytes
        self.strict = strict
        self.repairs = Repairs()
        self.batch = DocBatch()
        self._chars = 0

    def doc(self, text: str, doc_id: str, line: int | None = None, row: int | None = None,
            meta: dict | None = None, raw: Any = None) -> None:
        """Keep one document (and count its pending repairs); ``meta``: its kept input fields; ``raw``: where its
        raw record is (see ``DocBatch.raws``)."""
        if self.repairs.pending:
            if self.strict:  # --strict refuses repairs too: a repaired record is a bad record
                raise BadRecordError(Rejection(self.source, self.repairs.pending[0], line=line, row=row, id=doc_id))
            self.repairs.commit()
        self.batch.texts.append(text)
        self.batch.ids.append(doc_id)
        self.batch.lines.append(line)
        self.batch.rows.append(row)
        self.batch.raws.append(raw)
        if self.meta_fields:
            self.batch.metas.append(meta or {})
        self.batch.records += 1
        self._chars += len(text)

    def reject(self, rejection: Rejection) -> None:
        """Reject one record (its pending repairs are dropped); --strict stops here."""
        self.repairs.pending.clear()
        if self.strict:
            raise BadRecordError(rejection)
        self.batch.rejections.append(rejection)
        self.batch.records += 1

    def full(self) -> bool:
        """Has the current batch reached ``batch_bytes`` of text?"""
        return self._chars >= self.batch_bytes

    def take(self, bytes_read: int = 0) -> DocBatch:
        """The current batch (with its repair counts and input bytes); starts a new one."""
        out = self.batch
        out.repairs = self.repairs.counts
        out.bytes_read = bytes_read
        out.source = self.source
        self.batch = DocBatch()
        self.repairs = Repairs()
        self._chars = 0
        return out


def read_split(
    split: Split,
    text_field: str = "text",
    id_field: str = "id",
    batch_bytes: int = DEFAULT_BATCH_BYTES,
    strict: bool = False,
    meta_fields: tuple[str, ...] = (),
) -> Iterator[DocBatch]:
    """Stream one split as DocBatch objects; unreadable data becomes an ``unreadable_file`` rejection.

    ``meta_fields``: input fields/columns kept in each document's meta (those present and not null).
    """
    fields = warc_meta_fields(meta_fields) if split.format == WARC else tuple(meta_fields)  # WARC: url, date too
    batcher = _Batcher(split.url, batch_bytes, strict, fields)
    reader = {JSONL: _read_jsonl, PARQUET: _read_table, ARROW: _read_table, TEXT: _read_text,
              WARC: read_warc}[split.format]
    yield from reader(split, text_field, id_field, batcher)


def _unreadable(batcher: _Batcher, split: Split, exc: BaseException, line: int | None, row: int | None) -> None:
    batcher.reject(
        Rejection(split.url, m.UNREADABLE_FILE, line=line, row=row, detail=f"{type(exc).__name__}: {exc}"[:500])
    )


# Damaged compressed data arrives as CompressedDataError (an OSError); BadRecordError (--strict) is deliberately
# not among these.
_IO_ERRORS = (OSError, EOFError, ValueError, pa.ArrowException)


class _CountingReader:
    """A file object wrapper counting the bytes read through it (input bytes as stored, for progress)."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh
        self.n = 0

    def read(self, size: int = -1) -> bytes:
        data = self.fh.read(size)
        self.n += len(data)
        return data


def _iter_split_bytes(split: Split, counter: list[_CountingReader]) -> Iterator[bytes]:
    """The split's decoded bytes in chunks; errors (open, read, damaged or truncated compression) propagate."""
    with fsspec.open(split.open_url, "rb").open() as fh:
        raw = _CountingReader(fh)
        counter.append(raw)
        if split.compression:
            yield from iter_decoded(raw, split.compression)
            return
        if split.start:
            fh.seek(split.start)
        remaining = split.end - split.start if split.end >= 0 else -1
        while remaining:
            chunk = raw.read(_READ_CHUNK if remaining < 0 else min(_READ_CHUNK, remaining))
            if not chunk:
                return
            if remaining > 0:
                remaining -= len(chunk)
            yield chunk


def _read_jsonl(split: Split, text_field: str, id_field: str, batcher: _Batcher) -> Iterator[DocBatch]:
    line_no = split.first_record
    counter: list[_CountingReader] = []
    reported = 0
    pending: list[bytes] = []  # the current, not yet complete line
    chunks = _iter_split_bytes(split, counter)
    damage: BaseException | None = None
    while True:
        try:
            chunk = next(chunks, None)
        except _IO_ERRORS as exc:
            damage = exc
            break
        if chunk is None:
            break
        if chunk.find(b"\n") < 0:
            pending.append(chunk)
            continue
        if pending:
            pending.append(chunk)
            chunk = b"".join(pending)
        lines = chunk.split(b"\n")
        tail = lines.pop()
        pending = [tail] if tail else []
        for line in lines:
            _jsonl_record(line, line_no, False, split, text_field, id_field, batcher)
            line_no += 1
            if batcher.full():
                done = counter[0].n if counter else 0
                yield batcher.take(done - reported)
                reported = done
    rest = b"".join(pending)
    if damage is not None:
        before = line_no - split.first_record
        read_ok = f"; the {before} lines before it were read" if before else ""
        batcher.reject(
            Rejection(
                split.url, m.UNREADABLE_FILE, line=line_no, detail=f"{type(damage).__name__}: {damage}"[:500] + read_ok,
                record=raw_record(rest),
            )
        )
    elif rest.strip():
        _jsonl_record(rest, line_no, True, split, text_field, id_field, batcher)
    yield batcher.take((counter[0].n if counter else 0) - reported)


def _jsonl_record(
    line: bytes, line_no: int, unterminated: bool, split: Split, text_field: str, id_field: str, b: _Batcher
) -> None:
    if not line.strip():
        return  # blank lines are not records
    obj, reason, detail, surrogates = parse_json_line(line, b.repairs)
    if reason is None:
        text, reason, detail = text_of(obj, text_field, b.repairs, surrogates)
    if reason is not None:
        if reason == m.MALFORMED_JSON and unterminated:
            reason = m.TRUNCATED_LINE
            detail = "the last line has no newline and is not complete JSON: " + detail
        rec_id = id_of(obj, id_field, split.url, ":", line_no, surrogates)
        b.reject(Rejection(split.url, reason, line=line_no, id=rec_id, detail=detail, record=raw_record(line)))
        return
    meta = {k: obj[k] for k in b.meta_fields if obj.get(k) is not None} if b.meta_fields else None
    # a short line is kept as it is (no copy); of a long one, only what rejected/ can show
    raw = line if len(line) <= _RAW_BYTES else line[:_RAW_BYTES]
    b.doc(text, id_of(obj, id_field, split.url, ":", line_no, surrogates), line=line_no, meta=meta, raw=raw)


def _read_text(split: Split, text_field: str, id_field: str, batcher: _Batcher) -> Iterator[DocBatch]:
    counter: list[_CountingReader] = []
    try:
        data = b"".join(_iter_split_bytes(split, counter))
    except _IO_ERRORS as exc:
        _unreadable(batcher, split, exc, None, None)
        yield batcher.take(counter[0].n if counter else 0)
        return
    if not data:  # an empty file holds no record
        yield batcher.take(0)
        return
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("utf-8", "replace")
        batcher.repairs.add(m.INVALID_UTF8)
    text, reason, detail = text_of({text_field: text}, text_field, batcher.repairs, surrogates=False)
    if reason is not None:
        batcher.reject(Rejection(split.url, reason, id=split.url, detail=detail, record=raw_record(data)))
    else:
        batcher.doc(text, split.url, raw=data[:_RAW_BYTES])
    yield batcher.take(counter[0].n if counter else len(data))


@dataclass
class _DamagedRowGroup:
    """The rest of a Parquet row group that cannot be read: ``rows`` rows from where reading it failed."""

    group: int
    rows: int
    error: BaseException
    nbytes: int


def _iter_table_batches(split: Split) -> Iterator[tuple[pa.RecordBatch | _DamagedRowGroup, int]]:
    """(record batch, bytes read) over a Parquet row-group range or an Arrow IPC file.

    Parquet is read one row group at a time: a damaged group yields one ``_DamagedRowGroup`` for its unread rows and
    reading goes on with the next group (its column chunks are independent). A damaged footer raises.
    """
    with fsspec.open(split.open_url, "rb") as fh:
        if split.format == PARQUET:
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(fh)
            groups = list(range(split.start, split.end)) if split.end >= 0 else list(range(pf.num_row_groups))
            if not groups:
                return
            per_row = split.size / max(1, sum(pf.metadata.row_group(g).num_rows for g in groups))
            for g in groups:
                left = pf.metadata.row_group(g).num_rows
                try:
                    for batch in pf.iter_batches(batch_size=_PARQUET_BATCH_ROWS, row_groups=[g]):
                        left -= batch.num_rows
                        yield batch, int(per_row * batch.num_rows)
                except _IO_ERRORS as exc:
                    yield _DamagedRowGroup(g, left, exc, int(per_row * left)), 0
                    continue
                if left > 0:  # fewer rows than the footer promises: the group's data is cut short
                    yield _DamagedRowGroup(g, left, EOFError(f"{left} rows missing"), int(per_row * left)), 0
        else:
            for batch in arrow_batches(fh):
                yield batch, batch.nbytes


def arrow_batches(fh: Any) -> Iterator[Any]:
    """The record batches of an Arrow IPC stream, or of an Arrow IPC file (the two layouts ``.arrow`` names)."""
    try:
        reader = pa.ipc.open_stream(fh)
    except pa.ArrowInvalid:
        fh.seek(0)
        reader = pa.ipc.open_file(fh)
        return (reader.get_batch(i) for i in range(reader.num_record_batches))
    return iter(reader)


def _read_table(split: Split, text_field: str, id_field: str, batcher: _Batcher) -> Iterator[DocBatch]:
    row = split.first_record
    consumed = 0
    batches = _iter_table_batches(split)
    while True:
        try:
            item = next(batches, None)
        except _IO_ERRORS as exc:
            _unreadable(batcher, split, exc, None, row)
            break
        if item is None:
            break
        batch, nbytes = item
        if isinstance(batch, _DamagedRowGroup):  # one rejection for the group's unread rows, then the next group
            consumed += batch.nbytes
            last = row + batch.rows - 1
            batcher.reject(Rejection(
                split.url, m.UNREADABLE_FILE, row=row,
                detail=(f"rows {row}-{last} (row group {batch.group}, {batch.rows} rows) cannot be read: "
                        f"{type(batch.error).__name__}: {batch.error}")[:500],
            ))
            row += batch.rows
            continue
        consumed += nbytes
        _table_records(batch, row, split, text_field, id_field, batcher)
        row += batch.num_rows
        if batcher.full():
            yield batcher.take(consumed)
            consumed = 0
    yield batcher.take(consumed)


def _table_records(
    batch: pa.RecordBatch, first_row: int, split: Split, text_field: str, id_field: str, b: _Batcher
) -> None:
    names = batch.schema.names
    ids = batch.column(id_field).to_pylist() if id_field in names else [None] * batch.num_rows
    if text_field not in names:
        for i in range(batch.num_rows):
            row_id = str(ids[i]) if ids[i] is not None else f"{split.url}#{first_row + i}"
            b.reject(
                Rejection(
                    split.url, m.MISSING_TEXT, row=first_row + i, id=row_id,
                    detail=f"no column {text_field!r} (columns: {', '.join(names[:10])})",
                    record=_row_json(batch, i),
                )
            )
        return
    texts = batch.column(text_field).to_pylist()  # non-text values are rejected as non_string_text
    metas = {k: batch.column(k).to_pylist() for k in b.meta_fields if k in names}
    for i, value in enumerate(texts):
        row_no = first_row + i
        row_id = str(ids[i]) if ids[i] is not None else f"{split.url}#{row_no}"
        text, reason, detail = text_of({text_field: value}, text_field, b.repairs, surrogates=False)
        if reason is not None:
            b.reject(Rejection(split.url, reason, row=row_no, id=row_id, detail=detail, record=_row_json(batch, i)))
            continue
        b.doc(text, row_id, row=row_no, meta={k: v[i] for k, v in metas.items() if v[i] is not None},
              raw=(batch, i))


def _row_json(batch: pa.RecordBatch, i: int) -> str:
    try:
        return raw_record(batch.slice(i, 1).to_pylist()[0])
    except Exception:  # a row that cannot even be shown still gets its rejection
        return ""
