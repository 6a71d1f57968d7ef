"""Pass 2's reader: pass 1's staged documents without their duplicates and (with a plan) what selection drops.

    staged file ─► tables ─► runs of one source file ─► each document: duplicate? selected? ─► DocBatch
                                                          ─► [frequent lines removed (dedup.lines)]
"""

from __future__ import annotations

import json
from typing import Any, Iterator

import numpy as np

from schemas.documents import META_BUCKET, META_SCORES, META_UPSAMPLE
from schemas.manifest import BELOW_SELECTION_THRESHOLD, STAGE_DEDUP, STAGE_SELECT
from transforms.dedup.clusters import ClusterSampler
from transforms.dedup.keys import make_ref
from transforms.dedup.lines import LineEditor
from transforms.output.document_writer import TOKENS_COLUMN, read_documents
from transforms.read.readers import DocBatch
from transforms.read.records import Rejection, raw_record
from transforms.select.selection import Plan, tie_break
from transforms.stream.attempts import Attempt
from transforms.stream.line_pass import edit_lines

Columns = dict[str, list]  # a staged table's columns as Python lists
TokenLists = tuple[np.ndarray, np.ndarray]  # a staged table's token ids: (offsets, flat values)


def read_staged(url: str, duplicates: dict[int, tuple[str, ...]], attempt: Attempt, plan: Plan | None = None,
                stream: int = 0, lines: LineEditor | None = None,
                sampler: ClusterSampler | None = None) -> Iterator[DocBatch]:
    """Pass 2's documents: the staged file of pass 1 without its duplicates (``ordinal → (reason, kept id)``),
    which go to the attempt's rejected file naming the document they duplicate, and (with a ``plan``) without
    the documents selection drops, which go there with their scores; kept ones get their ``meta.bucket``. Then
    (with ``lines``) the frequent lines are removed from those left (a changed batch is tokenized again). The
    ``sampler`` sees each duplicate (the members of the largest clusters are kept for the manifest)."""
    first = 0  # the stream ordinal of the table's first document
    for table, encoder in read_documents(url):
        cols, token_lists = staged_columns(table, encoder)
        for start, stop in source_runs(cols["source"]):  # one DocBatch per run of documents of one input file
            batch, dropped, kept = staged_batch(cols, start, stop, first, duplicates, plan, stream, sampler)
            attempt.reject(dropped)
            changed = False
            if lines is not None:
                kept, changed = edit_lines(batch, kept, first, stream, lines, attempt)
            if token_lists is not None and not changed:
                batch.token_ids = kept_token_ids(token_lists, kept, encoder)
            yield batch
        first += len(cols["text"])


def staged_columns(table: Any, encoder: str | None) -> tuple[Columns, TokenLists | None]:
    """A staged table's columns, and its token ids when pass 1 tokenized its documents (a token budget)."""
    token_lists = None
    if encoder is not None:
        column = table.column(TOKENS_COLUMN)
        token_lists = (column.offsets.to_numpy(), column.values.to_numpy(zero_copy_only=False))
        table = table.drop_columns([TOKENS_COLUMN])
    return table.to_pydict(), token_lists


def source_runs(sources: list[str]) -> Iterator[tuple[int, int]]:
    """[start, stop) of each run of equal consecutive sources."""
    start, n = 0, len(sources)
    while start < n:
        stop = start + 1
        while stop < n and sources[stop] == sources[start]:
            stop += 1
        yield start, stop
        start = stop


def staged_batch(cols: Columns, start: int, stop: int, first: int, duplicates: dict[int, tuple[str, ...]],
                 plan: Plan | None, stream: int,
                 sampler: ClusterSampler | None = None) -> tuple[DocBatch, list[Rejection], list[int]]:
    """Rows [start, stop) of one source: the batch of those kept, the rejections of the others (in row order),
    and the kept rows."""
    source = cols["source"][start]
    batch = DocBatch(source=source)
    dropped: list[Rejection] = []
    kept: list[int] = []
    for i in range(start, stop):
        dup = duplicates.get(first + i)
        if dup is not None:
            dropped.append(duplicate_rejection(cols, i, source, *dup))
            if sampler:
                sampler.offer(dup, cols["id"][i], source, cols["text"][i])
            continue
        meta = cols["meta"][i]
        if plan is not None:
            meta = json.loads(meta) if isinstance(meta, str) else dict(meta or {})
            rejection = select_rejection(plan, meta, cols, i, source, make_ref(stream, first + i))
            if rejection is not None:
                dropped.append(rejection)
                continue
        kept.append(i)
        batch.texts.append(cols["text"][i])
        batch.ids.append(cols["id"][i])
        batch.lines.append(cols["line"][i])
        batch.rows.append(cols["row"][i])
        batch.metas.append(meta)
    return batch, dropped, kept


def duplicate_rejection(cols: Columns, i: int, source: str, reason: str, kept_id: str,
                        earlier: str | None = None) -> Rejection:
    """The rejection of staged row ``i``, a duplicate of the document ``kept_id`` (of the ``earlier`` output)."""
    return Rejection(
        source, reason, line=cols["line"][i], row=cols["row"][i], id=cols["id"][i],
        detail=f"duplicate of {kept_id}" + (f" in {earlier}" if earlier else ""), record=raw_record(cols["text"][i]), stage=STAGE_DEDUP,
        counted_as=f"{STAGE_DEDUP}/{reason}", duplicate_of=kept_id,
    )


def select_rejection(plan: Plan, meta: dict[str, Any], cols: Columns, i: int, source: str,
                     ref: int) -> Rejection | None:
    """Apply the selection plan to one staged document (its meta gains the bucket); its rejection if dropped."""
    scores = meta.get(META_SCORES) or {}
    values = tuple(float(scores[s.key]) for s in plan.selection.scorers)
    keep, bucket = plan.decide(values, tie_break(cols["id"][i], ref))
    if bucket is not None:
        meta[META_BUCKET] = bucket
    if keep:
        factor = plan.upsample(bucket)
        if factor > 1:
            meta[META_UPSAMPLE] = factor
        return None
    reported = dict(scores) if bucket is None else {**scores, META_BUCKET: bucket}
    return Rejection(
        source, BELOW_SELECTION_THRESHOLD, line=cols["line"][i], row=cols["row"][i], id=cols["id"][i],
        detail=f"{STAGE_SELECT}/{BELOW_SELECTION_THRESHOLD}", record=raw_record(cols["text"][i]), stage=STAGE_SELECT,
        counted_as=f"{STAGE_SELECT}/{BELOW_SELECTION_THRESHOLD}", scores=reported,
    )


def kept_token_ids(token_lists: TokenLists, kept: list[int], encoder: str) -> tuple[str, np.ndarray, np.ndarray]:
    """The kept rows' token ids as a batch carries them: (encoder name, flat ids, lengths)."""
    offsets, values = token_lists
    lens = (offsets[1:] - offsets[:-1])[kept].astype(np.int64)
    take = [values[offsets[i]:offsets[i + 1]] for i in kept]
    flat = np.concatenate(take).astype(np.uint32, copy=False) if take else np.zeros(0, np.uint32)
    return encoder, flat, lens
