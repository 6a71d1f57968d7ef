"""Read → tokenize → pack → write for one stream: the core of ``prepare``, and its thin Beam adapter."""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import apache_beam as beam
import fsspec
import orjson
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from schemas.manifest import STAGE_FILTER, Counts
from schemas.shards import TEMP_DIR
from transforms.filtering import make_engine
from transforms.pack import PACKERS
from transforms.progress import ProgressWriter
from transforms.readers import DEFAULT_BATCH_BYTES, DocBatch, read_split
from transforms.recipes import Recipe
from transforms.records import Rejection, raw_record
from transforms.shard_writer import ShardWriter
from transforms.sources import Stream
from transforms.tokenizer import (
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
    tokenizer: TokenizerSpec
    seq_len: int
    shard_rows: int
    text_field: str = "text"
    id_field: str = "id"
    strict: bool = False
    packing: str = "concat"
    batch_bytes: int = DEFAULT_BATCH_BYTES
    progress_dir: str | None = None
    recipe: Recipe | None = None

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
        yield from read_split(split, cfg.text_field, cfg.id_field, cfg.batch_bytes, cfg.strict)


class _UseReference(Exception):
    """auto's verification found gigatoken differing on this stream: redo it with the reference encoder."""

    def __init__(self, encoder: Encoder, note: str) -> None:
        super().__init__(note)
        self.encoder = encoder
        self.note = note


def process_stream(
    stream: Stream, cfg: StreamConfig, encoders: Encoders, progress: ProgressWriter, engine: Any = None
) -> dict[str, Any]:
    """Tokenize and pack one stream into temp shards; returns its result (counts, shards, rejected file, backend)."""
    return start_stream(stream, cfg, encoders, progress, engine=engine)()


def start_stream(
    stream: Stream,
    cfg: StreamConfig,
    encoders: Encoders,
    progress: ProgressWriter,
    chosen: tuple[Encoder, str] | None = None,
    engine: Any = None,
) -> Callable[[], dict[str, Any]]:
    """Read and tokenize one stream, handing its rows to a writer thread; returns the call that waits for the
    writer and gives the stream's result, so that a worker can start its next stream meanwhile.

    With ``auto``, gigatoken starts at once while its verification on the stream's first documents runs beside
    it; on a mismatch (rare) this attempt is discarded and the stream redone with the reference encoder.
    """
    attempt = uuid.uuid4().hex[:12]  # retried or speculative attempts never write over each other
    prefix = f"{cfg.temp_dir}/s{stream.index:05d}-{attempt}"
    spec = cfg.tokenizer
    counts = Counts()
    packer = PACKERS[cfg.packing](cfg.seq_len, spec.pad_id)
    writer = ShardWriter(prefix, cfg.seq_len, cfg.shard_rows)
    rejected_url = f"{prefix}-rejected.jsonl"
    rejected_fh = None
    encoder, note = chosen if chosen is not None else (None, "")
    verifying: Future | None = None
    # Parquet encoding and compression run in one background thread (in order) while the next batch tokenizes
    pool = ThreadPoolExecutor(1, thread_name_prefix="tokenmill-writer")
    writes: deque[Future] = deque()

    def write(rows) -> None:
        writes.append(pool.submit(writer.write, rows))
        while len(writes) > _WRITES_IN_FLIGHT:
            writes.popleft().result()

    def check() -> None:
        """auto's verification has resolved: go on with gigatoken, or start over with the reference."""
        nonlocal verifying
        verified, verdict = verifying.result()
        verifying = None
        if verified is not encoder:
            raise _UseReference(verified, verdict)

    try:
        for batch in _prefetch(_batches(stream, cfg), _PREFETCH_BATCHES):
            counts.records += batch.records
            counts.bytes_read += batch.bytes_read
            for kind, n in batch.repairs.items():
                counts.repair(kind, n)
            rejections = batch.rejections
            if engine is not None and batch.texts:
                rejections = rejections + _apply_filters(engine, batch, counts)
            if rejections:
                if rejected_fh is None:
                    rejected_fh = fsspec.open(rejected_url, "wb").open()
                for rej in rejections:
                    counts.reject(rej.count_key)
                    rejected_fh.write(orjson.dumps(rej.to_dict()) + b"\n")
            progress.add(records=batch.records, bytes=batch.bytes_read)
            if not batch.texts:
                continue
            if encoder is None:
                encoder, verifying = encoders.start(batch.texts, f"stream {stream.index} ({batch.ids[0]})")
                note = encoders.fast_error if verifying is None else ""  # why auto could not use gigatoken
            flat, lens = encoder.encode_batch(batch.texts)
            flat, lens = add_specials(flat, lens, spec.eos_id, spec.bos_id)
            counts.docs_written += len(batch.texts)
            counts.tokens += int(flat.size)
            counts.text_chars += sum(map(len, batch.texts))
            progress.add(docs=len(batch.texts), tokens=int(flat.size))
            write(packer.add(flat, lens))
            if verifying is not None and verifying.done():
                check()
        if verifying is not None:
            check()
        write(packer.finish())
    except _UseReference as redo:
        _discard(pool, writer, rejected_fh, rejected_url)
        progress.add(records=-counts.records, bytes=-counts.bytes_read, docs=-counts.docs_written,
                     tokens=-counts.tokens)
        return start_stream(stream, cfg, encoders, progress, chosen=(redo.encoder, redo.note), engine=engine)
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        if rejected_fh is not None:
            rejected_fh.close()
        raise

    def finish() -> dict[str, Any]:
        try:
            while writes:
                writes.popleft().result()
            shards = writer.close()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            if rejected_fh is not None:
                rejected_fh.close()
        counts.sequences = sum(s["rows"] for s in shards)
        counts.pad_tokens = sum(s["pad_tokens"] for s in shards)
        progress.add(force=True, streams=1)
        return {
            "stream": stream.index,
            "counts": counts.to_dict(),
            "shards": shards,
            "rejected": {"temp_url": rejected_url, "records": counts.rejected_total()} if rejected_fh else None,
            "backend": encoder.name if encoder is not None else None,
            "backend_note": note,
            "inputs": sorted({s.url for s in stream.splits}),
        }

    return finish


def _apply_filters(engine: Any, batch: DocBatch, counts: Counts) -> list[Rejection]:
    """Run the recipe's filters on a batch: keep (possibly modified) documents in place, return the dropped ones."""
    decisions = engine.apply(batch.texts, batch.ids)
    kept_texts, kept_ids, dropped = [], [], []
    for i, d in enumerate(decisions):
        for stage in d.modified_by:
            counts.docs_modified[stage] = counts.docs_modified.get(stage, 0) + 1
        if d.keep:
            kept_texts.append(d.text)
            kept_ids.append(batch.ids[i])
            continue
        dropped.append(Rejection(
            batch.source, d.reason, line=batch.lines[i], row=batch.rows[i], id=batch.ids[i],
            detail=f"{d.stage}/{d.reason}", record=raw_record(batch.texts[i]), stage=STAGE_FILTER,
            counted_as=f"{d.stage}/{d.reason}",
        ))
    batch.texts, batch.ids = kept_texts, kept_ids
    return dropped


def _discard(pool: ThreadPoolExecutor, writer: ShardWriter, rejected_fh: Any, rejected_url: str) -> None:
    """Throw away an attempt's temp files (the commit step would ignore them; this keeps the disk tidy)."""
    pool.shutdown(wait=True, cancel_futures=True)
    writer.abort()
    if rejected_fh is not None:
        rejected_fh.close()
        fs, path = fsspec.core.url_to_fs(rejected_url)
        fs.rm(path)


class TokenizeAndPack(beam.DoFn):
    """Beam adapter: one stream in, one small result dict out; the tokenizer loads once per worker.

    A stream's writer finishes in the background while the next stream of the bundle starts tokenizing; the
    results are emitted as their writers finish, and all of them by the end of the bundle.
    """

    def __init__(self, cfg: StreamConfig) -> None:
        self.cfg = cfg
        self.encoders: Encoders | None = None
        self.progress: ProgressWriter | None = None
        self.engine: Any = None
        self._finisher: ThreadPoolExecutor | None = None
        self._finishing: deque[Future] = deque()

    def setup(self) -> None:
        self.encoders = Encoders(self.cfg.tokenizer)
        self.progress = ProgressWriter(self.cfg.progress_dir)
        self.engine = make_engine(self.cfg.recipe) if self.cfg.recipe is not None else None
        self._finisher = ThreadPoolExecutor(1, thread_name_prefix="tokenmill-finish")

    def start_bundle(self) -> None:
        self._finishing = deque()

    def process(self, stream: Stream) -> Iterator[dict[str, Any]]:
        yield from self._finished(wait=False)
        finish = start_stream(stream, self.cfg, self.encoders, self.progress, engine=self.engine)
        self._finishing.append(self._finisher.submit(finish))

    def finish_bundle(self) -> Iterator[WindowedValue]:
        for result in self._finished(wait=True):
            yield WindowedValue(result, MIN_TIMESTAMP, [GlobalWindow()])

    def teardown(self) -> None:
        if self._finisher is not None:
            self._finisher.shutdown(wait=True, cancel_futures=True)

    def _finished(self, wait: bool) -> Iterator[dict[str, Any]]:
        """Results of streams whose writers are done (all of them if ``wait``), with their metrics counted."""
        while self._finishing and (wait or self._finishing[0].done()):
            result = self._finishing.popleft().result()
            c = result["counts"]
            for name in ("records", "docs_written", "tokens", "sequences", "pad_tokens", "bytes_read"):
                beam.metrics.Metrics.counter(METRICS_NAMESPACE, name).inc(c[name])
            for reason, n in c["docs_rejected"].items():
                beam.metrics.Metrics.counter(METRICS_NAMESPACE, f"rejected_{reason}").inc(n)
            yield result
