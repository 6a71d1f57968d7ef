"""The concat packer as a pure function: property tests over random document streams."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.pack import ConcatPacker, PackedRows

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
