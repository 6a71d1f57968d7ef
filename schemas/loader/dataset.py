"""``PackedShardDataset``: batches of packed rows for one consumer (a rank, and a DataLoader worker inside it);
the package docstring (``schemas.loader``) describes the epoch order, partitions, padding, lengths and resuming."""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from schemas.loader.batches import Chunk, Cursor, Window
from schemas.loader.layout import dataset_fingerprint, make_pools, read_packed_manifest, shards_of
from schemas.loader.plan import Order, Plan, epoch_plan
from schemas.loader.reader import ShardReader
from schemas.loader.rows import Buffers

STATE_FORMAT = "tokenmill.loader/1"

_CHUNK_TOKENS = 1 << 20  # batch arrays are computed for about this many tokens at a time


class PackedShardDataset:
    """Batches of packed rows for one rank (and worker) of a tokenmill prepare output, deterministic and resumable."""

    def __init__(
        self,
        path: str,
        *,
        rank: int = 0,
        world_size: int = 1,
        worker: tuple[int, int] = (0, 1),
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
        shuffle_window: int = 16,
        block_rows: int | None = None,
        ids_dtype: Any = np.int64,
        position_dtype: Any = np.int64,
        batch_multipliers: dict[int, int] | None = None,
        sampling_odds: dict[int, float] | None = None,
        cache_row_groups: int = 2,
        fast_decode: bool = True,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        """Read the manifest of ``path`` and set up this consumer (no shard data is read yet)."""
        check_int("world_size", world_size, 1)
        check_int("rank", rank, 0)
        if rank >= world_size:
            raise ValueError(f"rank must be in 0..world_size-1 = 0..{world_size - 1}, got {rank}")
        if not (isinstance(worker, (tuple, list)) and len(worker) == 2):
            raise ValueError(f"worker must be (worker_id, num_workers), got {worker!r}")
        worker_id, num_workers = worker
        check_int("num_workers", num_workers, 1)
        check_int("worker_id", worker_id, 0)
        if worker_id >= num_workers:
            raise ValueError(f"worker id must be in 0..num_workers-1 = 0..{num_workers - 1}, got {worker_id}")
        check_int("seed", seed, 0)
        check_int("shuffle_window", shuffle_window, 1)
        check_int("cache_row_groups", cache_row_groups, 0)
        if block_rows is not None:
            check_int("block_rows", block_rows, 1)
        self.path = str(path).rstrip("/")
        self.rank, self.world_size = int(rank), int(world_size)
        self.worker = (int(worker_id), int(num_workers))
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.shuffle_window = int(shuffle_window)
        self.ids_dtype = None if ids_dtype is None else np.dtype(ids_dtype)
        self.position_dtype = np.dtype(position_dtype)
        self.storage_options = dict(storage_options or {})
        self.manifest = read_packed_manifest(self.path, self.storage_options)
        self._shards = shards_of(self.manifest, self.path)
        self._reader = ShardReader(self._shards, self.storage_options, cache_row_groups, fast_decode)
        self._reader.narrow = self.ids_dtype is not None and self.ids_dtype.itemsize > 4
        self._pools = make_pools(self._shards, self.manifest, self._reader.first_group_rows, block_rows,
                                 batch_multipliers, sampling_odds)
        self._reader.buffers.keep = len(self._pools) * (self.shuffle_window + 1) + cache_row_groups + 2
        if self.ids_dtype is not None and (self.ids_dtype.kind not in "iu" or self.ids_dtype.itemsize < 4):
            raise ValueError(f"ids_dtype must be an integer type of 4 or 8 bytes (or None), got {self.ids_dtype}")
        longest = max(self.lengths, default=1)
        if self.position_dtype.kind not in "iu" or np.iinfo(self.position_dtype).max < longest - 1:
            raise ValueError(f"position_dtype must be an integer type that holds {longest - 1}, "
                             f"got {self.position_dtype}")
        self.fingerprint = dataset_fingerprint(self.manifest, self._shards)
        self._epoch = 0
        self._batches = 0  # batches of the current epoch already yielded
        self._batch_size: int | None = None  # batch size of the position (set once a batch is yielded)
        self._plan: Plan | None = None
        self._ramp = np.arange(0, dtype=self.position_dtype)  # 0, 1, ..., seq_len - 1 for the positions
        self._buffers = Buffers(2 * (len(self._pools) + 2), _CHUNK_TOKENS)  # ids and positions may share a dtype
        self._token = 0  # changes whenever the position is set from outside: stale iterators stop

    # -- layout ---------------------------------------------------------------------------------------------------

    @property
    def consumer(self) -> int:
        """This consumer's index among all ranks x workers: rank * num_workers + worker_id."""
        return self.rank * self.worker[1] + self.worker[0]

    @property
    def consumers(self) -> int:
        """Ranks x workers reading the dataset together."""
        return self.world_size * self.worker[1]

    @property
    def num_rows(self) -> int:
        """Rows in the whole dataset (every length)."""
        return sum(p.rows for p in self._pools)

    @property
    def lengths(self) -> list[int]:
        """Row lengths present, shortest first."""
        return [p.seq_len for p in self._pools]

    @property
    def epoch(self) -> int:
        """The epoch the next batch comes from."""
        return self._epoch

    def batch_rows(self, batch_size: int) -> dict[int, int]:
        """Rows per batch for each row length: batch_size * multiplier(length)."""
        return {p.seq_len: batch_size * p.multiplier for p in self._pools}

    def num_batches(self, batch_size: int, epoch: int | None = None) -> int:
        """Batches this consumer yields in an epoch (the current one by default), from its beginning."""
        return len(self._plan_for(self._epoch if epoch is None else epoch, batch_size).pools)

    # -- epochs and positions -------------------------------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` from its beginning (keeping the position if already inside that epoch)."""
        check_int("epoch", epoch, 0)
        if epoch == self._epoch:
            return
        self._epoch, self._batches, self._batch_size = int(epoch), 0, None
        self._token += 1

    def state_dict(self) -> dict[str, Any]:
        """The position (epoch, batches yielded in it) with what it is valid for: dataset, layout, seed, options."""
        rows = {}
        if self._batches and self._batch_size is not None:
            plan = self._plan_for(self._epoch, self._batch_size)
            for p, pool in enumerate(self._pools):
                mask = plan.pools[:self._batches] == p
                rows[str(pool.seq_len)] = int(plan.sizes[:self._batches][mask].sum())
        return {
            "format": STATE_FORMAT,
            "dataset": self.fingerprint,
            "rows": self.num_rows,
            "world_size": self.world_size,
            "rank": self.rank,
            "worker": list(self.worker),
            "seed": self.seed,
            "shuffle": self.shuffle,
            "drop_last": self.drop_last,
            "shuffle_window": self.shuffle_window,
            "blocks": [len(p.blocks) for p in self._pools],
            "epoch": self._epoch,
            "batches": self._batches,
            "batch_size": self._batch_size,
            "rows_read": rows,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a saved position; refuse a state of another dataset, world layout, seed or options."""
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ValueError(f"not a loader state (expected format {STATE_FORMAT!r}, got "
                             f"{state.get('format') if isinstance(state, dict) else type(state).__name__!r})")
        if state.get("dataset") != self.fingerprint:
            raise ValueError(f"the state is from another dataset ({state.get('rows')} rows, fingerprint "
                             f"{str(state.get('dataset'))[:12]}) than {self.path} ({self.num_rows} rows, "
                             f"fingerprint {self.fingerprint[:12]})")
        mine = self.state_dict()
        for key, what in (("world_size", "world_size"), ("rank", "rank"), ("worker", "worker (id, num_workers)"),
                          ("seed", "seed"), ("shuffle", "shuffle"), ("drop_last", "drop_last"),
                          ("shuffle_window", "shuffle_window"), ("blocks", "blocks per row length (block_rows)")):
            if list(np.atleast_1d(state.get(key))) != list(np.atleast_1d(mine[key])):
                raise ValueError(f"the state was saved with {what} = {state.get(key)!r} but this dataset has "
                                 f"{mine[key]!r}: a position only continues exactly in the same layout")
        epoch, batches, batch_size = state.get("epoch"), state.get("batches"), state.get("batch_size")
        check_int("state epoch", epoch, 0)
        check_int("state batches", batches, 0)
        if batches:
            check_int("state batch_size", batch_size, 1)
            total = self.num_batches(batch_size, epoch)
            if batches > total:
                raise ValueError(f"the state is at batch {batches} of epoch {epoch}, which has only {total}")
        self._epoch, self._batches = int(epoch), int(batches)
        self._batch_size = int(batch_size) if batches else None
        self._token += 1

    # -- batches --------------------------------------------------------------------------------------------------

    def batches(self, batch_size: int) -> Iterator[dict[str, Any]]:
        """The rest of the current epoch's batches for this consumer; then the dataset moves to the next epoch."""
        check_int("batch_size", batch_size, 1)
        if self._batches and self._batch_size != batch_size:
            raise ValueError(f"the dataset is inside epoch {self._epoch} after {self._batches} batches of "
                             f"batch_size={self._batch_size}; continue with that batch size (got {batch_size})")
        plan = self._plan_for(self._epoch, batch_size)
        self._token += 1
        return self._iterate(plan, self._token)

    def _iterate(self, plan: Plan, token: int) -> Iterator[dict[str, Any]]:
        cursors = [Cursor(span, self._reader, self.shuffle) for span in plan.spans]
        chunks: list[Chunk | None] = [None] * len(plan.spans)
        ends = [int((plan.starts + plan.sizes)[plan.pools == p].max(initial=0)) for p in range(len(plan.spans))]
        k = self._batches
        while k < len(plan.pools):
            p = int(plan.pools[k])
            a = int(plan.starts[k])
            b = a + int(plan.sizes[k])
            chunk = chunks[p]
            if chunk is None or not chunk.first <= a < b <= chunk.first + chunk.rows:
                chunks[p] = None  # release the previous chunk before preparing the next
                per = int(plan.sizes[k])
                stop = min(ends[p], a + per * max(1, _CHUNK_TOKENS // (per * self._pools[p].seq_len)))
                chunk = chunks[p] = self._chunk(cursors[p].take(a, stop), a, self._pools[p].seq_len)
            batch = chunk.batch(a, b)
            if token != self._token:
                raise RuntimeError("the dataset's position was changed (set_epoch, load_state_dict or another "
                                   "batches() iterator) while this iterator was open; call batches() again")
            k += 1
            self._batches, self._batch_size = k, plan.batch_size
            yield batch
        if token == self._token:
            self._epoch, self._batches, self._batch_size = plan.epoch + 1, 0, None

    def _chunk(self, parts: list[tuple[Window, int, int]], first: int, seq_len: int) -> Chunk:
        """The batch arrays of consecutive rows (the next batches of one length), computed together."""
        n = sum(r1 - r0 for _, r0, r1 in parts)
        total = n * seq_len
        stored = parts[0][0].parts[0].ids.dtype  # uint32, or uint16 when the reader narrows (int64 ids only)
        want = np.dtype(np.uint32) if self.ids_dtype is None else self.ids_dtype
        # same-size integers (uint32 ids as int32: ids are below 2**31) are a view, not a conversion
        as_view = want.itemsize == stored.itemsize == 4
        ids = parts[0][0].view(parts[0][1], parts[0][2], "ids") if len(parts) == 1 and as_view else None
        if ids is None:
            ids = self._buffers.get((n, seq_len), stored if as_view else want)
            at = 0
            for window, r0, r1 in parts:
                window.fill(ids[at:at + r1 - r0], r0, r1, "ids")  # one pass: gather, copy and widen
                at += r1 - r0
        if as_view and ids.dtype != want:
            ids = ids.view(want)
        num_pad = np.concatenate([window.num_pad[r0:r1] for window, r0, r1 in parts])
        loss = self._buffers.get((n, seq_len), np.dtype(np.uint8))
        if parts[0][0].has_loss:
            at = 0
            for window, r0, r1 in parts:
                window.fill(loss[at:at + r1 - r0], r0, r1, "loss")
                at += r1 - r0
        else:
            loss.fill(1)
            for r in np.flatnonzero(num_pad).tolist():
                loss[r, seq_len - num_pad[r]:] = 0
        # segment starts in flattened token coordinates: each row's cu_seqlens but its real end, which starts
        # the padding segment when there is padding; rows follow each other
        starts, row0 = [], 0
        for window, r0, r1 in parts:
            lo, hi = int(window.cu_off[r0]), int(window.cu_off[r1])
            values, off = window.cu[lo:hi], window.cu_off[r0:r1 + 1] - lo
            keep = np.ones(len(values), bool)
            keep[off[1:] - 1] = window.num_pad[r0:r1] > 0
            row_of = np.repeat(np.arange(row0, row0 + r1 - r0, dtype=np.int64) * seq_len, np.diff(off))
            starts.append((row_of + values)[keep])
            row0 += r1 - r0
        flat = np.concatenate(starts) if len(starts) > 1 else starts[0]
        if len(flat) > 1:
            flat = flat[np.concatenate(([True], flat[1:] > flat[:-1]))]  # empty segments (all-padding rows)
        lens = np.diff(np.append(flat, total))
        # every row starts a segment: position = column - the row-relative start of the token's segment
        small = np.dtype(np.uint16 if seq_len <= 1 << 16 else np.uint32)
        if small.itemsize >= self.position_dtype.itemsize:
            small = self.position_dtype
        if len(self._ramp) != seq_len or self._ramp.dtype != small:
            self._ramp = np.arange(seq_len, dtype=small)
        positions = self._buffers.get((n, seq_len), self.position_dtype)
        seg = np.repeat((flat % seq_len).astype(small), lens).reshape(n, seq_len)
        if small == self.position_dtype:
            np.subtract(self._ramp, seg, out=positions)
        else:  # in the narrow type, then widened once (cheaper than a mixed-type subtraction)
            np.subtract(self._ramp, seg, out=seg)
            np.copyto(positions, seg)
        index = np.concatenate([window.index[r0:r1] for window, r0, r1 in parts])
        return Chunk(first, n, seq_len, ids, positions, loss, index, flat, lens)

    # -- the epoch plan -------------------------------------------------------------------------------------------

    def _plan_for(self, epoch: int, batch_size: int) -> Plan:
        if self._plan is not None and (self._plan.epoch, self._plan.batch_size) == (epoch, batch_size):
            return self._plan
        order = Order(self.seed, self.shuffle, self.drop_last, self.shuffle_window, self.consumer, self.consumers)
        self._plan = epoch_plan(self._pools, epoch, batch_size, order)
        return self._plan

    def close(self) -> None:
        """Close open shard files and drop cached row groups."""
        self._reader.close()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_reader"] = ShardReader(self._shards, self.storage_options, self._reader.cache_row_groups,
                                       self._reader.fast_decode)
        state["_reader"].buffers.keep = self._reader.buffers.keep
        state["_plan"] = None
        state["_ramp"] = np.arange(0, dtype=self.position_dtype)
        state["_buffers"] = Buffers(self._buffers.keep, _CHUNK_TOKENS)
        return state

    def __repr__(self) -> str:
        return (f"PackedShardDataset({self.path!r}, rows={self.num_rows}, lengths={self.lengths}, rank={self.rank}, "
                f"world_size={self.world_size}, worker={self.worker}, seed={self.seed}, epoch={self._epoch})")


def check_int(name: str, value: Any, low: int) -> None:
    """Refuse ``value`` unless it is a whole number (not a bool) >= ``low``; the message names the option."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")
