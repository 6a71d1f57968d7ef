"""Selection over the whole corpus: ensemble buckets from percentile cut-points, and budgeted selection.

The pure core of the two-pass plan. Pass 1 scores every kept document and emits one small ``Candidate`` per
document (its scores, bytes, tokens and a deterministic tie-break); the candidates that are not duplicates feed
combinable histogram searches (``transforms.select.quantiles``) in two rounds:

1. ``cut_searches``: per scorer, the byte-weighted (by default) percentile cut-points over the corpus or a
   deterministic sample, plus the score quantiles the manifest reports;
2. ``select_search``: the threshold key of a budget (``tokens``/``bytes``) or ``top_fraction``: documents are
   ordered by the selection score, highest first, ties by the tie-break (a hash of id and position), and the
   longest prefix within the budget is kept. The key encodes that order, so "kept" is ``key < threshold``.

Pass 2 applies the resulting ``Plan`` to each document (``Plan.decide``): its bucket per scorer (``bucket_of``),
the combined ``meta.bucket``, and keep or drop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from schemas import manifest as m
from transforms.hashing import stable_hash64
from transforms.select.quantiles import Beyond, Fraction, Search, Weight, float_key, key_float
from transforms.select.scoring import BUCKET, BUDGETS, Selection, bucket_of, combine_buckets

TOP = (1 << 64) - 1
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)  # reported per scorer, by documents


@dataclass(frozen=True)
class Candidate:
    """One kept document as selection sees it (small: this is what travels between the passes)."""

    ref: int  # (stream, ordinal): where pass 2 finds it
    scores: tuple[float, ...]  # in the recipe's scorer order
    bytes: int
    tokens: int
    tie: int  # 64-bit tie-break

    def weight(self, unit: str) -> int:
        """The document's weight: its bytes, tokens, or 1 (documents)."""
        return self.bytes if unit == "bytes" else self.tokens if unit == "tokens" else 1


def tie_break(doc_id: str, ref: int, seed: int = 0) -> int:
    """A 64-bit hash of the document's id and position: deterministic on any runner and worker count."""
    return stable_hash64(seed, ref, doc_id)


def in_sample(tie: int, fraction: float) -> bool:
    """Whether a document is in the deterministic sample of this fraction (by its tie-break hash)."""
    return fraction >= 1.0 or tie < fraction * 2.0**64


@dataclass
class Plan:
    """What pass 2 needs: cut-points per scorer key, the selection threshold, and what was measured."""

    selection: Selection
    cuts: dict[str, list[float]] = field(default_factory=dict)
    threshold: int | None = None  # keep documents whose selection key is below it (None: keep all)
    report: dict[str, Any] = field(default_factory=dict)

    def upsample(self, bucket: int | None) -> int:
        """How many times a kept document of this bucket is packed (1 unless the recipe upsamples it)."""
        return dict(self.selection.upsample).get(bucket, 1) if bucket is not None else 1

    def buckets(self, scores: tuple[float, ...]) -> tuple[list[int], int | None]:
        """(bucket per scorer, combined bucket), or ([], None) without an ensemble."""
        ensemble = self.selection.ensemble
        if ensemble is None:
            return [], None
        per = [bucket_of(s, self.cuts[c.key]) for s, c in zip(scores, self.selection.scorers)]
        return per, combine_buckets(per, ensemble.combine)

    def decide(self, scores: tuple[float, ...], tie: int) -> tuple[bool, int | None]:
        """(kept, combined bucket) of a document that is not a duplicate."""
        _, bucket = self.buckets(scores)
        select = self.selection.select
        if select is None:
            return True, bucket
        if select.criterion == "min_bucket":
            return bucket >= select.value, bucket
        if select.criterion == "min_score":
            return selection_score(self.selection, scores, bucket) >= select.value, bucket
        if self.threshold is None:
            return True, bucket
        return selection_key(self.selection, scores, bucket, tie) < self.threshold, bucket


def selection_score(selection: Selection, scores: tuple[float, ...], bucket: int | None) -> float:
    """The score selection ranks by: a scorer's score, or the combined bucket."""
    name = selection.select.score
    if name == BUCKET:
        return float(bucket)
    return scores[[s.key for s in selection.scorers].index(name)]


def selection_bits(selection: Selection) -> int:
    """Width of the selection key: the score part (64 bits, or enough for the buckets) and the 64-bit tie."""
    if selection.select.score == BUCKET:
        return 64 + max(1, (selection.ensemble.buckets - 1).bit_length())
    return 128


def selection_key(selection: Selection, scores: tuple[float, ...], bucket: int | None, tie: int) -> int:
    """Ascending key = descending selection score, then ascending tie-break."""
    if selection.select.score == BUCKET:
        high = selection.ensemble.buckets - 1 - bucket
    else:
        high = TOP - float_key(selection_score(selection, scores, bucket))
    return (high << 64) | tie


def cut_searches(selection: Selection, sample_fraction: float | None = None) -> dict[str, Search]:
    """Round 1 searches: ``cut:<key>`` (the ensemble's cut-points) and ``q:<key>`` (reported quantiles)."""
    out: dict[str, Search] = {}
    for s in selection.scorers:
        if selection.ensemble is not None:
            out[f"cut:{s.key}"] = Search(64, tuple(Fraction(q) for q in selection.ensemble.fractions()))
        out[f"q:{s.key}"] = Search(64, (Weight(1),) + tuple(Fraction(q) for q in QUANTILES) + (Fraction(1.0),))
    return out


def round_one_pairs(selection: Selection, c: Candidate) -> list[tuple[str, int, int]]:
    """(group, key, weight) pairs of a candidate for ``cut_searches``."""
    out = []
    sampled = selection.ensemble is not None and in_sample(c.tie, selection.ensemble.sample_fraction)
    for s, score in zip(selection.scorers, c.scores):
        key = float_key(score)
        if sampled:
            out.append((f"cut:{s.key}", key, c.weight(selection.ensemble.weight)))
        out.append((f"q:{s.key}", key, 1))
    return out


def plan_after_round_one(selection: Selection, searches: dict[str, Search]) -> Plan:
    """The plan with cut-points and reported quantiles, from finished round 1 searches."""
    plan = Plan(selection)
    quantiles: dict[str, Any] = {}
    for s in selection.scorers:
        q = searches[f"q:{s.key}"]
        keys = q.keys()
        values = [None if k is None else key_float(k) for k in keys]
        quantiles[s.key] = {m.S_DOCUMENTS: q.count or 0, m.S_MIN: values[0],
                            **{m.S_QUANTILE.format(round(x * 100)): v for x, v in zip(QUANTILES, values[1:-1])},
                            m.S_MAX: values[-1]}
        if selection.ensemble is not None:
            cut = searches[f"cut:{s.key}"]
            # a cut-point the sample never reaches (an empty sample) leaves every document in bucket 0
            plan.cuts[s.key] = [math.inf if k is None else key_float(k) for k in cut.keys()]
    plan.report[m.S_SCORES] = quantiles
    if selection.ensemble is not None:
        plan.report[m.S_CUT_POINTS] = {k: list(v) for k, v in plan.cuts.items()}
        plan.report[m.S_SAMPLED_WEIGHT] = {s.key: searches[f"cut:{s.key}"].total or 0 for s in selection.scorers}
    return plan


def select_search(plan: Plan) -> Search | None:
    """Round 2: the threshold search of a budget or top fraction (None when selection needs no threshold)."""
    select = plan.selection.select
    if select is None or select.criterion not in BUDGETS + ("top_fraction",):
        return None
    if select.criterion == "top_fraction":
        return Search(selection_bits(plan.selection), (Beyond(select.value),))
    # the first key whose cumulative weight exceeds the budget
    return Search(selection_bits(plan.selection), (Weight(int(select.value) + 1),))


def select_unit(selection: Selection) -> str:
    """What a budget counts: tokens or bytes (top_fraction: of tokens when the run tokenizes, else bytes)."""
    select = selection.select
    return select.criterion if select.criterion in BUDGETS else "tokens"


def round_two_pair(plan: Plan, c: Candidate, unit: str) -> tuple[str, int, int]:
    """The (group, key, weight) pair of a candidate for ``select_search``."""
    _, bucket = plan.buckets(c.scores)
    return "select", selection_key(plan.selection, c.scores, bucket, c.tie), c.weight(unit)


def finish_plan(plan: Plan, search: Search | None, unit: str) -> Plan:
    """The plan with its threshold from a finished round 2 search."""
    if search is None:
        return plan
    (key,) = search.keys()
    plan.threshold = key
    select = plan.selection.select
    budget = int(select.value) if select.criterion in BUDGETS else math.floor(select.value * (search.total or 0))
    plan.report[m.S_RULE] = {m.S_CRITERION: select.criterion, m.S_VALUE: select.value, m.S_UNIT: unit,
                             m.S_BUDGET: budget, m.S_CANDIDATES_WEIGHT: search.total or 0}
    return plan
