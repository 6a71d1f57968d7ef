"""Exact weighted order statistics by combinable histograms: the same answers as numpy's sorted computation."""

from __future__ import annotations

import random

import numpy as np
import pytest

from transforms.select.quantiles import Fraction, Weight, float_key, float_keys, key_float, select_keys


def test_float_keys_order_like_the_floats():
    values = [-np.inf, -1e300, -2.5, -1e-300, -0.0, 0.0, 5e-324, 1e-10, 0.5, 1.0, 3.0, 1e300, np.inf]
    keys = [float_key(v) for v in values]
    assert keys == sorted(keys) and float_key(-0.0) == float_key(0.0)
    assert [key_float(k) for k in keys][1:-1] == [v if v != 0 else 0.0 for v in values][1:-1]
    assert float_keys(np.array(values)).tolist() == keys
    with pytest.raises(ValueError, match="NaN"):
        float_key(float("nan"))


@pytest.mark.parametrize("seed", range(6))
def test_weighted_percentiles_equal_numpy_inverted_cdf(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 4000))
    kind = seed % 3
    if kind == 0:
        scores = rng.normal(size=n)
    elif kind == 1:
        scores = rng.integers(0, 7, size=n).astype(float)  # many ties
    else:
        scores = np.round(rng.random(n), 3) * rng.choice([-1, 1], size=n)
    weights = rng.integers(0, 5000, size=n)
    weights[0] = max(weights[0], 1)
    qs = [b / 20 for b in range(1, 20)] + [1.0, 0.001]
    keys, total = select_keys(float_keys(scores), weights, [Fraction(q) for q in qs], chunk=97)
    assert total == int(weights.sum())
    expected = np.quantile(scores, qs, weights=weights, method="inverted_cdf")
    assert [key_float(k) for k in keys] == expected.tolist()


def test_budget_selection_is_the_exact_prefix_of_the_descending_order():
    rng = random.Random(3)
    n = 3000
    scores = [rng.choice([0.1, 0.2, 0.5, 0.9, rng.random()]) for _ in range(n)]
    tokens = [rng.randint(1, 900) for _ in range(n)]
    ties = [rng.getrandbits(64) for _ in range(n)]
    top = (1 << 64) - 1
    # descending score, then ascending tie-break: one 128-bit key, ascending
    keys = [((top - float_key(s)) << 64) | t for s, t in zip(scores, ties)]
    for budget in (0, 1, 5_000, 400_000, sum(tokens) - 1, sum(tokens), sum(tokens) + 10):
        (cut,), total = select_keys(np.array(keys, dtype=object), tokens, [Weight(budget + 1)], bits=128)
        kept = [i for i in range(n) if cut is None or keys[i] < cut]
        order = sorted(range(n), key=lambda i: (-scores[i], ties[i]))
        prefix, used = [], 0
        for i in order:
            if used + tokens[i] > budget:
                break
            prefix.append(i)
            used += tokens[i]
        assert sorted(kept) == sorted(prefix), budget
        assert sum(tokens[i] for i in kept) <= budget
        kept_set = set(kept)
        if kept and len(kept) < n:  # exact: every kept document scores >= every dropped one
            assert min(scores[i] for i in kept) >= max(scores[i] for i in range(n) if i not in kept_set)


def test_targets_beyond_the_total_have_no_key_and_bad_fractions_are_refused():
    (key,), total = select_keys(float_keys(np.array([1.0, 2.0])), [3, 4], [Weight(8)])
    assert key is None and total == 7
    (key,), _ = select_keys(float_keys(np.array([1.0, 2.0])), [3, 4], [Weight(7)])
    assert key_float(key) == 2.0
    (key,), total = select_keys(np.zeros(0, np.uint64), [], [Fraction(0.5)])
    assert key is None and total == 0
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        select_keys(float_keys(np.array([1.0])), [1], [Fraction(0.0)])
