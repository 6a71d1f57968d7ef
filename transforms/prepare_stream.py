"""Read → tokenize → pack → write for one stream: the core of ``prepare``, and its thin Beam adapter."""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import apache_beam as beam
import fsspec
import orjson

from schemas.manifest import Counts
from schemas.shards import TEMP_DIR
from transforms.pack import PACKERS
from transforms.progress import ProgressWriter
from transforms.readers import DEFAULT_BATCH_BYTES, DocBatch, read_split
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
)

log = logging.getLogger(__name__)
METRICS_NAMESPACE = "tokenmill"
_PREFETCH_BATCHES = 4
_WRITES_IN_FLIGHT = 2


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

    @property
    def temp_dir(self) -> str:
        """Where workers write before the commit step renames into place."""
        return f"{self.output.rstrip('/')}/{TEMP_DIR}"


class Encoders:
    """The reference encoder and (if wanted and loadable) gigatoken, loaded once per worker."""

    def __init__(self, spec: TokenizerSpec) -> None:
        data = load_file(spec)
        self.spec = spec
        self.reference = load_reference(spec, data)
        self.fast: Encoder | None = None
        self.fast_error = ""
        if spec.backend in (AUTO, GIGATOKEN):
            try:
                self.fast = GigatokenEncoder(spec.path, data, spec.kind, spec.tiktoken_scheme)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # gigatoken refuses (or panics on) some tokenizers: auto falls back
                if spec.backend == GIGATOKEN:
                    raise
                self.fast_error = f"gigatoken cannot load this tokenizer ({exc})"

    def choose(self, sample: list[str], where: str) -> tuple[Encoder, str]:
        """The encoder for a stream, given its first documents; returns (encoder, note)."""
        if self.spec.backend == HF or self.fast is None:
            return self.reference, self.fast_error
        if self.spec.backend == GIGATOKEN:
            return self.fast, ""
        mismatch = first_mismatch(self.fast, self.reference, sample)
        if mismatch is None:
            return self.fast, ""
        note = f"gigatoken differs from {self.reference.name} on {where}: {mismatch}; using {self.reference.name}"
        log.warning("tokenmill: %s", note)
        return self.reference, note


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


def process_stream(stream: Stream, cfg: StreamConfig, encoders: Encoders, progress: ProgressWriter) -> dict[str, Any]:
    """Tokenize and pack one stream into temp shards; returns its result (counts, shards, rejected file, backend)."""
    attempt = uuid.uuid4().hex[:12]  # retried or speculative attempts never write over each other
    prefix = f"{cfg.temp_dir}/s{stream.index:05d}-{attempt}"
    spec = cfg.tokenizer
    counts = Counts()
    packer = PACKERS[cfg.packing](cfg.seq_len, spec.pad_id)
    writer = ShardWriter(prefix, cfg.seq_len, cfg.shard_rows)
    rejected_url = f"{prefix}-rejected.jsonl"
    rejected_fh = None
    encoder: Encoder | None = None
    note = ""
    # Parquet encoding and compression run in one background thread (in order) while the next batch tokenizes
    pool = ThreadPoolExecutor(1)
    writes: deque[Future] = deque()

    def write(rows) -> None:
        writes.append(pool.submit(writer.write, rows))
        while len(writes) > _WRITES_IN_FLIGHT:
            writes.popleft().result()

    try:
        for batch in _prefetch(_batches(stream, cfg), _PREFETCH_BATCHES):
            counts.records += batch.records
            counts.bytes_read += batch.bytes_read
            for kind, n in batch.repairs.items():
                counts.repair(kind, n)
            if batch.rejections:
                if rejected_fh is None:
                    rejected_fh = fsspec.open(rejected_url, "wb").open()
                for rej in batch.rejections:
                    counts.reject(rej.reason)
                    rejected_fh.write(orjson.dumps(rej.to_dict()) + b"\n")
            if batch.texts:
                if encoder is None:
                    encoder, note = encoders.choose(batch.texts, f"stream {stream.index} ({batch.ids[0]})")
                flat, lens = encoder.encode_batch(batch.texts)
                flat, lens = add_specials(flat, lens, spec.eos_id, spec.bos_id)
                counts.docs_written += len(batch.texts)
                counts.tokens += int(flat.size)
                counts.text_chars += sum(map(len, batch.texts))
                write(packer.add(flat, lens))
            progress.add(docs=len(batch.texts), records=batch.records, bytes=batch.bytes_read,
                         tokens=int(flat.size) if batch.texts else 0)
        write(packer.finish())
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


class TokenizeAndPack(beam.DoFn):
    """Beam adapter: one stream in, one small result dict out; the tokenizer loads once per worker."""

    def __init__(self, cfg: StreamConfig) -> None:
        self.cfg = cfg
        self.encoders: Encoders | None = None
        self.progress: ProgressWriter | None = None

    def setup(self) -> None:
        self.encoders = Encoders(self.cfg.tokenizer)
        self.progress = ProgressWriter(self.cfg.progress_dir)

    def process(self, stream: Stream) -> Iterator[dict[str, Any]]:
        result = process_stream(stream, self.cfg, self.encoders, self.progress)
        c = result["counts"]
        for name in ("records", "docs_written", "tokens", "sequences", "pad_tokens", "bytes_read"):
            beam.metrics.Metrics.counter(METRICS_NAMESPACE, name).inc(c[name])
        for reason, n in c["docs_rejected"].items():
            beam.metrics.Metrics.counter(METRICS_NAMESPACE, f"rejected_{reason}").inc(n)
        yield result
