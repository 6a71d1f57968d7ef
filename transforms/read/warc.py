"""WARC and WET input (``.warc``, ``.warc.gz``, ``.wet``, ``.warc.wet.gz``): records become documents, the rest is
counted by kind, damage is rejected with its byte offset and read past.

Which records become documents, and their text, mirror datatrove's ``WarcReader`` (``process_record``), so that a
crawl gives the same documents either way:

- ``response`` records whose ``WARC-Identified-Payload-Type`` is ``text/html`` or ``application/xhtml+xml``, and
  WET ``conversion`` records (also ``text/plain``); the text is the HTTP payload (its transfer and content
  encodings undone, by FastWARC) decoded as UTF-8, else as the charset cchardet detects;
- ``id`` is the WARC-Record-ID, ``meta.url`` the WARC-Target-URI (angle brackets and spaces fixed as warcio
  does), ``meta.date`` the WARC-Date; ``--meta-field NAME`` adds the record's WARC header NAME.

Every other record is counted in ``counts.skipped_records`` by kind: its WARC-Type (``request``, ``metadata``,
``warcinfo``, ``revisit``, ``resource``...), and for a response or conversion of another type
``<WARC-Type>/<media type>`` (``response/image/jpeg``; ``unknown`` when the type is missing or not a media type).
A damaged stretch is one rejection (``rejected/``, with ``offset``: the byte offset of the record, in a
``.warc.gz`` of its gzip member): ``damaged_gzip_member``, ``truncated_record``, ``malformed_warc_record`` (no WARC
header, no valid Content-Length, a block not followed by CRLF CRLF), ``undecodable_payload``; reading resumes at
the next gzip member whose data begins with ``WARC/`` (``gzip_members``) or the next line beginning ``WARC/``.
So a WARC file's records are ``records`` (documents + rejected) + Σ ``skipped_records``, damaged stretches counted
as one record each.

Where tokenmill differs from datatrove, and why:

- A record without WARC-Identified-Payload-Type: datatrove asks libmagic what the payload is; tokenmill takes the
  type the record declares (the HTTP Content-Type of a response, the WARC Content-Type of a conversion), because
  libmagic's answer depends on the libmagic installed (the same crawl would give other documents on another
  machine). Common Crawl's WARC files name a payload type on every response, so nothing changes there; in its WET
  files (no payload type), datatrove drops the conversions libmagic does not call text/plain (pages that look like
  code, CSV or JSON), tokenmill keeps every text/plain conversion.
- Damage: datatrove (warcio) stops at the first damaged gzip member or malformed record; tokenmill rejects it and
  reads on. What datatrove drops without a word (a payload no charset decodes, empty text) is rejected with a
  reason, as is a record without WARC-Record-ID; an HTTP Content-Encoding that does not decode is rejected (warcio
  would hand on the still-encoded bytes). NUL characters are removed and counted, as for any input.
- ``--text-field`` and ``--id-field`` name fields of JSON or table records; a WARC record has none, so they do not
  apply to WARC input and are ignored (datatrove's ``text_key``/``id_key`` would only rename the keys of the dict
  its ``process_record`` makes).

FastWARC parses each record's HTTP message and undoes its encodings; the gzip members and the framing are
tokenmill's own (``gzip_members``, ``warc_framing``): FastWARC's iterator stops at the first damaged member, and
hands on a record cut short at the end of a file as if it were whole.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterator, Protocol

import fsspec

from schemas import manifest as m
from transforms.read.gzip_members import Damage, Member, MemberReader, Piece, plain_pieces
from transforms.read.records import Rejection, Repairs, clean_text, raw_record
from transforms.read.sources import Split
from transforms.read.warc_framing import RAW_BYTES, Bad, Framer

WARC_META = ("url", "date")  # the meta every WARC document has (when its record has them)
HTML_TYPES = ("text/html", "application/xhtml+xml")
MAX_DOCUMENT_BYTES = 256 << 20  # a bigger record is read past, counted as <type>/too_large
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}")
_RECORD_TYPE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


def warc_meta_fields(requested: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The meta a WARC document carries: url and date, then the WARC headers the user asked for."""
    return tuple(dict.fromkeys((*WARC_META, *requested)))


def target_uri(fields: dict[str, str]) -> str:
    """WARC-Target-URI as warcio gives it: without the angle brackets some writers add, spaces as %20."""
    uri = fields.get("warc-target-uri", "")
    if uri.startswith("<") and uri.endswith(">"):
        uri = uri[1:-1]
    return uri.replace(" ", "%20")


def _kind(value: str | None, pattern: re.Pattern[str]) -> str:
    """A media type or record type as a skipped_records key (``unknown`` when it is not one)."""
    base = (value or "").split(";")[0].strip().lower()
    return base if pattern.fullmatch(base) else "unknown"


def _is_text(media_type: str, record_type: str) -> bool:
    return media_type in HTML_TYPES or (record_type == "conversion" and media_type == "text/plain")


def header_kind(fields: dict[str, str]) -> str | None:
    """The skipped kind of a record known from its WARC header alone, or None (it may be a document)."""
    record_type = fields.get("warc-type", "")
    if record_type not in ("response", "conversion"):
        return _kind(record_type, _RECORD_TYPE)
    identified = fields.get("warc-identified-payload-type")
    if identified is not None and not _is_text(identified, record_type):  # datatrove compares the value as it is
        return f"{record_type}/{_kind(identified, _MEDIA_TYPE)}"
    return None


def big_record_kind(fields: dict[str, str], size: int) -> str | None:
    """The skipped kind of a record too big to hold before reading it (``size`` bytes): from its header, or
    ``<type>/too_large`` past MAX_DOCUMENT_BYTES (a bound on memory; datatrove would read it)."""
    kind = header_kind(fields)
    return f"{fields['warc-type']}/too_large" if kind is None and size > MAX_DOCUMENT_BYTES else kind


def decode_payload(content: bytes) -> str | None:
    """UTF-8, else the charset cchardet detects (datatrove's order); None when neither decodes it."""
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        pass
    import cchardet

    charset = cchardet.detect(content)["encoding"]
    if not charset or charset == "UTF-8":
        return None
    try:
        return content.decode(charset)
    except (UnicodeDecodeError, LookupError):
        return None


@dataclass(frozen=True)
class Outcome:
    """What one framed record gives: a document's text, a skipped kind, or a reject reason with its detail."""

    text: str | None = None
    skipped: str | None = None
    reason: str | None = None
    detail: str = ""


def read_record(fields: dict[str, str], record: bytes, header_len: int, repairs: Repairs) -> Outcome:
    """One framed record (its WARC header parsed into ``fields``) as a document, a skipped kind or a rejection."""
    kind = header_kind(fields)
    if kind is not None:
        return Outcome(skipped=kind)
    record_type = fields["warc-type"]
    block = record[header_len:]
    if record_type == "response" and block and target_uri(fields).startswith(("http:", "https:")):
        from fastwarc.warc import WarcRecord

        try:
            parsed = WarcRecord.from_bytes(record)
            parsed.is_http = True  # warcio's rule: an http(s) response holds an HTTP message
            parsed.parse_http(auto_decode="all")
            payload = parsed.reader.read()
        except OSError as exc:
            return Outcome(reason=m.UNDECODABLE_PAYLOAD, detail=f"the HTTP message cannot be decoded: {exc}")
        declared = parsed.http_content_type
    else:
        payload, declared = block, fields.get("content-type")
    if "warc-identified-payload-type" not in fields:
        media_type = (declared or "").split(";")[0].strip().lower()
        if not _is_text(media_type, record_type):
            return Outcome(skipped=f"{record_type}/{_kind(media_type, _MEDIA_TYPE)}")
    text = decode_payload(payload)
    if text is None:
        return Outcome(reason=m.UNDECODABLE_PAYLOAD,
                       detail="the payload is neither UTF-8 nor in a charset cchardet detects")
    if "warc-record-id" not in fields:
        return Outcome(reason=m.MALFORMED_WARC_RECORD, detail="the record has no WARC-Record-ID")
    text = clean_text(text, repairs, surrogates=False)
    if not text:
        return Outcome(reason=m.EMPTY_TEXT, detail="the record's payload is empty")
    return Outcome(text=text)


class DocSink(Protocol):
    """What ``read_warc`` fills: the readers' batcher (transforms.read.readers)."""

    batch: Any
    repairs: Repairs
    meta_fields: tuple[str, ...]

    def doc(self, text: str, doc_id: str, line: int | None = None, row: int | None = None,
            meta: dict | None = None, raw: Any = None) -> None: ...

    def reject(self, rejection: Rejection) -> None: ...

    def full(self) -> bool: ...

    def take(self, bytes_read: int = 0) -> Any: ...


def read_warc(split: Split, text_field: str, id_field: str, sink: DocSink) -> Iterator[Any]:
    """Stream one WARC split into the sink's batches (``text_field``/``id_field`` do not apply: see above)."""
    done = 0
    try:
        fh = fsspec.open(split.open_url, "rb").open()
    except OSError as exc:
        sink.reject(Rejection(split.url, m.UNREADABLE_FILE, detail=f"{type(exc).__name__}: {exc}"[:500]))
        yield sink.take(0)
        return
    with fh:
        framer = Framer(bool(split.compression), big_record_kind)
        members = None
        try:
            members = MemberReader(fh, split.start, split.end, split.url) if split.compression else None
            for event in members.events() if members is not None else plain_pieces(fh):
                if isinstance(event, Piece):
                    framer.feed(event.data)
                elif isinstance(event, Member):
                    framer.member(event.offset, event.head)
                else:
                    framer.damage(event)
                _drain(framer, split, sink)
                if sink.full():
                    now = min(split.size, members.bytes_read if members is not None else fh.tell())
                    yield sink.take(now - done)
                    done = now
            cut = members is not None and members.end < members.size
            framer.close(*((m.MALFORMED_WARC_RECORD, "its Content-Length runs past the end of its gzip member")
                           if cut else (m.TRUNCATED_RECORD, "the file ends inside this record")))
        except OSError as exc:  # the file cannot be read on (damaged compressed data is a Damage, not this)
            at = members.pos if members is not None else split.start + framer.fed
            framer.damage(Damage(at, m.UNREADABLE_FILE, f"{type(exc).__name__}: {exc}"[:500]))
        _drain(framer, split, sink)
    yield sink.take(split.size - done)


def _drain(framer: Framer, split: Split, sink: DocSink) -> None:
    for item in framer.out:
        if isinstance(item, str):
            sink.batch.skipped[item] = sink.batch.skipped.get(item, 0) + 1
            continue
        at = f" (byte {item.inner} of its gzip member's data)" if item.inner else ""
        if isinstance(item, Bad):
            sink.reject(Rejection(split.url, item.reason, id=item.id, detail=item.detail + at,
                                  record=raw_record(item.raw), offset=item.offset))
            continue
        outcome = read_record(item.fields, item.data, item.header_len, sink.repairs)
        rec_id = item.fields.get("warc-record-id")
        if outcome.skipped is not None:
            sink.batch.skipped[outcome.skipped] = sink.batch.skipped.get(outcome.skipped, 0) + 1
        elif outcome.reason is not None:
            sink.reject(Rejection(split.url, outcome.reason, id=rec_id, detail=outcome.detail + at,
                                  record=raw_record(item.data[:RAW_BYTES]), offset=item.offset))
        else:
            meta = {"url": target_uri(item.fields), "date": item.fields.get("warc-date")}
            meta.update({k: item.fields.get(k.lower()) for k in sink.meta_fields if k not in WARC_META})
            sink.doc(outcome.text, rec_id, meta={k: v for k, v in meta.items() if v}, raw=item.data[:RAW_BYTES])
    framer.out.clear()
