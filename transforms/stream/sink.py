"""The packing sink of a pass: tokenize → pack → Parquet shards (``prepare``), the writer in its own thread.

    batch ─► encode (+EOS/BOS, loss mask source) ─► lane per bucket ─► packer ─► shard writer per row length
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Iterator

import numpy as np

from schemas.documents import META_BUCKET, META_UPSAMPLE
from schemas.manifest import (
    E_BUCKET,
    E_PAD_TOKENS,
    E_ROWS,
    E_SEQ_LEN,
    K_LENGTHS,
    SHORTER_THAN_PIECE,
    STAGE_PACK,
    TIME_PACK,
    TIME_TOKENIZE,
    TIME_WRITE,
)
from transforms.output.shard_writer import ShardWriter
from transforms.pack.packers import Packed, mask_source
from transforms.pack.rows import PackedRows
from transforms.read.readers import DocBatch
from transforms.read.records import Rejection
from transforms.stream.attempts import Attempt
from transforms.stream.config import StreamConfig, StreamTools
from transforms.stream.prefetch import call_timed
from transforms.tokenize.tokenizer import Encoder, add_specials

_WRITES_IN_FLIGHT = 16  # packed batches (~2 MB of ids each) queued for the writer; it flushes whole row groups


class UseReference(Exception):
    """auto's verification found gigatoken differing on this stream: redo it with the reference encoder."""

    def __init__(self, encoder: Encoder, note: str) -> None:
        super().__init__(note)
        self.encoder = encoder
        self.note = note


class Lane:
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
            prefix = f"{self.prefix}-len{length:05d}" if self.packer.per_length else self.prefix
            w = self.writers[length] = ShardWriter(prefix, length, self.cfg.shard_rows, self.masked)
        return w

    def pack(self, flat: np.ndarray, lens: np.ndarray, mask: np.ndarray | None) -> Packed:
        """Pack documents (and their loss mask source into the rows' mask)."""
        packed = self.packer.pack(flat, lens)
        if self.mask_packer is not None:
            _attach(packed.rows, self.mask_packer.pack(mask, lens).rows)
        return packed

    def flush(self) -> Packed:
        """The packer's last rows."""
        packed = self.packer.flush()
        if self.mask_packer is not None:
            _attach(packed.rows, self.mask_packer.flush().rows)
        return packed


def _attach(rows: dict[int, PackedRows], masks: dict[int, PackedRows]) -> None:
    for length, block in rows.items():
        block.loss_mask = masks[length].input_ids.astype(np.uint8)


class PackSink:
    """Tokenize → pack → Parquet shards (``prepare``), the writer one batch behind in its own thread.

    With ``auto``, gigatoken starts at once while its verification on the stream's first documents runs beside
    it; on a mismatch (rare) ``add``/``end`` raise UseReference and the caller redoes the pass with the reference.
    With a bucket-partitioned ensemble, each bucket is packed into shards of its own (``shards/bucket=NN/``).
    """

    def __init__(self, cfg: StreamConfig, tools: StreamTools, attempt: Attempt,
                 chosen: tuple[Encoder, str] | None) -> None:
        self.cfg = cfg
        self.tools = tools
        self.attempt = attempt
        self.spec = cfg.tokenizer
        selection = cfg.recipe.selection if cfg.recipe is not None else None
        self.partition = bool(selection is not None and selection.ensemble is not None and
                              selection.ensemble.partition)
        self.lanes: dict[int | None, Lane] = {}
        self.encoder, self.note = chosen if chosen is not None else (None, "")
        self.verifying: Future | None = None
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="tokenmill-writer")
        self.writes: deque[Future] = deque()
        self.short_tokens = 0  # tokens of documents rejected as shorter than the shortest decompose piece

    @property
    def backend(self) -> str | None:
        """The name of the encoder that tokenized the stream (None when no document came)."""
        return self.encoder.name if self.encoder is not None else None

    def add(self, batch: DocBatch) -> None:
        """Tokenize and pack a batch of kept documents."""
        if self.encoder is None:
            where = f"stream {self.attempt.stream} ({batch.ids[0]})"
            self.encoder, self.verifying = self.tools.encoders.start(batch.texts, where)
            self.note = self.tools.encoders.fast_error if self.verifying is None else ""  # why not gigatoken
        flat, lens, mask = self._encode(batch)
        if not self.partition:
            self._route(self._lane(None), flat, lens, mask, batch, list(range(len(batch.texts))))
        else:
            ends = np.cumsum(lens)
            for bucket, docs in _by_bucket(batch.metas):
                parts = [flat[ends[i] - lens[i]:ends[i]] for i in docs]
                masks = None if mask is None else np.concatenate([mask[ends[i] - lens[i]:ends[i]] for i in docs])
                self._route(self._lane(bucket), np.concatenate(parts), lens[docs], masks, batch, docs)
        if self.verifying is not None and self.verifying.done():
            self._check()

    def end(self) -> None:
        """All documents are in: settle the verification, pack the upsampled copies and pad the last rows."""
        if self.verifying is not None:
            self._check()
        for _, lane in self._in_order():
            if lane.copies:
                self._pack_copies(lane)
            started = time.perf_counter()
            last = lane.flush()
            self.attempt.counts.time(TIME_PACK, time.perf_counter() - started)
            for length, block in last.rows.items():
                self._write(lane.writer(length), block)

    def finish(self) -> list[dict[str, Any]]:
        """Wait for the writers: the pass's shards (each with its bucket when partitioned), its counts settled."""
        c = self.attempt.counts
        try:
            while self.writes:
                c.time(TIME_WRITE, self.writes.popleft().result())
            started = time.perf_counter()
            shards = self._close_writers()
            c.time(TIME_WRITE, time.perf_counter() - started)
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)
        c.sequences = sum(s[E_ROWS] for s in shards)
        c.pad_tokens = sum(s[E_PAD_TOKENS] for s in shards)
        c.docs_split = sum(lane.packer.split_docs for lane in self.lanes.values())
        c.tokens_dropped = sum(lane.packer.dropped_tokens for lane in self.lanes.values()) - self.short_tokens
        c.tokens -= c.tokens_dropped  # tokens counts what the shards hold
        return shards

    def discard(self) -> None:
        """Stop writing and delete this attempt's shards."""
        self.pool.shutdown(wait=True, cancel_futures=True)
        for lane in self.lanes.values():
            for writer in lane.writers.values():
                writer.abort()

    def _lane(self, bucket: int | None) -> Lane:
        lane = self.lanes.get(bucket)
        if lane is None:
            prefix = self.attempt.prefix if bucket is None else f"{self.attempt.prefix}-b{bucket:03d}"
            lane = self.lanes[bucket] = Lane(self.cfg, prefix)
        return lane

    def _in_order(self) -> list[tuple[int | None, Lane]]:
        """The lanes, the unpartitioned one first, then by bucket."""
        return sorted(self.lanes.items(), key=lambda item: -1 if item[0] is None else item[0])

    def _encode(self, batch: DocBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The batch's token ids with EOS/BOS, their lengths, and the loss mask source (None without one)."""
        started = time.perf_counter()
        if batch.token_ids is not None and batch.token_ids[0] == self.encoder.name:
            _, flat, lens = batch.token_ids  # tokenized in pass 1 by the same encoder
        else:
            flat, lens = self.encoder.encode_batch(batch.texts)
        flat, lens = add_specials(flat, lens, self.spec.eos_id, self.spec.bos_id)
        mode = self.cfg.packing.loss_mask
        mask = mask_source(flat, lens, mode, self.spec.eos_id, self.spec.bos_id) if mode != "none" else None
        self.attempt.counts.time(TIME_TOKENIZE, time.perf_counter() - started)
        return flat, lens, mask

    def _route(self, lane: Lane, flat: np.ndarray, lens: np.ndarray, mask: np.ndarray | None, batch: DocBatch,
               docs: list[int]) -> None:
        packed = self._pack(lane, flat, lens, mask)
        self.attempt.counts.add_source(batch.source, tokens=int(flat.size) - packed.dropped_tokens)
        if packed.empty:  # decompose: documents shorter than the shortest piece: rejected, their tokens counted
            self._reject_short(batch, [docs[i] for i in packed.empty], lens[packed.empty])
        metas = [batch.metas[i] for i in docs] if batch.metas else []
        if metas and any(isinstance(x, dict) and x.get(META_UPSAMPLE) for x in metas):
            _defer_copies(lane, flat, lens, mask, metas, batch.source)

    def _pack(self, lane: Lane, flat: np.ndarray, lens: np.ndarray, mask: np.ndarray | None) -> Packed:
        """Pack documents and queue their rows for writing."""
        c = self.attempt.counts
        c.tokens += int(flat.size)
        self.attempt.show(tokens=int(flat.size))
        started = time.perf_counter()
        packed = lane.pack(flat, lens, mask)
        c.time(TIME_PACK, time.perf_counter() - started)
        for length, block in packed.rows.items():
            self._write(lane.writer(length), block)
        return packed

    def _pack_copies(self, lane: Lane) -> None:
        """Pack a lane's upsampled copies, counting what each left in the rows under its input file."""
        masks = None if lane.copies[0][1] is None else np.concatenate([m for _, m, _ in lane.copies])
        self._pack(lane, np.concatenate([t for t, _, _ in lane.copies]),
                   np.array([t.size for t, _, _ in lane.copies], np.int64), masks)
        for tokens, _, source in lane.copies:
            self.attempt.counts.add_source(source, tokens=tokens.size - lane.packer.remainder(tokens.size))
        lane.copies = []

    def _reject_short(self, batch: DocBatch, docs: list[int], lens: np.ndarray) -> None:
        c = self.attempt.counts
        c.docs_written -= len(docs)
        c.add_source(batch.source, docs_written=-len(docs))  # its tokens were never in the source's (dropped)
        c.tokens -= int(lens.sum())
        self.short_tokens += int(lens.sum())  # the packer counted them as dropped remainders too
        self.attempt.reject([Rejection(
            batch.source, SHORTER_THAN_PIECE, line=batch.lines[i], row=batch.rows[i], id=batch.ids[i],
            detail=f"{int(n)} tokens with EOS, below the shortest piece of {self.cfg.packing.manifest()[K_LENGTHS][0]}",
            record=batch.raw_record(i), stage=STAGE_PACK, counted_as=f"{STAGE_PACK}/{SHORTER_THAN_PIECE}",
        ) for i, n in zip(docs, lens.tolist())])

    def _close_writers(self) -> list[dict[str, Any]]:
        """Close every lane's writers: their shards in lane and row-length order."""
        shards = []
        for bucket, lane in self._in_order():
            for length, writer in sorted(lane.writers.items()):
                for shard in writer.close():
                    if bucket is not None:
                        shard = {**shard, E_BUCKET: bucket}
                    shards.append({**shard, E_SEQ_LEN: length} if lane.packer.per_length else shard)
        return shards

    def _write(self, writer: ShardWriter, rows: PackedRows) -> None:
        self.writes.append(self.pool.submit(call_timed, writer.write, rows))
        while len(self.writes) > _WRITES_IN_FLIGHT:
            self.attempt.counts.time(TIME_WRITE, self.writes.popleft().result())

    def _check(self) -> None:
        """auto's verification has resolved: go on with gigatoken, or start over with the reference."""
        verified, verdict = self.verifying.result()
        self.verifying = None
        if verified is not self.encoder:
            raise UseReference(verified, verdict)


def _by_bucket(metas: list[Any]) -> Iterator[tuple[int, list[int]]]:
    """(bucket, the batch's documents in it) in bucket order."""
    by_bucket: dict[int, list[int]] = {}
    for i, meta in enumerate(metas):
        by_bucket.setdefault(meta[META_BUCKET], []).append(i)
    return iter(sorted(by_bucket.items()))


def _defer_copies(lane: Lane, flat: np.ndarray, lens: np.ndarray, mask: np.ndarray | None, metas: list,
                  source: str) -> None:
    """Keep the extra copies of upsampled documents for the end of the stream: copies of a document are
    packed apart from it, never into the same rows."""
    ends = np.cumsum(lens)
    for i, meta in enumerate(metas):
        factor = meta.get(META_UPSAMPLE, 1) if isinstance(meta, dict) else 1
        for _ in range(factor - 1):
            span = slice(ends[i] - lens[i], ends[i])
            lane.copies.append((flat[span].copy(), None if mask is None else mask[span].copy(), source))
