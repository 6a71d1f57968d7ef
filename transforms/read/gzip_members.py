"""The gzip members of a ``.warc.gz``, one by one with their byte offsets; damage is reported and read past.

A ``.warc.gz`` is a run of gzip members, normally one WARC record each (the WARC standard's recommendation and
Common Crawl's layout). Reading it member by member with zlib, instead of as one stream (``compressed.py``, which
JSONL uses), gives each record the offset of its member (the offset Common Crawl's index names, from which one
range request fetches the record), checks a member's CRC before its data is used (below HOLD_BYTES), and lets a
damaged member be rejected while the members after it are still read: reading resumes at the next *WARC member
start*, an offset where a gzip header begins whose data begins with ``WARC/``. The same rule cuts a big file into
splits without reading it first (``cut_offsets``): each split reads the members that start inside it, so every
member is read exactly once whatever the cuts.

One thing the rule cannot tell apart: a gzip stream stored verbatim inside a record's compressed payload (a crawled
``.warc.gz``) whose data begins with ``WARC/``. A cut planned there falls inside a member; the reader of the split
before it sees that member run past the cut and stops the run (``WarcCutError``) instead of reading bytes twice.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import IO, Iterator

from schemas import manifest as m
from transforms.errors import TokenmillError

MAGIC = b"\x1f\x8b\x08"  # a gzip header with the deflate method
WARC_START = b"WARC/"
RAW_CHUNK = 64 * 1024
OUT_CHUNK = 1 << 20  # decompressed bytes per zlib call (a highly compressed member is decoded in pieces)
HOLD_BYTES = 8 << 20  # a member's data is handed on after its CRC is checked, unless it is bigger than this
PROBE_BYTES = 64 * 1024  # compressed bytes decoded to see whether a candidate member's data begins with WARC/
SCAN_BYTES = 1 << 20
# zlib's errors for a member whose data decoded but does not match its CRC or length: none of it can be trusted
_CHECK_ERRORS = ("incorrect data check", "incorrect length check")
CUT_SCAN_BYTES = 8 << 20  # how far past a cut's target the planner looks for a member start before it stops cutting


class WarcCutError(TokenmillError, RuntimeError):
    """A planned cut of a .warc.gz falls inside a gzip member (see the module docstring)."""

    PREFIX = "tokenmill: cannot read "  # raised in workers: found in Beam's wrapped text by pipelines.cli


@dataclass(frozen=True)
class Member:
    """A gzip member begins at ``offset``; its data follows in ``Piece`` events (``head``: its first bytes)."""

    offset: int
    head: bytes


@dataclass(frozen=True)
class Piece:
    """Decompressed bytes of the current member, in order."""

    data: bytes


@dataclass(frozen=True)
class Damage:
    """Bytes from ``offset`` that cannot be decompressed (``reason``: a manifest reject reason), after the member's
    data decoded before the damage (none when its CRC does not match); reading resumes at the next WARC member
    start, if any."""

    offset: int
    reason: str
    detail: str


def is_warc_member(fh: IO[bytes], offset: int) -> bool:
    """Does a gzip member begin at ``offset`` whose data begins with ``WARC/``?"""
    fh.seek(offset)
    data = fh.read(PROBE_BYTES)
    if not data.startswith(MAGIC):
        return False
    try:
        return zlib.decompressobj(31).decompress(data, len(WARC_START)) == WARC_START
    except zlib.error:
        return False


def next_warc_member(fh: IO[bytes], offset: int, limit: int) -> int | None:
    """The first WARC member start in [offset, limit), or None."""
    pos = offset
    while pos < limit:
        fh.seek(pos)
        window = fh.read(min(SCAN_BYTES, limit - pos) + len(MAGIC) - 1)
        if not window:
            return None
        at = window.find(MAGIC)
        while 0 <= at and pos + at < limit:
            if is_warc_member(fh, pos + at):
                return pos + at
            at = window.find(MAGIC, at + 1)
        pos += max(1, len(window) - len(MAGIC) + 1)
    return None


def cut_offsets(fh: IO[bytes], size: int, stream_bytes: int) -> list[int]:
    """Split starts of a .warc.gz: 0, then the first WARC member start at or after each multiple of an even share of
    at least ``stream_bytes``; no further cut once none is found within CUT_SCAN_BYTES of a target (one big
    member: the rest stays one split)."""
    pieces = max(1, size // stream_bytes)
    share = size // pieces
    cuts = [0]
    for i in range(1, pieces):
        target = max(share * i, cuts[-1] + 1)
        found = next_warc_member(fh, target, min(size, target + CUT_SCAN_BYTES))
        if found is None:
            break
        cuts.append(found)
    return cuts


class MemberReader:
    """The members of a .warc.gz that start in [start, end) as Member/Piece/Damage events (``events``), and the
    compressed bytes read so far (``bytes_read``, for progress)."""

    def __init__(self, fh: IO[bytes], start: int, end: int, name: str = "") -> None:
        self.fh = fh
        self.name = name
        self.size = fh.seek(0, 2)
        self.end = self.size if end < 0 else min(end, self.size)
        self.pos = start
        self.pending = b""  # compressed bytes read past the end of the last member
        self.bytes_read = 0
        fh.seek(start)

    def _read(self) -> bytes:
        if self.pending:
            data, self.pending = self.pending, b""
        else:
            data = self.fh.read(RAW_CHUNK)
            self.bytes_read += len(data)
        self.pos += len(data)
        return data

    def _unread(self, data: bytes) -> None:
        self.pending = data + self.pending
        self.pos -= len(data)

    def _skip_padding(self) -> None:
        """Skip the zero bytes gzip(1) allows between members."""
        while True:
            data = self._read()
            rest = data.lstrip(b"\x00")
            if rest or not data:
                self._unread(rest)
                return

    def events(self) -> Iterator[Member | Piece | Damage]:
        """Member, its Pieces, ... in file order; a Damage, then the members from the next WARC member start."""
        while True:
            self._skip_padding()
            if self.pos >= self.end or self.pos >= self.size:
                return
            if not (yield from self._member(self.pos)):
                return

    def _member(self, begin: int) -> Iterator[Member | Piece | Damage]:
        """One member's events; returns whether reading goes on."""
        dec = zlib.decompressobj(31)
        held: list[bytes] = []
        held_bytes = 0
        streaming = False
        try:
            while not dec.eof:
                data = self._read()
                if not data:
                    if held:
                        yield from _held(begin, held)
                    return (yield from self._damaged(begin, None))
                out = dec.decompress(data, OUT_CHUNK)
                while True:
                    if streaming:
                        yield Piece(out)
                    else:
                        held.append(out)
                        held_bytes += len(out)
                        if held_bytes > HOLD_BYTES:  # too big to hold until its CRC is checked
                            yield from _held(begin, held)
                            streaming, held = True, []
                    if dec.eof or not dec.unconsumed_tail:
                        break
                    out = dec.decompress(dec.unconsumed_tail, OUT_CHUNK)
            self._unread(dec.unused_data)
        except zlib.error as exc:
            if held and not str(exc).endswith(_CHECK_ERRORS):  # what was decoded before the damage is sound
                yield from _held(begin, held)
            return (yield from self._damaged(begin, exc))
        if not streaming:
            yield from _held(begin, held)
        if self.pos > self.end and self.end < self.size:
            raise WarcCutError(
                f"{WarcCutError.PREFIX}{self.name!r} in splits: the gzip member at byte {begin} "
                f"runs past the planned cut at byte {self.end} (a gzip stream inside a record looked like a member "
                "start there); rerun with a --stream-mb larger than the file to read it whole"
            )
        return True

    def _damaged(self, begin: int, exc: zlib.error | None) -> Iterator[Damage]:
        """The Damage event of the member at ``begin`` (``exc`` None: the file ended inside it); reading resumes at
        the next WARC member start."""
        self.fh.seek(begin)
        head = self.fh.read(len(MAGIC))
        resume = next_warc_member(self.fh, begin + 1, self.end)
        if head != MAGIC[:len(head)] or (exc is not None and head != MAGIC):
            what = "bytes that are not a gzip member" + (f" ({exc})" if exc is not None else "")
        elif exc is None and resume is None:
            yield Damage(begin, m.TRUNCATED_RECORD, f"the file ends inside the gzip member that begins at byte {begin}")
            return False
        elif exc is None:
            what = "the gzip member ends before its end marker"
        else:
            what = f"damaged gzip member ({exc})"
        after = (f"; reading resumes at byte {resume}" if resume is not None
                 else "; no WARC gzip member follows" + (" before the split's end" if self.end < self.size else ""))
        yield Damage(begin, m.DAMAGED_GZIP_MEMBER, what + after)
        if resume is None:
            return False
        self.fh.seek(resume)
        self.pos, self.pending = resume, b""
        return True


def _held(begin: int, held: list[bytes]) -> Iterator[Member | Piece]:
    """A member's start and the data held of it."""
    joined = b"".join(held)
    yield Member(begin, joined[:len(WARC_START)])
    yield Piece(joined)


def plain_pieces(fh: IO[bytes], chunk: int = 1 << 20) -> Iterator[Member | Piece]:
    """An uncompressed WARC file as one member (at offset 0) of chunk-sized pieces."""
    data = fh.read(chunk)
    yield Member(0, data[:len(WARC_START)])
    while data:
        yield Piece(data)
        data = fh.read(chunk)
