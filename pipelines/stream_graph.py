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

import os
import sys
from dataclasses import replace
from typing import Any

import apache_beam as beam
from apache_beam.pvalue import AsSingleton

from pipelines import tokenmill_version
from pipelines.beam_tuning import shorten_state_sampling
from pipelines.runner import (
    beam_options,
    in_process,
    is_local,
    local_runner,
    runner_name,
    template_location,
    was_interrupted,
)
from pipelines.stream_job import ConfigError, JobConfig
from schemas import manifest as m
from schemas.shards import read_manifest
from transforms.dedup.line_steps import CountLines, CountLinesInFiles
from transforms.dedup.earlier import open_earlier
from transforms.dedup.steps import FindDuplicates, FindDuplicatesInFiles, LargestClusters, SaveIndex
from transforms.gather import GatherAll
from transforms.output.commit import commit, stream_plan
from transforms.output.guard import remove_temp
from transforms.pack.shuffle_steps import ShuffleRows
from transforms.read.sources import InputFile, escaped_names, group_into_streams, plan_splits, plan_streams
from transforms.recipe.files import place_recipe_files
from transforms.recipe.recipes import Recipe
from transforms.recipe.work import cool_down, warm_up
from transforms.select.scoring import needs_fitting
from transforms.select.steps import FitScorers, SelectionPlan, selection_report
from transforms.stream.config import StreamConfig
from transforms.stream.dofns import FinishStaged, ProcessStream, StageStream

# Planning reads Parquet footers and scans big plain JSONL files for line starts: spread it over the workers
# only when there is enough of it to be worth a shuffle (the plan is the same either way).
PLAN_IN_PARALLEL_BYTES = 1 << 30
PLAN_IN_PARALLEL_FILES = 64
AUTO_PROCESSES_MIN_BYTES = 16 << 20


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
    (workers on other machines) shuffles dedup keys and joins MinHash clusters over the workers and sends the row
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


def selection_unit(recipe: Recipe, tokenizes: bool) -> str:
    """What a selection budget counts, checked against the job: tokens need a tokenizer (``tokenizes``)."""
    selection = recipe.selection
    wants_tokens = (selection.select is not None and selection.select.criterion == "tokens") or (
        selection.ensemble is not None and selection.ensemble.weight == "tokens")
    if wants_tokens and not tokenizes:
        raise ConfigError("the recipe counts tokens (select.tokens or ensemble.weight: tokens) but this job has no "
                          "tokenizer: use select.bytes / ensemble.weight: bytes, or tokenmill prepare")
    if selection.select is not None and selection.select.criterion == "bytes":
        return "bytes"
    return "tokens" if tokenizes else "bytes"


def recipe_processes(requested: int | None, recipe: Recipe | None, files: list[InputFile], beam_args: list[str],
                     workers: int) -> int:
    """Processes per worker for the recipe's filters: as asked, else the local cores shared among the workers
    when the filters have enough input to repay starting them (one otherwise, and on remote runners, whose
    workers already run a process per core)."""
    if requested is not None:
        return requested
    if recipe is None or not (recipe.filters or recipe.scores or recipe.dedup.minhash) or not is_local(beam_args):
        return 1
    if sum(f.size for f in files) < AUTO_PROCESSES_MIN_BYTES:
        return 1
    return max(1, (os.cpu_count() or 1) // workers)


def meta_fields(requested: list[str], recipe: Recipe | None) -> tuple[str, ...]:
    """Input fields to keep in meta: the user's, and those the recipe's stages read (url_filter's URL)."""
    fields = list(dict.fromkeys(requested))
    for stage in recipe.filters if recipe is not None else ():
        if stage.name == "url_filter" and stage.params["url_field"] not in fields:
            fields.append(stage.params["url_field"])
    return tuple(fields)


def stream_config(cfg: JobConfig, files: list[InputFile], recipe: Recipe | None, beam_args: list[str],
                  progress_dir: str | None, **tokenizing: Any) -> StreamConfig:
    """What every worker needs of the job; ``tokenizing``: prepare's tokenizer, seq_len, shard_rows, packing and
    emit_documents (filter: no tokenizer, every kept document written)."""
    stream_cfg = StreamConfig(
        output=cfg.output, text_field=cfg.text_field, id_field=cfg.id_field, strict=cfg.strict,
        progress_dir=progress_dir, recipe=recipe, emit_modified=cfg.emit_modified,
        recipe_processes=recipe_processes(cfg.recipe_processes, recipe, files, beam_args, cfg.workers),
        meta_fields=meta_fields(cfg.meta_fields, recipe), **tokenizing,
    )
    if recipe is None:
        return stream_cfg
    # what stages build once per job (decontam's n-gram index) goes to the temp folder, where every worker reads it
    return replace(stream_cfg, recipe=place_recipe_files(recipe, stream_cfg.temp_dir))


def manifest_header(fmt: str, command: str, cfg: JobConfig, fp: str, files: list[InputFile], beam_args: list[str],
                    stream_cfg: StreamConfig) -> dict[str, Any]:
    """The manifest keys every job records: format, version, job, fingerprint, inputs, runner, recipe."""
    header = {
        m.K_FORMAT: fmt,
        m.K_VERSION: tokenmill_version(),
        # an --input named by a non-UTF-8 path is recorded escaped, as its files are
        m.K_JOB: escaped_names({"command": command, "argv": cfg.argv or sys.argv, "config": cfg.manifest_config()}),
        m.K_FINGERPRINT: fp,
        m.K_INPUTS: [f.to_dict() for f in files],
        m.K_RUNNER: {"runner": runner_name(beam_args) or "FnApiRunner", "workers": cfg.workers,
                     "recipe_processes": stream_cfg.recipe_processes},
    }
    if stream_cfg.recipe is not None:
        header[m.K_RECIPE] = stream_cfg.recipe.to_dict()
    return header


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
              remote=not is_local(beam_args), shuffle_seed=shuffle_seed)
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
