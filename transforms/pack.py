"""Packing: turn a stream of tokenized documents into rows of exactly ``seq_len`` tokens.

Pure numpy; no Beam. A packer takes documents (each already ending in EOS) in stream order and returns
``PackedRows``; ``finish()`` pads the last partial row. Packers are swappable: anything with ``add`` and
``finish`` works in the stream writer.
"""

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
        )

    def real_tokens(self) -> int:
        """Tokens that are not padding."""
        return int(self.input_ids.size - int(self.num_pad.sum()))


class ConcatPacker:
    """Concat-and-chunk (Megatron/DCLM style): documents back to back, cut every ``seq_len`` tokens.

    A document may continue into the next row; only the last row of the stream is padded.
    """

    name = "concat"

    def __init__(self, seq_len: int, pad_id: int) -> None:
        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        self.seq_len = seq_len
        self.pad_id = pad_id
        self._carry = np.empty(0, np.uint32)
        self._carry_ends = np.empty(0, np.int64)  # document ends inside the carry, in (0, len(carry)]

    def add(self, tokens: np.ndarray, doc_lens: np.ndarray) -> PackedRows:
        """Append documents (``tokens`` is their concatenation, ``doc_lens`` their lengths) and return full rows."""
        L = self.seq_len
        tokens = np.asarray(tokens, dtype=np.uint32)
        doc_lens = np.asarray(doc_lens, dtype=np.int64)
        if int(doc_lens.sum()) != tokens.size:
            raise ValueError("doc_lens must sum to the number of tokens")
        if np.any(doc_lens <= 0):
            raise ValueError("every document must have at least one token (its EOS)")
        buf = np.concatenate([self._carry, tokens]) if self._carry.size else tokens
        ends = np.concatenate([self._carry_ends, self._carry.size + np.cumsum(doc_lens)])
        n_rows = buf.size // L
        full = n_rows * L
        self._carry = buf[full:].copy()
        self._carry_ends = ends[ends > full] - full
        if n_rows == 0:
            return PackedRows.empty(L)
        inner = ends[(ends < full) & (ends % L != 0)]
        rows_of = inner // L
        counts = np.bincount(rows_of, minlength=n_rows) + 2
        offsets = np.zeros(n_rows + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        values = np.empty(int(offsets[-1]), np.int32)
        interior = np.ones(values.size, bool)
        interior[offsets[:-1]] = False
        interior[offsets[1:] - 1] = False
        values[offsets[:-1]] = 0
        values[offsets[1:] - 1] = L
        values[interior] = inner - rows_of * L
        return PackedRows(buf[:full].reshape(n_rows, L), values, offsets, np.zeros(n_rows, np.int32))

    def finish(self) -> PackedRows:
        """Pad and return the last partial row (if any); the packer is empty afterwards."""
        L = self.seq_len
        n = self._carry.size
        if n == 0:
            return PackedRows.empty(L)
        row = np.full((1, L), self.pad_id, np.uint32)
        row[0, :n] = self._carry
        inner = self._carry_ends[self._carry_ends < n]
        values = np.concatenate([[0], inner, [n]]).astype(np.int32)
        out = PackedRows(row, values, np.array([0, values.size], np.int64), np.array([L - n], np.int32))
        self._carry = np.empty(0, np.uint32)
        self._carry_ends = np.empty(0, np.int64)
        return out


PACKERS = {ConcatPacker.name: ConcatPacker}
