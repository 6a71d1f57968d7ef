"""The read pass: a stream's records read ahead, through the recipe, counted and timed; drops go to rejected/."""

from __future__ import annotations

from typing import Any, Iterator

from schemas.documents import META_SCORES
from schemas.manifest import (
    MOD_ID,
    MOD_LINE,
    MOD_ORIGINAL,
    MOD_ROW,
    MOD_SOURCE,
    MOD_STAGES,
    REJ_CONTAMINATION,
    STAGE_FILTER,
    STAGE_SELECT,
    TIME_READ,
    TIME_RECIPE,
    Counts,
)
from transforms.dedup.keys import make_ref
from transforms.output.faults import fault_point
from transforms.read.readers import DocBatch
from transforms.read.records import Rejection, scrub
from transforms.read.sources import Stream
from transforms.recipe.work import DocKeys
from transforms.stream.attempts import Attempt, JsonlFile
from transforms.stream.config import StreamConfig, StreamTools
from transforms.stream.prefetch import prefetch, stream_batches

_PREFETCH_BATCHES = 4


def read_stream(stream: Stream, cfg: StreamConfig, tools: StreamTools, attempt: Attempt,
                keys: list[tuple[int, str, DocKeys]] | None = None) -> Iterator[DocBatch]:
    """The stream's documents after the recipe, batch by batch; read and filter rejections go to the attempt.

    With ``keys``, each kept document's (ref, id, dedup keys) is appended to it as the batch is yielded.
    """
    batches = prefetch(stream_batches(stream, cfg), _PREFETCH_BATCHES)
    worked = tools.runner.map(batches) if tools.runner is not None else ((b, None, None) for b in batches)
    kept = 0
    recipe_seconds = tools.runner.seconds if tools.runner is not None else 0.0
    for batch, decisions, doc_keys in worked:
        fault_point("read")
        count_read(attempt.counts, batch)
        if tools.runner is not None:
            attempt.counts.time(TIME_RECIPE, tools.runner.seconds - recipe_seconds)
            recipe_seconds = tools.runner.seconds
        rejections = batch.rejections
        if decisions:
            dropped, kept_keys = apply_decisions(batch, decisions, doc_keys, attempt.counts, attempt.modified)
            rejections = rejections + dropped
            if keys is not None:
                for i, k in enumerate(kept_keys):
                    keys.append((make_ref(stream.index, kept + i), batch.ids[i], k))
        kept += len(batch.texts)
        attempt.reject(rejections)
        attempt.show(records=batch.records, bytes=batch.bytes_read)
        yield batch


def count_read(c: Counts, batch: DocBatch) -> None:
    """Count a batch as read: its records and bytes (in the totals and under its input file), seconds, repairs."""
    c.records += batch.records
    c.bytes_read += batch.bytes_read
    c.add_source(batch.source, records=batch.records, bytes_read=batch.bytes_read)
    c.time(TIME_READ, batch.seconds)
    for kind, n in batch.repairs.items():
        c.repair(kind, n)
    for kind, n in batch.skipped.items():  # WARC records that are no documents (not in records)
        c.skipped_records[kind] = c.skipped_records.get(kind, 0) + n


def apply_decisions(batch: DocBatch, decisions: list, keys: list[DocKeys | None], counts: Counts,
                    modified: JsonlFile | None = None) -> tuple[list[Rejection], list[DocKeys]]:
    """Keep a batch's (possibly modified) documents in place; return the dropped ones and the kept ones' keys.

    With ``modified``, each kept document whose text a stage changed is written there with its original text.
    """
    texts, ids, lines, rows, metas, raws, kept_keys, dropped = [], [], [], [], [], [], [], []
    for i, d in enumerate(decisions):
        for stage in d.modified_by:
            counts.docs_modified[stage] = counts.docs_modified.get(stage, 0) + 1
        for key, n in (d.counts or {}).items():
            counts.stage_counts[key] = counts.stage_counts.get(key, 0) + n
        if d.keep and d.modified_by and modified is not None:
            modified.write(modified_record(batch, i, d.modified_by))
        if d.keep:
            texts.append(d.text)
            ids.append(batch.ids[i])
            lines.append(batch.lines[i])
            rows.append(batch.rows[i])
            if batch.raws:
                raws.append(batch.raws[i])
            given = batch.metas[i] if batch.metas else None
            metas.append({**given, **d.meta} if given and d.meta else d.meta or given)
            kept_keys.append(keys[i])
            continue
        selected = d.stage == STAGE_SELECT  # a selection drop names its scores; a filter's, its filter
        dropped.append(Rejection(
            batch.source, d.reason, line=batch.lines[i], row=batch.rows[i], id=batch.ids[i],
            detail=f"{d.stage}/{d.reason}", record=batch.raw_record(i),
            stage=STAGE_SELECT if selected else STAGE_FILTER, counted_as=f"{d.stage}/{d.reason}",
            scores=(d.meta or {}).get(META_SCORES) if selected else None,
            contamination=(d.meta or {}).get(REJ_CONTAMINATION),  # decontam: the set and n-gram it matched
        ))
    batch.texts, batch.ids, batch.lines, batch.rows, batch.metas, batch.raws = texts, ids, lines, rows, metas, raws
    return dropped, kept_keys


def modified_record(batch: DocBatch, i: int, stages: tuple[str, ...]) -> dict[str, Any]:
    """The modified/ record of a batch's i-th document: where it came from, which stages changed it, its original
    text (the kept text is in the shards or documents)."""
    rec: dict[str, Any] = {MOD_SOURCE: batch.source}
    if batch.lines[i] is not None:
        rec[MOD_LINE] = batch.lines[i]
    if batch.rows[i] is not None:
        rec[MOD_ROW] = batch.rows[i]
    rec.update({MOD_ID: scrub(batch.ids[i]), MOD_STAGES: list(stages), MOD_ORIGINAL: scrub(batch.texts[i])})
    return rec
