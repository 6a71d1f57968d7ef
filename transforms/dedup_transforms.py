"""Deduplication as Beam steps: group documents by key, resolve clusters, hand each stream its duplicates.

Only small values move: 16-byte exact keys or 12-byte band keys with (ref, id) pairs go through the shuffle;
only groups of two or more (the duplicates and their representatives) reach the resolution step, which joins
them into clusters in one place (as datatrove's MinhashDedupCluster does) — its input is the duplicates alone.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

import apache_beam as beam

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


class FindDuplicates(beam.PTransform):
    """(exact keys, band keys), each a PCollection of (key, (ref, id)) → (stream index, [duplicates])."""

    def expand(self, keys: tuple[Any, Any]):
        exact, near = keys
        exact_groups = (
            exact
            | "GroupExactKeys" >> beam.GroupByKey()
            | "ExactGroups" >> beam.FlatMap(shared_key_groups, EXACT)
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
