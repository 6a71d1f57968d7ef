"""A recipe's per-document work on batches: the filter chain, then dedup keys of the kept documents.

``RecipeWork`` is the pure core (texts in, decisions and keys out). ``RecipeRunner`` feeds it batches in order,
either in this process or in a pool of processes: the filters are pure Python and hold the GIL, so a worker
uses more than one core only through processes.
"""

from __future__ import annotations

import json
import multiprocessing
import time
import weakref
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import replace
from typing import Any, Iterable, Iterator

from schemas.documents import META_SCORES
from schemas.manifest import BELOW_SELECTION_THRESHOLD, STAGE_SELECT
from transforms.filter.chain import Decision, make_engine, run_chain
from transforms.recipe.recipes import Recipe
from transforms.recipe.limits import StageClock
from transforms.recipe.spawn import children_skip_main

DocKeys = tuple[bytes | None, list[bytes]]  # (exact key or None, MinHash band keys)


class RecipeWork:
    """Filters (if the recipe has any) and, with ``keys``, the dedup keys of every kept document."""

    def __init__(self, recipe: Recipe, keys: bool, fitted: dict | None = None) -> None:
        self.engine = make_engine(recipe) if recipe.filters else None
        self.clock = StageClock(recipe.stage_timeout) if recipe.filters else None
        self.scoring = Scoring(recipe.selection, fitted) if recipe.scores else None
        self.exact = keys and recipe.dedup.exact
        self.hasher = None
        names = [s.name for s in recipe.filters]
        self.mark = names.index(recipe.dedup.after) + 1 if recipe.dedup.after is not None else None
        if keys and recipe.dedup.minhash is not None:
            from transforms.dedup.keys import MinHasher

            self.hasher = MinHasher(recipe.dedup.minhash)

    def __call__(self, texts: list[str], metas: list | None = None) -> tuple[list[Decision], list[DocKeys | None]]:
        """One Decision per text (``metas``: the documents' input fields, for stages that read them), and per text
        its keys (None for dropped texts or without dedup)."""
        if self.engine is not None:
            decisions = run_chain(self.engine.stages, texts, metas, self.clock, self.mark)
        else:
            decisions = [Decision(True, t) for t in texts]
        if self.scoring is not None:
            decisions = self.scoring(decisions)
        keys: list[DocKeys | None] = [None] * len(texts)
        if self.exact or self.hasher is not None:
            from transforms.dedup.keys import exact_key

            for i, d in enumerate(decisions):
                if d.keep:
                    text = d.text if d.marked is None else d.marked  # dedup.after: the text that stage passed on
                    keys[i] = (exact_key(text) if self.exact else None,
                               self.hasher.band_keys(text) if self.hasher is not None else [])
        if self.mark is not None:  # the marked texts served the keys: they do not travel further
            decisions = [replace(d, marked=None) if d.marked is not None else d for d in decisions]
        return decisions, keys


class Scoring:
    """The recipe's scorers on the documents the filters kept (``meta.scores``), and a ``min_score`` selection,
    which needs nothing but the document's own score."""

    def __init__(self, selection, fitted: dict | None = None) -> None:
        from transforms.select.scoring import MIN_SCORE, make_scorers

        self.scorers = make_scorers(selection, fitted)
        select = selection.select
        self.min_score = (select.score, select.value) if select is not None and select.criterion == MIN_SCORE \
            else None

    def __call__(self, decisions: list[Decision]) -> list[Decision]:
        """The decisions with the kept documents' scores in their meta (dropped when below ``min_score``)."""
        kept = [i for i, d in enumerate(decisions) if d.keep]
        if not kept:
            return decisions
        texts = [decisions[i].text for i in kept]
        columns = [(key, scorer.score(texts)) for key, scorer in self.scorers]
        out = list(decisions)
        for row, i in enumerate(kept):
            scores = {key: float(values[row]) for key, values in columns}
            d = decisions[i]
            meta = {**(d.meta or {}), META_SCORES: scores}
            if self.min_score is not None and scores[self.min_score[0]] < self.min_score[1]:
                out[i] = replace(d, keep=False, stage=STAGE_SELECT, reason=BELOW_SELECTION_THRESHOLD, meta=meta)
            else:
                out[i] = replace(d, meta=meta)
        return out


_WORK: RecipeWork | None = None


def _start_process(recipe: Recipe, keys: bool, fitted: dict | None) -> None:
    global _WORK
    _WORK = RecipeWork(recipe, keys, fitted)


def _work_in_process(texts: list[str], metas: list | None) -> tuple[list[Decision], list[DocKeys | None], float]:
    started = time.perf_counter()
    decisions, keys = _WORK(texts, metas)
    # unchanged texts are not sent back (the parent has them): only C4-style modifications travel
    return ([d if d.text is not t else replace(d, text=None) for d, t in zip(decisions, texts)], keys,
            time.perf_counter() - started)


_WARM: dict[tuple, "RecipeRunner"] = {}
_RUNNERS: "weakref.WeakSet[RecipeRunner]" = weakref.WeakSet()  # every runner of this process


def release_processes() -> None:
    """Stop the worker processes of every runner in this process (a runner used again starts them anew): the
    local dedup step calls it once every stream's first pass is done, so their memory is free for the rest."""
    for runner in list(_RUNNERS):
        runner.close()


def _warm_key(recipe: Recipe, processes: int, keys: bool) -> tuple:
    return json.dumps(recipe.to_dict(), sort_keys=True), processes, keys


def warm_up(recipe: Recipe, processes: int, keys: bool) -> None:
    """Start a runner's processes now, in this process, for a pipeline about to run here: they import and build
    the engine while Beam builds and starts the pipeline, and its first ``RecipeRunner.obtain`` takes them."""
    from transforms.select.scoring import needs_fitting

    key = _warm_key(recipe, processes, keys)
    if processes > 1 and key not in _WARM and not needs_fitting(recipe.selection):  # fitted scorers come later
        runner = _WARM[key] = RecipeRunner(recipe, processes, keys)
        runner.start()


def cool_down() -> None:
    """Stop the warmed-up runners nobody took (the pipeline failed early, or never needed them)."""
    while _WARM:
        _WARM.popitem()[1].close()


PART_CHARS = 512 * 1024  # a batch goes to the processes in parts of about this many characters: at the end of a
# stream, when no batch follows, the processes share its last parts instead of one process working on a whole batch


def _parts(texts: list[str], chars: int) -> list[tuple[int, int]]:
    """[start, stop) ranges cutting ``texts`` into runs of about ``chars`` characters (at least one text each)."""
    ranges: list[tuple[int, int]] = []
    start = size = 0
    for i, text in enumerate(texts):
        size += len(text)
        if size >= chars:
            ranges.append((start, i + 1))
            start, size = i + 1, 0
    if start < len(texts):
        ranges.append((start, len(texts)))
    return ranges


def _ready() -> None:
    """A task that only makes a worker process start."""


class RecipeRunner:
    """Runs RecipeWork over batches in order, in ``processes`` worker processes (1: in this process).

    ``seconds`` grows by each batch's work time (summed over its processes) as the batch is yielded by ``map``.
    """

    @classmethod
    def obtain(cls, recipe: Recipe, processes: int = 1, keys: bool = False) -> "RecipeRunner":
        """A started runner: the one ``warm_up`` started in this process for the same work, else a new one."""
        runner = _WARM.pop(_warm_key(recipe, processes, keys), None)
        if runner is None:
            runner = cls(recipe, processes, keys)
            runner.start()
        return runner

    def __init__(self, recipe: Recipe, processes: int = 1, keys: bool = False) -> None:
        _RUNNERS.add(self)
        self.recipe = recipe
        self.processes = processes
        self.keys = keys
        self.fitted: dict | None = None  # the state of scorers fitted on the corpus (dsir), once known
        self.seconds = 0.0  # time spent in RecipeWork so far (summed over the processes)
        self._work: RecipeWork | None = None
        self._pool: ProcessPoolExecutor | None = None

    def fit(self, fitted: dict | None) -> None:
        """Use these fitted scorers from now on (processes built without them are replaced)."""
        if fitted is None or fitted == self.fitted:
            return
        self.close()
        self._work = None
        self.fitted = fitted

    def map(self, batches: Iterable[Any]) -> Iterator[tuple[Any, list[Decision], list[DocKeys | None]]]:
        """(batch, decisions, keys) for each batch (anything with ``texts`` and ``metas``), in the order given."""
        if self.processes <= 1:
            if self._work is None:
                self._work = RecipeWork(self.recipe, self.keys, self.fitted)
            for batch in batches:
                started = time.perf_counter()
                decisions, keys = self._work(batch.texts, batch.metas or None)
                self.seconds += time.perf_counter() - started
                yield batch, decisions, keys
            return
        pool = self._start_pool()
        pending: deque[tuple[Any, list[Future]]] = deque()
        depth = 2 * self.processes
        for batch in batches:
            work = []
            with children_skip_main():  # a submit may start a worker process
                for start, stop in _parts(batch.texts, PART_CHARS):
                    metas = batch.metas[start:stop] if batch.metas else None
                    work.append(pool.submit(_work_in_process, batch.texts[start:stop], metas))
            pending.append((batch, work))
            while len(pending) > depth or (pending and not pending[0][1]):
                yield self._result(*pending.popleft())
        while pending:
            yield self._result(*pending.popleft())

    def _result(self, batch: Any, parts: list[Future]) -> tuple[Any, list[Decision], list[DocKeys | None]]:
        decisions: list[Decision] = []
        keys: list[DocKeys | None] = []
        for part in parts:
            part_decisions, part_keys, seconds = part.result()
            decisions += part_decisions
            keys += part_keys
            self.seconds += seconds
        return batch, [d if d.text is not None else replace(d, text=t) for d, t in zip(decisions, batch.texts)], keys

    def start(self) -> None:
        """Start the worker processes now (they import and build the engine while the caller gets ready); not
        before the fitted scorers are known, when the recipe has some."""
        from transforms.select.scoring import needs_fitting

        if self.processes > 1 and (self.fitted is not None or not needs_fitting(self.recipe.selection)):
            pool = self._start_pool()
            with children_skip_main():
                for _ in range(self.processes):  # one task per process: each submit may start one
                    pool.submit(_ready)

    def _start_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn: a fresh interpreter, never a fork of a process running Beam's threads
            self._pool = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_start_process,
                                             initargs=(self.recipe, self.keys, self.fitted))
        return self._pool

    def close(self) -> None:
        """Stop the worker processes (if any)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
