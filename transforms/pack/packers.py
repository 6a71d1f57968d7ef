"""Packing: turn a stream of tokenized documents into rows of exactly ``seq_len`` tokens.

Pure numpy; no Beam. Every packer has one interface (``Packer``): ``pack`` takes documents (each already ending
in EOS) in stream order and returns ``Packed`` (rows by row length, the documents left without a row, the tokens
left out); ``flush`` returns the last rows. Each packer's own ``add`` (and ``finish``) is its algorithm, tested
apart; ``PackingSpec.packer`` makes the one a job asks for.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from schemas.manifest import K_BATCH_MULTIPLIERS, K_LENGTHS, P_BUFFER, P_LOSS_MASK, P_NAME, P_PAD_REMAINDERS
from schemas.options import BEST_FIT, CONCAT, DECOMPOSE, LOSS_MASKS, PACKINGS
from transforms.pack.rows import PackedRows, rows_from_segments


@dataclass
class Packed:
    """What a packer gives back for a batch of documents (or at the end): the same for every packer."""

    rows: dict[int, PackedRows]  # by row length (one length, seq_len, except for decompose)
    empty: list[int] = field(default_factory=list)  # the batch's documents left without any row
    dropped_tokens: int = 0  # the batch's tokens left out of every row


class Packer(ABC):
    """The interface every packer implements; the stream's sink knows packers by it alone."""

    name: ClassVar[str]
    per_length: ClassVar[bool] = False  # rows of each length go to shards of their own (decompose)
    split_docs: int  # documents cut into two or more rows or pieces
    dropped_tokens: int = 0  # tokens left out of every row so far (zero for packers that drop nothing)

    @abstractmethod
    def pack(self, tokens: np.ndarray, doc_lens: np.ndarray) -> Packed:
        """Add documents (``tokens`` is their concatenation, ``doc_lens`` their lengths): the rows now complete."""

    @abstractmethod
    def flush(self) -> Packed:
        """The rows still held (the last ones padded); the packer is empty afterwards."""

    def remainder(self, n: int) -> int:
        """Tokens of an ``n``-token document that ``pack`` leaves out of every row."""
        return 0


class FixedLengthPacker(Packer):
    """A packer whose rows are all ``seq_len`` long: its ``add``/``finish`` give plain PackedRows."""

    seq_len: int

    @abstractmethod
    def add(self, tokens: np.ndarray, doc_lens: np.ndarray) -> PackedRows:
        """Append documents and return the rows now complete."""

    @abstractmethod
    def finish(self) -> PackedRows:
        """Return the rows still held; the packer is empty afterwards."""

    def pack(self, tokens: np.ndarray, doc_lens: np.ndarray) -> Packed:
        """``add`` as Packed."""
        return Packed({self.seq_len: self.add(tokens, doc_lens)})

    def flush(self) -> Packed:
        """``finish`` as Packed."""
        return Packed({self.seq_len: self.finish()})


class ConcatPacker(FixedLengthPacker):
    """Concat-and-chunk (Megatron/DCLM style): documents back to back, cut every ``seq_len`` tokens.

    A document may continue into the next row; only the last row of the stream is padded.
    """

    name = CONCAT

    def __init__(self, seq_len: int, pad_id: int) -> None:
        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        self.seq_len = seq_len
        self.pad_id = pad_id
        self.split_docs = 0  # documents cut at a row boundary (their tokens are in two or more rows)
        self._carry = np.empty(0, np.uint32)
        self._carry_ends = np.empty(0, np.int64)  # document ends inside the carry, in (0, len(carry)]

    def add(self, tokens: np.ndarray, doc_lens: np.ndarray) -> PackedRows:
        """Append documents (``tokens`` is their concatenation, ``doc_lens`` their lengths) and return full rows."""
        L = self.seq_len
        tokens, doc_lens = _check_documents(tokens, doc_lens)
        buf = np.concatenate([self._carry, tokens]) if self._carry.size else tokens
        new_ends = self._carry.size + np.cumsum(doc_lens)
        self.split_docs += int(np.count_nonzero((new_ends - doc_lens) // L != (new_ends - 1) // L))
        ends = np.concatenate([self._carry_ends, new_ends])
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


def _check_documents(tokens: np.ndarray, doc_lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    tokens = np.asarray(tokens, dtype=np.uint32)
    doc_lens = np.asarray(doc_lens, dtype=np.int64)
    if int(doc_lens.sum()) != tokens.size:
        raise ValueError("doc_lens must sum to the number of tokens")
    if np.any(doc_lens <= 0):
        raise ValueError("every document must have at least one token (its EOS)")
    return tokens, doc_lens


class BestFitPacker(FixedLengthPacker):
    """Best-fit-decreasing packing (Ding et al. 2024, "Fewer Truncations Improve Language Modeling").

    Documents longer than ``seq_len`` are cut into pieces of ``seq_len`` tokens and a shorter last piece; nothing
    else is ever cut. Pieces are buffered (at most ``buffer`` of them) and each full buffer is packed by BFD: longest
    piece first (ties in arrival order), each into the open row it fills best (the least room left that still fits),
    else into a new row. Every row holds whole documents or pieces, so its ``cu_seqlens`` mark them; only a row's
    tail is padding. The buffer bounds memory on any corpus; the rows come out in the order they were opened.
    """

    name = BEST_FIT

    def __init__(self, seq_len: int, pad_id: int, buffer: int = 100_000) -> None:
        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        if buffer < 1:
            raise ValueError(f"the best-fit buffer must hold at least one piece, got {buffer}")
        self.seq_len = seq_len
        self.pad_id = pad_id
        self.buffer = buffer
        self.split_docs = 0  # documents longer than seq_len, cut into pieces
        self._pieces: list[np.ndarray] = []

    def add(self, tokens: np.ndarray, doc_lens: np.ndarray) -> PackedRows:
        """Buffer documents (cut into pieces where longer than a row); rows of each full buffer, packed."""
        tokens, doc_lens = _check_documents(tokens, doc_lens)
        L = self.seq_len
        out: list[PackedRows] = []
        start = 0
        for n in doc_lens.tolist():
            if n > L:
                self.split_docs += 1
                self._pieces.extend(tokens[s:min(s + L, start + n)] for s in range(start, start + n, L))
            else:
                self._pieces.append(tokens[start:start + n])
            start += n
            if len(self._pieces) >= self.buffer:
                out.append(self._pack())
        return PackedRows.concat(out, L)

    def finish(self) -> PackedRows:
        """Pack what is buffered; the packer is empty afterwards."""
        return self._pack()

    def _pack(self) -> PackedRows:
        pieces, self._pieces = self._pieces, []
        L = self.seq_len
        order = sorted(range(len(pieces)), key=lambda i: -pieces[i].size)  # stable: ties keep arrival order
        rows: list[list[np.ndarray]] = []
        by_room: list[list[int]] = [[] for _ in range(L + 1)]  # open rows by the room they have left
        open_rooms = 0  # bit r set: some open row has exactly r tokens of room
        for i in order:
            piece = pieces[i]
            size = piece.size
            fits = open_rooms >> size
            if fits:
                room = size + (fits & -fits).bit_length() - 1  # the least room that still fits
                row = by_room[room].pop()
                if not by_room[room]:
                    open_rooms &= ~(1 << room)
            else:
                room, row = L, len(rows)
                rows.append([])
            rows[row].append(piece)
            left = room - size
            if left:
                if not by_room[left]:
                    open_rooms |= 1 << left
                by_room[left].append(row)
        return rows_from_segments(rows, L, self.pad_id)


class DecomposePacker(Packer):
    """Dataset decomposition (Pouransari et al. 2024): each document (EOS included) is cut greedily into pieces
    whose lengths are powers of two between ``2**low`` and ``2**high`` (the largest that fits first), and every
    piece is a row of its own length, with no padding.

    What is left below ``2**low`` is dropped and counted (``dropped_tokens``), or with ``pad`` becomes one more row
    of ``2**low`` tokens, padded at the end. ``add`` returns the rows by length and the indices of the documents
    that produced no row at all (shorter than ``2**low`` without ``pad``).
    """

    name = DECOMPOSE
    per_length = True

    def __init__(self, low: int, high: int, pad_id: int, pad: bool = False) -> None:
        if not 0 <= low <= high <= 24:
            raise ValueError(f"the decompose range must be 0 <= low <= high <= 24 (lengths 2^low..2^high), "
                             f"got {low}:{high}")
        self.lengths = [1 << k for k in range(low, high + 1)]
        self.pad_id = pad_id
        self.pad = pad
        self.split_docs = 0  # documents cut into two or more pieces
        self.dropped_tokens = 0  # remainders below the shortest length (without pad)

    def add(self, tokens: np.ndarray, doc_lens: np.ndarray) -> tuple[dict[int, PackedRows], list[int]]:
        """Rows by length for these documents, and the documents left without any row."""
        tokens, doc_lens = _check_documents(tokens, doc_lens)
        shortest, longest = self.lengths[0], self.lengths[-1]
        pieces: dict[int, list[list[np.ndarray]]] = {}
        empty: list[int] = []
        start = 0
        for i, n in enumerate(doc_lens.tolist()):
            at, made = start, 0
            while start + n - at >= shortest:
                size = min(longest, 1 << ((start + n - at).bit_length() - 1))  # the largest power of two that fits
                pieces.setdefault(size, []).append([tokens[at:at + size]])
                at += size
                made += 1
            left = start + n - at
            if left and self.pad:
                pieces.setdefault(shortest, []).append([tokens[at:at + left]])
                made += 1
            elif left:
                self.dropped_tokens += left
            self.split_docs += made > 1
            if not made:
                empty.append(i)
            start += n
        return {size: rows_from_segments(segs, size, self.pad_id) for size, segs in sorted(pieces.items())}, empty

    def pack(self, tokens: np.ndarray, doc_lens: np.ndarray) -> Packed:
        """``add`` as Packed, with the tokens this batch dropped."""
        before = self.dropped_tokens
        rows, empty = self.add(tokens, doc_lens)
        return Packed(rows, empty, self.dropped_tokens - before)

    def flush(self) -> Packed:
        """Nothing: every piece is a row as soon as it is cut."""
        return Packed({})

    def remainder(self, n: int) -> int:
        """Tokens of an ``n``-token document that ``add`` leaves out of every row (0 with ``pad``)."""
        if self.pad:
            return 0
        shortest, longest = self.lengths[0], self.lengths[-1]
        left = n
        while left >= shortest:
            left -= min(longest, 1 << (left.bit_length() - 1))
        return left

    def curriculum(self) -> dict[str, dict[str, int]]:
        """Batch multipliers that keep tokens per batch constant: longest length 1, each halving doubles it."""
        longest = self.lengths[-1]
        return {K_BATCH_MULTIPLIERS: {str(size): longest // size for size in self.lengths}}


def mask_source(tokens: np.ndarray, doc_lens: np.ndarray, mode: str, eos_id: int, bos_id: int | None) -> np.ndarray:
    """Per token of a batch of documents, its loss mask (uint32 0/1, to be packed exactly like the tokens: every
    packer places tokens by document lengths alone). ``padding``: 1 everywhere (padding gets 0 when packed);
    ``boundaries``: also 0 on each document's first token (its BOS, or the token after the previous EOS)."""
    mask = np.ones(tokens.size, np.uint32)
    if mode == "boundaries" and tokens.size:
        starts = np.concatenate(([0], np.cumsum(doc_lens)[:-1]))
        mask[starts] = 0
    return mask


PACKERS = {ConcatPacker.name: ConcatPacker, BestFitPacker.name: BestFitPacker}


@dataclass(frozen=True)
class PackingSpec:
    """How a job packs: the strategy and its settings."""

    name: str = ConcatPacker.name
    seq_len: int = 2048
    buffer: int = 100_000  # best-fit: pieces packed together
    low: int = 8  # decompose: shortest piece 2**low
    high: int = 13  # decompose: longest piece 2**high (== seq_len)
    pad: bool = False  # decompose: pad remainders to 2**low instead of dropping them
    loss_mask: str = "none"  # none, padding or boundaries (see mask_source)

    def check(self) -> None:
        """Raise ValueError naming the option that is wrong."""
        if self.name not in PACKINGS:
            raise ValueError(f"--packing {self.name!r} is not one of {', '.join(PACKINGS)}")
        if self.loss_mask not in LOSS_MASKS:
            raise ValueError(f"--loss-mask {self.loss_mask!r} is not one of {', '.join(LOSS_MASKS)}")
        if self.name == BestFitPacker.name and self.buffer < 1:
            raise ValueError(f"--best-fit-buffer must be at least 1 piece, got {self.buffer}")
        if self.name == DecomposePacker.name:
            DecomposePacker(self.low, self.high, 0)  # checks the range
            if self.seq_len != 1 << self.high:
                raise ValueError(f"--packing decompose makes rows of 2^{self.low}..2^{self.high} tokens: --seq-len "
                                 f"must be the longest, {1 << self.high} (got {self.seq_len})")

    def packer(self, pad_id: int) -> Packer:
        """A new packer of this kind."""
        if self.name == BestFitPacker.name:
            return BestFitPacker(self.seq_len, pad_id, self.buffer)
        if self.name == DecomposePacker.name:
            return DecomposePacker(self.low, self.high, pad_id, self.pad)
        return ConcatPacker(self.seq_len, pad_id)

    def manifest(self) -> dict[str, Any]:
        """The settings as recorded in a manifest."""
        out: dict[str, Any] = {P_NAME: self.name, P_LOSS_MASK: self.loss_mask}
        if self.name == BestFitPacker.name:
            out[P_BUFFER] = self.buffer
        if self.name == DecomposePacker.name:
            out.update({K_LENGTHS: [1 << k for k in range(self.low, self.high + 1)], P_PAD_REMAINDERS: self.pad})
        return out
