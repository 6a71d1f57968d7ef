"""The concat packer as a pure function: property tests over random document streams."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.pack.packers import ConcatPacker
from transforms.pack.rows import PackedRows

EOS = 0
PAD = 1


def _docs(lengths: list[int], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.append(rng.integers(2, 1000, n - 1), EOS).astype(np.uint32) for n in lengths]


def _pack(docs: list[np.ndarray], seq_len: int, calls: list[int]) -> PackedRows:
    """Feed documents in chunks of the given sizes (cycled), then finish."""
    packer = ConcatPacker(seq_len, PAD)
    out, i, k = [], 0, 0
    while i < len(docs):
        n = calls[k % len(calls)]
        chunk = docs[i : i + n]
        out.append(packer.add(np.concatenate(chunk), np.array([len(d) for d in chunk])))
        i += n
        k += 1
    out.append(packer.finish())
    return PackedRows.concat(out, seq_len)


doc_lengths = st.lists(st.integers(1, 300), min_size=1, max_size=60)


@settings(max_examples=150, deadline=None)
@given(lengths=doc_lengths, seq_len=st.integers(1, 97), calls=st.lists(st.integers(1, 7), min_size=1, max_size=4))
def test_nothing_lost_rows_exact_boundaries_consistent(lengths, seq_len, calls):
    docs = _docs(lengths)
    rows = _pack(docs, seq_len, calls)
    total = sum(lengths)
    assert rows.input_ids.shape == (-(-total // seq_len), seq_len)
    # real tokens in row order are exactly the documents back to back
    real = [rows.input_ids[i, : seq_len - rows.num_pad[i]] for i in range(len(rows))]
    assert np.array_equal(np.concatenate(real), np.concatenate(docs))
    # only the last row is padded, with the pad id
    assert np.all(rows.num_pad[:-1] == 0)
    assert rows.num_pad[-1] == len(rows) * seq_len - total
    assert np.all(rows.input_ids[-1, seq_len - rows.num_pad[-1] :] == PAD)
    # cu_seqlens: starts at 0, strictly increasing, ends at the real end; boundaries are document ends
    ends = set(np.cumsum(lengths).tolist())
    for i in range(len(rows)):
        cu = rows.cu_values[rows.cu_offsets[i] : rows.cu_offsets[i + 1]]
        assert cu[0] == 0 and cu[-1] == seq_len - rows.num_pad[i]
        assert np.all(np.diff(cu) > 0)
        assert {i * seq_len + int(c) for c in cu[1:-1]} <= ends
        expected_inner = {e - i * seq_len for e in ends if i * seq_len < e < i * seq_len + cu[-1]}
        assert set(cu[1:-1].tolist()) == expected_inner


@settings(max_examples=50, deadline=None)
@given(lengths=doc_lengths, seq_len=st.integers(1, 64))
def test_chunking_of_the_input_does_not_change_the_rows(lengths, seq_len):
    docs = _docs(lengths, seed=1)
    a = _pack(docs, seq_len, [1])
    b = _pack(docs, seq_len, [len(docs)])
    assert np.array_equal(a.input_ids, b.input_ids)
    assert np.array_equal(a.cu_values, b.cu_values) and np.array_equal(a.cu_offsets, b.cu_offsets)
    assert np.array_equal(a.num_pad, b.num_pad)


def test_document_exactly_filling_rows_needs_no_padding():
    packer = ConcatPacker(4, PAD)
    rows = packer.add(np.array([5, 6, 7, EOS, 8, 9, 10, EOS], np.uint32), np.array([4, 4]))
    assert len(rows) == 2 and len(packer.finish()) == 0
    assert rows.cu_values.tolist() == [0, 4, 0, 4]


def test_long_document_spans_rows_and_continuation_starts_at_zero():
    packer = ConcatPacker(3, PAD)
    rows = PackedRows.concat(
        [packer.add(np.array([2, 3, 4, 5, 6, 7, 8, EOS, 9, EOS], np.uint32), np.array([8, 2])), packer.finish()], 3
    )
    assert rows.input_ids.tolist() == [[2, 3, 4], [5, 6, 7], [8, EOS, 9], [EOS, PAD, PAD]]
    cus = [rows.cu_values[rows.cu_offsets[i] : rows.cu_offsets[i + 1]].tolist() for i in range(4)]
    assert cus == [[0, 3], [0, 3], [0, 2, 3], [0, 1]]
    assert rows.num_pad.tolist() == [0, 0, 0, 2]


def test_slice_and_concat_round_trip():
    docs = _docs([5, 9, 3, 12, 7])
    rows = _pack(docs, 6, [2])
    parts = [rows.slice(0, 2), rows.slice(2, 3), rows.slice(3, len(rows))]
    back = PackedRows.concat(parts, 6)
    assert np.array_equal(back.input_ids, rows.input_ids)
    assert np.array_equal(back.cu_values, rows.cu_values) and np.array_equal(back.cu_offsets, rows.cu_offsets)


def test_bad_arguments():
    with pytest.raises(ValueError):
        ConcatPacker(0, PAD)
    packer = ConcatPacker(4, PAD)
    with pytest.raises(ValueError):
        packer.add(np.array([1, 2], np.uint32), np.array([3]))
    with pytest.raises(ValueError):
        packer.add(np.array([1, 2], np.uint32), np.array([2, 0]))


def _bestfit(docs: list[np.ndarray], seq_len: int, calls: list[int], buffer: int) -> tuple[PackedRows, int]:
    from transforms.pack.packers import BestFitPacker

    packer = BestFitPacker(seq_len, PAD, buffer=buffer)
    out, i, k = [], 0, 0
    while i < len(docs):
        chunk = docs[i : i + calls[k % len(calls)]]
        out.append(packer.add(np.concatenate(chunk), np.array([len(d) for d in chunk])))
        i += len(chunk)
        k += 1
    out.append(packer.finish())
    return PackedRows.concat(out, seq_len), packer.split_docs


@settings(max_examples=150, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 300), min_size=1, max_size=120),
    seq_len=st.integers(1, 128),
    calls=st.lists(st.integers(1, 25), min_size=1, max_size=4),
    buffer=st.integers(1, 60),
)
def test_best_fit_keeps_every_document_cuts_only_long_ones_and_pads_only_row_tails(lengths, seq_len, calls, buffer):
    docs = _docs(lengths, seed=len(lengths))
    rows, split = _bestfit(docs, seq_len, calls, buffer)
    assert rows.input_ids.shape[1] == seq_len
    segments = []
    for r in range(len(rows)):
        cu = rows.cu_values[rows.cu_offsets[r]:rows.cu_offsets[r + 1]]
        assert cu[0] == 0 and np.all(np.diff(cu) > 0) and cu[-1] == seq_len - rows.num_pad[r]
        assert np.all(rows.input_ids[r, cu[-1]:] == PAD)  # padding only after the last segment
        segments += [rows.input_ids[r, a:b] for a, b in zip(cu[:-1], cu[1:])]
    # every document is a whole segment, or (longer than a row) the run of its full-row pieces and last piece
    expected = []
    for d in docs:
        expected += [d[s:s + seq_len] for s in range(0, len(d), seq_len)]
    assert sorted(map(bytes, segments)) == sorted(map(bytes, expected))
    assert split == sum(len(d) > seq_len for d in docs)
    assert rows.real_tokens() == sum(lengths)


def test_best_fit_packs_a_long_tail_almost_without_padding():
    rng = np.random.default_rng(7)
    lengths = np.minimum((rng.pareto(1.2, 20_000) + 1) * 60, 20_000).astype(int)  # heavy tail, many short
    docs = _docs(lengths.tolist(), seed=1)
    rows, split = _bestfit(docs, 2048, [500], buffer=100_000)
    padding = rows.num_pad.sum() / rows.input_ids.size
    assert padding < 0.01 and split == int((lengths > 2048).sum())
    concat = _pack(docs, 2048, [500])
    assert concat.real_tokens() == rows.real_tokens()


def test_best_fit_is_deterministic_and_rejects_bad_arguments():
    from transforms.pack.packers import BestFitPacker

    docs = _docs([5, 9, 3, 9, 5, 40, 1], seed=3)
    a, _ = _bestfit(docs, 16, [2], 4)
    b, _ = _bestfit(docs, 16, [2], 4)
    assert np.array_equal(a.input_ids, b.input_ids) and np.array_equal(a.cu_values, b.cu_values)
    with pytest.raises(ValueError, match="at least one piece"):
        BestFitPacker(16, PAD, buffer=0)
    with pytest.raises(ValueError, match="seq_len"):
        BestFitPacker(0, PAD)


def test_concat_counts_documents_cut_at_row_boundaries():
    packer = ConcatPacker(10, PAD)
    docs = _docs([4, 6, 3, 12, 5], seed=2)  # rows: [4 6] [3 7..] [..5 5] -> the 12 and nothing else is cut
    packer.add(np.concatenate(docs), np.array([4, 6, 3, 12, 5]))
    packer.finish()
    assert packer.split_docs == 1


@settings(max_examples=150, deadline=None)
@given(lengths=st.lists(st.integers(1, 3000), min_size=1, max_size=60), low=st.integers(0, 6),
       span=st.integers(0, 5), pad=st.booleans())
def test_decompose_cuts_documents_into_power_of_two_pieces(lengths, low, span, pad):
    from transforms.pack.packers import DecomposePacker

    high = low + span
    packer = DecomposePacker(low, high, PAD, pad=pad)
    docs = _docs(lengths, seed=len(lengths))
    rows, empty = packer.add(np.concatenate(docs), np.array(lengths))
    shortest, longest = 1 << low, 1 << high
    assert set(rows) <= {1 << k for k in range(low, high + 1)}
    pieces = {}
    for size, block in rows.items():
        assert block.input_ids.shape[1] == size
        for r in range(len(block)):
            cu = block.cu_values[block.cu_offsets[r]:block.cu_offsets[r + 1]]
            assert cu.tolist() == [0, size - block.num_pad[r]]
            assert block.num_pad[r] == 0 or (pad and size == shortest)
            pieces.setdefault(size, []).append(block.input_ids[r, :cu[1]])
    # re-join: greedy largest-first pieces of each document, in order, are exactly the rows of each length
    expected, dropped, expected_empty = {}, 0, []
    for i, d in enumerate(docs):
        at, made = 0, 0
        while len(d) - at >= shortest:
            size = min(longest, 1 << ((len(d) - at).bit_length() - 1))
            expected.setdefault(size, []).append(d[at:at + size])
            at, made = at + size, made + 1
        if len(d) - at and pad:
            expected.setdefault(shortest, []).append(d[at:])
            made += 1
        elif len(d) - at:
            dropped += len(d) - at
        if not made:
            expected_empty.append(i)
    assert {k: list(map(bytes, v)) for k, v in pieces.items()} == {k: list(map(bytes, v)) for k, v in expected.items()}
    assert packer.dropped_tokens == dropped and empty == expected_empty
    assert sum(b.real_tokens() for b in rows.values()) + dropped == sum(lengths)


@settings(max_examples=100, deadline=None)
@given(lengths=st.lists(st.integers(1, 3000), min_size=1, max_size=30), low=st.integers(0, 6),
       span=st.integers(0, 5), pad=st.booleans())
def test_decompose_remainder_is_what_add_drops_of_each_document(lengths, low, span, pad):
    from transforms.pack.packers import DecomposePacker

    packer = DecomposePacker(low, low + span, PAD, pad=pad)
    expected = []
    for n in lengths:  # one document at a time: the packer's dropped count grows by that document's remainder
        before = packer.dropped_tokens
        packer.add(np.arange(n, dtype=np.uint32), np.array([n]))
        expected.append(packer.dropped_tokens - before)
    assert [packer.remainder(n) for n in lengths] == expected


def test_decompose_curriculum_keeps_tokens_per_batch_constant():
    from transforms.pack.packers import DecomposePacker

    curriculum = DecomposePacker(8, 13, PAD).curriculum()["batch_multipliers"]
    assert curriculum == {"256": 32, "512": 16, "1024": 8, "2048": 4, "4096": 2, "8192": 1}
    with pytest.raises(ValueError, match="decompose range"):
        DecomposePacker(9, 8, PAD)
