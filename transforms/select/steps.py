"""Beam transforms of the selection plan: the candidates of pass 1 (minus duplicates) → the ``Plan`` pass 2 applies.

    candidates ─┬─ CoGroupByKey(duplicates) ─► population ─► round 1 levels (cut-points, quantiles) ─► plan
                │                                     └────► round 2 levels (budget threshold) ──────► plan
                └─ only (stream, Candidate) pairs travel: scores, sizes and a tie-break, never texts

Each level is one global combine of per-group histograms (``transforms.select.quantiles``): the answers are exact and no
worker holds more than a histogram per searched prefix.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

import apache_beam as beam
import numpy as np
from apache_beam.pvalue import AsSingleton

from schemas import manifest as m
from transforms.dedup.keys import split_ref
from transforms.select.quantiles import STEP, Histograms, Search, advance_all
from transforms.select.quantiles import key_float
from transforms.select.scoring import BUCKET, BUDGETS, Selection
from transforms.select.selection import (
    TOP, Candidate, Plan, cut_searches, finish_plan, plan_after_round_one, round_one_pairs, round_two_pair,
    select_search, selection_bits,
)

_FLUSH = 8192  # pairs buffered before they are counted into histograms


class _LevelCombine(beam.CombineFn):
    """One level of every unfinished search: (group, key, weight) pairs → {group: Histograms}."""

    def create_accumulator(self, searches: dict[str, Search]) -> dict[str, Any]:
        return {}

    def add_input(self, acc: dict[str, Any], pair: tuple[str, int, int], searches: dict[str, Search]) -> dict:
        group, key, weight = pair
        search = searches.get(group)
        if search is None or search.done:
            return acc
        entry = acc.get(group)
        if entry is None:
            entry = acc[group] = [Histograms(search), [], []]
        entry[1].append(key)
        entry[2].append(weight)
        if len(entry[1]) >= _FLUSH:
            _flush(entry, search)
        return acc

    def merge_accumulators(self, accs: Iterable[dict[str, Any]], searches: dict[str, Search]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for acc in accs:
            for group, entry in acc.items():
                _flush(entry, searches[group])
                if group in out:
                    out[group][0].merge(entry[0])
                else:
                    out[group] = entry
        return out

    def extract_output(self, acc: dict[str, Any], searches: dict[str, Search]) -> dict[str, Histograms]:
        for group, entry in acc.items():
            _flush(entry, searches[group])
        return {group: entry[0] for group, entry in acc.items()}


def _flush(entry: list, search: Search) -> None:
    keys, weights = entry[1], entry[2]
    if keys:
        wide = search.bits > 64
        entry[0].add(np.array(keys, dtype=object if wide else np.uint64), np.array(weights, np.int64))
        entry[1], entry[2] = [], []


class RadixSearch(beam.PTransform):
    """(pairs, searches) → the searches finished: ``levels`` global combines, each followed by ``advance_all``."""

    def __init__(self, levels: int, label: str = "") -> None:
        super().__init__(label or None)
        self.levels = levels

    def expand(self, inputs: tuple[Any, Any]):
        pairs, searches = inputs
        for level in range(self.levels):
            hists = pairs | f"Histograms{level}" >> beam.CombineGlobally(_LevelCombine(), AsSingleton(searches))
            searches = hists | f"Advance{level}" >> beam.Map(lambda h, s: advance_all(s, h), AsSingleton(searches))
        return searches


def population(element: tuple[int, dict[str, list]]) -> Iterator[Candidate]:
    """A stream's candidates that are not duplicates."""
    _, joined = element
    duplicates = {ordinal for found in joined["duplicates"] for ordinal, *_ in found}
    for candidate in joined["candidates"]:
        if split_ref(candidate.ref)[1] not in duplicates:
            yield candidate


class _SizesCombine(beam.CombineFn):
    """Docs, bytes and tokens per bucket and of the selected documents, under a finished plan."""

    def create_accumulator(self, plan: Plan) -> dict[str, Any]:
        return {"buckets": {}, "selected": [0, 0, 0], "candidates": [0, 0, 0]}

    def add_input(self, acc: dict[str, Any], c: Candidate, plan: Plan) -> dict[str, Any]:
        kept, bucket = plan.decide(c.scores, c.tie)
        sizes = (1, c.bytes, c.tokens)
        if bucket is not None:
            row = acc["buckets"].setdefault(bucket, [0, 0, 0])
            for i, v in enumerate(sizes):
                row[i] += v
        for i, v in enumerate(sizes):
            acc["candidates"][i] += v
            if kept:
                acc["selected"][i] += v
        extra = plan.upsample(bucket) - 1 if kept else 0
        if extra:
            row = acc.setdefault("copies", {}).setdefault(bucket, [0, 0, 0])
            for i, v in enumerate(sizes):
                row[i] += v * extra
        return acc

    def merge_accumulators(self, accs: Iterable[dict[str, Any]], plan: Plan) -> dict[str, Any]:
        out = self.create_accumulator(plan)
        for acc in accs:
            for b, row in acc["buckets"].items():
                mine = out["buckets"].setdefault(b, [0, 0, 0])
                for i, v in enumerate(row):
                    mine[i] += v
            for name in ("selected", "candidates"):
                for i, v in enumerate(acc[name]):
                    out[name][i] += v
            for b, row in acc.get("copies", {}).items():
                mine = out.setdefault("copies", {}).setdefault(b, [0, 0, 0])
                for i, v in enumerate(row):
                    mine[i] += v
        return out

    def extract_output(self, acc: dict[str, Any], plan: Plan) -> Plan:
        def named(row: list[int]) -> dict[str, int]:
            return {m.S_DOCUMENTS: row[0], m.S_BYTES: row[1], m.S_TOKENS: row[2]}

        report = dict(plan.report)
        if acc["buckets"]:
            report[m.S_BUCKETS] = {str(b): named(row) for b, row in sorted(acc["buckets"].items())}
        report[m.S_CANDIDATES] = named(acc["candidates"])
        report[m.S_SELECTED] = named(acc["selected"])
        if plan.selection.upsample:  # extra copies packed (tokens: in prepare's shards; documents are written once)
            report[m.S_UPSAMPLED] = {str(b): {m.S_FACTOR: dict(plan.selection.upsample)[b], **named(row)}
                                     for b, row in sorted(acc.get("copies", {}).items())}
        return Plan(plan.selection, plan.cuts, plan.threshold, report)


class SelectionPlan(beam.PTransform):
    """(candidates keyed by stream, duplicates keyed by stream) → a singleton ``Plan`` with its report."""

    def __init__(self, selection: Selection, unit: str) -> None:
        super().__init__()
        self.selection = selection
        self.unit = unit

    def expand(self, inputs: tuple[Any, Any]):
        candidates, duplicates = inputs
        selection, unit = self.selection, self.unit
        pool = (
            {"candidates": candidates, "duplicates": duplicates}
            | "JoinDuplicates" >> beam.CoGroupByKey()
            | "NotDuplicates" >> beam.FlatMap(population)
        )
        p = candidates.pipeline
        first = p | "RoundOneSearches" >> beam.Create([cut_searches(selection)])
        round_one = (
            (pool | "RoundOnePairs" >> beam.FlatMap(lambda c: round_one_pairs(selection, c)), first)
            | "CutPoints" >> RadixSearch(first_levels(selection))
        )
        plan = round_one | "PlanRoundOne" >> beam.Map(lambda s: plan_after_round_one(selection, s))
        select = selection.select
        if select is not None and select.criterion in BUDGETS + ("top_fraction",):
            second = plan | "RoundTwoSearch" >> beam.Map(lambda pl: {"select": select_search(pl)})
            round_two = (
                (pool | "RoundTwoPairs" >> beam.Map(lambda c, pl: round_two_pair(pl, c, unit), AsSingleton(plan)),
                 second)
                | "Threshold" >> RadixSearch(-(-selection_bits(selection) // STEP))
            )
            plan = round_two | "FinishPlan" >> beam.Map(
                lambda s, pl: finish_plan(pl, s["select"], unit), AsSingleton(plan))
        return pool | "Sizes" >> beam.CombineGlobally(_SizesCombine(), AsSingleton(plan))


def first_levels(selection: Selection) -> int:
    """Levels of round 1 (64-bit score keys)."""
    return max(s.levels for s in cut_searches(selection).values())


def selection_report(plan: Plan) -> dict[str, Any]:
    """The manifest's ``selection`` section: scores per scorer (quantiles), cut-points, bucket sizes, the budget,
    the threshold and what was selected."""
    report = dict(plan.report)
    selection = plan.selection
    if selection.select is not None:
        rule = report.setdefault(m.S_RULE, {m.S_CRITERION: selection.select.criterion,
                                            m.S_VALUE: selection.select.value})
        rule[m.S_SCORE] = selection.select.score
        if plan.threshold is not None:
            high, tie = plan.threshold >> 64, plan.threshold & ((1 << 64) - 1)
            if selection.select.score == BUCKET:
                rule[m.S_THRESHOLD] = {m.S_THRESHOLD_BUCKET: selection.ensemble.buckets - 1 - high, m.S_TIE: tie}
            else:
                rule[m.S_THRESHOLD] = {m.S_THRESHOLD_SCORE: key_float(TOP - high), m.S_TIE: tie}
    return report


def split_feature_counts(split: Any, text_field: str, buckets: int) -> np.ndarray:
    """DSIR feature counts of one split's readable documents (unreadable records are the main pass's business)."""
    from transforms.select.dsir import DsirFeatures
    from transforms.read.readers import read_split

    features = DsirFeatures(buckets)
    out = np.zeros(buckets, np.int64)
    for batch in read_split(split, text_field):
        out += features.counts(batch.texts)
    return out


class _SumCounts(beam.CombineFn):
    """Element-wise sum of count vectors of one size."""

    def __init__(self, size: int) -> None:
        self.size = size

    def create_accumulator(self) -> np.ndarray:
        return np.zeros(self.size, np.int64)

    def add_input(self, acc: np.ndarray, counts: np.ndarray) -> np.ndarray:
        acc += counts
        return acc

    def merge_accumulators(self, accs: Iterable[np.ndarray]) -> np.ndarray:
        out = np.zeros(self.size, np.int64)
        for acc in accs:
            out += acc
        return out

    def extract_output(self, acc: np.ndarray) -> np.ndarray:
        return acc


class FitScorers(beam.PTransform):
    """The fitted state of scorers that learn from the corpus (dsir): {scorer key: weights}, a singleton.

    Per dsir scorer, the raw input (every readable document of the job's inputs) and the target corpus are read
    split by split; each split contributes one count vector and a combine sums them."""

    def __init__(self, selection: Selection, files: list, text_field: str) -> None:
        super().__init__()
        self.selection = selection
        self.files = files
        self.text_field = text_field

    def expand(self, p):
        from transforms.select.dsir import dsir_weights
        from transforms.read.sources import expand_inputs, plan_splits

        fitted = []
        for scorer in self.selection.scorers:
            if scorer.name != "dsir":
                continue
            buckets = int(scorer.params["buckets"])
            target_files = expand_inputs([scorer.params["target"]], scorer.params["input_format"])
            sums = {}
            for name, files, field in (("raw", self.files, self.text_field),
                                       ("target", target_files, scorer.params["text_field"])):
                sums[name] = (
                    p
                    | f"{scorer.key}{name.title()}Files" >> beam.Create(list(enumerate(files)))
                    | f"{scorer.key}{name.title()}Splits" >> beam.FlatMapTuple(plan_splits)
                    | f"{scorer.key}{name.title()}Spread" >> beam.Reshuffle()
                    | f"{scorer.key}{name.title()}Counts" >> beam.Map(split_feature_counts, field, buckets)
                    | f"{scorer.key}{name.title()}Sum" >> beam.CombineGlobally(_SumCounts(buckets))
                )
            key = scorer.key
            fitted.append(
                sums["target"]
                | f"{key}Weights" >> beam.Map(lambda t, r, k=key: (k, dsir_weights(t, r).tolist()),
                                              AsSingleton(sums["raw"]))
            )
        return (
            fitted
            | "AllFitted" >> beam.Flatten()
            | "FittedDict" >> beam.combiners.ToDict()
        )
