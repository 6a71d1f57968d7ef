"""A deterministic, bounded sample of a corpus for tokenizer training, optionally balanced by source or language.

Every document gets a 64-bit hash from the seed and its place (source file, line or row, id). Pass 1 emits each
document's (group, hash, bytes) (group: everything, its source file, or its language); ``shares`` splits the byte
budget among the groups (equal shares, what a small group cannot use going to the others), and a combinable
histogram search (``transforms.select.quantiles``) finds per group the hash threshold below which the documents, in hash
order, fill the group's share without going over it. Pass 2 keeps the documents under their group's threshold. Only
(group, hash, bytes) triples and the sampled texts travel, so the corpus can be of any size; the sample never
exceeds the budget and is the same on any runner for the same inputs and seed.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

import apache_beam as beam
import fsspec
from apache_beam.pvalue import AsSingleton

from transforms.hashing import stable_hash64
from transforms.select.quantiles import Search, Weight
from transforms.read.readers import read_split
from transforms.select.steps import RadixSearch
from transforms.read.roots import common_root, relative_source
from transforms.read.sources import InputFile, plan_splits

ALL = "all"


def doc_hash(seed: int, source: str, line: int | None, row: int | None, doc_id: str) -> int:
    """A document's 64-bit sampling hash: the same for the same seed and place, on any machine."""
    return stable_hash64(seed, source, line, row, doc_id)


def shares(group_bytes: dict[str, int], budget: int) -> dict[str, int]:
    """Per group, the bytes of the sample it gets: the budget shared equally among the groups, a group smaller than
    its share kept whole and what it leaves shared among the others."""
    out: dict[str, int] = {}
    left, groups = budget, sorted(group_bytes.items(), key=lambda kv: (kv[1], kv[0]))
    for i, (group, size) in enumerate(groups):
        take = min(size, left // (len(groups) - i))
        out[group] = take
        left -= take
    return out


def threshold_searches(group_bytes: dict[str, int], budget: int) -> dict[str, Search]:
    """Per group not kept whole, the search for the first hash past its share (keys below it fill the share)."""
    return {g: Search(64, (Weight(share + 1),)) for g, share in shares(group_bytes, budget).items()
            if share < group_bytes[g]}


def thresholds(group_bytes: dict[str, int], searches: dict[str, Search]) -> dict[str, int | None]:
    """Per group, keep documents whose hash is below this (None: keep the whole group)."""
    return {g: (searches[g].keys()[0] if g in searches else None) for g in group_bytes}


class _Grouper:
    """The group of a document under a balance mode (a language identifier built on first use)."""

    def __init__(self, balance: str) -> None:
        self.balance = balance
        self._langid = None

    def __call__(self, source: str, text: str) -> str:
        if self.balance == "source":
            return source
        if self.balance == "language":
            if self._langid is None:
                from transforms.filter.langid import LanguageIdentifier

                self._langid = LanguageIdentifier()
            return self._langid.identify(text)[0]
        return ALL


def split_pairs(split: Any, text_field: str, balance: str, seed: int, root: str) -> Iterator[tuple[str, int, int]]:
    """Pass 1: (group, hash, bytes) of each readable document of one split."""
    grouper = _Grouper(balance)
    for batch in read_split(split, text_field):
        where = relative_source(batch.source, root)
        for i, text in enumerate(batch.texts):
            yield (grouper(where, text), doc_hash(seed, where, batch.lines[i], batch.rows[i], batch.ids[i]),
                   len(text.encode("utf-8", "surrogatepass")))


def sample_split(split: Any, text_field: str, balance: str, seed: int, limits: dict[str, int | None],
                 temp_prefix: str, root: str) -> Iterator[dict[str, Any]]:
    """Pass 2: the split's sampled texts written to a JSONL part; yields {order, url, documents, bytes, groups}."""
    whole = any(v is None for v in limits.values())
    top = max((v for v in limits.values() if v is not None), default=0)
    grouper = _Grouper(balance)
    kept, size, groups = [], 0, {}
    for batch in read_split(split, text_field):
        where = relative_source(batch.source, root)
        for i, text in enumerate(batch.texts):
            h = doc_hash(seed, where, batch.lines[i], batch.rows[i], batch.ids[i])
            if not whole and h >= top:
                continue  # above every group's threshold: no need to know its group
            group = grouper(where, text)
            limit = limits.get(group, 0)
            if limit is None or h < limit:
                kept.append(text)
                n = len(text.encode("utf-8", "surrogatepass"))
                size += n
                groups[group] = groups.get(group, 0) + n
    if not kept:
        return
    url = f"{temp_prefix}-{split.file_index:06d}-{split.split_index:06d}.jsonl"
    with fsspec.open(url, "w", encoding="utf-8") as fh:
        for text in kept:
            fh.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
    yield {"order": (split.file_index, split.split_index), "url": url, "documents": len(kept), "bytes": size,
           "groups": groups}


class SampleCorpus(beam.PTransform):
    """files → one element: {"groups": bytes per group, "shares": ..., "parts": [sample part items in order]}."""

    def __init__(self, files: list[InputFile], text_field: str, budget: int, balance: str, seed: int,
                 temp_prefix: str) -> None:
        super().__init__()
        self.files, self.text_field, self.budget = files, text_field, budget
        self.balance, self.seed, self.temp_prefix = balance, seed, temp_prefix

    def expand(self, p):
        splits = (
            p
            | "Files" >> beam.Create(list(enumerate(self.files)))
            | "Splits" >> beam.FlatMapTuple(plan_splits)
            | "Spread" >> beam.Reshuffle()
        )
        root = common_root([f.url for f in self.files])
        pairs = splits | "Pairs" >> beam.FlatMap(split_pairs, self.text_field, self.balance, self.seed, root)
        groups = (
            pairs
            | "GroupSizes" >> beam.Map(lambda t: (t[0], t[2]))
            | "SumGroups" >> beam.CombinePerKey(sum)
            | "GroupDict" >> beam.combiners.ToDict()
        )
        searches = groups | "Searches" >> beam.Map(threshold_searches, self.budget)
        found = (pairs, searches) | "Thresholds" >> RadixSearch(4)
        limits = found | "Limits" >> beam.Map(lambda s, g: thresholds(g, s), AsSingleton(groups))
        parts = (
            splits
            | "Sample" >> beam.FlatMap(sample_split, self.text_field, self.balance, self.seed, AsSingleton(limits),
                                       self.temp_prefix, root)
            | "AllParts" >> beam.combiners.ToList()
        )
        return parts | "Summary" >> beam.Map(
            lambda ps, g: {"groups": g, "shares": shares(g, self.budget), "parts": sorted(ps, key=lambda x: x["order"])},
            AsSingleton(groups))
