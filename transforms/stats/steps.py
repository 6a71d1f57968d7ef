"""Beam adapters of ``tokenmill stats``: per split, one ``Partial`` and the text hashes by bucket; combines of both.

    splits ─► SplitStats ─┬─► Partial per split ─► MergePartials (CombineGlobally) ─► one Partial
                          └─► (bucket, hashes) ─► GroupByKey (256 buckets) ─► distinct per bucket ─► Sum

Only partial statistics (fixed-size sketches, a bounded line summary, groups) and 8-byte text hashes leave a
worker: the documents never travel. The work on a split is ``transforms.stats.split``'s; with local processes
(``--workers N`` on the local runner) ``SplitsInPool`` hands them all the splits in place of ``SplitStats``.
"""

from __future__ import annotations

from typing import Any, Iterator

import apache_beam as beam
import numpy as np

from transforms.stats.measures import Partial, merge_all
from transforms.stats.split import HASH_BUCKETS, SplitMeasurer, StatsSpec, pool_for

__all__ = ["CorpusStats", "HASH_BUCKETS", "StatsSpec"]


class SplitStats(beam.DoFn):
    """One split → its Partial (main output) and its text hashes per bucket (output "hashes")."""

    def __init__(self, spec: StatsSpec) -> None:
        self.spec = spec
        self.measurer: SplitMeasurer | None = None

    def setup(self) -> None:
        self.measurer = SplitMeasurer(self.spec)

    def process(self, split: Any) -> Iterator[Any]:
        assert self.measurer is not None
        yield from _outputs(self.measurer(split))


class SplitsInPool(beam.DoFn):
    """All the splits (one list, in this process) → each one's outputs as ``SplitStats`` gives them, measured by the
    pool started for the spec (``split.start_pool``), in the order of the splits."""

    def __init__(self, spec: StatsSpec) -> None:
        self.spec = spec

    def process(self, splits: list[Any]) -> Iterator[Any]:
        pool = pool_for(self.spec)
        if pool is None:
            raise RuntimeError("stats: no measuring processes were started in this process")
        order = sorted(splits, key=lambda sp: (sp.file_index, sp.split_index))
        for measured in pool.map(order):
            yield from _outputs(measured)


def _outputs(measured: Any) -> Iterator[Any]:
    part, buckets = measured
    yield part
    for bucket, chunk in buckets:
        yield beam.pvalue.TaggedOutput("hashes", (bucket, chunk))


class MergePartials(beam.CombineFn):
    """Merges Partials (associative and commutative)."""

    def __init__(self, with_tokens: bool, top_k: int) -> None:
        self.with_tokens, self.top_k = with_tokens, top_k

    def create_accumulator(self) -> Partial:
        return Partial(self.with_tokens, self.top_k)

    def add_input(self, acc: Partial, part: Partial) -> Partial:
        return acc.merge(part)

    def merge_accumulators(self, accs: Any) -> Partial:
        return merge_all(accs, self.with_tokens, self.top_k)

    def extract_output(self, acc: Partial) -> Partial:
        return acc


def distinct_in_bucket(item: tuple[int, Any]) -> int:
    """Distinct text hashes of one bucket."""
    _, chunks = item
    return int(len(np.unique(np.concatenate(list(chunks)))))


class CorpusStats(beam.PTransform):
    """splits → one element: (merged Partial, exact distinct documents)."""

    def __init__(self, spec: StatsSpec, pooled: bool = False) -> None:
        super().__init__()
        self.spec, self.pooled = spec, pooled

    def expand(self, splits):
        if self.pooled:  # in this process, the splits go to the local processes at once
            measure = (splits | "AllSplits" >> beam.combiners.ToList()
                       | "Measure" >> beam.ParDo(SplitsInPool(self.spec)).with_outputs("hashes", main="partials"))
        else:
            measure = splits | "Measure" >> beam.ParDo(SplitStats(self.spec)).with_outputs("hashes", main="partials")
        outputs = measure
        merged = outputs.partials | "Merge" >> beam.CombineGlobally(
            MergePartials(self.spec.tokenizer is not None, self.spec.top_k))
        distinct = (
            outputs.hashes
            | "ByBucket" >> beam.GroupByKey()
            | "DistinctPerBucket" >> beam.Map(distinct_in_bucket)
            | "Distinct" >> beam.CombineGlobally(sum)
        )
        return merged | "WithDistinct" >> beam.Map(lambda p, d: (p, d), beam.pvalue.AsSingleton(distinct))
