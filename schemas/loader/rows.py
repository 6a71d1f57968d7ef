"""Rows of one length as numpy arrays (a decoded row group, or part of one), checked against the shard row format,
and the reusable arrays they and the batches are decoded into."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from schemas.shards import INPUT_IDS, LOSS_MASK, PackedBatch


@dataclass
class Rows:
    """Rows of one length as numpy arrays (views where possible)."""

    ids: np.ndarray  # (R, L)
    cu: np.ndarray  # cu_seqlens values of every row, back to back (int32)
    cu_off: np.ndarray  # (R + 1,) int64 offsets into cu (may not start at 0)
    num_pad: np.ndarray  # (R,) int32
    loss: np.ndarray | None  # (R, L) or None
    index: np.ndarray  # (R,) int64 global row index

    def __len__(self) -> int:
        return self.ids.shape[0]

    def slice(self, a: int, b: int) -> "Rows":
        """Rows a..b as views."""
        return Rows(self.ids[a:b], self.cu, self.cu_off[a:b + 1], self.num_pad[a:b],
                    None if self.loss is None else self.loss[a:b], self.index[a:b])

    def cu_parts(self) -> tuple[np.ndarray, np.ndarray]:
        """The rows' cu_seqlens values and their offsets starting at 0."""
        lo, hi = int(self.cu_off[0]), int(self.cu_off[-1])
        return self.cu[lo:hi], self.cu_off - lo

    @staticmethod
    def concat(parts: list["Rows"]) -> "Rows":
        """Rows of several parts, in order (copies)."""
        if len(parts) == 1:
            return parts[0]
        loss = None if parts[0].loss is None else np.concatenate([p.loss for p in parts])
        return Rows(np.concatenate([p.ids for p in parts]), *joined_cu(parts),
                    np.concatenate([p.num_pad for p in parts]), loss, np.concatenate([p.index for p in parts]))


def joined_cu(parts: list[Rows]) -> tuple[np.ndarray, np.ndarray]:
    """The cu_seqlens values of the parts' rows back to back and their offsets (starting at 0)."""
    cus, offs, base = [], [np.zeros(1, np.int64)], 0
    for part in parts:
        values, off = part.cu_parts()
        cus.append(values)
        offs.append(off[1:] + base)
        base += len(values)
    return np.concatenate(cus), np.concatenate(offs)


def ragged_take(values: np.ndarray, off: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lists (values split at offsets starting at 0) in a new order: the new values and offsets."""
    lens = np.diff(off)[order]
    new_off = np.zeros(len(order) + 1, np.int64)
    np.cumsum(lens, out=new_off[1:])
    take = np.repeat(off[:-1][order] - new_off[:-1], lens) + np.arange(new_off[-1], dtype=np.int64)
    return values[take], new_off


def _fixed_lists(values: np.ndarray, off: np.ndarray, n: int, seq_len: int, what: str, where: str) -> np.ndarray:
    """A list column whose lists all hold seq_len values, as an (n, seq_len) array (zero-copy when possible)."""
    if not np.array_equal(off, np.arange(0, n * seq_len + 1, seq_len, dtype=off.dtype)):
        lens = np.diff(off)
        bad = int(np.flatnonzero(lens != seq_len)[0])
        raise ValueError(f"{where}: row {bad} has {int(lens[bad])} {what} values, expected seq_len {seq_len}")
    return values[:n * seq_len].reshape(n, seq_len)


def decode_rows(batch: PackedBatch, url: str, seq_len: int, first_row: int,
                ids: np.ndarray | None = None) -> Rows:
    """A row group read as a PackedBatch as Rows (with its ids when they were decoded already), checking the shard
    row format; ``first_row`` is the global index of the shard's row 0."""
    n, group_start = batch.rows, batch.first_row
    where = f"shard {url}, rows from {group_start}"
    if ids is None:
        ids = _fixed_lists(batch.input_ids, batch.ids_offsets, n, seq_len, INPUT_IDS, where)
    cu_off, cu = batch.cu_offsets, batch.cu_seqlens
    num_pad = batch.num_pad.astype(np.int32, copy=False)
    loss = None
    if batch.loss_mask is not None:
        loss = _fixed_lists(batch.loss_mask, batch.loss_offsets, n, seq_len, LOSS_MASK, where)
    if n:
        counts = np.diff(cu_off)
        if (counts < 1).any():
            raise ValueError(f"{where}: row {int(np.argmax(counts < 1))} has an empty cu_seqlens")
        wrong = (cu[cu_off[:-1]] != 0) | (cu[cu_off[1:] - 1] != seq_len - num_pad) | (num_pad < 0)
        steps = np.diff(cu[cu_off[0]:cu_off[-1]].astype(np.int64))
        falling = steps < 0
        falling[cu_off[1:-1] - cu_off[0] - 1] = False  # from one row's end to the next row's 0
        if falling.any():
            wrong[np.searchsorted(cu_off - cu_off[0], np.flatnonzero(falling), side="right") - 1] = True
        if wrong.any():
            r = int(np.argmax(wrong))
            raise ValueError(f"{where}: row {r}: cu_seqlens {cu[cu_off[r]:cu_off[r + 1]].tolist()} must rise from 0 "
                             f"to seq_len - num_pad = {seq_len} - {int(num_pad[r])}")
    index = np.arange(first_row + group_start, first_row + group_start + n, dtype=np.int64)
    return Rows(ids, cu, cu_off, num_pad, loss, index)


class Buffers:
    """Arrays for batch data, reused once nothing outside holds a view of them (fresh memory costs page faults)."""

    def __init__(self, keep: int, minimum: int = 0) -> None:
        self.keep = keep
        self.minimum = minimum  # elements of a new array at least (later requests may be larger)
        self.arrays: dict[str, list[np.ndarray]] = {}
        self.unused = self._references([np.empty(0)])  # the count of an array nothing else refers to

    @staticmethod
    def _references(arrays: list[np.ndarray]) -> int:
        for array in arrays:  # the same references as in get: the list, the loop variable (if counted), the call
            return sys.getrefcount(array)
        return 0

    def get(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """An uninitialised array of this shape and dtype."""
        size = int(np.prod(shape))
        arrays = self.arrays.setdefault(np.dtype(dtype).str, [])
        for array in arrays:
            if array.size >= size and sys.getrefcount(array) <= self.unused:  # no view of it is alive
                return array[:size].reshape(shape)
        array = np.empty(max(size, self.minimum), dtype)
        if len(arrays) < self.keep:
            arrays.append(array)
        return array[:size].reshape(shape)
