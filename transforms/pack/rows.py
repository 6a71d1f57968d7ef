"""Packed rows: a block of rows of one length with their document boundaries (``cu_seqlens``) and padding."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PackedRows:
    """A block of packed rows: ids (n, seq_len), cu_seqlens as flat values + offsets, and padding per row."""

    input_ids: np.ndarray  # (n, seq_len) uint32
    cu_values: np.ndarray  # int32, all rows' cu_seqlens concatenated
    cu_offsets: np.ndarray  # int64, (n + 1,), row i's cu_seqlens = cu_values[cu_offsets[i]:cu_offsets[i + 1]]
    num_pad: np.ndarray  # (n,) int32
    loss_mask: np.ndarray | None = None  # (n, seq_len) uint8, when the job writes one

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    @classmethod
    def empty(cls, seq_len: int) -> "PackedRows":
        """No rows."""
        return cls(
            np.empty((0, seq_len), np.uint32), np.empty(0, np.int32), np.zeros(1, np.int64), np.empty(0, np.int32)
        )

    def slice(self, start: int, stop: int) -> "PackedRows":
        """Rows [start, stop)."""
        a, b = int(self.cu_offsets[start]), int(self.cu_offsets[stop])
        return PackedRows(
            self.input_ids[start:stop],
            self.cu_values[a:b],
            self.cu_offsets[start : stop + 1] - a,
            self.num_pad[start:stop],
            None if self.loss_mask is None else self.loss_mask[start:stop],
        )

    @classmethod
    def concat(cls, blocks: list["PackedRows"], seq_len: int) -> "PackedRows":
        """Join blocks in order."""
        blocks = [b for b in blocks if len(b)]
        if not blocks:
            return cls.empty(seq_len)
        if len(blocks) == 1:
            return blocks[0]
        offsets = [blocks[0].cu_offsets]
        base = int(blocks[0].cu_offsets[-1])
        for b in blocks[1:]:
            offsets.append(b.cu_offsets[1:] + base)
            base += int(b.cu_offsets[-1])
        return cls(
            np.concatenate([b.input_ids for b in blocks]),
            np.concatenate([b.cu_values for b in blocks]),
            np.concatenate(offsets),
            np.concatenate([b.num_pad for b in blocks]),
            None if blocks[0].loss_mask is None else np.concatenate([b.loss_mask for b in blocks]),
        )

    def real_tokens(self) -> int:
        """Tokens that are not padding."""
        return int(self.input_ids.size - int(self.num_pad.sum()))


def rows_from_segments(segments: list[list[np.ndarray]], seq_len: int, pad_id: int) -> PackedRows:
    """Rows made of the given segments (each row's pieces in order, at most ``seq_len`` tokens), padded at the end."""
    n = len(segments)
    if not n:
        return PackedRows.empty(seq_len)
    ids = np.full((n, seq_len), pad_id, np.uint32)
    counts = np.fromiter((len(s) + 1 for s in segments), np.int64, n)
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    values = np.empty(int(offsets[-1]), np.int32)
    pad = np.empty(n, np.int32)
    for r, pieces in enumerate(segments):
        at = int(offsets[r])
        pos = 0
        values[at] = 0
        for k, piece in enumerate(pieces):
            ids[r, pos:pos + piece.size] = piece
            pos += piece.size
            values[at + k + 1] = pos
        pad[r] = seq_len - pos
    return PackedRows(ids, values, offsets, pad)
