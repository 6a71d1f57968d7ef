"""Deduplication as Beam steps: group documents by key, resolve clusters, hand each stream its duplicates.

Only small values move: 16-byte exact keys or 12-byte band keys with (ref, id) pairs go through the shuffle;
only groups of two or more (the duplicates and their representatives) reach the resolution step. Exact-only dedup
resolves each group where it is (a group is its own cluster: its first-read document is kept). With MinHash the
groups are joined into connected components: in one place on one machine (as datatrove's MinhashDedupCluster
does; its input is the duplicates alone), else spread over the workers of a remote runner (``SpreadClusters``:
rounds of smallest-label propagation over the groups' edges, then a union-find of the few labels still joined by
an edge). Both give every duplicate its component's first-read document.

On a local runner, which would hold that shuffle in memory, ``FindDuplicatesInFiles`` takes each stream's key file
(``dedup_arrays``) instead and resolves them all in one step by sorting compact arrays: the same decisions.

``dedup.against``: the earlier outputs' keys join the shuffle (``WithEarlierKeys``) or are looked up beside the key
files (``transforms.dedup.earlier``); ``dedup.save_index``: ``SaveIndex`` writes the kept documents' keys.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

import apache_beam as beam

import numpy as np
from apache_beam.pvalue import AsList, AsSingleton

from schemas.manifest import EARLIER_EXACT_DUPLICATE, EARLIER_NEAR_DUPLICATE, EXACT_DUPLICATE, NEAR_DUPLICATE
from transforms.dedup.arrays import KeyFile, duplicates_in_files
from transforms.dedup.earlier import EarlierCorpus, EarlierMatches
from transforms.dedup.index import removed_ordinals, write_index
from transforms.dedup.clusters import TOP, cluster_keys, cluster_rank
from transforms.dedup.keys import clusters, resolve_duplicates, split_ref
from transforms.gather import GatherAll
from transforms.recipe.recipes import MinHash
from transforms.select.selection import Candidate, Plan

METRICS_NAMESPACE = "tokenmill"
EXACT, NEAR = "exact", "near"


def shared_key_groups(element: tuple[bytes, Iterable[tuple[int, str]]], kind: str) -> Iterator[tuple[str, list]]:
    """A key's documents as (kind, [(ref, id), ...]) when two or more documents share it, one of this run (earlier
    documents, with negative refs, are not compared among themselves)."""
    _, members = element
    members = list(members)
    refs = {ref for ref, _ in members}
    if len(refs) >= 2 and max(refs) >= 0:
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


LABEL_ROUNDS = 4  # rounds of smallest-label propagation before the union-find of the labels still joined


def star_edges(group: tuple[str, list[tuple[int, str]]]) -> Iterator[tuple[int, int]]:
    """A group as edges (both ways) between its first-read document and each other member."""
    refs = sorted({ref for ref, _ in group[1]})
    for ref in refs[1:]:
        yield refs[0], ref
        yield ref, refs[0]


def _spread_label(item: tuple[int, dict[str, list]]) -> Iterator[tuple[int, int]]:
    """A node's label to itself and to each neighbour."""
    node, joined = item
    label = min(joined["label"])
    yield node, label
    for neighbour in joined["edges"]:
        yield neighbour, label


def _label_to_neighbours(item: tuple[int, dict[str, list]]) -> Iterator[tuple[int, int]]:
    node, joined = item
    label = min(joined["label"])
    for neighbour in joined["edges"]:
        yield neighbour, label


def _joined_labels(item: tuple[int, dict[str, list]]) -> Iterator[tuple[int, int]]:
    """(smaller, larger) for each neighbour's label that differs from the node's: labels still to be joined."""
    _, joined = item
    label = min(joined["label"])
    for other in set(joined["incoming"]):
        if other != label:
            yield min(label, other), max(label, other)


def _final(item: tuple[int, int], roots: dict[int, int]) -> tuple[int, int]:
    node, label = item
    return node, roots.get(label, label)


def _with_rep_id(item: tuple[int, dict[str, list]]) -> Iterator[tuple[int, tuple[int, str]]]:
    rep, joined = item
    if joined["dups"]:
        rep_id = min(joined["ids"])
        for node in joined["dups"]:
            yield node, (rep, rep_id)


def _duplicate(item: tuple[int, dict[str, list]], earlier: EarlierCorpus | None = None) -> Iterator[tuple[int, tuple]]:
    """(stream, (ordinal, reason, kept id)) of a duplicate: exact when its exact group's first is its cluster's;
    of an earlier document (a negative ref): (ordinal, earlier reason, its id, its output)."""
    node, joined = item
    for rep, rep_id in joined["rep"]:
        exact = rep in joined["first"]
        stream, ordinal = split_ref(node)
        if rep < 0:
            reason = EARLIER_EXACT_DUPLICATE if exact else EARLIER_NEAR_DUPLICATE
            found: tuple = (ordinal, reason, rep_id, earlier.path_of_ref(rep))
        else:
            reason = EXACT_DUPLICATE if exact else NEAR_DUPLICATE
            found = (ordinal, reason, rep_id)
        beam.metrics.Metrics.counter(METRICS_NAMESPACE, f"duplicates_{reason}").inc()
        yield stream, found


class SpreadClusters(beam.PTransform):
    """(exact groups, near groups) → (stream index, [duplicates]) with no step holding every group: the same
    result as resolve_duplicates (connected components, the first-read document kept). With an ``earlier`` corpus
    its documents (negative refs) are in the groups too, never duplicates themselves; the ids of those kept are
    looked up in their indexes."""

    def __init__(self, earlier: EarlierCorpus | None = None) -> None:
        super().__init__()
        self.earlier = earlier

    def expand(self, groups: tuple[Any, Any]):
        exact_groups, near_groups = groups
        every = (exact_groups, near_groups) | "AllGroups" >> beam.Flatten()
        edges = every | "StarEdges" >> beam.FlatMap(star_edges) | "DistinctEdges" >> beam.Distinct()
        labels = edges | "Nodes" >> beam.Map(lambda e: (e[0], e[0])) | "NodeLabels" >> beam.CombinePerKey(min)
        for r in range(LABEL_ROUNDS):
            labels = (
                {"label": labels, "edges": edges}
                | f"Join{r}" >> beam.CoGroupByKey()
                | f"Spread{r}" >> beam.FlatMap(_spread_label)
                | f"Smallest{r}" >> beam.CombinePerKey(min)
            )
        incoming = (
            {"label": labels, "edges": edges}
            | "JoinLast" >> beam.CoGroupByKey()
            | "ToNeighbours" >> beam.FlatMap(_label_to_neighbours)
        )
        roots = (
            {"label": labels, "incoming": incoming}
            | "CompareLabels" >> beam.CoGroupByKey()
            | "StillJoined" >> beam.FlatMap(_joined_labels)
            | "DistinctJoins" >> beam.Distinct()
            | "GatherJoins" >> GatherAll()  # labels of components not settled by the rounds: few
            | "UnionFind" >> beam.FlatMap(lambda pairs: clusters([list(p) for p in pairs]).items())
        )
        reps = labels | "Representatives" >> beam.Map(_final, beam.pvalue.AsDict(roots))
        dups = reps | "Duplicates" >> beam.FlatMapTuple(lambda node, rep: [(rep, node)] if rep != node and node >= 0
                                                        else [])  # earlier documents (negative refs) stay
        members = every | "Ids" >> beam.FlatMap(lambda g: [(ref, i) for ref, i in g[1] if ref >= 0])
        if self.earlier is not None:
            earlier_ids = (
                dups
                | "EarlierReps" >> beam.FlatMapTuple(lambda rep, _: [rep] if rep < 0 else [])
                | "DistinctEarlierReps" >> beam.Distinct()
                | "GatherEarlierReps" >> GatherAll()  # the earlier documents kept: at most one per duplicate
                | "EarlierIds" >> beam.FlatMap(lambda refs, corpus: corpus.ids_of_refs(sorted(refs)), self.earlier)
            )
            members = (members, earlier_ids) | "AllIds" >> beam.Flatten()
        ids = members | "IdOfRef" >> beam.CombinePerKey(min)
        firsts = exact_groups | "ExactFirsts" >> beam.FlatMap(
            lambda g: [(ref, min(r for r, _ in g[1])) for ref in {r for r, _ in g[1]}])
        with_ids = {"dups": dups, "ids": ids} | "JoinRepIds" >> beam.CoGroupByKey() | "RepIds" >> beam.FlatMap(
            _with_rep_id)
        return (
            {"rep": with_ids, "first": firsts}
            | "JoinFirsts" >> beam.CoGroupByKey()
            | "Reasons" >> beam.FlatMap(_duplicate, self.earlier)
            | "ByStream" >> beam.GroupByKey()
            | "InOrder" >> beam.MapTuple(lambda stream, found: (stream, sorted(found)))
        )


class FindDuplicates(beam.PTransform):
    """(exact keys, band keys), each a PCollection of (key, (ref, id)) → (stream index, [duplicates]).

    ``near``: whether band keys can come (MinHash on); ``spread``: join MinHash clusters over the workers
    (``SpreadClusters``) instead of in one place; ``earlier``: also drop duplicates of these earlier outputs, whose
    keys join the shuffle (clusters are then always joined over the workers).
    """

    def __init__(self, near: bool = True, spread: bool = False, earlier: EarlierCorpus | None = None) -> None:
        super().__init__()
        self.near = near
        self.spread = spread
        self.earlier = earlier

    def expand(self, keys: tuple[Any, Any]):
        exact, near = keys
        if self.earlier is not None:
            exact, near = (exact, near) | "EarlierKeys" >> WithEarlierKeys(self.earlier)
        exact_groups = (
            exact
            | "GroupExactKeys" >> beam.GroupByKey()
            | "ExactGroups" >> beam.FlatMap(shared_key_groups, EXACT)
        )
        if self.earlier is not None:
            near_groups = (
                near
                | "GroupBandKeys" >> beam.GroupByKey()
                | "CandidateGroups" >> beam.FlatMap(shared_key_groups, NEAR)
            )
            return (exact_groups, near_groups) | "SpreadClusters" >> SpreadClusters(self.earlier)
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
        if self.spread:
            return (exact_groups, near_groups) | "SpreadClusters" >> SpreadClusters()
        return (
            (exact_groups, near_groups)
            | "AllGroups" >> beam.Flatten()
            | "GatherGroups" >> GatherAll()
            | "ResolveClusters" >> beam.FlatMap(duplicates_by_stream)
        )


def duplicates_from_key_files(files: list[KeyFile], earlier: EarlierCorpus | None = None
                              ) -> Iterator[tuple[int, list[tuple]]]:
    """``duplicates_in_files`` with the duplicates counted in the job's metrics (every stream's first pass is done
    by now: this process's recipe processes are stopped first)."""
    from transforms.recipe.work import release_processes

    release_processes()
    counted: dict[str, int] = {}
    for stream, found in duplicates_in_files(files, EarlierMatches(earlier) if earlier is not None else None):
        for _, reason, *_ in found:
            counted[reason] = counted.get(reason, 0) + 1
        yield stream, found
    for reason, n in sorted(counted.items()):
        beam.metrics.Metrics.counter(METRICS_NAMESPACE, f"duplicates_{reason}").inc(n)


class FindDuplicatesInFiles(beam.PTransform):
    """Key files (one ``KeyFile`` per stream, written by pass 1) → (stream index, [duplicates]), as FindDuplicates
    gives, in one step on one machine: only the files' names move, the keys are read there in compact arrays (and
    an ``earlier`` corpus's indexes, a column at a time)."""

    def __init__(self, earlier: EarlierCorpus | None = None) -> None:
        super().__init__()
        self.earlier = earlier

    def expand(self, key_files):
        return (
            key_files
            | "GatherKeyFiles" >> GatherAll()
            | "ResolveKeyFiles" >> beam.FlatMap(duplicates_from_key_files, self.earlier)
        )


class WithEarlierKeys(beam.PTransform):
    """(exact keys, band keys) of this run → the same with the earlier corpus's keys added, as the shuffle
    carries them ((key, (negative ref, "")), read by the workers a chunk of rows at a time)."""

    def __init__(self, earlier: EarlierCorpus) -> None:
        super().__init__()
        self.earlier = earlier

    def expand(self, keys: tuple[Any, Any]):
        exact, near = keys

        def tagged(chunk: tuple, corpus: EarlierCorpus) -> Iterator[Any]:
            kind = EXACT if chunk[1] is None else NEAR
            for item in corpus.items(chunk):
                yield beam.pvalue.TaggedOutput(kind, item)

        read = (
            exact.pipeline
            | "EarlierChunks" >> beam.Create(self.earlier.chunks())
            | "ReadEarlierKeys" >> beam.FlatMap(tagged, self.earlier).with_outputs(EXACT, NEAR)
        )
        return ((exact, read[EXACT]) | "WithEarlierExact" >> beam.Flatten(),
                (near, read[NEAR]) | "WithEarlierBands" >> beam.Flatten())


def unselected(item: tuple[int, Candidate], plan: Plan) -> Iterator[tuple[int, int]]:
    """(stream, ordinal) of a candidate the selection plan drops (duplicates are dropped anyway)."""
    stream, candidate = item
    if not plan.decide(candidate.scores, candidate.tie)[0]:
        yield stream, split_ref(candidate.ref)[1]


class SaveIndex(beam.PTransform):
    """(key files, duplicates, candidates) → the manifest's ``dedup_index`` section: the keys of the documents
    dedup and the selection ``plan`` (a singleton PCollection, or None) kept, written under ``temp_dir`` in one
    step (``transforms.dedup.index``)."""

    def __init__(self, temp_dir: str, exact: bool, minhash: MinHash | None, plan: Any = None) -> None:
        super().__init__()
        self.temp_dir, self.exact, self.minhash, self.plan = temp_dir, exact, minhash, plan

    def expand(self, inputs: tuple[Any, Any, Any]):
        key_files, duplicates, candidates = inputs
        plan = self.plan
        removed = [duplicates | "DuplicateOrdinals" >> beam.MapTuple(
            lambda stream, found: (stream, np.array([d[0] for d in found], np.int64)))]
        if plan is not None:
            removed.append(
                candidates
                | "Unselected" >> beam.FlatMap(unselected, AsSingleton(plan))
                | "UnselectedByStream" >> beam.GroupByKey()
                | "UnselectedOrdinals" >> beam.MapTuple(lambda stream, found: (stream, np.array(sorted(found),
                                                                                                 np.int64)))
            )
        removed_by_stream = removed | "Removed" >> beam.Flatten()
        temp_dir, exact, minhash = self.temp_dir, self.exact, self.minhash
        return (
            key_files
            | "AllKeyFiles" >> beam.combiners.ToList()  # one element even without streams
            | "WriteIndex" >> beam.Map(
                lambda files, gone: write_index(files, removed_ordinals(gone), temp_dir, exact, minhash),
                AsList(removed_by_stream))
        )


class LargestClusters(beam.PTransform):
    """(stream, [duplicates]) → one list of the ``top`` largest clusters with their duplicate counts."""

    def __init__(self, top: int = TOP) -> None:
        super().__init__()
        self.top = top

    def expand(self, duplicates):
        return (
            duplicates
            | "ClusterKeys" >> beam.FlatMap(cluster_keys)
            | "ClusterSizes" >> beam.CombinePerKey(sum)
            | "Largest" >> beam.combiners.Top.Of(self.top, key=cluster_rank, reverse=True)
            | "InOrder" >> beam.Map(lambda items: sorted(items, key=cluster_rank))
        )
