"""The Beam graph of ``prepare`` and ``filter``: read → recipe (filters) → [dedup] → [tokenize → pack] → commit.

    small input:  planned streams ──────────────────────────────────────┐
    big input:    files ─► PlanSplits ─► GroupIntoStreams ─► Distribute ─┴► streams

    one pass:  streams ─► ProcessStream (read, filter, score, tokenize, pack) ──────────────────► Collect ─► Commit
    two passes (dedup, or selection over the whole corpus):
               streams ─► StageStream (read, filter, score, keys) ─┬─ staged ─────────────────┐
                                                                   ├─ keys ─► FindDuplicates ─┴► Join ─► FinishStaged
                                                                   └─ candidates (minus duplicates) ─► SelectionPlan
                          SelectionPlan (cut-points, budget threshold) is a side input of FinishStaged and Commit
               dedup.lines: line keys (minus duplicates) ─► CountLines ─► frequent lines, a side input of FinishStaged
               dedup.against: FindDuplicates also matches the earlier outputs' saved keys
               dedup.save_index: keys (minus duplicates and unselected) ─► SaveIndex, a side input of Commit
    every pass ─► rejected/ (reason per record); Commit renames files into place and writes the manifest last;
    report.html (drawn from the manifest) follows it

``filter`` runs the same graph without a tokenizer: the kept documents are its result.
"""

from __future__ import annotations

from typing import Any

import apache_beam as beam
from apache_beam.pvalue import AsSingleton

from pipelines.beam_tuning import shorten_state_sampling
from pipelines.runner import (
    beam_options,
    in_process,
    is_local,
    local_runner,
    shares_files,
    template_location,
    was_interrupted,
)
from pipelines.stream_job import JobConfig
from pipelines.stream_setup import selection_unit
from schemas import manifest as m
from schemas.shards import read_manifest
from transforms.dedup.line_steps import CountLines, CountLinesInFiles
from transforms.dedup.earlier import open_earlier
from transforms.dedup.steps import FindDuplicates, FindDuplicatesInFiles, LargestClusters, SaveIndex
from transforms.gather import GatherAll
from transforms.output.commit import commit, stream_plan
from transforms.output.guard import remove_temp
from transforms.pack.shuffle_steps import ShuffleRows
from transforms.read.sources import InputFile, group_into_streams, plan_splits, plan_streams
from transforms.recipe.work import cool_down, warm_up
from transforms.select.scoring import needs_fitting
from transforms.select.steps import FitScorers, SelectionPlan, selection_report
from transforms.stream.config import StreamConfig
from transforms.stream.dofns import FinishStaged, ProcessStream, StageStream

# Planning reads Parquet footers and scans big plain JSONL files for line starts: spread it over the workers
# only when there is enough of it to be worth a shuffle (the plan is the same either way).
PLAN_IN_PARALLEL_BYTES = 1 << 30
PLAN_IN_PARALLEL_FILES = 64


def _distribute() -> beam.PTransform:
    """Streams spread over the workers: one GroupByKey on the (distinct) stream index (lighter than Reshuffle)."""

    @beam.ptransform_fn
    def distribute(pcoll):
        return (
            pcoll
            | "Key" >> beam.Map(lambda stream: (stream.index, stream))
            | "Group" >> beam.GroupByKey()
            | "Values" >> beam.FlatMapTuple(lambda _, streams: streams)
        )

    return distribute()


def plans_in_parallel(files: list[InputFile]) -> bool:
    """Whether planning is big enough to spread over the workers (else the launcher plans, without a shuffle)."""
    return sum(f.size for f in files) > PLAN_IN_PARALLEL_BYTES or len(files) > PLAN_IN_PARALLEL_FILES


def build(p: beam.Pipeline, files: list[InputFile], stream_cfg: StreamConfig, stream_bytes: int,
          manifest_base: dict[str, Any], started: float, one_worker: bool = False, remote: bool = False,
          shuffle_seed: int | None = None) -> beam.PCollection:
    """The graph; returns the PCollection holding the committed manifest.

    Small inputs are planned here and their streams created directly; big ones are planned by the workers.
    ``one_worker`` (an in-process run) skips spreading the streams, which would only cost a shuffle; ``remote``
    (workers on other machines, ``runner.shares_files`` false) shuffles dedup keys and joins MinHash clusters over the workers and sends the row
    shuffle's parts through the runner's shuffle, instead of key files and part files (on one machine a shuffle
    would only cost memory). ``shuffle_seed`` (prepare) shuffles the rows across all shards.
    """
    if plans_in_parallel(files):
        streams = (
            p
            | "ListInputs" >> beam.Create(list(enumerate(files)))
            | "PlanSplits" >> beam.FlatMapTuple(plan_splits, stream_bytes=stream_bytes)
            | "CollectSplits" >> GatherAll()
            | "GroupIntoStreams" >> beam.FlatMap(group_into_streams, stream_bytes=stream_bytes)
            | "Distribute" >> _distribute()
        )
    else:
        planned = plan_streams(files, stream_bytes)
        streams = p | "PlannedStreams" >> beam.Create(planned, reshuffle=not one_worker)
    recipe = stream_cfg.recipe
    fitted: list[Any] = []
    if recipe is not None and needs_fitting(recipe.selection):  # dsir learns the raw and target distributions
        fitted = [AsSingleton(p | "FitScorers" >> FitScorers(recipe.selection, files, stream_cfg.text_field))]
    extra: dict[str, Any] = {}  # the commit's side inputs
    index = None  # dedup.save_index: the manifest's dedup_index section, its files written under temp names
    if not stream_cfg.staged:
        results = streams | "ProcessStream" >> beam.ParDo(ProcessStream(stream_cfg), *fitted)
        plan = None
    else:
        # on one machine each stream's dedup keys go to a compact key file (a shuffle of them would stay in memory)
        # (a remote run saving its dedup index writes them too, as the index is made from them)
        saves_index = stream_cfg.dedup and stream_cfg.recipe.dedup.save_index
        earlier = open_earlier(stream_cfg.recipe) if stream_cfg.dedup else None  # dedup.against
        staged = streams | "StageStream" >> beam.ParDo(StageStream(stream_cfg, key_files=not remote,
                                                                   save_keys=remote and saves_index),
                                                       *fitted).with_outputs("exact", "near", "keys", "candidates",
                                                                             "lines", "line_keys", main="staged")
        if stream_cfg.dedup and remote:
            duplicates = (staged.exact, staged.near) | "FindDuplicates" >> FindDuplicates(
                near=stream_cfg.recipe.dedup.minhash is not None, spread=remote, earlier=earlier)
        elif stream_cfg.dedup:
            duplicates = staged.keys | "FindDuplicates" >> FindDuplicatesInFiles(earlier)
        else:
            duplicates = p | "NoDuplicates" >> beam.Create([])
        plan = None
        side: list[Any] = []
        if stream_cfg.selects:
            unit = selection_unit(stream_cfg.recipe, stream_cfg.tokenizer is not None)
            plan = (staged.candidates, duplicates) | "SelectionPlan" >> SelectionPlan(stream_cfg.recipe.selection,
                                                                                      unit)
            side = [AsSingleton(plan)]
        if saves_index:
            dedup = stream_cfg.recipe.dedup
            index = (staged.keys, duplicates, staged.candidates) | "SaveIndex" >> SaveIndex(
                stream_cfg.temp_dir, dedup.exact, dedup.minhash, plan)
        named: dict[str, Any] = {}  # FinishStaged's named side inputs
        if stream_cfg.dedup:  # the largest clusters: pass 2 samples their members, the commit lists them
            clusters = AsSingleton(duplicates | "LargestClusters" >> LargestClusters(), default_value=[])
            named["clusters"] = extra["clusters"] = clusters
        if stream_cfg.lines is not None:  # counted on the documents that are not document duplicates
            count = CountLines(stream_cfg.lines) if remote else CountLinesInFiles(stream_cfg.lines,
                                                                                  f"{stream_cfg.temp_dir}/lines")
            keys = staged.lines if remote else staged.line_keys
            named["lines"] = AsSingleton((keys, duplicates) | "CountLines" >> count, default_value=None)
        results = (
            {"staged": staged.staged, "duplicates": duplicates}
            | "JoinDuplicates" >> beam.CoGroupByKey()
            | "FinishStaged" >> beam.ParDo(FinishStaged(stream_cfg), *side, **named)
        )
    if plan:
        extra["selection"] = AsSingleton(plan | "SelectionReport" >> beam.Map(selection_report))
    # the commit checks each planned stream reported exactly once: a runner that loses or repeats work fails
    extra["planned"] = AsSingleton(streams | "PlanOfStreams" >> beam.Map(stream_plan) | "CollectPlan" >> GatherAll())
    if index is not None:
        extra["index"] = AsSingleton(index)
    gathered = results | "CollectResults" >> GatherAll()
    if shuffle_seed is not None:
        extra["shuffled"] = AsSingleton(gathered | "Shuffle" >> ShuffleRows(shuffle_seed, stream_cfg.shard_rows,
                                                                            f"{stream_cfg.temp_dir}/shuffle", remote))
    return gathered | "Commit" >> beam.Map(commit, stream_cfg.output, manifest_base, started, **extra)


def execute(cfg: JobConfig, files: list[InputFile], stream_cfg: StreamConfig, manifest_base: dict[str, Any],
            fingerprint_: str, beam_args: list[str], started: float,
            shuffle_seed: int | None = None) -> dict[str, Any] | None:
    """Run the graph of a prepare or filter job and return the committed manifest (None for a template launch,
    whose job runs later: its workers write the manifest and report.html)."""
    options = beam_options(beam_args, cfg.workers)
    runner = local_runner(beam_args, cfg.workers)
    if runner is not None or is_local(beam_args):
        shorten_state_sampling()  # bundles run in this process (or in pipelines.worker, which does the same)
    one_worker = in_process(beam_args, cfg.workers)
    try:
        if one_worker and stream_cfg.recipe is not None:
            # the first pass's work: StageStream's (keys) whenever the job is staged, so that it takes these processes
            warm_up(stream_cfg.recipe, stream_cfg.recipe_processes, keys=stream_cfg.staged)
        p = beam.Pipeline(runner=runner, options=options)
        build(p, files, stream_cfg, cfg.stream_bytes, manifest_base, started, one_worker=one_worker,
              remote=not shares_files(beam_args, sum(f.size for f in files)), shuffle_seed=shuffle_seed)
        result = p.run()
        if template_location(options):  # a (flex) template launch: the job runs later, the workers commit it
            return None
        result.wait_until_finish()
    except BaseException as exc:
        if not was_interrupted(exc):
            raise
        if is_local(beam_args):  # local workers stop with this process: their temp files go too
            remove_temp(cfg.output)
        raise KeyboardInterrupt from None
    finally:
        cool_down()
    try:
        manifest = read_manifest(cfg.output)
    except FileNotFoundError:
        manifest = None
    if manifest is None or manifest.get(m.K_FINGERPRINT) != fingerprint_:
        raise RuntimeError(f"the pipeline finished but wrote no manifest into {cfg.output!r}")
    return manifest
