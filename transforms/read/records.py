"""Record validation and repair: raw JSON lines / rows → (text, id) or a rejection with its reason.

Pure functions; the readers call them for every record. Nothing is silently dropped: a record either yields a
document (possibly repaired, and the repair counted) or a ``Rejection``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from schemas import manifest as m

_SURROGATES = re.compile("[\ud800-\udfff]")


@dataclass
class Rejection:
    """A record that cannot be used, with where it came from and why."""

    source: str
    reason: str
    line: int | None = None
    row: int | None = None
    id: str | None = None
    detail: str = ""
    record: str = ""
    stage: str = "read"
    counted_as: str = ""  # the docs_rejected key when it is not the reason (filters: "<stage>/<reason>")
    duplicate_of: str | None = None  # dedup: id of the kept document this one duplicates
    scores: dict[str, float] | None = None  # select: the document's scores
    contamination: dict[str, Any] | None = None  # decontam: the evaluation set and n-gram it matched
    offset: int | None = None  # WARC: byte offset where the record (its gzip member in a .warc.gz) starts

    @property
    def count_key(self) -> str:
        """The key this rejection is counted under in the manifest's docs_rejected."""
        return self.counted_as or self.reason

    def to_dict(self) -> dict[str, Any]:
        """The rejected/ record."""
        d: dict[str, Any] = {m.REJ_SOURCE: scrub(self.source)}
        if self.line is not None:
            d[m.REJ_LINE] = self.line
        if self.row is not None:
            d["row"] = self.row
        if self.offset is not None:
            d[m.REJ_OFFSET] = self.offset
        d[m.REJ_ID] = None if self.id is None else scrub(self.id)
        d[m.REJ_REASON] = self.reason
        d[m.REJ_STAGE] = self.stage
        d[m.REJ_DETAIL] = scrub(self.detail)
        d[m.REJ_RECORD] = scrub(self.record[: m.REJECTED_RECORD_CHARS])
        if self.duplicate_of is not None:
            d[m.REJ_DUPLICATE_OF] = scrub(self.duplicate_of)
        if self.scores is not None:
            d[m.REJ_SCORES] = self.scores
        if self.contamination is not None:
            d[m.REJ_CONTAMINATION] = self.contamination
        return d

    def where(self) -> str:
        """'file:line' / 'file row N' / 'file at byte N' for messages."""
        if self.line is not None:
            return f"{self.source}:{self.line}"
        if self.row is not None:
            return f"{self.source} row {self.row}"
        if self.offset is not None:
            return f"{self.source} at byte {self.offset}"
        return self.source


@dataclass
class Repairs:
    """Counts of repairs applied to kept documents; repairs of the record being validated stay ``pending``."""

    counts: dict[str, int] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)

    def add(self, kind: str) -> None:
        """Note one repair of the current record."""
        self.pending.append(kind)

    def commit(self) -> None:
        """The current record is kept: count its repairs."""
        for kind in self.pending:
            self.counts[kind] = self.counts.get(kind, 0) + 1
        self.pending.clear()


def parse_json_line(line: bytes, repairs: Repairs) -> tuple[Any, str | None, str, bool]:
    """Parse one JSONL line; returns (value, reject_reason, detail, may_hold_surrogates).

    Invalid UTF-8 is replaced by U+FFFD and counted. Only the fallback parser can produce lone surrogates.
    """
    try:
        return orjson.loads(line), None, "", False
    except orjson.JSONDecodeError as exc:
        first_error = str(exc)
    try:
        text = line.decode("utf-8")
        bad_utf8 = False
    except UnicodeDecodeError:
        text = line.decode("utf-8", "replace")
        bad_utf8 = True
    try:
        # the standard library accepts what orjson refuses on purpose: lone surrogate escapes (repaired below)
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None, m.MALFORMED_JSON, first_error, False
    if bad_utf8:
        repairs.add(m.INVALID_UTF8)
    return value, None, "", True


def clean_text(text: str, repairs: Repairs, surrogates: bool = True) -> str:
    """Remove NUL characters and (if ``surrogates`` may occur) replace lone surrogates by U+FFFD, counting each."""
    if "\x00" in text:
        text = text.replace("\x00", "")
        repairs.add(m.NUL_REMOVED)
    if surrogates and _SURROGATES.search(text):
        text = _SURROGATES.sub("\ufffd", text)
        repairs.add(m.LONE_SURROGATE)
    return text


def text_of(
    obj: Any, text_field: str, repairs: Repairs, surrogates: bool = True
) -> tuple[str | None, str | None, str]:
    """The document text of a parsed record; returns (text, reject_reason, detail)."""
    if not isinstance(obj, dict):
        return None, m.NOT_AN_OBJECT, f"a JSON {type(obj).__name__}, not an object"
    if text_field not in obj:
        return None, m.MISSING_TEXT, f"no field {text_field!r} (fields: {', '.join(list(obj)[:10])})"
    value = obj[text_field]
    if value is None:
        return None, m.NULL_TEXT, f"field {text_field!r} is null"
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            value = value.decode("utf-8", "replace")
            repairs.add(m.INVALID_UTF8)
    if not isinstance(value, str):
        return None, m.NON_STRING_TEXT, f"field {text_field!r} is a {type(value).__name__}"
    value = clean_text(value, repairs, surrogates)
    if not value:
        return None, m.EMPTY_TEXT, f"field {text_field!r} is empty"
    return value, None, ""


def id_of(obj: Any, id_field: str, source: str, sep: str, number: int, surrogates: bool = False) -> str:
    """The record's id field as a string, or the stable fallback ``<source><sep><line or row>``.

    With ``surrogates`` (the record came through the lenient parser), lone surrogates become U+FFFD.
    """
    value = obj.get(id_field) if isinstance(obj, dict) else None
    if value is None or isinstance(value, (dict, list)):
        return f"{source}{sep}{number}"
    value = value if isinstance(value, str) else str(value)
    return _SURROGATES.sub("\ufffd", value) if surrogates else value


def scrub(text: str) -> str:
    """``text`` with any lone surrogate replaced by U+FFFD (safe to encode as UTF-8)."""
    return _SURROGATES.sub("\ufffd", text)


def raw_record(line: bytes | str | Any) -> str:
    """The first KB of a raw record for rejected/ (bytes decoded with replacement)."""
    if isinstance(line, bytes):
        return line[: m.REJECTED_RECORD_CHARS * 4].decode("utf-8", "replace")[: m.REJECTED_RECORD_CHARS]
    if isinstance(line, str):
        return line[: m.REJECTED_RECORD_CHARS]
    return orjson.dumps(line, default=str, option=orjson.OPT_NON_STR_KEYS).decode()[: m.REJECTED_RECORD_CHARS]
