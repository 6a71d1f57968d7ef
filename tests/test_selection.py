"""The selection plan: cut-points equal numpy's byte-weighted percentiles, buckets follow them, and a token budget
keeps exactly the best documents (ties broken by a deterministic hash) without going over."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest

from transforms.select.quantiles import Histograms, Search, Weight, run_searches
from transforms.recipe.recipes import parse_recipe
from transforms.select.selection import (
    Candidate, cut_searches, finish_plan, plan_after_round_one, round_one_pairs, round_two_pair, select_search,
    selection_key, tie_break,
)


def _candidates(n: int, seed: int = 0) -> list[Candidate]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        quality = rng.choice([0.05, 0.5, 0.9, rng.random()])  # ties on purpose
        size = rng.randint(20, 5000)
        out.append(Candidate(ref=i, scores=(quality, float(size)), bytes=size, tokens=size // 4 + 1,
                             tie=tie_break(f"doc{i}", i)))
    return out


def _plan(recipe_sections, candidates, unit="tokens"):
    selection = parse_recipe({"scorers": [{"name": "length", "key": "q"}, {"name": "length", "key": "len"}],
                              **recipe_sections}, "r").selection
    searches = run_searches([p for c in candidates for p in round_one_pairs(selection, c)], cut_searches(selection))
    plan = plan_after_round_one(selection, searches)
    search = select_search(plan)
    if search is not None:
        search = run_searches([round_two_pair(plan, c, unit) for c in candidates], {"select": search})["select"]
    return finish_plan(plan, search, unit)


def test_cut_points_are_byte_weighted_percentiles_and_buckets_follow_them():
    cands = _candidates(3000)
    plan = _plan({"ensemble": {"buckets": 20}}, cands)
    scores = np.array([c.scores[0] for c in cands])
    weights = np.array([c.bytes for c in cands])
    qs = [b / 20 for b in range(1, 20)]
    assert plan.cuts["q"] == np.quantile(scores, qs, weights=weights, method="inverted_cdf").tolist()
    buckets = np.array([plan.buckets(c.scores)[0][0] for c in cands])
    for b in range(20):  # bucket b holds the scores between its cut-points (a score equal to a cut goes below)
        inside = scores[buckets == b]
        if inside.size:
            assert b == 0 or inside.min() > plan.cuts["q"][b - 1]
            assert b == 19 or inside.max() <= plan.cuts["q"][b]
    combined = [plan.buckets(c.scores) for c in cands]
    assert all(total == max(per) for per, total in combined)  # combine: max
    report = plan.report["scores"]["len"]
    lengths = np.array([c.scores[1] for c in cands])
    assert report["documents"] == 3000 and report["min"] == lengths.min() and report["max"] == lengths.max()
    assert report["p50"] == np.quantile(lengths, 0.5, method="inverted_cdf")


def test_sampled_cut_points_use_only_the_sample():
    cands = _candidates(4000, seed=1)
    plan = _plan({"ensemble": {"buckets": 10, "sample_fraction": 0.25, "weight": "documents"}}, cands)
    from transforms.select.selection import in_sample

    sample = [c for c in cands if in_sample(c.tie, 0.25)]
    assert 800 < len(sample) < 1200 and plan.report["sampled_weight"]["q"] == len(sample)
    expected = np.quantile([c.scores[0] for c in sample], [b / 10 for b in range(1, 10)], method="inverted_cdf")
    assert plan.cuts["q"] == expected.tolist()


@pytest.mark.parametrize("sections", [
    {"select": {"tokens": 50_000, "score": "q"}},
    {"ensemble": {"buckets": 5}, "select": {"tokens": 50_000}},
    {"select": {"top_fraction": 0.3, "score": "len"}},
])
def test_budget_keeps_the_best_documents_exactly_without_going_over(sections):
    cands = _candidates(3000, seed=2)
    plan = _plan(sections, cands)
    kept = [c for c in cands if plan.decide(c.scores, c.tie)[0]]
    dropped = [c for c in cands if not plan.decide(c.scores, c.tie)[0]]
    total = sum(c.tokens for c in cands)
    budget = 50_000 if "tokens" in sections["select"] else int(0.3 * total)
    used = sum(c.tokens for c in kept)
    assert used <= budget and plan.report["selection"]["budget"] == budget
    # within one document of the budget: the next in order would have gone over
    order = sorted(cands, key=lambda c: selection_key(plan.selection, c.scores, plan.buckets(c.scores)[1], c.tie))
    assert order[:len(kept)] == sorted(kept, key=order.index) and used + order[len(kept)].tokens > budget
    assert budget - used < 0.01 * budget or order[len(kept)].tokens > 0.01 * budget
    rank = (lambda c: plan.buckets(c.scores)[1]) if "ensemble" in sections else (
        lambda c: c.scores[0 if sections["select"].get("score") == "q" else 1])
    assert min(map(rank, kept)) >= max(map(rank, dropped))  # exact: every kept document scores >= every dropped


def test_histograms_pickle_sparse_and_back():
    search = Search(64, (Weight(3),))
    hist = Histograms(search).add(np.array([5, 1 << 63, (1 << 64) - 1], np.uint64), np.array([1, 2, 3]))
    back = pickle.loads(pickle.dumps(hist))
    assert len(pickle.dumps(hist)) < 2000
    assert all((back.weights[p] == hist.weights[p]).all() and (back.counts[p] == hist.counts[p]).all()
               for p in hist.weights)


def test_beam_plan_equals_the_in_memory_plan_and_skips_duplicates(tmp_path):
    import apache_beam as beam
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    from transforms.dedup.keys import make_ref
    from transforms.select.steps import SelectionPlan

    sections = {"ensemble": {"buckets": 8, "weight": "tokens"}, "select": {"tokens": 40_000}}
    raw = _candidates(2500, seed=4)
    cands = [Candidate(make_ref(i % 3, i // 3), c.scores, c.bytes, c.tokens, c.tie) for i, c in enumerate(raw)]
    duplicated = cands[::7]  # every 7th candidate is a duplicate found by dedup: not part of the population
    from transforms.dedup.keys import split_ref

    dup_by_stream: dict[int, list] = {}
    for c in duplicated:
        stream, ordinal = split_ref(c.ref)
        dup_by_stream.setdefault(stream, []).append((ordinal, "exact_duplicate", "x"))
    population = [c for c in cands if c not in duplicated]
    expected = _plan(sections, population)
    selection = expected.selection
    target = tmp_path / "plan.pickle"
    with beam.Pipeline(runner=FnApiRunner()) as p:
        candidates = p | "C" >> beam.Create([(split_ref(c.ref)[0], c) for c in cands])
        duplicates = p | "D" >> beam.Create(sorted(dup_by_stream.items()))
        plans = (candidates, duplicates) | SelectionPlan(selection, "tokens")
        plans | beam.Map(lambda plan: target.write_bytes(pickle.dumps(plan)))
    plan = pickle.loads(target.read_bytes())
    assert plan.cuts == expected.cuts and plan.threshold == expected.threshold
    kept = [c for c in population if plan.decide(c.scores, c.tie)[0]]
    report = plan.report
    assert report["selected"] == {"documents": len(kept), "bytes": sum(c.bytes for c in kept),
                                  "tokens": sum(c.tokens for c in kept)}
    assert report["candidates"]["documents"] == len(population)
    assert sum(b["documents"] for b in report["buckets"].values()) == len(population)
    assert report["selection"]["budget"] == 40_000 and report["selected"]["tokens"] <= 40_000
