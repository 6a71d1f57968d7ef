"""``tokenmill prepare``: read → recipe (filters) → [dedup] → tokenize → pack → write shards → commit manifest.

    small input:  planned streams ──────────────────────────────────────┐
    big input:    files ─► PlanSplits ─► GroupIntoStreams ─► Distribute ─┴► streams

    one pass:  streams ─► ProcessStream (read, filter, score, tokenize, pack) ──────────────────► Collect ─► Commit
    two passes (dedup, or selection over the whole corpus):
               streams ─► StageStream (read, filter, score, keys) ─┬─ staged ─────────────────┐
                                                                   ├─ keys ─► FindDuplicates ─┴► Join ─► FinishStaged
                                                                   └─ candidates (minus duplicates) ─► SelectionPlan
                          SelectionPlan (cut-points, budget threshold) is a side input of FinishStaged and Commit
    every pass ─► rejected/ (reason per record); Commit renames files into place and writes the manifest last;
    report.html (drawn from the manifest) follows it
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.pvalue import AsSingleton
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.transforms.environments import SubprocessSDKEnvironment

from pipelines import tokenmill_version
from pipelines.beam_tuning import shorten_state_sampling
from schemas import manifest as m
from transforms.output.commit import commit, stream_plan
from transforms.output.guard import claim_output, read_manifest, remove_temp
from transforms.dedup.steps import FindDuplicates, FindDuplicatesInFiles
from transforms.select.scoring import needs_fitting
from transforms.select.steps import FitScorers, SelectionPlan, selection_report
from transforms.pack.shuffle_steps import ShuffleRows
from transforms.gather import GatherAll
from transforms.stream.stream import FinishStaged, ProcessStream, StageStream, StreamConfig
from transforms.pack.packers import PackingSpec
from transforms.recipe.work import cool_down, warm_up
from transforms.recipe.files import check_recipe_files
from transforms.recipe.recipes import Recipe, load_recipe
from transforms.read.sources import (
    DEFAULT_STREAM_BYTES,
    InputFile,
    escaped_names,
    expand_inputs,
    group_into_streams,
    plan_splits,
    plan_streams,
)
from transforms.tokenize.tokenizer import AUTO, resolve_tokenizer
from transforms.errors import TokenmillError

LOCAL_RUNNERS = ("FnApiRunner", "DirectRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner")


class ConfigError(TokenmillError, ValueError):
    """An option value that cannot work, found before any work starts."""


@dataclass
class PrepareConfig:
    """The prepare job as the user configured it."""

    inputs: list[str]
    output: str
    tokenizer: str
    seq_len: int
    text_field: str = "text"
    id_field: str = "id"
    input_format: str | None = None
    eos_token: str | None = None
    bos_token: str | None = None
    pad_token: str | None = None
    tokenizer_backend: str = AUTO
    tiktoken_scheme: str | None = None
    shard_rows: int = 8192
    stream_bytes: int = DEFAULT_STREAM_BYTES
    packing: str = "concat"
    best_fit_buffer: int = 100_000  # best-fit: pieces packed together
    decompose_range: str = "8:13"  # decompose: piece lengths 2^low..2^high
    decompose_pad: bool = False  # decompose: pad remainders instead of dropping them
    shuffle_seed: int | None = None  # shuffle the rows across all shards (same seed, same bytes)
    loss_mask: str = "none"  # write a loss_mask column: none, padding or boundaries
    strict: bool = False
    overwrite: bool = False
    workers: int = 1
    recipe: str | None = None  # a preset name or a recipe YAML file: quality filters before tokenizing
    filter_engine: str | None = None  # overrides the recipe's engine
    emit_documents: bool = False  # also write the kept documents under documents/
    emit_modified: bool = False  # write the original text of documents a recipe stage changed under modified/
    meta_fields: list[str] = field(default_factory=list)  # input fields kept in each document's meta
    recipe_processes: int | None = None  # processes per worker for the recipe's filters (None: automatic)
    argv: list[str] = field(default_factory=list)


def beam_options(beam_args: list[str], workers: int) -> PipelineOptions:
    """Pipeline options: the user's Beam flags, FnApiRunner by default, --workers as local processes."""
    args = list(beam_args)
    if runner_name(args) is None:
        args.append("--runner=FnApiRunner")
    if workers > 1 and runner_name(args) in LOCAL_RUNNERS:
        args.append(f"--direct_num_workers={workers}")
        if runner_name(args) != "FnApiRunner":  # FnApiRunner gets its worker processes from local_runner()
            args.append("--direct_running_mode=multi_processing")
    if not any(a.startswith("--default_sdk_harness_log_level") for a in args):
        args.append("--default_sdk_harness_log_level=WARNING")
    return PipelineOptions(args)


def local_runner(beam_args: list[str], workers: int) -> Any:
    """The runner instance for a local multi-process run (``--workers N``), else None (Beam picks by name).

    Worker processes start through ``pipelines.worker`` (Beam's harness with quiet logging), one per worker.
    """
    if workers <= 1 or (runner_name(beam_args) or "FnApiRunner") != "FnApiRunner":
        return None
    command = f"exec {shlex.quote(sys.executable)} -m pipelines.worker"  # exec: no shell between (Ctrl-C)
    return FnApiRunner(default_environment=SubprocessSDKEnvironment.from_command_string(command))


def in_process(beam_args: list[str], workers: int) -> bool:
    """Whether the whole run happens in this process on one worker (the embedded default)."""
    if workers > 1 or (runner_name(beam_args) or "FnApiRunner") not in LOCAL_RUNNERS:
        return False
    options = PipelineOptions(beam_args).get_all_options()
    return (options.get("direct_num_workers") or 1) == 1 and options.get("direct_running_mode") in (None, "in_memory")


def runner_name(args: list[str]) -> str | None:
    """The --runner named in Beam arguments, if any."""
    for i, a in enumerate(args):
        if a.startswith("--runner="):
            return a.split("=", 1)[1]
        if a == "--runner" and i + 1 < len(args):
            return args[i + 1]
    return None


def is_local(args: list[str]) -> bool:
    """Whether workers run on this machine (so progress can be shown)."""
    runner = runner_name(args) or "FnApiRunner"
    return runner in LOCAL_RUNNERS or (runner == "PortableRunner" and "--job_endpoint=embed" in args)


def fingerprint(cfg: PrepareConfig, tokenizer_sha: str, recipe: Recipe | None = None) -> str:
    """Identity of the job's result: what decides the shards' bytes (not runner, workers or paths of temp files)."""
    keys = ("inputs", "text_field", "id_field", "input_format", "eos_token", "bos_token", "pad_token", "seq_len",
            "shard_rows", "stream_bytes", "packing", "tiktoken_scheme", "emit_documents", "meta_fields",
            "emit_modified", "best_fit_buffer", "decompose_range", "decompose_pad", "shuffle_seed",
            "loss_mask")
    ident = {k: getattr(cfg, k, None) for k in keys} | {"tokenizer_sha256": tokenizer_sha}
    if recipe is not None:  # what the filters decide is part of the result (the engine is not: same decisions)
        ident["recipe"] = recipe.identity()
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


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


def build(p: beam.Pipeline, files: list[InputFile], stream_cfg: StreamConfig, cfg: PrepareConfig,
          manifest_base: dict[str, Any], started: float, one_worker: bool = False,
          remote: bool = False) -> beam.PCollection:
    """The prepare graph; returns the PCollection holding the committed manifest.

    Small inputs are planned here and their streams created directly; big ones are planned by the workers.
    ``one_worker`` (an in-process run) skips spreading the streams, which would only cost a shuffle; ``remote``
    (workers on other machines) shuffles dedup keys and joins MinHash clusters over the workers and sends the row
    shuffle's parts through the runner's shuffle, instead of key files and part files (on one machine a shuffle
    would only cost memory).
    """
    if plans_in_parallel(files):
        streams = (
            p
            | "ListInputs" >> beam.Create(list(enumerate(files)))
            | "PlanSplits" >> beam.FlatMapTuple(plan_splits, stream_bytes=cfg.stream_bytes)
            | "CollectSplits" >> GatherAll()
            | "GroupIntoStreams" >> beam.FlatMap(group_into_streams, stream_bytes=cfg.stream_bytes)
            | "Distribute" >> _distribute()
        )
    else:
        planned = plan_streams(files, cfg.stream_bytes)
        streams = p | "PlannedStreams" >> beam.Create(planned, reshuffle=not one_worker)
    recipe = stream_cfg.recipe
    fitted: list[Any] = []
    if recipe is not None and needs_fitting(recipe.selection):  # dsir learns the raw and target distributions
        fitted = [AsSingleton(p | "FitScorers" >> FitScorers(recipe.selection, files, stream_cfg.text_field))]
    if not stream_cfg.staged:
        results = streams | "ProcessStream" >> beam.ParDo(ProcessStream(stream_cfg), *fitted)
        plan = None
    else:
        # on one machine each stream's dedup keys go to a compact key file (a shuffle of them would stay in memory)
        staged = streams | "StageStream" >> beam.ParDo(StageStream(stream_cfg, key_files=not remote),
                                                       *fitted).with_outputs("exact", "near", "keys", "candidates",
                                                                             main="staged")
        if stream_cfg.dedup and remote:
            duplicates = (staged.exact, staged.near) | "FindDuplicates" >> FindDuplicates(
                near=stream_cfg.recipe.dedup.minhash is not None, spread=remote)
        elif stream_cfg.dedup:
            duplicates = staged.keys | "FindDuplicates" >> FindDuplicatesInFiles()
        else:
            duplicates = p | "NoDuplicates" >> beam.Create([])
        plan = None
        side: list[Any] = []
        if stream_cfg.selects:
            unit = selection_unit(stream_cfg.recipe, stream_cfg.tokenizer is not None)
            plan = (staged.candidates, duplicates) | "SelectionPlan" >> SelectionPlan(stream_cfg.recipe.selection,
                                                                                      unit)
            side = [AsSingleton(plan)]
        results = (
            {"staged": staged.staged, "duplicates": duplicates}
            | "JoinDuplicates" >> beam.CoGroupByKey()
            | "FinishStaged" >> beam.ParDo(FinishStaged(stream_cfg), *side)
        )
    extra = {"selection": AsSingleton(plan | "SelectionReport" >> beam.Map(selection_report))} if plan else {}
    # the commit checks each planned stream reported exactly once: a runner that loses or repeats work fails
    extra["planned"] = AsSingleton(streams | "PlanOfStreams" >> beam.Map(stream_plan) | "CollectPlan" >> GatherAll())
    gathered = results | "CollectResults" >> GatherAll()
    if getattr(cfg, "shuffle_seed", None) is not None:
        extra["shuffled"] = AsSingleton(gathered | "Shuffle" >> ShuffleRows(cfg.shuffle_seed, cfg.shard_rows,
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


AUTO_PROCESSES_MIN_BYTES = 16 << 20


def meta_fields(requested: list[str], recipe: Recipe | None) -> tuple[str, ...]:
    """Input fields to keep in meta: the user's, and those the recipe's stages read (url_filter's URL)."""
    fields = list(dict.fromkeys(requested))
    for stage in recipe.filters if recipe is not None else ():
        if stage.name == "url_filter" and stage.params["url_field"] not in fields:
            fields.append(stage.params["url_field"])
    return tuple(fields)


def manifest_header(fmt: str, command: str, cfg: Any, fp: str, files: list[InputFile], beam_args: list[str],
                    stream_cfg: StreamConfig) -> dict[str, Any]:
    """The manifest keys every job records: format, version, job, fingerprint, inputs, runner, recipe."""
    header = {
        m.K_FORMAT: fmt,
        m.K_VERSION: tokenmill_version(),
        # an --input named by a non-UTF-8 path is recorded escaped, as its files are
        m.K_JOB: escaped_names({"command": command, "argv": cfg.argv or sys.argv, "config": asdict(cfg)}),
        m.K_FINGERPRINT: fp,
        m.K_INPUTS: [f.to_dict() for f in files],
        m.K_RUNNER: {"runner": runner_name(beam_args) or "FnApiRunner", "workers": cfg.workers,
                     "recipe_processes": stream_cfg.recipe_processes},
    }
    if stream_cfg.recipe is not None:
        header[m.K_RECIPE] = stream_cfg.recipe.to_dict()
    return header


def execute(cfg: Any, files: list[InputFile], stream_cfg: StreamConfig, manifest_base: dict[str, Any],
            fingerprint_: str, beam_args: list[str], started: float) -> dict[str, Any] | None:
    """Run the graph of a prepare or filter job and return the committed manifest (None for a template launch,
    whose job runs later: its workers write the manifest and report.html)."""
    options = beam_options(beam_args, cfg.workers)
    runner = local_runner(beam_args, cfg.workers)
    if runner is not None or is_local(beam_args):
        shorten_state_sampling()  # bundles run in this process (or in pipelines.worker, which does the same)
    one_worker = in_process(beam_args, cfg.workers)
    try:
        if one_worker and stream_cfg.recipe is not None:
            warm_up(stream_cfg.recipe, stream_cfg.recipe_processes, keys=stream_cfg.dedup)  # the first pass's work
        p = beam.Pipeline(runner=runner, options=options)
        build(p, files, stream_cfg, cfg, manifest_base, started, one_worker=one_worker,
              remote=not is_local(beam_args))
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
    manifest = read_manifest(cfg.output)
    if manifest is None or manifest.get(m.K_FINGERPRINT) != fingerprint_:
        raise RuntimeError(f"the pipeline finished but wrote no manifest into {cfg.output!r}")
    return manifest


def was_interrupted(exc: BaseException) -> bool:
    """Whether an exception is, or was raised while handling, a Ctrl-C (Beam re-raises it as a RuntimeError)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt) or str(exc).startswith("KeyboardInterrupt"):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def template_location(options: PipelineOptions) -> str | None:
    """Where a Dataflow template launch writes the job description (``--template_location``), else None."""
    from apache_beam.options.pipeline_options import GoogleCloudOptions

    return options.view_as(GoogleCloudOptions).template_location


def packing_spec(cfg: PrepareConfig) -> PackingSpec:
    """The packing options as a checked PackingSpec (ConfigError names the option that is wrong)."""
    low, _, high = cfg.decompose_range.partition(":")
    if not (low.strip().isdigit() and high.strip().isdigit()):
        raise ConfigError(f"--decompose-range must be LOW:HIGH (exponents of two, e.g. 8:13), got "
                          f"{cfg.decompose_range!r}")
    spec = PackingSpec(cfg.packing, cfg.seq_len, cfg.best_fit_buffer, int(low), int(high), cfg.decompose_pad,
                       cfg.loss_mask)
    try:
        spec.check()
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    return spec


def run(cfg: PrepareConfig, beam_args: list[str] | None = None,
        progress_dir: str | None = None) -> dict[str, Any] | None:
    """Check everything that can be checked up front, run the pipeline, return the manifest (None when the job was
    only described for a Dataflow template: --template_location)."""
    beam_args = list(beam_args or [])
    started = time.time()
    if cfg.seq_len < 1:
        raise ConfigError(f"--seq-len must be a positive number of tokens, got {cfg.seq_len}")
    if cfg.shard_rows < 1:
        raise ConfigError(f"--shard-rows must be positive, got {cfg.shard_rows}")
    packing = packing_spec(cfg)
    files = expand_inputs(cfg.inputs, cfg.input_format)
    recipe = load_recipe(cfg.recipe, cfg.filter_engine) if cfg.recipe is not None else None
    spec = resolve_tokenizer(cfg.tokenizer, cfg.eos_token, cfg.bos_token, cfg.pad_token,
                             cfg.tokenizer_backend, cfg.tiktoken_scheme)
    fp = fingerprint(cfg, spec.sha256, recipe)
    if recipe is not None:
        check_recipe_files(recipe)
    with claim_output(cfg.output, fp, cfg.overwrite, cfg.argv):
        return _run_claimed(cfg, beam_args, started, files, recipe, spec, packing, fp, progress_dir)


def _run_claimed(cfg: PrepareConfig, beam_args: list[str], started: float, files: list[InputFile],
                 recipe: Recipe | None, spec: Any, packing: PackingSpec, fp: str,
                 progress_dir: str | None) -> dict[str, Any] | None:
    """The prepare job once its output is claimed."""
    stream_cfg = StreamConfig(
        output=cfg.output, tokenizer=spec, seq_len=cfg.seq_len, shard_rows=cfg.shard_rows,
        text_field=cfg.text_field, id_field=cfg.id_field, strict=cfg.strict, packing=packing,
        progress_dir=progress_dir, recipe=recipe, emit_documents=cfg.emit_documents, emit_modified=cfg.emit_modified,
        recipe_processes=recipe_processes(cfg.recipe_processes, recipe, files, beam_args, cfg.workers),
        meta_fields=meta_fields(cfg.meta_fields, recipe),
    )
    manifest_base = manifest_header(m.MANIFEST_FORMAT, "prepare", cfg, fp, files, beam_args, stream_cfg)
    manifest_base.update({m.K_TOKENIZER: spec.manifest(), m.K_SEQ_LEN: cfg.seq_len, m.K_PACKING: cfg.packing,
                          m.K_PACKING_SETTINGS: packing.manifest()})
    return execute(cfg, files, stream_cfg, manifest_base, fp, beam_args, started)
