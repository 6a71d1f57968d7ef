"""The per-stream work as Beam DoFns: one fused step per pass (reading, the recipe, tokenizing, packing and
writing run inside it, which keeps a stream's batches in one worker's memory instead of between Beam steps).

    ProcessStream: stream ─► process_stream ─► StreamResult                      (one pass)
    StageStream:   stream ─► stage_stream ─► staged result + keys + candidates   (pass 1)
    FinishStaged:  staged result + duplicates (+ plan) ─► finish_staged ─► StreamResult   (pass 2)
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterator

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from schemas.manifest import Counts
from schemas.stream_result import StreamResult
from transforms.dedup.clusters import Sizes
from transforms.dedup.lines import FrequentLines
from transforms.read.sources import Stream
from transforms.select.selection import Plan
from transforms.stream.config import StreamConfig, StreamTools
from transforms.stream.passes import finish_staged, process_stream, stage_stream

METRICS_NAMESPACE = "tokenmill"


class _StreamDoFn(beam.DoFn):
    """Shared adapter: worker tools in setup, results emitted as their writers finish (all by bundle end)."""

    keys = False  # emits dedup keys (pass 1)
    runs_recipe = True  # reads inputs through the recipe (pass 2 reads staged documents instead)

    def __init__(self, cfg: StreamConfig) -> None:
        self.cfg = cfg
        self.tools: StreamTools | None = None
        self._finisher: ThreadPoolExecutor | None = None
        self._finishing: deque[Future] = deque()

    def setup(self) -> None:
        self.tools = StreamTools(self.cfg, keys=self.keys, recipe=self.runs_recipe)
        if self.cfg.tokenizer is not None and not (self.keys and (self.cfg.dedup or self.cfg.lines is not None)):
            self.tools.encoders  # start loading the tokenizer while the first stream is read
        self._finisher = ThreadPoolExecutor(1, thread_name_prefix="tokenmill-finish")

    def start_bundle(self) -> None:
        self._finishing = deque()

    def finish_bundle(self) -> Iterator[WindowedValue]:
        for result in self._finished(wait=True):
            yield WindowedValue(result, MIN_TIMESTAMP, [GlobalWindow()])

    def teardown(self) -> None:
        if self._finisher is not None:
            self._finisher.shutdown(wait=True, cancel_futures=True)
        if self.tools is not None:
            self.tools.close()

    def _submit(self, finish: Callable[[], StreamResult]) -> None:
        self._finishing.append(self._finisher.submit(finish))

    def _finished(self, wait: bool) -> Iterator[StreamResult]:
        """Results of streams whose writers are done (all of them if ``wait``), with their metrics counted."""
        while self._finishing and (wait or self._finishing[0].done()):
            result = self._finishing.popleft().result()
            count_metrics(result.counts)
            yield result


def count_metrics(counts: Counts) -> None:
    """A stream's counts as Beam metrics (summed across workers by the runner)."""
    for name in ("records", "docs_written", "tokens", "sequences", "pad_tokens", "bytes_read"):
        beam.metrics.Metrics.counter(METRICS_NAMESPACE, name).inc(getattr(counts, name))
    for reason, n in counts.docs_rejected.items():
        beam.metrics.Metrics.counter(METRICS_NAMESPACE, f"rejected_{reason}").inc(n)
    for stage, n in counts.docs_modified.items():
        beam.metrics.Metrics.counter(METRICS_NAMESPACE, f"modified_{stage}").inc(n)


class ProcessStream(_StreamDoFn):
    """One pass: a stream in, its StreamResult out (shards and/or documents written under temp names)."""

    def process(self, stream: Stream, fitted: dict | None = None) -> Iterator[StreamResult]:
        if fitted is not None:
            self.tools.runner.fit(fitted)
        yield from self._finished(wait=False)
        self._submit(process_stream(stream, self.cfg, self.tools))


class StageStream(_StreamDoFn):
    """Pass 1: a stream in; its documents' dedup keys out on the ``exact`` and ``near`` outputs (with ``key_files``:
    the stream's key file on ``keys``), their line keys on ``lines`` (``line_keys``: the line key file), their
    selection candidates on ``candidates``, and (stream index, staged result) on the main output; ``save_keys``:
    the key file too (a remote run saving its dedup index)."""

    keys = True

    def __init__(self, cfg: StreamConfig, key_files: bool = False, save_keys: bool = False) -> None:
        super().__init__(cfg)
        self.key_files = key_files
        self.save_keys = save_keys

    def process(self, stream: Stream, fitted: dict | None = None) -> Iterator[Any]:
        if fitted is not None:
            self.tools.runner.fit(fitted)
        for tag, value in stage_stream(stream, self.cfg, self.tools, self.key_files, self.save_keys):
            yield value if tag == "staged" else beam.pvalue.TaggedOutput(tag, value)

    def finish_bundle(self) -> Iterator[WindowedValue]:
        return iter(())


class FinishStaged(_StreamDoFn):
    """Pass 2: (stream index, {staged: [result], duplicates: [[(ordinal, reason, kept id)], ...]}) in (and as side
    inputs the selection plan, ``lines``: the frequent lines of line dedup, ``clusters``: the largest duplicate
    clusters, whose members it samples), the stream's result out."""

    runs_recipe = False

    def process(self, element: tuple[int, dict[str, list]], plan: Plan | None = None,
                lines: FrequentLines | None = None, clusters: Sizes | None = None) -> Iterator[StreamResult]:
        yield from self._finished(wait=False)
        _, joined = element
        (staged,) = joined["staged"]
        # (reason, kept id), and the earlier output for a duplicate of an earlier one (dedup.against)
        duplicates = {found[0]: found[1:] for founds in joined["duplicates"] for found in founds}
        self._submit(finish_staged(staged, duplicates, self.cfg, self.tools, plan, lines, clusters))
