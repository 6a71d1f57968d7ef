"""Line dedup inside the two passes over a stream: pass 1 hands on each kept document's line keys, pass 2 removes the
frequent lines from the staged documents (``transforms.dedup.lines`` says what and why).

    pass 1:  batch ─► distinct line keys per document ─► the stream's line key file (local) or ("lines", chunk)
    pass 2:  staged batch ─► LineEditor ─► changed documents counted (and their text before in modified/);
             a document left empty ─► rejected/ as dedup/lines_empty
"""

from __future__ import annotations

import time
from typing import Any, Iterator

from schemas.manifest import LINES_EMPTY, STAGE_DEDUP, TIME_RECIPE
from transforms.dedup.keys import make_ref
from transforms.dedup.line_files import LineKeyWriter
from transforms.dedup.lines import LineEditor, batch_keys
from transforms.hashing import utf8
from transforms.read.readers import DocBatch
from transforms.read.records import Rejection, raw_record
from transforms.recipe.line_dedup import LineDedup
from transforms.stream.attempts import Attempt
from transforms.stream.read_pass import modified_record


def stage_line_keys(batch: DocBatch, stream: int, first: int, config: LineDedup, writer: LineKeyWriter | None,
                    attempt: Attempt) -> Iterator[tuple[str, Any]]:
    """Pass 1: the batch's line keys (its first document is the stream's ``first``-th kept one) to the stream's
    key file, or as one ("lines", (stream, (keys, ordinals))) item when there is none (remote runners); timed as
    recipe work."""
    started = time.perf_counter()
    keys, ordinals = batch_keys(batch.texts, config.unit, first)
    if writer is not None:
        writer.add(keys, ordinals)
    attempt.counts.time(TIME_RECIPE, time.perf_counter() - started)
    if writer is None and keys.size:
        yield "lines", (stream, (keys, ordinals))


def edit_lines(batch: DocBatch, kept: list[int], first: int, stream: int, editor: LineEditor,
               attempt: Attempt) -> tuple[list[int], bool]:
    """Pass 2: remove the frequent lines from a staged batch in place (``kept``: its documents' rows in the staged
    table whose first row is the stream's ``first``-th document); returns the rows still kept and whether any text
    changed. Changes are counted in the attempt; documents left empty go to its rejected file."""
    keep: list[int] = []
    rows: list[int] = []
    emptied: list[Rejection] = []
    changed = False
    counts, config = attempt.counts, editor.config
    for at, row in enumerate(kept):
        text = batch.texts[at]
        edited = editor.edit(text, make_ref(stream, first + row))
        if edited is None:
            keep.append(at)
            rows.append(row)
            continue
        new, removed = edited
        if not new.strip():
            emptied.append(Rejection(
                batch.source, LINES_EMPTY, line=batch.lines[at], row=batch.rows[at], id=batch.ids[at],
                detail=f"{removed} {config.unit}(s) found in {config.min_docs} or more documents removed, nothing "
                       "left", record=raw_record(text), stage=STAGE_DEDUP, counted_as=f"{STAGE_DEDUP}/{LINES_EMPTY}"))
            continue
        if attempt.modified is not None:
            attempt.modified.write(modified_record(batch, at, (STAGE_DEDUP,)))
        counts.docs_modified[STAGE_DEDUP] = counts.docs_modified.get(STAGE_DEDUP, 0) + 1
        counts.lines_removed += removed
        counts.line_bytes_removed += len(utf8(text)) - len(utf8(new))
        batch.texts[at] = new
        changed = True
        keep.append(at)
        rows.append(row)
    attempt.reject(emptied)
    if len(keep) < len(kept):
        batch.texts = [batch.texts[i] for i in keep]
        batch.ids = [batch.ids[i] for i in keep]
        batch.lines = [batch.lines[i] for i in keep]
        batch.rows = [batch.rows[i] for i in keep]
        batch.metas = [batch.metas[i] for i in keep]
    return rows, changed
