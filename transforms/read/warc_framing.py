"""Framing WARC bytes into records: the header, Content-Length bytes of block, CRLF CRLF; damage becomes one
rejection per stretch and framing resumes at the next record start.

Pure: bytes in (with the gzip member starts of ``gzip_members``), ``Framed`` records, ``Bad`` stretches and the
kinds of big skipped records out, in file order. Which records are documents is ``warc.py``'s business; the framer
only asks it (``skip_kind``) whether a big record can be read past without holding it.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Callable

from schemas import manifest as m
from transforms.read.gzip_members import WARC_START, Damage

MAX_HEADER_BYTES = 64 * 1024
SKIP_UNHELD_BYTES = 4 << 20  # a skipped record bigger than this is read past without holding it
RAW_BYTES = 4 * m.REJECTED_RECORD_CHARS  # what rejected/ can show of a record
_CRLF = (13, 10)
_VERSION = b"WARC/1."  # a record begins with its version line, WARC/1.0 or WARC/1.1


def parse_fields(header: bytes) -> dict[str, str]:
    """WARC header fields by lower-cased name (the first of a repeated name), values stripped, continuation lines
    joined; each line UTF-8, else Latin-1 (as warcio)."""
    try:
        text = header.decode("utf-8")
    except UnicodeDecodeError:
        text = "\r\n".join(_decoded(line) for line in header.split(b"\r\n"))
    fields: dict[str, str] = {}
    last = None
    for line in text.split("\r\n")[1:]:  # the first line is the version
        if line[:1] in (" ", "\t"):
            if last is not None:
                fields[last] = f"{fields[last]} {line.strip()}".strip()
            continue
        name, sep, value = line.partition(":")
        key = name.strip().lower()
        last = key if sep and key not in fields else None
        if last is not None:
            fields[key] = value.strip()
    return fields


def _decoded(line: bytes) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return line.decode("latin-1")


@dataclass(frozen=True)
class Framed:
    """A complete record: where it starts (file offset; in a .warc.gz, its member's, and ``inner`` bytes into the
    member's data), its header fields, its bytes (header and block) and its header's length."""

    offset: int
    inner: int
    fields: dict[str, str]
    data: bytes
    header_len: int


@dataclass(frozen=True)
class Bad:
    """An unusable stretch (a damaged, malformed or cut record, bytes that are no record), as one rejection."""

    offset: int
    inner: int
    reason: str
    detail: str
    id: str | None
    raw: bytes


def _version_line(buf: bytearray, start: int, end: int | None = None) -> int:
    """Index of the first ``WARC/1.<digit>`` CRLF in buf[start:end] (where a record may begin), or -1."""
    end = len(buf) if end is None else end
    at = buf.find(_VERSION, start, end)
    while at >= 0:
        if at + len(_VERSION) + 3 <= len(buf) and 48 <= buf[at + len(_VERSION)] <= 57 \
                and buf[at + len(_VERSION) + 1:at + len(_VERSION) + 3] == b"\r\n":
            return at
        at = buf.find(_VERSION, at + 1, end)
    return -1


class Framer:
    """Cuts decoded WARC bytes into records by their Content-Length; what cannot be a record becomes one ``Bad``
    per stretch, and framing resumes at the next ``WARC/1.x`` version line (or gzip member beginning ``WARC/``).

    ``compressed``: a gzip member whose data begins with ``WARC/`` always begins a record (a record still open
    there is cut: its Content-Length runs past its member), so a split starting at such a member frames exactly
    what reading from the file's start would.
    """

    def __init__(self, compressed: bool, skip_kind: Callable[[dict[str, str], int], str | None]) -> None:
        self.compressed = compressed
        self.skip_kind = skip_kind  # a big record's skipped kind from its header fields and size, or None
        self.buf = bytearray()
        self.at = 0  # index of the first unframed byte in buf
        self.fed = 0  # stream position after the last byte fed (the end of buf)
        self.members: list[tuple[int, int]] = [(0, 0)]  # (stream position, file offset) of member starts
        self.stretch: Bad | None = None  # an open unusable stretch, until the next record start
        self.unheld = 0  # bytes still to read past of a big skipped record...
        self.unheld_record: tuple[str, Bad] | None = None  # ... its kind, and its rejection should it be cut
        self.out: list[Framed | Bad | str] = []  # framed records, rejections, skipped kinds (a str) in order

    def _pos(self, index: int) -> int:
        """Stream position of ``buf[index]``."""
        return self.fed - len(self.buf) + index

    def _where(self, index: int) -> tuple[int, int]:
        pos = self._pos(index)
        i = bisect.bisect_right(self.members, (pos, float("inf"))) - 1
        start, offset = self.members[i]
        return (offset, pos - start) if self.compressed else (offset + pos - start, 0)

    def _drop(self, n: int) -> None:
        self.at += n
        if self.at > (1 << 20) and self.at * 2 > len(self.buf):  # compact now and then, not per record
            del self.buf[:self.at]
            self.at = 0

    def member(self, offset: int, head: bytes) -> None:
        """A gzip member (a plain file: the data) begins at file ``offset``; ``head``: its first bytes."""
        if self.compressed and head == WARC_START and (self.at < len(self.buf) or self.stretch or self.unheld_record):
            self.close(m.MALFORMED_WARC_RECORD, "its Content-Length runs past the end of its gzip member")
        self.members.append((self.fed, offset))
        while len(self.members) > 1 and self.members[1][0] <= self._pos(self.at):
            self.members.pop(0)

    def feed(self, data: bytes) -> None:
        """More decoded bytes; frames what is complete."""
        self.buf += data
        self.fed += len(data)
        self._frame(final=False)

    def damage(self, event: Damage) -> None:
        """The member at ``event.offset`` cannot be read: one rejection for it and what was open in it (a record
        begun in an earlier member too)."""
        stretch = self.stretch
        open_bad = self._take_open(event.reason, event.detail)
        if open_bad is not None and stretch is None:  # a record open in it (or begun before it)
            self.out.append(open_bad)
        elif open_bad is not None and open_bad.offset == event.offset:  # a stretch of its own decoded bytes
            self.out.append(Bad(open_bad.offset, open_bad.inner, event.reason, event.detail, None, open_bad.raw))
        else:  # nothing open, or a stretch begun before it: rejected apart
            self.out += [b for b in (open_bad,) if b is not None]
            self.out.append(Bad(event.offset, 0, event.reason, event.detail, None, b""))

    def close(self, reason: str, detail: str) -> None:
        """The data ends here: frame what is complete and reject what is open (an open stretch keeps its own
        reason, an open record gets ``reason``)."""
        open_bad = self._take_open(reason, detail)
        if open_bad is not None:
            self.out.append(open_bad)

    def _take_open(self, reason: str, detail: str) -> Bad | None:
        """Frame what is complete, then the open stretch, or the open record as ``reason``; the framer starts anew.
        An open record followed by another's version line ran past it: rejected, and framing goes on from there."""
        buf = self.buf
        while True:
            self._frame(final=True)
            i = self.at
            while i < len(buf) and buf[i] in _CRLF:
                i += 1
            if self.stretch is not None or self.unheld_record is not None or _version_line(buf, i + 1) < 0:
                break
            self.at = i
            self._resync(m.MALFORMED_WARC_RECORD, "its Content-Length runs past the next record's header")
        found = self.stretch
        if found is None and self.unheld_record is not None:
            bad = self.unheld_record[1]
            found = Bad(bad.offset, bad.inner, reason, detail, bad.id, bad.raw)
        elif found is None and i < len(buf):
            head = buf.find(b"\r\n\r\n", i)
            fields = parse_fields(bytes(buf[i:head])) if head >= 0 else {}
            found = self._bad(i, reason, detail, fields.get("warc-record-id"))
        self.buf.clear()
        self.at = 0
        self.stretch, self.unheld, self.unheld_record = None, 0, None
        return found

    def _bad(self, index: int, reason: str, detail: str, rec_id: str | None) -> Bad:
        offset, inner = self._where(index)
        return Bad(offset, inner, reason, detail, rec_id, bytes(self.buf[index:index + RAW_BYTES]))

    def _resync(self, reason: str, detail: str, rec_id: str | None = None) -> None:
        """The record at ``at`` is unusable: open a stretch there and look for a record start after it."""
        self.stretch = self._bad(self.at, reason, detail, rec_id)
        self._drop(1)

    def _frame(self, final: bool) -> None:
        buf = self.buf
        while True:
            if self.unheld:
                n = min(self.unheld, len(buf) - self.at)
                self._drop(n)
                self.unheld -= n
                if self.unheld:
                    return
            if self.unheld_record is not None:
                end = self._trailer(self.at, final)
                if end is None:
                    return
                kind, bad = self.unheld_record
                self.unheld_record = None
                if end < 0:
                    self.stretch = bad
                    continue
                self.out.append(kind)
                self._drop(end - self.at)
            if self.stretch is not None:
                found = _version_line(buf, self.at)
                if found < 0:
                    self._drop(max(0, len(buf) - self.at - len(_VERSION) - 2))  # keep what may begin one
                    return
                self._drop(found - self.at)
                self.out.append(self.stretch)
                self.stretch = None
            while self.at < len(buf) and buf[self.at] in _CRLF:
                self._drop(1)
            at = self.at
            if at == len(buf):
                return
            if not buf.startswith(WARC_START, at):
                if len(buf) - at < len(WARC_START) and WARC_START.startswith(bytes(buf[at:])):
                    return  # maybe the start of one: wait for more (or let close() reject it)
                self._resync(m.MALFORMED_WARC_RECORD, "bytes that do not begin a WARC record")
                continue
            head = buf.find(b"\r\n\r\n", at, at + MAX_HEADER_BYTES + 4)
            if head < 0:
                if len(buf) - at > MAX_HEADER_BYTES:
                    self._resync(m.MALFORMED_WARC_RECORD, f"a WARC header longer than {MAX_HEADER_BYTES} bytes")
                    continue
                return
            if 0 <= _version_line(buf, at + 1, head):  # cut short: the next record's header follows
                self._resync(m.MALFORMED_WARC_RECORD, "the WARC header is cut short by the next record's")
                continue
            fields = parse_fields(bytes(buf[at:head]))
            length = fields.get("content-length", "")
            if not (length.isascii() and length.isdigit()):
                self._resync(m.MALFORMED_WARC_RECORD, "the WARC header has no valid Content-Length",
                             fields.get("warc-record-id"))
                continue
            header_len = head + 4 - at
            need = header_len + int(length)
            bad_length = f"the block of Content-Length {length} is not followed by CRLF CRLF"
            kind = self.skip_kind(fields, need) if need > SKIP_UNHELD_BYTES else None
            if kind is not None:
                self.unheld_record = (kind, self._bad(at, m.MALFORMED_WARC_RECORD, bad_length,
                                                      fields.get("warc-record-id")))
                self.unheld = need
                continue
            if len(buf) - at < need:
                return
            end = self._trailer(at + need, final)
            if end is None:
                return
            if end < 0:
                self._resync(m.MALFORMED_WARC_RECORD, bad_length, fields.get("warc-record-id"))
                continue
            offset, inner = self._where(at)
            self.out.append(Framed(offset, inner, fields, bytes(memoryview(buf)[at:at + need]), header_len))
            if end == len(buf):  # the usual end of a gzip member's data
                buf.clear()
                self.at = 0
            else:
                self._drop(end - at)

    def _trailer(self, at: int, final: bool) -> int | None:
        """Where the record whose block ends at ``at`` ends: after CRLF CRLF, or (leniently, as warcio) after any
        line breaks followed by the next ``WARC/`` or the end of the data; -1: something else follows (the
        Content-Length is wrong); None: not known yet."""
        buf = self.buf
        if buf[at:at + 4] == b"\r\n\r\n":
            return at + 4
        end = at
        while end < len(buf) and buf[end] in _CRLF:
            end += 1
        rest = bytes(buf[end:end + len(WARC_START)])
        if not WARC_START.startswith(rest):
            return -1
        if len(rest) < len(WARC_START) and not final:
            return None
        return end
