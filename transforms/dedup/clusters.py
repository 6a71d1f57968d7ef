"""The largest duplicate clusters and a sample of their members, for the manifest and report.html.

Users want to see what dedup removed. A cluster is a kept document with the documents rejected as its duplicates
(``duplicate_of``). Finding the largest ones takes one count per kept document and a top-N combine over the
duplicates the resolution found (``transforms.dedup.steps.LargestClusters``; only (kept id, 1) pairs move). Pass 2 keeps, per stream, the
first ``SAMPLE`` members it rejects for each of those clusters (``ClusterSampler``: id, source, reason and the
start of the text); the commit merges them in stream order (``merge_cluster_samples``), so the sample is the
same on every runner: the first members in read order.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

from schemas import manifest as m

TOP = 10  # clusters listed
SAMPLE = 3  # members shown per cluster
EXCERPT_CHARS = 200  # of each member's text, whitespace collapsed

ClusterKey = tuple[str, str]  # (kept id, earlier output or "" for a document of this run)
Sizes = list[tuple[ClusterKey, int]]  # the largest clusters, largest first: their duplicates counted


def cluster_keys(element: tuple[int, list[tuple]]) -> Iterator[tuple[ClusterKey, int]]:
    """(cluster, 1) for each duplicate of a stream's (ordinal, reason, kept id[, earlier output]) list."""
    _, found = element
    for duplicate in found:
        yield (duplicate[2], duplicate[3] if len(duplicate) > 3 and duplicate[3] else ""), 1


def cluster_rank(item: tuple[ClusterKey, int]) -> tuple[int, ClusterKey]:
    """Largest first, then by kept id (a total order: the same top clusters on every runner)."""
    key, size = item
    return -size, key


class ClusterSampler:
    """Pass 2's sample of one stream: the first members it rejects of each of the largest clusters."""

    def __init__(self, sizes: Sizes | None) -> None:
        self.rank = {key: i for i, (key, _) in enumerate(sizes or ())}
        self.samples: dict[int, list[dict[str, Any]]] = {}

    def __bool__(self) -> bool:
        return bool(self.rank)

    def offer(self, duplicate: tuple[str, ...], doc_id: str, source: str, text: str) -> None:
        """A rejected duplicate (its (reason, kept id[, earlier output])): kept when its cluster wants more."""
        reason, kept_id = duplicate[0], duplicate[1]
        rank = self.rank.get((kept_id, duplicate[2] if len(duplicate) > 2 and duplicate[2] else ""))
        if rank is None:
            return
        members = self.samples.setdefault(rank, [])
        if len(members) < SAMPLE:
            members.append({m.CL_ID: doc_id, m.CL_SOURCE: source, m.CL_REASON: reason,
                            m.CL_EXCERPT: " ".join(text[:EXCERPT_CHARS * 2].split())[:EXCERPT_CHARS]})

    def result(self) -> list[list[Any]]:
        """[[rank, member], ...] in rank then read order (plain values: part of a StreamResult)."""
        return [[rank, member] for rank in sorted(self.samples) for member in self.samples[rank]]


def merge_cluster_samples(sizes: Sizes, per_stream: Iterable[list[list[Any]]]) -> list[dict[str, Any]]:
    """The manifest's ``dedup.clusters``: each large cluster (kept id, its earlier output, documents in all) with
    its first members across the streams (``per_stream`` in stream order)."""
    members: dict[int, list[dict[str, Any]]] = {}
    for samples in per_stream:
        for rank, member in samples:
            if len(members.setdefault(rank, [])) < SAMPLE:
                members[rank].append(member)
    out = []
    for rank, ((kept_id, earlier), size) in enumerate(sizes):
        cluster: dict[str, Any] = {m.CL_KEPT: kept_id, m.CL_DOCUMENTS: size + 1}
        if earlier:
            cluster[m.CL_EARLIER] = earlier
        cluster[m.CL_MEMBERS] = members.get(rank, [])
        out.append(cluster)
    return out
