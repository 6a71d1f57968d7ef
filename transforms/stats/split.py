"""The work of ``tokenmill stats`` on one split, without Beam: ``SplitMeasurer`` (one split → its ``Partial`` and its
text hashes by bucket) and ``StatsPool``, the local processes that measure splits beside an in-process Beam run.

With ``--workers N`` on the local runner, the N processes are started (spawned: fresh interpreters that import only
the measures, never Beam) before Beam is imported, so they are ready when the first split arrives; Beam then runs in
the command's own process and hands them the splits. Elsewhere each Beam worker measures its splits itself.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import numpy as np

from schemas import stats as s
from transforms.read.roots import relative_source
from transforms.recipe.spawn import children_skip_main

HASH_BUCKETS = 256  # text hashes are shuffled by their top 8 bits
LANG_FIELDS = ("lang", "language")
SOURCE_FIELD = "source"

Measured = tuple[Any, list[tuple[int, np.ndarray]]]  # (Partial, [(bucket, text hashes of that bucket)])


@dataclass(frozen=True)
class StatsSpec:
    """What each worker needs to know."""

    text_field: str = "text"
    id_field: str = "id"
    by: tuple[str, ...] = ()
    tokenizer: Any = None  # a TokenizerSpec, or None
    top_k: int = 1000
    root: str = ""  # common directory of the inputs (a document's source file is named relative to it)
    progress_dir: str | None = None


def _value(v: Any) -> str:
    return s.MISSING_VALUE if v is None else (v if isinstance(v, str) else str(v))


class SplitMeasurer:
    """One split → (its Partial, its text hashes per bucket); built once per process."""

    def __init__(self, spec: StatsSpec) -> None:
        from transforms.report.progress import ProgressWriter

        self.spec = spec
        self.encoders: Any = None
        self.langid: Any = None
        if spec.tokenizer is not None:
            from transforms.tokenize.encoders import Encoders

            self.encoders = Encoders(spec.tokenizer)
        if any(b in LANG_FIELDS for b in spec.by):
            from transforms.filter.langid import LanguageIdentifier

            self.langid = LanguageIdentifier()
        self.progress = ProgressWriter(spec.progress_dir)

    def __call__(self, split: Any) -> Measured:
        from transforms.read.readers import read_split
        from transforms.stats.measures import Partial, measure

        spec = self.spec
        part = Partial(spec.tokenizer is not None, spec.top_k)
        encoder = None
        hashes: list[np.ndarray] = []
        for batch in read_split(split, spec.text_field, spec.id_field, meta_fields=spec.by):
            part.counts[s.RECORDS] += batch.records
            for rejection in batch.rejections:
                part.reject(rejection.reason)
            texts = batch.texts
            self.progress.add(records=batch.records, bytes=batch.bytes_read, docs=len(texts))
            if not texts:
                continue
            m = measure(texts)
            tokens = None
            if self.encoders is not None:
                if encoder is None:
                    encoder, _ = self.encoders.choose(texts, split.url)
                _, tokens = encoder.encode_batch(texts)
                self.progress.add(tokens=int(tokens.sum()))
            part.add(m, tokens, m.hashes, self._groups(batch, texts))
            hashes.append(m.hashes)
        self.progress.add(force=True, streams=1)
        return part, buckets_of(hashes)

    def _groups(self, batch: Any, texts: list[str]) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for by in self.spec.by:
            values = [_value(meta.get(by)) if isinstance(meta, dict) else s.MISSING_VALUE
                      for meta in batch.metas] if batch.metas else [s.MISSING_VALUE] * len(texts)
            if by in LANG_FIELDS and all(v == s.MISSING_VALUE for v in values):
                values = [lang for lang, _ in self.langid.identify_batch(texts)]
            elif by == SOURCE_FIELD and all(v == s.MISSING_VALUE for v in values):
                values = [relative_source(batch.source, self.spec.root)] * len(texts)
            groups[by] = values
        return groups


def buckets_of(hashes: list[np.ndarray]) -> list[tuple[int, np.ndarray]]:
    """The text hashes cut by bucket (their top 8 bits), buckets in order, hashes in order within each."""
    if not hashes:
        return []
    flat = np.concatenate(hashes)
    bucket = (flat >> np.uint64(56)).astype(np.int64)
    order = np.argsort(bucket, kind="stable")
    flat, bucket = flat[order], bucket[order]
    cuts = np.flatnonzero(np.diff(bucket)) + 1
    return [(int(chunk[0] >> np.uint64(56)), chunk) for chunk in np.split(flat, cuts)]


_MEASURER: SplitMeasurer | None = None  # in a pool process


def _start(spec: StatsSpec) -> None:
    global _MEASURER
    _MEASURER = SplitMeasurer(spec)


def _measure(split: Any) -> Measured:
    assert _MEASURER is not None
    return _MEASURER(split)


def _ready() -> None:
    """A task that only makes a pool process start."""


class StatsPool:
    """``processes`` local processes measuring splits; ``map`` gives the results in the order of the splits."""

    def __init__(self, spec: StatsSpec, processes: int) -> None:
        self.spec, self.processes = spec, processes
        # spawn: fresh interpreters, never a fork of a process running Beam's threads
        self.pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_start, initargs=(spec,))
        with children_skip_main():
            for _ in range(processes):  # one task per process: each submit may start one
                self.pool.submit(_ready)

    def map(self, splits: Iterable[Any]) -> Iterator[Measured]:
        """(Partial, hash buckets) of each split, in order; all splits are queued at once."""
        with children_skip_main():
            futures: list[Future] = [self.pool.submit(_measure, split) for split in splits]
        for future in futures:
            yield future.result()

    def close(self) -> None:
        """Stop the processes."""
        self.pool.shutdown(wait=True, cancel_futures=True)


_POOL: list[StatsPool] = []  # the pool this process started for its stats run (one run at a time)


def start_pool(spec: StatsSpec, processes: int) -> StatsPool:
    """Start the processes that measure the splits of this process's Beam run (found again by ``pool_for``)."""
    stop_pool()
    _POOL.append(StatsPool(spec, processes))
    return _POOL[0]


def pool_for(spec: StatsSpec) -> StatsPool | None:
    """The pool started in this process for this spec, if any."""
    return _POOL[0] if _POOL and _POOL[0].spec == spec else None


def stop_pool() -> None:
    """Stop the pool, if one was started."""
    while _POOL:
        _POOL.pop().close()
