"""The per-stream work of ``prepare`` and ``filter``, and its thin Beam adapters.

    one pass (no dedup):  read ─► recipe ─► [tokenize ─► pack ─► shards] + [documents]     (ProcessStream)
    dedup, pass 1:        read ─► recipe (filters, keys) ─► staged documents + keys      (StageStream)
    dedup, pass 2:        staged documents ─► drop duplicates ─► [shards] + [documents]   (FinishStaged)

Every record a pass reads is counted once (in the totals and under its input file); every document it drops goes
to its rejected file with a reason. Each stage's time is measured per batch and carried in the same counts.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import uuid
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import apache_beam as beam
import fsspec
import numpy as np
import orjson
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from schemas.manifest import (
    MOD_ID,
    MOD_LINE,
    MOD_ORIGINAL,
    MOD_ROW,
    MOD_SOURCE,
    MOD_STAGES,
    STAGE_DEDUP,
    STAGE_FILTER,
    BELOW_SELECTION_THRESHOLD,
    SHORTER_THAN_PIECE,
    STAGE_PACK,
    STAGE_SELECT,
    TIME_PACK,
    TIME_READ,
    TIME_RECIPE,
    TIME_TOKENIZE,
    TIME_WRITE,
    Counts,
)
from schemas.documents import META_BUCKET, META_SCORES, META_UPSAMPLE
from schemas.shards import TEMP_DIR
from transforms.dedup.keys import make_ref
from transforms.dedup.arrays import KeyFileWriter
from transforms.output.faults import fault_point
from transforms.select.selection import Candidate, Plan, tie_break
from transforms.output.document_writer import TOKENS_COLUMN, DocumentWriter, read_documents
from transforms.pack.packers import DecomposePacker, PackedRows, PackingSpec, mask_source
from transforms.report.progress import ProgressWriter
from transforms.read.readers import DEFAULT_BATCH_BYTES, DocBatch, read_split
from transforms.recipe.work import DocKeys, RecipeRunner
from transforms.recipe.recipes import Recipe
from transforms.read.records import Rejection, raw_record, scrub
from transforms.output.shard_writer import ShardWriter
from transforms.read.sources import Stream
from transforms.tokenize.tokenizer import (
    AUTO,
    GIGATOKEN,
    HF,
    Encoder,
    GigatokenEncoder,
    TokenizerSpec,
    add_specials,
    first_mismatch,
    load_file,
    load_reference,
    verification_sample,
)

log = logging.getLogger(__name__)
METRICS_NAMESPACE = "tokenmill"
_PREFETCH_BATCHES = 4
_WRITES_IN_FLIGHT = 16  # packed batches (~2 MB of ids each) queued for the writer; it flushes whole row groups


@dataclass(frozen=True)
class StreamConfig:
    """Everything a worker needs to turn a stream into shards (picklable)."""

    output: str
    tokenizer: TokenizerSpec | None  # None: no tokenizing (``tokenmill filter``)
    seq_len: int
    shard_rows: int
    text_field: str = "text"
    id_field: str = "id"
    strict: bool = False
    packing: PackingSpec = PackingSpec()
    batch_bytes: int = DEFAULT_BATCH_BYTES
    progress_dir: str | None = None
    recipe: Recipe | None = None
    emit_documents: bool = False  # write kept documents under documents/
    emit_modified: bool = False  # write the original text of documents a stage changed under modified/
    meta_fields: tuple[str, ...] = ()  # input fields kept in each document's meta
    recipe_processes: int = 1  # processes running the recipe's filters and keys (1: in the worker itself)

    @property
    def dedup(self) -> bool:
        """Whether the recipe deduplicates (two passes with a shuffle of keys between them)."""
        return self.recipe is not None and (self.recipe.dedup.exact or self.recipe.dedup.minhash is not None)

    @property
    def selects(self) -> bool:
        """Whether selection needs the whole corpus first (cut-points, a budget): two passes with a plan between."""
        return self.recipe is not None and self.recipe.selection is not None and self.recipe.selection.global_pass

    @property
    def staged(self) -> bool:
        """Whether the job runs in two passes (pass 1 stages the kept documents)."""
        return self.dedup or self.selects

    @property
    def temp_dir(self) -> str:
        """Where workers write before the commit step renames into place."""
        return f"{self.output.rstrip('/')}/{TEMP_DIR}"


class Encoders:
    """The reference encoder and (if wanted and loadable) gigatoken, loaded once per worker in the background.

    Loading starts at construction (a worker's ``setup()``) and overlaps the first reads; the reference encoder
    loads only when needed (``--tokenizer-backend hf``, a fallback, or ``auto``'s verification).
    """

    def __init__(self, spec: TokenizerSpec) -> None:
        self.spec = spec
        self.fast_error = ""
        self._lock = threading.Lock()
        self._reference: Encoder | None = None
        self._fast: Encoder | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="tokenmill-encoders")
        self._data = self._pool.submit(load_file, spec)
        self._fast_loaded = self._pool.submit(self._load_fast) if spec.backend in (AUTO, GIGATOKEN) else None

    def _load_fast(self) -> Encoder | None:
        try:
            return GigatokenEncoder(self.spec.path, self._data.result(), self.spec.kind, self.spec.tiktoken_scheme)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # gigatoken refuses (or panics on) some tokenizers: auto falls back
            if self.spec.backend == GIGATOKEN:
                raise
            self.fast_error = f"gigatoken cannot load this tokenizer ({exc})"
            return None

    @property
    def fast(self) -> Encoder | None:
        """gigatoken, or None if not wanted or not loadable (``fast_error`` says why)."""
        if self._fast_loaded is not None:
            self._fast = self._fast_loaded.result()
            self._fast_loaded = None
        return self._fast

    @fast.setter
    def fast(self, encoder: Encoder | None) -> None:
        self._fast_loaded = None
        self._fast = encoder

    @property
    def reference(self) -> Encoder:
        """The format-of-record encoder (HF tokenizers or tiktoken)."""
        with self._lock:
            if self._reference is None:
                self._reference = load_reference(self.spec, self._data.result())
            return self._reference

    def choose(self, sample: list[str], where: str) -> tuple[Encoder, str]:
        """The encoder for a stream, given its first documents; returns (encoder, note)."""
        encoder, pending = self.start(sample, where)
        return pending.result() if pending is not None else (encoder, self.fast_error)

    def start(self, sample: list[str], where: str) -> tuple[Encoder, Future | None]:
        """The encoder to start a stream with, and for ``auto`` a pending verification on the stream's own first
        documents that resolves to the encoder to keep and a note (gigatoken, or the reference on a mismatch)."""
        fast = self.fast if self.spec.backend != HF else None
        if fast is None:
            return self.reference, None
        if self.spec.backend == GIGATOKEN:
            return fast, None
        return fast, self._pool.submit(self._verify, fast, verification_sample(sample), where)

    def _verify(self, fast: Encoder, sample: list[str], where: str) -> tuple[Encoder, str]:
        reference = self.reference
        mismatch = first_mismatch(fast, reference, sample)
        if mismatch is None:
            return fast, ""
        note = f"gigatoken differs from {reference.name} on {where}: {mismatch}; using {reference.name}"
        log.warning("tokenmill: %s", note)
        return reference, note


def _prefetch(items: Iterable[DocBatch], depth: int) -> Iterator[DocBatch]:
    """Run a reader in a thread so parsing overlaps tokenizing (the tokenizers release the GIL)."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def fill() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as exc:  # re-raised in the consumer (e.g. --strict's BadRecordError)
            q.put(exc)

    thread = threading.Thread(target=fill, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


def _batches(stream: Stream, cfg: StreamConfig) -> Iterator[DocBatch]:
    for split in stream.splits:
        yield from _timed(read_split(split, cfg.text_field, cfg.id_field, cfg.batch_bytes, cfg.strict,
                                     cfg.meta_fields))


def _timed(batches: Iterator[DocBatch]) -> Iterator[DocBatch]:
    """The batches, each with the seconds its reader took to make it added to ``DocBatch.seconds``."""
    while True:
        started = time.perf_counter()
        batch = next(batches, None)
        if batch is None:
            return
        batch.seconds += time.perf_counter() - started
        yield batch


def _call_timed(fn: Callable[..., Any], *args: Any) -> float:
    """Call ``fn(*args)`` and return the seconds it took (what a timed writer-thread task gives back)."""
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


class _UseReference(Exception):
    """auto's verification found gigatoken differing on this stream: redo it with the reference encoder."""

    def __init__(self, encoder: Encoder, note: str) -> None:
        super().__init__(note)
        self.encoder = encoder
        self.note = note


class _JsonlFile:
    """A JSON-lines temp file opened on its first record, counting its records."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.records = 0
        self._fh: Any = None

    def write(self, record: dict[str, Any]) -> None:
        """Append one record."""
        if self._fh is None:
            self._fh = fsspec.open(self.url, "wb").open()
        self._fh.write(orjson.dumps(record) + b"\n")
        self.records += 1

    def close(self) -> list[dict[str, Any]]:
        """Close it: [{temp_url, records}] (empty when nothing was written)."""
        if self._fh is None:
            return []
        self._fh.close()
        return [{"temp_url": self.url, "records": self.records}]

    def delete(self) -> None:
        """Close and remove it."""
        if self._fh is not None:
            self._fh.close()
            fs, path = fsspec.core.url_to_fs(self.url)
            if fs.exists(path):
                fs.rm(path)


class _Attempt:
    """One attempt at one pass over a stream: its counts, its rejected (and modified) files and its share of the
    progress. Temp names carry a random attempt id, so retried or speculative attempts never write over each other.
    """

    def __init__(self, cfg: StreamConfig, stream_index: int, progress: ProgressWriter, name: str) -> None:
        self.stream = stream_index
        self.prefix = f"{cfg.temp_dir}/s{stream_index:05d}-{name}-{uuid.uuid4().hex[:12]}"
        self.counts = Counts()
        self.progress = progress
        self._shown: dict[str, int] = {}
        self.rejected = _JsonlFile(f"{self.prefix}-rejected.jsonl")
        self.modified = _JsonlFile(f"{self.prefix}-modified.jsonl") if cfg.emit_modified else None

    def show(self, force: bool = False, **deltas: int) -> None:
        """Add to the live progress (remembered, so that a discarded attempt can take it back)."""
        for key, value in deltas.items():
            self._shown[key] = self._shown.get(key, 0) + value
        self.progress.add(force=force, **deltas)

    def reject(self, rejections: list[Rejection]) -> None:
        """Write rejected records and count them."""
        for rej in rejections:
            self.counts.reject(rej.count_key, source=rej.source)
            self.rejected.write(rej.to_dict())

    def files(self) -> dict[str, list[dict[str, Any]]]:
        """Close the files: {"rejected": [...], "modified": [...]} as [{temp_url, records}]."""
        return {"rejected": self.rejected.close(), "modified": self.modified.close() if self.modified else []}

    def discard(self) -> None:
        """Throw away this attempt's files and take back its progress."""
        for f in (self.rejected, self.modified):
            if f is not None:
                f.delete()
        self.progress.add(**{k: -v for k, v in self._shown.items()})

    def close(self) -> None:
        """Close files after a failure (the temp directory is cleared by the next run)."""
        self.files()


class StreamTools:
    """What a worker keeps across streams: encoders (loaded on first use), the recipe runner, progress."""

    def __init__(self, cfg: StreamConfig, keys: bool = False, recipe: bool = True) -> None:
        self.cfg = cfg
        self.progress = ProgressWriter(cfg.progress_dir)
        wanted = recipe and cfg.recipe is not None
        self.runner = RecipeRunner.obtain(cfg.recipe, cfg.recipe_processes, keys) if wanted else None
        self._encoders: Encoders | None = None

    @property
    def encoders(self) -> Encoders:
        """The tokenizer's encoders (started on first use)."""
        if self._encoders is None:
            self._encoders = Encoders(self.cfg.tokenizer)
        return self._encoders

    def close(self) -> None:
        """Stop the recipe's worker processes."""
        if self.runner is not None:
            self.runner.close()


def read_stream(stream: Stream, cfg: StreamConfig, tools: StreamTools, attempt: _Attempt,
                keys: list[tuple[int, str, DocKeys]] | None = None) -> Iterator[DocBatch]:
    """The stream's documents after the recipe, batch by batch; read and filter rejections go to the attempt.

    With ``keys``, each kept document's (ref, id, dedup keys) is appended to it as the batch is yielded.
    """
    batches = _prefetch(_batches(stream, cfg), _PREFETCH_BATCHES)
    worked = tools.runner.map(batches) if tools.runner is not None else ((b, None, None) for b in batches)
    kept = 0
    recipe_seconds = tools.runner.seconds if tools.runner is not None else 0.0
    for batch, decisions, doc_keys in worked:
        fault_point("read")
        c = attempt.counts
        c.records += batch.records
        c.bytes_read += batch.bytes_read
        c.add_source(batch.source, records=batch.records, bytes_read=batch.bytes_read)
        c.time(TIME_READ, batch.seconds)
        if tools.runner is not None:
            c.time(TIME_RECIPE, tools.runner.seconds - recipe_seconds)
            recipe_seconds = tools.runner.seconds
        for kind, n in batch.repairs.items():
            c.repair(kind, n)
        rejections = batch.rejections
        if decisions:
            dropped, kept_keys = apply_decisions(batch, decisions, doc_keys, c, attempt.modified)
            rejections = rejections + dropped
            if keys is not None:
                for i, k in enumerate(kept_keys):
                    keys.append((make_ref(stream.index, kept + i), batch.ids[i], k))
        kept += len(batch.texts)
        attempt.reject(rejections)
        attempt.show(records=batch.records, bytes=batch.bytes_read)
        yield batch


def apply_decisions(batch: DocBatch, decisions: list, keys: list[DocKeys | None], counts: Counts,
                    modified: _JsonlFile | None = None) -> tuple[list[Rejection], list[DocKeys]]:
    """Keep a batch's (possibly modified) documents in place; return the dropped ones and the kept ones' keys.

    With ``modified``, each kept document whose text a stage changed is written there with its original text.
    """
    texts, ids, lines, rows, metas, raws, kept_keys, dropped = [], [], [], [], [], [], [], []
    for i, d in enumerate(decisions):
        for stage in d.modified_by:
            counts.docs_modified[stage] = counts.docs_modified.get(stage, 0) + 1
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


def read_staged(url: str, duplicates: dict[int, tuple[str, str]], attempt: _Attempt, plan: Plan | None = None,
                stream: int = 0) -> Iterator[DocBatch]:
    """Pass 2's documents: the staged file of pass 1 without its duplicates (``ordinal → (reason, kept id)``),
    which go to the attempt's rejected file naming the document they duplicate, and (with a ``plan``) without
    the documents selection drops, which go there with their scores; kept ones get their ``meta.bucket``."""
    ordinal = 0
    for table, encoder in read_documents(url):
        token_lists = None
        if encoder is not None:  # pass 1 tokenized these documents (a token budget): keep their ids
            column = table.column(TOKENS_COLUMN)
            token_lists = (column.offsets.to_numpy(), column.values.to_numpy(zero_copy_only=False))
            table = table.drop_columns([TOKENS_COLUMN])
        cols = table.to_pydict()
        n = len(cols["text"])
        start = 0
        while start < n:  # one DocBatch per run of documents from the same source file
            source = cols["source"][start]
            stop = start + 1
            while stop < n and cols["source"][stop] == source:
                stop += 1
            batch = DocBatch(source=source)
            dropped, kept = [], []
            for i in range(start, stop):
                dup = duplicates.get(ordinal + i - start)
                if dup is None:
                    meta = cols["meta"][i]
                    if plan is not None:
                        meta = json.loads(meta) if isinstance(meta, str) else dict(meta or {})
                        rejection = _select(plan, meta, cols, i, source, make_ref(stream, ordinal + i - start))
                        if rejection is not None:
                            dropped.append(rejection)
                            continue
                    batch.texts.append(cols["text"][i])
                    kept.append(i)
                    batch.ids.append(cols["id"][i])
                    batch.lines.append(cols["line"][i])
                    batch.rows.append(cols["row"][i])
                    batch.metas.append(meta)
                    continue
                reason, kept_id = dup
                dropped.append(Rejection(
                    source, reason, line=cols["line"][i], row=cols["row"][i], id=cols["id"][i],
                    detail=f"duplicate of {kept_id}", record=raw_record(cols["text"][i]), stage=STAGE_DEDUP,
                    counted_as=f"{STAGE_DEDUP}/{reason}", duplicate_of=kept_id,
                ))
            ordinal += stop - start
            attempt.reject(dropped)
            if token_lists is not None:
                offsets, values = token_lists
                lens = (offsets[1:] - offsets[:-1])[kept].astype(np.int64)
                take = [values[offsets[i]:offsets[i + 1]] for i in kept]
                flat = np.concatenate(take).astype(np.uint32, copy=False) if take else np.zeros(0, np.uint32)
                batch.token_ids = (encoder, flat, lens)
            yield batch
            start = stop


def _select(plan: Plan, meta: dict[str, Any], cols: dict[str, list], i: int, source: str,
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


class _Lane:
    """One packed output of a stream: its packer, its shard writer per row length and deferred upsampled copies."""

    def __init__(self, cfg: StreamConfig, prefix: str) -> None:
        self.cfg = cfg
        self.prefix = prefix
        self.packer = cfg.packing.packer(cfg.tokenizer.pad_id)
        self.masked = cfg.packing.loss_mask != "none"
        # the loss mask goes through a packer of its own: packers place tokens by document lengths alone
        self.mask_packer = cfg.packing.packer(0) if self.masked else None
        self.writers: dict[int, ShardWriter] = {}  # by row length (one, except for decompose)
        # upsampled copies (tokens, loss mask source, input file), packed at the stream's end
        self.copies: list[tuple[np.ndarray, np.ndarray | None, str]] = []

    def writer(self, length: int) -> ShardWriter:
        """The shard writer of rows of this length."""
        w = self.writers.get(length)
        if w is None:
            decomposed = isinstance(self.packer, DecomposePacker)
            prefix = f"{self.prefix}-len{length:05d}" if decomposed else self.prefix
            w = self.writers[length] = ShardWriter(prefix, length, self.cfg.shard_rows, self.masked)
        return w

    def pack(self, flat: np.ndarray, lens: np.ndarray,
             mask: np.ndarray | None) -> tuple[dict[int, PackedRows], list[int]]:
        """Rows by length (and, for decompose, the documents left without a row)."""
        rows, empty = self._by_length(self.packer.add(flat, lens))
        if self.mask_packer is not None:
            self._attach(rows, self._by_length(self.mask_packer.add(mask, lens))[0])
        return rows, empty

    def finish(self) -> dict[int, PackedRows]:
        """The packer's last rows, by length."""
        if isinstance(self.packer, DecomposePacker):
            return {}
        rows = {self.cfg.seq_len: self.packer.finish()}
        if self.mask_packer is not None:
            self._attach(rows, {self.cfg.seq_len: self.mask_packer.finish()})
        return rows

    def _by_length(self, out: Any) -> tuple[dict[int, PackedRows], list[int]]:
        return out if isinstance(out, tuple) else ({self.cfg.seq_len: out}, [])

    @staticmethod
    def _attach(rows: dict[int, PackedRows], masks: dict[int, PackedRows]) -> None:
        for length, block in rows.items():
            block.loss_mask = masks[length].input_ids.astype(np.uint8)


class _PackSink:
    """Tokenize → pack → Parquet shards (``prepare``), the writer one batch behind in its own thread.

    With ``auto``, gigatoken starts at once while its verification on the stream's first documents runs beside
    it; on a mismatch (rare) ``add``/``end`` raise _UseReference and the caller redoes the pass with the reference.
    With a bucket-partitioned ensemble, each bucket is packed into shards of its own (``shards/bucket=NN/``).
    """

    def __init__(self, cfg: StreamConfig, tools: StreamTools, attempt: _Attempt,
                 chosen: tuple[Encoder, str] | None) -> None:
        self.cfg = cfg
        self.tools = tools
        self.attempt = attempt
        self.spec = cfg.tokenizer
        selection = cfg.recipe.selection if cfg.recipe is not None else None
        self.partition = bool(selection is not None and selection.ensemble is not None and
                              selection.ensemble.partition)
        self.lanes: dict[int | None, _Lane] = {}
        self.encoder, self.note = chosen if chosen is not None else (None, "")
        self.verifying: Future | None = None
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="tokenmill-writer")
        self.writes: deque[Future] = deque()
        self.short_tokens = 0  # tokens of documents rejected as shorter than the shortest decompose piece

    def _lane(self, bucket: int | None) -> _Lane:
        lane = self.lanes.get(bucket)
        if lane is None:
            prefix = self.attempt.prefix if bucket is None else f"{self.attempt.prefix}-b{bucket:03d}"
            lane = self.lanes[bucket] = _Lane(self.cfg, prefix)
        return lane

    def add(self, batch: DocBatch) -> None:
        """Tokenize and pack a batch of kept documents."""
        if self.encoder is None:
            where = f"stream {self.attempt.stream} ({batch.ids[0]})"
            self.encoder, self.verifying = self.tools.encoders.start(batch.texts, where)
            self.note = self.tools.encoders.fast_error if self.verifying is None else ""  # why not gigatoken
        started = time.perf_counter()
        if batch.token_ids is not None and batch.token_ids[0] == self.encoder.name:
            _, flat, lens = batch.token_ids  # tokenized in pass 1 by the same encoder
        else:
            flat, lens = self.encoder.encode_batch(batch.texts)
        flat, lens = add_specials(flat, lens, self.spec.eos_id, self.spec.bos_id)
        mode = self.cfg.packing.loss_mask
        mask = mask_source(flat, lens, mode, self.spec.eos_id, self.spec.bos_id) if mode != "none" else None
        self.attempt.counts.time(TIME_TOKENIZE, time.perf_counter() - started)
        if not self.partition:
            self._route(self._lane(None), flat, lens, mask, batch, list(range(len(batch.texts))))
        else:
            ends = np.cumsum(lens)
            by_bucket: dict[int, list[int]] = {}
            for i, meta in enumerate(batch.metas):
                by_bucket.setdefault(meta[META_BUCKET], []).append(i)
            for bucket, docs in sorted(by_bucket.items()):
                parts = [flat[ends[i] - lens[i]:ends[i]] for i in docs]
                masks = None if mask is None else np.concatenate([mask[ends[i] - lens[i]:ends[i]] for i in docs])
                self._route(self._lane(bucket), np.concatenate(parts), lens[docs], masks, batch, docs)
        if self.verifying is not None and self.verifying.done():
            self._check()

    def _route(self, lane: _Lane, flat: np.ndarray, lens: np.ndarray, mask: np.ndarray | None, batch: DocBatch,
               docs: list[int]) -> None:
        empty, dropped = self._pack(lane, flat, lens, mask)
        self.attempt.counts.add_source(batch.source, tokens=int(flat.size) - dropped)
        if empty:  # decompose: documents shorter than the shortest piece: rejected, their tokens counted
            self._reject_short(batch, [docs[i] for i in empty], lens[empty])
        metas = [batch.metas[i] for i in docs] if batch.metas else []
        if metas and any(isinstance(x, dict) and x.get(META_UPSAMPLE) for x in metas):
            self._defer_copies(lane, flat, lens, mask, metas, batch.source)

    def _pack(self, lane: _Lane, flat: np.ndarray, lens: np.ndarray,
              mask: np.ndarray | None) -> tuple[list[int], int]:
        """Pack documents and queue their rows for writing: (documents left without a row, tokens dropped)."""
        c = self.attempt.counts
        c.tokens += int(flat.size)
        self.attempt.show(tokens=int(flat.size))
        dropped = getattr(lane.packer, "dropped_tokens", 0)
        started = time.perf_counter()
        rows, empty = lane.pack(flat, lens, mask)
        c.time(TIME_PACK, time.perf_counter() - started)
        for length, block in rows.items():
            self._write(lane.writer(length), block)
        return empty, getattr(lane.packer, "dropped_tokens", 0) - dropped

    def _reject_short(self, batch: DocBatch, docs: list[int], lens: np.ndarray) -> None:
        c = self.attempt.counts
        c.docs_written -= len(docs)
        c.add_source(batch.source, docs_written=-len(docs))  # its tokens were never in the source's (dropped)
        c.tokens -= int(lens.sum())
        self.short_tokens += int(lens.sum())  # the packer counted them as dropped remainders too
        self.attempt.reject([Rejection(
            batch.source, SHORTER_THAN_PIECE, line=batch.lines[i], row=batch.rows[i], id=batch.ids[i],
            detail=f"{int(n)} tokens with EOS, below the shortest piece of {self.cfg.packing.manifest()['lengths'][0]}",
            record=batch.raw_record(i), stage=STAGE_PACK, counted_as=f"{STAGE_PACK}/{SHORTER_THAN_PIECE}",
        ) for i, n in zip(docs, lens.tolist())])

    @staticmethod
    def _defer_copies(lane: _Lane, flat: np.ndarray, lens: np.ndarray, mask: np.ndarray | None, metas: list,
                      source: str) -> None:
        """Keep the extra copies of upsampled documents for the end of the stream: copies of a document are
        packed apart from it, never into the same rows."""
        ends = np.cumsum(lens)
        for i, meta in enumerate(metas):
            factor = meta.get(META_UPSAMPLE, 1) if isinstance(meta, dict) else 1
            for _ in range(factor - 1):
                span = slice(ends[i] - lens[i], ends[i])
                lane.copies.append((flat[span].copy(), None if mask is None else mask[span].copy(), source))

    def end(self) -> None:
        """All documents are in: settle the verification, pack the upsampled copies and pad the last rows."""
        if self.verifying is not None:
            self._check()
        for _, lane in sorted(self.lanes.items(), key=lambda item: -1 if item[0] is None else item[0]):
            if lane.copies:
                masks = None if lane.copies[0][1] is None else np.concatenate([m for _, m, _ in lane.copies])
                self._pack(lane, np.concatenate([t for t, _, _ in lane.copies]),
                           np.array([t.size for t, _, _ in lane.copies], np.int64), masks)
                decomposed = isinstance(lane.packer, DecomposePacker)
                for tokens, _, source in lane.copies:  # what each copy left in the rows, by its input file
                    kept = tokens.size - (lane.packer.remainder(tokens.size) if decomposed else 0)
                    self.attempt.counts.add_source(source, tokens=kept)
                lane.copies = []
            started = time.perf_counter()
            last = lane.finish()
            self.attempt.counts.time(TIME_PACK, time.perf_counter() - started)
            for length, block in last.items():
                self._write(lane.writer(length), block)

    def finish(self) -> dict[str, Any]:
        """Wait for the writers: the pass's shards (each with its bucket when partitioned) and backend."""
        c = self.attempt.counts
        try:
            while self.writes:
                c.time(TIME_WRITE, self.writes.popleft().result())
            shards = []
            decomposed = self.cfg.packing.name == DecomposePacker.name
            started = time.perf_counter()
            for bucket, lane in sorted(self.lanes.items(), key=lambda item: -1 if item[0] is None else item[0]):
                for length, writer in sorted(lane.writers.items()):
                    for shard in writer.close():
                        if bucket is not None:
                            shard = {**shard, "bucket": bucket}
                        shards.append({**shard, "seq_len": length} if decomposed else shard)
            c.time(TIME_WRITE, time.perf_counter() - started)
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)
        c.sequences = sum(s["rows"] for s in shards)
        c.pad_tokens = sum(s["pad_tokens"] for s in shards)
        c.docs_split = sum(lane.packer.split_docs for lane in self.lanes.values())
        c.tokens_dropped = sum(getattr(lane.packer, "dropped_tokens", 0) for lane in self.lanes.values()) - \
            self.short_tokens
        c.tokens -= c.tokens_dropped  # tokens counts what the shards hold
        return {"shards": shards, "backend": self.encoder.name if self.encoder is not None else None,
                "backend_note": self.note}

    def discard(self) -> None:
        """Stop writing and delete this attempt's shards."""
        self.pool.shutdown(wait=True, cancel_futures=True)
        for lane in self.lanes.values():
            for writer in lane.writers.values():
                writer.abort()

    def _write(self, writer: ShardWriter, rows: PackedRows) -> None:
        self.writes.append(self.pool.submit(_call_timed, writer.write, rows))
        while len(self.writes) > _WRITES_IN_FLIGHT:
            self.attempt.counts.time(TIME_WRITE, self.writes.popleft().result())

    def _check(self) -> None:
        """auto's verification has resolved: go on with gigatoken, or start over with the reference."""
        verified, verdict = self.verifying.result()
        self.verifying = None
        if verified is not self.encoder:
            raise _UseReference(verified, verdict)


def _write_documents(writer: DocumentWriter, batch: DocBatch, with_token_ids: bool = False) -> None:
    writer.write(batch.ids, batch.texts, batch.source, batch.lines, batch.rows, batch.metas,
                 batch.token_ids if with_token_ids else None)


def run_pass(
    cfg: StreamConfig,
    tools: StreamTools,
    stream_index: int,
    name: str,
    source: Callable[[_Attempt], Iterable[DocBatch]],
    inputs: list[str],
    earlier: dict[str, Any] | None = None,
    chosen: tuple[Encoder, str] | None = None,
) -> Callable[[], dict[str, Any]]:
    """Feed a source's kept documents to the sinks the job wants (shards, documents); returns the call that waits
    for the writers and gives the stream's result (merged with an ``earlier`` pass's), so a worker can start its
    next stream meanwhile."""
    attempt = _Attempt(cfg, stream_index, tools.progress, name)
    pack = _PackSink(cfg, tools, attempt, chosen) if cfg.tokenizer is not None else None
    documents = DocumentWriter(f"{attempt.prefix}-documents.parquet") if cfg.emit_documents else None
    try:
        for batch in source(attempt):
            fault_point(f"pass-{name}")
            if not batch.texts:
                continue
            chars = sum(map(len, batch.texts))
            attempt.counts.docs_written += len(batch.texts)
            attempt.counts.text_chars += chars
            attempt.counts.add_source(batch.source, docs_written=len(batch.texts), text_chars=chars)
            attempt.show(docs=len(batch.texts))
            if documents is not None:
                attempt.counts.time(TIME_WRITE, _call_timed(_write_documents, documents, batch))
            if pack is not None:
                pack.add(batch)
        if pack is not None:
            pack.end()
    except _UseReference as redo:
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

    def finish() -> dict[str, Any]:
        packed = pack.finish() if pack is not None else {"shards": [], "backend": None, "backend_note": ""}
        started = time.perf_counter()
        written = documents.close() if documents is not None else None
        if documents is not None:
            attempt.counts.time(TIME_WRITE, time.perf_counter() - started)
        attempt.show(force=True, streams=1)
        result = {
            "stream": stream_index,
            "counts": attempt.counts.to_dict(),
            **packed,
            "documents": [written] if written else [],
            **attempt.files(),
            "inputs": inputs,
        }
        return merge_results(earlier, result) if earlier is not None else result

    return finish


def merge_results(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """One stream's result from its two passes: counts added, files of both."""
    out = dict(second)
    out["counts"] = Counts.from_dict(first["counts"]).merge(Counts.from_dict(second["counts"])).to_dict()
    out["rejected"] = first["rejected"] + second["rejected"]
    out["modified"] = first["modified"] + second["modified"]
    return out


def stream_inputs(stream: Stream) -> list[str]:
    """The input files a stream reads."""
    return sorted({s.url for s in stream.splits})


def process_stream(stream: Stream, cfg: StreamConfig, tools: StreamTools) -> Callable[[], dict[str, Any]]:
    """The one-pass flow (no dedup): read → recipe → sinks."""
    return run_pass(cfg, tools, stream.index, "p", lambda attempt: read_stream(stream, cfg, tools, attempt),
                    stream_inputs(stream))


def stage_stream(stream: Stream, cfg: StreamConfig, tools: StreamTools,
                 key_files: bool = False) -> Iterator[tuple[str, Any]]:
    """Dedup pass 1: read → recipe → staged documents; yields ("exact"|"near", (key, (ref, id))) for every kept
    document as it goes, and last ("staged", (stream index, result)). With ``key_files`` the keys go to the
    stream's key file instead (``dedup_arrays``), handed on once as ("keys", KeyFile) before "staged"."""
    attempt = _Attempt(cfg, stream.index, tools.progress, "a")
    staged = DocumentWriter(f"{attempt.prefix}-staged.parquet")
    keys: list[tuple[int, str, DocKeys]] = []
    minhash = cfg.recipe.dedup.minhash if cfg.dedup else None
    key_file = KeyFileWriter(attempt.prefix, stream.index, minhash.bands if minhash else 0) \
        if key_files and cfg.dedup else None
    ordinal = 0
    try:
        for batch in read_stream(stream, cfg, tools, attempt, keys):
            found: list[Candidate] = []
            if cfg.selects:  # before staging: a token budget's token ids are staged with the texts
                started = time.perf_counter()
                found = candidates(batch, stream.index, ordinal, cfg, tools)
                # a token budget tokenizes here; otherwise building candidates is part of the recipe's selection
                attempt.counts.time(TIME_TOKENIZE if cfg.tokenizer is not None else TIME_RECIPE,
                                    time.perf_counter() - started)
            attempt.counts.time(TIME_WRITE, _call_timed(_write_documents, staged, batch, True))
            if key_file is not None and keys:
                if keys[0][0] != make_ref(stream.index, key_file.docs):  # a row's place in the file is its ordinal
                    raise RuntimeError(f"stream {stream.index}: dedup keys out of order")
                key_file.add([doc_id for _, doc_id, _ in keys], [doc_keys for _, _, doc_keys in keys])
                keys.clear()
            for ref, doc_id, doc_keys in keys:
                if doc_keys is None:
                    continue
                exact, bands = doc_keys
                if exact is not None:
                    yield "exact", (exact, (ref, doc_id))
                for band in bands:
                    yield "near", (band, (ref, doc_id))
            keys.clear()
            for candidate in found:
                yield "candidates", (stream.index, candidate)
            ordinal += len(batch.texts)
    except BaseException:
        attempt.close()
        raise
    started = time.perf_counter()
    written = staged.close()
    attempt.counts.time(TIME_WRITE, time.perf_counter() - started)
    result = {"stream": stream.index, "counts": attempt.counts.to_dict(), **attempt.files(),
              "staged": written["temp_url"] if written else None, "inputs": stream_inputs(stream)}
    if key_file is not None:
        yield "keys", key_file.close()
    yield "staged", (stream.index, result)


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


def finish_staged(staged: dict[str, Any], duplicates: dict[int, tuple[str, str]], cfg: StreamConfig,
                  tools: StreamTools, plan: Plan | None = None) -> Callable[[], dict[str, Any]]:
    """Pass 2: the staged documents of one stream minus its duplicates, selected by the ``plan`` → sinks."""
    url = staged["staged"]

    def source(attempt: _Attempt) -> Iterator[DocBatch]:
        if not url:
            return
        for batch in _timed(read_staged(url, duplicates, attempt, plan, staged["stream"])):
            attempt.counts.time(TIME_READ, batch.seconds)
            yield batch

    return run_pass(cfg, tools, staged["stream"], "b", source, staged["inputs"], earlier=staged)


class _StreamDoFn(beam.DoFn):
    """Shared adapter: worker tools in setup, results emitted as their writers finish (all by bundle end)."""

    keys = False  # emits dedup keys (pass 1)
    runs_recipe = True  # reads inputs through the recipe (pass 2 reads staged documents instead)

    def __init__(self, cfg: StreamConfig) -> None:
        self.cfg = cfg
        self.tools: StreamTools | None = None
        self._finisher: ThreadPoolExecutor | None = None
        self._finishing: deque[Future] = deque()

    def setup(self) -> None:
        self.tools = StreamTools(self.cfg, keys=self.keys, recipe=self.runs_recipe)
        if self.cfg.tokenizer is not None and not (self.keys and self.cfg.dedup):
            self.tools.encoders  # start loading the tokenizer while the first stream is read
        self._finisher = ThreadPoolExecutor(1, thread_name_prefix="tokenmill-finish")

    def start_bundle(self) -> None:
        self._finishing = deque()

    def finish_bundle(self) -> Iterator[WindowedValue]:
        for result in self._finished(wait=True):
            yield WindowedValue(result, MIN_TIMESTAMP, [GlobalWindow()])

    def teardown(self) -> None:
        if self._finisher is not None:
            self._finisher.shutdown(wait=True, cancel_futures=True)
        if self.tools is not None:
            self.tools.close()

    def _submit(self, finish: Callable[[], dict[str, Any]]) -> None:
        self._finishing.append(self._finisher.submit(finish))

    def _finished(self, wait: bool) -> Iterator[dict[str, Any]]:
        """Results of streams whose writers are done (all of them if ``wait``), with their metrics counted."""
        while self._finishing and (wait or self._finishing[0].done()):
            result = self._finishing.popleft().result()
            count_metrics(result["counts"])
            yield result


def count_metrics(counts: dict[str, Any]) -> None:
    """A stream's counts as Beam metrics (summed across workers by the runner)."""
    for name in ("records", "docs_written", "tokens", "sequences", "pad_tokens", "bytes_read"):
        beam.metrics.Metrics.counter(METRICS_NAMESPACE, name).inc(counts[name])
    for reason, n in counts["docs_rejected"].items():
        beam.metrics.Metrics.counter(METRICS_NAMESPACE, f"rejected_{reason}").inc(n)
    for stage, n in counts["docs_modified"].items():
        beam.metrics.Metrics.counter(METRICS_NAMESPACE, f"modified_{stage}").inc(n)


class ProcessStream(_StreamDoFn):
    """One pass: a stream in, its result dict out (shards and/or documents written under temp names)."""

    def process(self, stream: Stream, fitted: dict | None = None) -> Iterator[dict[str, Any]]:
        if fitted is not None:
            self.tools.runner.fit(fitted)
        yield from self._finished(wait=False)
        self._submit(process_stream(stream, self.cfg, self.tools))


class StageStream(_StreamDoFn):
    """Pass 1: a stream in; its documents' dedup keys out on the ``exact`` and ``near`` outputs (with ``key_files``:
    the stream's key file on ``keys``), their selection candidates on ``candidates``, and (stream index, staged
    result) on the main output."""

    keys = True

    def __init__(self, cfg: StreamConfig, key_files: bool = False) -> None:
        super().__init__(cfg)
        self.key_files = key_files

    def process(self, stream: Stream, fitted: dict | None = None) -> Iterator[Any]:
        if fitted is not None:
            self.tools.runner.fit(fitted)
        for tag, value in stage_stream(stream, self.cfg, self.tools, self.key_files):
            yield value if tag == "staged" else beam.pvalue.TaggedOutput(tag, value)

    def finish_bundle(self) -> Iterator[WindowedValue]:
        return iter(())


class FinishStaged(_StreamDoFn):
    """Pass 2: (stream index, {staged: [result], duplicates: [[(ordinal, reason, kept id)], ...]}) in (and the
    selection plan as a side input), the stream's result out."""

    runs_recipe = False

    def process(self, element: tuple[int, dict[str, list]], plan: Plan | None = None) -> Iterator[dict[str, Any]]:
        yield from self._finished(wait=False)
        _, joined = element
        (staged,) = joined["staged"]
        duplicates = {ordinal: (reason, kept) for found in joined["duplicates"] for ordinal, reason, kept in found}
        self._submit(finish_staged(staged, duplicates, self.cfg, self.tools, plan))
