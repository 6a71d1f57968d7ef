"""One consumer's epoch: its span of each length's rows (blocks in the epoch's order, cut into windows) and the
batches in order (the length of each drawn with the curriculum's odds), all from (seed, epoch) alone."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from schemas.loader.layout import Pool

# Seed-sequence tags: each random choice has its own stream.
_BLOCK_ORDER, _WINDOW_ORDER, _LENGTH_ORDER = 1, 2, 3


@dataclass(frozen=True)
class Order:
    """What a consumer's epoch order depends on, besides the epoch."""

    seed: int
    shuffle: bool
    drop_last: bool
    shuffle_window: int
    consumer: int  # rank * num_workers + worker_id
    consumers: int  # world_size * num_workers


@dataclass
class Span:
    """A consumer's rows of one length for one epoch: pieces of blocks in epoch order, cut into windows."""

    pieces: np.ndarray  # (P, 3): shard, start, stop
    window_pieces: np.ndarray  # piece index where each window starts, and P at the end
    window_rows: np.ndarray  # row offset where each window starts, and the span's rows at the end
    seed: list[int]  # entropy of the window permutations (the window index is appended)

    @property
    def rows(self) -> int:
        return int(self.window_rows[-1])


@dataclass
class Plan:
    """One consumer's epoch: spans per length and the batches (length, first row, rows) in order."""

    epoch: int
    batch_size: int
    spans: list[Span]
    pools: np.ndarray  # pool of each batch
    starts: np.ndarray  # first row of each batch in its pool's span
    sizes: np.ndarray  # rows of each batch


def epoch_plan(pools: list[Pool], epoch: int, batch_size: int, order: Order) -> Plan:
    """The consumer's spans and batches of ``epoch`` (``batch_size`` rows of the longest length per batch)."""
    spans = [span_of(pool, epoch, order) for pool in pools]
    counts, sizes_by_pool = [], []
    for pool, span in zip(pools, spans):
        per = batch_size * pool.multiplier
        full, rest = divmod(span.rows, per)
        sizes = [per] * full + ([rest] if rest and not order.drop_last else [])
        counts.append(len(sizes))
        sizes_by_pool.append(np.array(sizes, np.int64))
    if len(pools) > 1:
        odds = [pool.odds or pool.rows / (batch_size * pool.multiplier) for pool in pools]
        rng = _rng(order.seed, epoch, _LENGTH_ORDER)
        batch_pools = _draw_lengths(counts, odds, rng)
    else:
        batch_pools = np.zeros(sum(counts), np.int64)
    starts = np.zeros(len(batch_pools), np.int64)
    sizes = np.zeros(len(batch_pools), np.int64)
    for p, pool_sizes in enumerate(sizes_by_pool):
        at = batch_pools == p
        sizes[at] = pool_sizes
        starts[at] = np.cumsum(pool_sizes) - pool_sizes
    return Plan(epoch, batch_size, spans, batch_pools, starts, sizes)


def span_of(pool: Pool, epoch: int, order: Order) -> Span:
    """The consumer's contiguous share of the pool's rows in the epoch's block order, cut into windows."""
    blocks = pool.blocks
    if order.shuffle and len(blocks):
        blocks = blocks[_rng(order.seed, epoch, _BLOCK_ORDER, pool.seq_len).permutation(len(blocks))]
    sizes = blocks[:, 2] - blocks[:, 1]
    ends = np.cumsum(sizes)
    n, c, cs = pool.rows, order.consumer, order.consumers
    if order.drop_last:
        a, b = c * (n // cs), (c + 1) * (n // cs)
    else:
        base, extra = divmod(n, cs)
        a = c * base + min(c, extra)
        b = a + base + (c < extra)
    first = int(np.searchsorted(ends, a, side="right"))
    last = int(np.searchsorted(ends, b, side="left")) + 1 if b > a else first
    pieces = blocks[first:last].copy()
    if len(pieces):
        begins = ends[first:last] - sizes[first:last]
        pieces[0, 1] += a - begins[0]
        pieces[-1, 2] -= ends[last - 1] - b
    rows = pieces[:, 2] - pieces[:, 1]
    window_pieces = np.append(np.arange(0, len(pieces), order.shuffle_window), len(pieces))
    window_rows = np.zeros(len(window_pieces), np.int64)
    window_rows[1:] = np.cumsum(rows)[window_pieces[1:] - 1] if len(pieces) else []
    return Span(pieces, window_pieces, window_rows, [order.seed, epoch, _WINDOW_ORDER, pool.seq_len, cs, c])


def _rng(*entropy: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(x) for x in entropy])))


def _draw_lengths(counts: list[int], odds: list[float], rng: np.random.Generator) -> np.ndarray:
    """The pool of each batch: drawn by odds among the pools that still have batches (one uniform per batch)."""
    total = sum(counts)
    out = np.empty(total, np.int64)
    remaining = list(counts)
    draws = rng.random(total).tolist()
    for k, u in enumerate(draws):
        weights = [o if r else 0.0 for o, r in zip(odds, remaining)]
        x = u * sum(weights)
        choice, acc = -1, 0.0
        for i, w in enumerate(weights):
            if w:
                choice, acc = i, acc + w
                if x < acc:
                    break
        out[k] = choice
        remaining[choice] -= 1
    return out
