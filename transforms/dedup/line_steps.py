"""Line dedup as Beam steps: pass 1's line keys in, the ``FrequentLines`` pass 2 removes out (one element).

    local runner:  line key files ─► GatherAll ─► count bucket by bucket (transforms.dedup.line_files)
    remote runner: (stream, keys, ordinals) ─► join the stream's document duplicates ─► (key, ref) pairs ─►
                   CombinePerKey (documents, first ref) ─► keys in >= min_docs documents ─► one sorted array

Both drop the documents the recipe's document dedup rejects before counting, and give the same keys and first refs.
On a remote runner the frequent keys (16 bytes each) come together on one worker and reach every worker as a side
input; on one machine they stay in a file each process maps.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

import apache_beam as beam
import numpy as np

from transforms.dedup.keys import REF_BITS, make_ref
from transforms.dedup.line_files import LineKeyFile, frequent_lines_in_files
from transforms.dedup.lines import FrequentLines
from transforms.gather import GatherAll
from transforms.recipe.line_dedup import LineDedup

METRICS_NAMESPACE = "tokenmill"
Duplicates = tuple[int, list[tuple]]  # (stream, [(ordinal, reason, kept id, ...)]): FindDuplicates' output


def duplicate_refs(duplicates: Iterable[Duplicates]) -> np.ndarray:
    """The refs of every document duplicate, ascending."""
    refs = [make_ref(stream, duplicate[0]) for stream, found in duplicates for duplicate in found]
    return np.unique(np.array(refs, np.uint64))


def count_line_files(files: list[LineKeyFile], duplicates: list[Duplicates], config: LineDedup,
                     prefix: str) -> FrequentLines:
    """``frequent_lines_in_files`` once every stream's first pass is done (this process's recipe processes are
    stopped first), counted in the job's metrics."""
    from transforms.recipe.work import release_processes

    release_processes()
    frequent = frequent_lines_in_files(files, duplicate_refs(duplicates), config.min_docs, config.keep_first, prefix)
    beam.metrics.Metrics.counter(METRICS_NAMESPACE, "frequent_lines").inc(frequent.size)
    return frequent


class CountLinesInFiles(beam.PTransform):
    """(line key files, document duplicates) → FrequentLines, in one step on one machine (only names move)."""

    def __init__(self, config: LineDedup, prefix: str) -> None:
        super().__init__()
        self.config = config
        self.prefix = prefix

    def expand(self, inputs: tuple[Any, Any]):
        files, duplicates = inputs
        return (
            files
            | "GatherLineKeyFiles" >> GatherAll()
            | "CountLineKeys" >> beam.Map(count_line_files, beam.pvalue.AsList(duplicates), self.config, self.prefix)
        )


def line_refs(element: tuple[int, dict[str, list]]) -> Iterator[tuple[int, int]]:
    """(key, ref) for each line key of a stream's documents that are not document duplicates (keys as signed
    64-bit values: Beam encodes those as varints, larger ones by pickling)."""
    stream, joined = element
    skip = {duplicate[0] for found in joined["duplicates"] for duplicate in found}
    base = stream << REF_BITS
    for keys, ordinals in joined["lines"]:
        for key, ordinal in zip(keys.view(np.int64).tolist(), ordinals.tolist()):
            if ordinal not in skip:
                yield key, base | ordinal


_NO_REF = (1 << 63) - 1  # above every ref (stream indexes stay below 2^31)


class DocumentsPerLine(beam.CombineFn):
    """(documents, first ref) of a key's (distinct) refs."""

    def create_accumulator(self) -> tuple[int, int]:
        return 0, _NO_REF

    def add_input(self, acc: tuple[int, int], ref: int) -> tuple[int, int]:
        return acc[0] + 1, min(acc[1], ref)

    def merge_accumulators(self, accs: Iterable[tuple[int, int]]) -> tuple[int, int]:
        docs, first = 0, _NO_REF
        for n, ref in accs:
            docs, first = docs + n, min(first, ref)
        return docs, first

    def extract_output(self, acc: tuple[int, int]) -> tuple[int, int]:
        return acc


def frequent_from_pairs(pairs: list[tuple[int, int]], keep_first: bool) -> FrequentLines:
    """FrequentLines held in the object from (signed key, first ref) pairs."""
    keys = np.array([k for k, _ in pairs], np.int64).view(np.uint64)
    order = np.argsort(keys)
    keys = keys[order]
    firsts = np.array([f for _, f in pairs], np.uint64)[order] if keep_first else None
    beam.metrics.Metrics.counter(METRICS_NAMESPACE, "frequent_lines").inc(keys.size)
    return FrequentLines(keys.size, keys=keys, firsts=firsts)


class CountLines(beam.PTransform):
    """((stream, (keys, ordinals)) per batch, document duplicates) → FrequentLines, spread over the workers by a
    combine (emits nothing when no key is frequent)."""

    def __init__(self, config: LineDedup) -> None:
        super().__init__()
        self.config = config

    def expand(self, inputs: tuple[Any, Any]):
        lines, duplicates = inputs
        min_docs = self.config.min_docs
        return (
            {"lines": lines, "duplicates": duplicates}
            | "JoinLineDuplicates" >> beam.CoGroupByKey()
            | "LineRefs" >> beam.FlatMap(line_refs)
            | "DocumentsPerLine" >> beam.CombinePerKey(DocumentsPerLine())
            | "Frequent" >> beam.FlatMapTuple(lambda key, acc: [(key, acc[1])] if acc[0] >= min_docs else [])
            | "GatherFrequent" >> GatherAll()
            | "FrequentSet" >> beam.Map(frequent_from_pairs, self.config.keep_first)
        )
