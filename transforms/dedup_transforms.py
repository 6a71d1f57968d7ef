"""Deduplication as Beam steps: group documents by key, resolve clusters, hand each stream its duplicates.

Only small values move: 16-byte exact keys or 12-byte band keys with (ref, id) pairs go through the shuffle;
only groups of two or more (the duplicates and their representatives) reach the resolution step. Exact-only dedup
resolves each group where it is (a group is its own cluster: its first-read document is kept), so nothing meets in
one place; with MinHash the groups are joined into clusters in one place (as datatrove's MinhashDedupCluster does)
— its input is the duplicates alone.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

import apache_beam as beam

from schemas.manifest import EXACT_DUPLICATE
from transforms.dedup import resolve_duplicates, split_ref
from transforms.gather import GatherAll

METRICS_NAMESPACE = "tokenmill"
EXACT, NEAR = "exact", "near"


def shared_key_groups(element: tuple[bytes, Iterable[tuple[int, str]]], kind: str) -> Iterator[tuple[str, list]]:
    """A key's documents as (kind, [(ref, id), ...]) when two or more documents share it."""
    _, members = element
    members = list(members)
    if len({ref for ref, _ in members}) >= 2:
        yield kind, members


def duplicates_by_stream(groups: list[tuple[str, list]]) -> Iterator[tuple[int, list[tuple[int, str, str]]]]:
    """(stream index, [(ordinal, reason, kept id), ...]) for every stream holding duplicates, in stream order."""
    found = resolve_duplicates((g for kind, g in groups if kind == EXACT), (g for kind, g in groups if kind == NEAR))
    by_stream: dict[int, list[tuple[int, str, str]]] = {}
    for ref, (reason, kept_id) in sorted(found.items()):
        stream, ordinal = split_ref(ref)
        by_stream.setdefault(stream, []).append((ordinal, reason, kept_id))
        beam.metrics.Metrics.counter(METRICS_NAMESPACE, f"duplicates_{reason}").inc()
    yield from sorted(by_stream.items())


def exact_group_duplicates(group: tuple[str, list[tuple[int, str]]]) -> Iterator[tuple[int, tuple[int, str, str]]]:
    """(stream index, (ordinal, reason, kept id)) for each duplicate of one exact group (its first-read document
    is kept): resolve_duplicates on exact groups alone, one group at a time."""
    _, members = group
    first = min(members)
    for ref, _ in sorted(set(members)):
        if ref != first[0]:
            stream, ordinal = split_ref(ref)
            beam.metrics.Metrics.counter(METRICS_NAMESPACE, f"duplicates_{EXACT_DUPLICATE}").inc()
            yield stream, (ordinal, EXACT_DUPLICATE, first[1])


class FindDuplicates(beam.PTransform):
    """(exact keys, band keys), each a PCollection of (key, (ref, id)) → (stream index, [duplicates]).

    ``near``: whether band keys can come (MinHash on): then every group meets in one place to form clusters.
    """

    def __init__(self, near: bool = True) -> None:
        super().__init__()
        self.near = near

    def expand(self, keys: tuple[Any, Any]):
        exact, near = keys
        exact_groups = (
            exact
            | "GroupExactKeys" >> beam.GroupByKey()
            | "ExactGroups" >> beam.FlatMap(shared_key_groups, EXACT)
        )
        if not self.near:  # exact groups are clusters already: resolve each in place, then collect per stream
            return (
                exact_groups
                | "ResolveExactGroups" >> beam.FlatMap(exact_group_duplicates)
                | "ByStream" >> beam.GroupByKey()
                | "InOrder" >> beam.MapTuple(lambda stream, dups: (stream, sorted(dups)))
            )
        near_groups = (
            near
            | "GroupBandKeys" >> beam.GroupByKey()
            | "CandidateGroups" >> beam.FlatMap(shared_key_groups, NEAR)
        )
        return (
            (exact_groups, near_groups)
            | "AllGroups" >> beam.Flatten()
            | "GatherGroups" >> GatherAll()
            | "ResolveClusters" >> beam.FlatMap(duplicates_by_stream)
        )
