"""The passes over one stream of ``prepare`` and ``filter``: each feeds its kept documents to the sinks the job wants.

    one pass (no dedup):  read ─► recipe ─► [tokenize ─► pack ─► shards] + [documents]     (process_stream)
    dedup, pass 1:        read ─► recipe (filters, keys) ─► staged documents + keys      (stage_stream)
    dedup, pass 2:        staged documents ─► drop duplicates ─► [shards] + [documents]   (finish_staged)

Every record a pass reads is counted once (in the totals and under its input file); every document it drops goes
to its rejected file with a reason. Each stage's time is measured per batch and carried in the same counts.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Iterator

from schemas.documents import META_SCORES
from schemas.manifest import E_TEMP_URL, TIME_READ, TIME_RECIPE, TIME_TOKENIZE, TIME_WRITE
from schemas.stream_result import StreamResult
from transforms.dedup.arrays import KeyFileWriter
from transforms.dedup.clusters import ClusterSampler, Sizes
from transforms.dedup.keys import make_ref
from transforms.dedup.line_files import LineKeyWriter
from transforms.dedup.lines import FrequentLines, LineEditor
from transforms.output.document_writer import DocumentWriter
from transforms.output.faults import fault_point
from transforms.read.readers import DocBatch
from transforms.read.sources import Stream
from transforms.recipe.work import DocKeys
from transforms.select.selection import Candidate, Plan, tie_break
from transforms.stream.attempts import Attempt
from transforms.stream.config import StreamConfig, StreamTools
from transforms.stream.line_pass import stage_line_keys
from transforms.stream.prefetch import call_timed, timed
from transforms.stream.read_pass import read_stream
from transforms.stream.sink import PackSink, UseReference
from transforms.stream.staged import read_staged
from transforms.tokenize.tokenizer import HF, Encoder


def write_documents(writer: DocumentWriter, batch: DocBatch, with_token_ids: bool = False) -> None:
    """Append a batch's kept documents (and, for staged files, their token ids) to a document file."""
    writer.write(batch.ids, batch.texts, batch.source, batch.lines, batch.rows, batch.metas,
                 batch.token_ids if with_token_ids else None)


def run_pass(
    cfg: StreamConfig,
    tools: StreamTools,
    stream_index: int,
    name: str,
    source: Callable[[Attempt], Iterable[DocBatch]],
    inputs: list[str],
    earlier: StreamResult | None = None,
    chosen: tuple[Encoder, str] | None = None,
) -> Callable[[], StreamResult]:
    """Feed a source's kept documents to the sinks the job wants (shards, documents); returns the call that waits
    for the writers and gives the stream's result (merged with an ``earlier`` pass's), so a worker can start its
    next stream meanwhile."""
    attempt = Attempt(cfg, stream_index, tools.progress, name)
    pack = PackSink(cfg, tools, attempt, chosen) if cfg.tokenizer is not None else None
    documents = DocumentWriter(f"{attempt.prefix}-documents.parquet") if cfg.emit_documents else None
    try:
        for batch in source(attempt):
            fault_point(f"pass-{name}")
            if not batch.texts:
                continue
            count_written(attempt, batch)
            if documents is not None:
                attempt.counts.time(TIME_WRITE, call_timed(write_documents, documents, batch))
            if pack is not None:
                pack.add(batch)
        if pack is not None:
            pack.end()
    except UseReference as redo:
        pack.discard()
        if documents is not None:
            documents.abort()
        attempt.discard()
        return run_pass(cfg, tools, stream_index, name, source, inputs, earlier, chosen=(redo.encoder, redo.note))
    except BaseException:
        if pack is not None:
            pack.discard()
        attempt.close()
        raise

    def finish() -> StreamResult:
        shards = pack.finish() if pack is not None else []
        started = time.perf_counter()
        written = documents.close() if documents is not None else None
        if documents is not None:
            attempt.counts.time(TIME_WRITE, time.perf_counter() - started)
        attempt.show(force=True, streams=1)
        rejected, modified = attempt.files()
        result = StreamResult(
            stream=stream_index, counts=attempt.counts, shards=shards,
            backend=pack.backend if pack is not None else None, backend_note=pack.note if pack is not None else "",
            documents=[written] if written else [], rejected=rejected, modified=modified, inputs=inputs,
        )
        return earlier.merge(result) if earlier is not None else result

    return finish


def count_written(attempt: Attempt, batch: DocBatch) -> None:
    """Count a batch's kept documents as written (in the totals, under its input file and in the progress)."""
    chars = sum(map(len, batch.texts))
    attempt.counts.docs_written += len(batch.texts)
    attempt.counts.text_chars += chars
    attempt.counts.add_source(batch.source, docs_written=len(batch.texts), text_chars=chars)
    attempt.show(docs=len(batch.texts))


def stream_inputs(stream: Stream) -> list[str]:
    """The input files a stream reads."""
    return sorted({s.url for s in stream.splits})


def process_stream(stream: Stream, cfg: StreamConfig, tools: StreamTools) -> Callable[[], StreamResult]:
    """The one-pass flow (no dedup): read → recipe → sinks."""
    return run_pass(cfg, tools, stream.index, "p", lambda attempt: read_stream(stream, cfg, tools, attempt),
                    stream_inputs(stream))


def stage_stream(stream: Stream, cfg: StreamConfig, tools: StreamTools,
                 key_files: bool = False, save_keys: bool = False) -> Iterator[tuple[str, Any]]:
    """Dedup pass 1: read → recipe → staged documents; yields ("exact"|"near", (key, (ref, id))) for every kept
    document as it goes, and last ("staged", (stream index, result)). With ``key_files`` the keys go to the
    stream's key file instead (``dedup_arrays``), handed on once as ("keys", KeyFile) before "staged". With line
    dedup, ("lines", (stream index, (keys, ordinals))) per batch, or with ``key_files`` ("line_keys", LineKeyFile)
    once before "staged". With ``save_keys`` (a run saving its dedup index) the keys also go to the key file."""
    attempt = Attempt(cfg, stream.index, tools.progress, "a")
    staged = DocumentWriter(f"{attempt.prefix}-staged.parquet")
    keys: list[tuple[int, str, DocKeys]] = []
    minhash = cfg.recipe.dedup.minhash if cfg.dedup else None
    key_file = KeyFileWriter(attempt.prefix, stream.index, minhash.bands if minhash else 0) \
        if (key_files or save_keys) and cfg.dedup else None
    line_file = LineKeyWriter(attempt.prefix, stream.index) if key_files and cfg.lines is not None else None
    ordinal = 0
    try:
        for batch in read_stream(stream, cfg, tools, attempt, keys):
            found = stage_candidates(batch, stream.index, ordinal, cfg, tools, attempt)
            attempt.counts.time(TIME_WRITE, call_timed(write_documents, staged, batch, True))
            if key_file is not None and keys:
                add_key_file(key_file, stream.index, keys)
            if not key_files:
                yield from key_items(keys)
            keys.clear()
            for candidate in found:
                yield "candidates", (stream.index, candidate)
            if cfg.lines is not None:
                yield from stage_line_keys(batch, stream.index, ordinal, cfg.lines, line_file, attempt)
            ordinal += len(batch.texts)
    except BaseException:
        attempt.close()
        raise
    started = time.perf_counter()
    written = staged.close()
    attempt.counts.time(TIME_WRITE, time.perf_counter() - started)
    rejected, modified = attempt.files()
    result = StreamResult(stream=stream.index, counts=attempt.counts, rejected=rejected, modified=modified,
                          staged=written[E_TEMP_URL] if written else None, inputs=stream_inputs(stream))
    if key_file is not None:
        yield "keys", key_file.close()
    if line_file is not None:
        yield "line_keys", line_file.close()
    yield "staged", (stream.index, result)


def stage_candidates(batch: DocBatch, stream: int, first: int, cfg: StreamConfig, tools: StreamTools,
                     attempt: Attempt) -> list[Candidate]:
    """Pass 1, before staging (a token budget's token ids are staged with the texts): the batch's selection
    candidates, timed (none when selection does not need the whole corpus)."""
    if not cfg.selects:
        return []
    started = time.perf_counter()
    found = candidates(batch, stream, first, cfg, tools)
    # a token budget tokenizes here; otherwise building candidates is part of the recipe's selection
    attempt.counts.time(TIME_TOKENIZE if cfg.tokenizer is not None else TIME_RECIPE, time.perf_counter() - started)
    return found


def add_key_file(key_file: KeyFileWriter, stream: int, keys: list[tuple[int, str, DocKeys]]) -> None:
    """Append a batch's (ref, id, dedup keys) to the stream's key file."""
    if keys[0][0] != make_ref(stream, key_file.docs):  # a row's place in the file is its ordinal
        raise RuntimeError(f"stream {stream}: dedup keys out of order")
    key_file.add([doc_id for _, doc_id, _ in keys], [doc_keys for _, _, doc_keys in keys])


def key_items(keys: list[tuple[int, str, DocKeys]]) -> Iterator[tuple[str, Any]]:
    """("exact"|"near", (key, (ref, id))) for each dedup key of each kept document."""
    for ref, doc_id, doc_keys in keys:
        if doc_keys is None:
            continue
        exact, bands = doc_keys
        if exact is not None:
            yield "exact", (exact, (ref, doc_id))
        for band in bands:
            yield "near", (band, (ref, doc_id))


def candidates(batch: DocBatch, stream: int, first: int, cfg: StreamConfig, tools: StreamTools) -> list[Candidate]:
    """Pass 1: what selection needs of a batch's kept documents (scores, bytes, tokens with EOS/BOS, tie-break);
    ``first``: the stream ordinal of the batch's first document."""
    if not batch.texts:
        return []
    keys = [s.key for s in cfg.recipe.selection.scorers]
    tokens = [0] * len(batch.texts)
    if cfg.tokenizer is not None:
        encoders = tools.encoders
        encoder = encoders.fast if cfg.tokenizer.backend != HF and encoders.fast is not None else encoders.reference
        specials = 1 + (cfg.tokenizer.bos_id is not None)
        flat, lens = encoder.encode_batch(batch.texts)
        batch.token_ids = (encoder.name, flat, lens)  # staged with the texts: pass 2 packs them as they are
        tokens = (lens + specials).tolist()
    out = []
    for i, (text, doc_id, meta) in enumerate(zip(batch.texts, batch.ids, batch.metas)):
        ref = make_ref(stream, first + i)
        scores = tuple(float(meta[META_SCORES][k]) for k in keys)
        out.append(Candidate(ref, scores, len(text.encode("utf-8", "surrogatepass")), tokens[i],
                             tie_break(doc_id, ref)))
    return out


def finish_staged(staged: StreamResult, duplicates: dict[int, tuple[str, ...]], cfg: StreamConfig,
                  tools: StreamTools, plan: Plan | None = None,
                  lines: FrequentLines | None = None, clusters: Sizes | None = None) -> Callable[[], StreamResult]:
    """Pass 2: the staged documents of one stream minus its duplicates, selected by the ``plan``, without the
    ``lines`` line dedup found frequent → sinks; the result samples the members of the largest ``clusters``."""
    url = staged.staged
    editor = LineEditor(cfg.lines, lines) if lines is not None and cfg.lines is not None else None
    sampler = [ClusterSampler(clusters)]

    def source(attempt: Attempt) -> Iterator[DocBatch]:
        sampler[0] = ClusterSampler(clusters)  # a pass started again (UseReference) samples again
        if not url:
            return
        for batch in timed(read_staged(url, duplicates, attempt, plan, staged.stream, editor, sampler[0])):
            attempt.counts.time(TIME_READ, batch.seconds)
            yield batch

    finish = run_pass(cfg, tools, staged.stream, "b", source, staged.inputs, earlier=staged)

    def finished() -> StreamResult:
        result = finish()
        result.cluster_samples = sampler[0].result()
        return result

    return finished
