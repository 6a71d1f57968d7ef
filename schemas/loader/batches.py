"""The rows of a consumer's span read window by window (permuted within each window), and the batch arrays of
consecutive rows of one length that batches are slices of."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from schemas.loader.plan import Span
from schemas.loader.reader import ShardReader
from schemas.loader.rows import Rows, joined_cu, ragged_take


class Window:
    """The rows of a window of a span: the decoded pieces and, per window row, where it is among them."""

    def __init__(self, parts: list[Rows], order: np.ndarray | None) -> None:
        self.parts = parts
        n = sum(len(part) for part in parts)
        bounds = np.zeros(len(parts) + 1, np.int64)
        np.cumsum([len(part) for part in parts], out=bounds[1:])
        src = np.arange(n, dtype=np.int64) if order is None else order  # window row i is the src[i]-th row read
        self.ordered = order is None
        self.part_of = np.searchsorted(bounds, src, side="right") - 1
        self.row_in = src - bounds[self.part_of]
        cu, cu_off = joined_cu(parts)
        self.num_pad = np.concatenate([part.num_pad for part in parts])
        self.index = np.concatenate([part.index for part in parts])
        if order is not None:
            cu, cu_off = ragged_take(cu, cu_off, order)
            self.num_pad, self.index = self.num_pad[order], self.index[order]
        self.cu, self.cu_off = cu, cu_off
        self.has_loss = parts[0].loss is not None

    def __len__(self) -> int:
        return len(self.part_of)

    def view(self, r0: int, r1: int, column: str) -> np.ndarray | None:
        """Rows r0..r1 of a token column as a view, when they are consecutive rows of one piece."""
        p = int(self.part_of[r0])
        if self.ordered and int(self.part_of[r1 - 1]) == p:
            a = int(self.row_in[r0])
            return getattr(self.parts[p], column)[a:a + r1 - r0]
        return None

    def fill(self, out: np.ndarray, r0: int, r1: int, column: str) -> None:
        """Copy rows r0..r1 of a token column ("ids" or "loss") into ``out`` (converting to its dtype)."""
        arrays = [getattr(part, column) for part in self.parts]
        part_of, row_in = self.part_of[r0:r1], self.row_in[r0:r1]
        if self.ordered:  # runs of consecutive rows of one piece
            cuts = np.flatnonzero(np.diff(part_of)) + 1
            for a, b in zip([0, *cuts.tolist()], [*cuts.tolist(), r1 - r0]):
                first = int(row_in[a])
                out[a:b] = arrays[int(part_of[a])][first:first + b - a]
        elif out.shape[1] >= 512:  # long rows: one copy per row, straight into place
            for k, (p, r) in enumerate(zip(part_of.tolist(), row_in.tolist())):
                out[k] = arrays[p][r]
        else:  # short rows: gather by piece
            for p in np.unique(part_of).tolist():
                where = np.flatnonzero(part_of == p)
                out[where] = arrays[p][row_in[where]]


class Cursor:
    """Reads a span's rows in order, one window at a time."""

    def __init__(self, span: Span, reader: ShardReader, shuffle: bool) -> None:
        self.span = span
        self.reader = reader
        self.shuffle = shuffle
        self.index = -1
        self.window: Window | None = None

    def take(self, a: int, b: int) -> list[tuple[Window, int, int]]:
        """Rows a..b of the span (in epoch order): (window, first row, end row) per window they come from."""
        bounds = self.span.window_rows
        parts = []
        while a < b:
            w = int(np.searchsorted(bounds, a, side="right")) - 1
            if w != self.index:
                self.window = None  # release the previous window before reading the next
                self.window = self._load(w)
                self.index = w
            lo, hi = int(bounds[w]), min(b, int(bounds[w + 1]))
            parts.append((self.window, a - lo, hi - lo))
            a = hi
        return parts

    def _load(self, w: int) -> Window:
        span = self.span
        pieces = span.pieces[span.window_pieces[w]:span.window_pieces[w + 1]]
        parts = [self.reader.read(int(s), int(a), int(b)) for s, a, b in pieces]
        order = None
        if self.shuffle:
            n = int(span.window_rows[w + 1] - span.window_rows[w])
            order = np.random.Generator(np.random.PCG64(np.random.SeedSequence(span.seed + [w]))).permutation(n)
        return Window(parts, order)


@dataclass
class Chunk:
    """Batch arrays of consecutive rows of one length; a batch is a slice of them."""

    first: int  # span row of the chunk's first row
    rows: int
    seq_len: int
    ids: np.ndarray
    positions: np.ndarray
    loss: np.ndarray
    index: np.ndarray
    starts: np.ndarray  # segment starts in flattened token coordinates, increasing
    lens: np.ndarray  # their lengths

    def batch(self, a: int, b: int) -> dict[str, Any]:
        """The batch of span rows a..b."""
        r0, r1 = a - self.first, b - self.first
        t0, t1 = r0 * self.seq_len, r1 * self.seq_len
        if t1 - t0 >= 2 ** 31:
            raise ValueError(f"a batch of {r1 - r0} rows x {self.seq_len} tokens does not fit int32 cu_seqlens")
        i0, i1 = np.searchsorted(self.starts, (t0, t1))
        cu = np.empty(i1 - i0 + 1, np.int32)
        np.subtract(self.starts[i0:i1], t0, out=cu[:-1], casting="unsafe")
        cu[-1] = t1 - t0
        return {
            "input_ids": self.ids[r0:r1],
            "position_ids": self.positions[r0:r1],
            "cu_seqlens": cu,
            "max_seqlen": int(self.lens[i0:i1].max()),
            "loss_mask": self.loss[r0:r1],
            "row_index": self.index[r0:r1],
        }
