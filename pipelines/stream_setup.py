"""What ``prepare`` and ``filter`` settle before their Beam graph is built: the workers' stream config, the manifest
header, the selection's unit, and the recipe's processes started early. No Beam here: the recipe's processes start
(and import, and build their stages) while this process imports Beam and builds the graph."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Iterator

from pipelines import tokenmill_version
from pipelines.runner import embedded, is_local, runner_name
from pipelines.stream_job import ConfigError, JobConfig
from schemas import manifest as m

if TYPE_CHECKING:
    from transforms.read.sources import InputFile
    from transforms.recipe.recipes import Recipe
    from transforms.stream.config import StreamConfig

AUTO_PROCESSES_MIN_BYTES = 16 << 20


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
    from transforms.recipe.files import place_recipe_files
    from transforms.stream.config import StreamConfig

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
    from transforms.read.sources import escaped_names  # (fsspec: for a run, not for --help)

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




def _embedded(beam_args: list[str], workers: int) -> bool:
    """Whether the run surely happens in this process (told from the flags alone, without importing Beam: a
    ``--direct_*`` flag says no here, and the graph's own check, ``runner.in_process``, decides later)."""
    return workers == 1 and embedded(beam_args)


@contextmanager
def recipe_started(stream_cfg: StreamConfig, beam_args: list[str], workers: int) -> Iterator[None]:
    """Start the recipe's processes now, for a run in this process, and stop any nobody took at the end: they spawn,
    import and build their stages (an extract stage's helper too) while Beam is imported and the graph built."""
    from transforms.recipe.work import cool_down, warm_up

    if stream_cfg.recipe is not None and stream_cfg.recipe_processes > 1 and _embedded(beam_args, workers):
        warm_up(stream_cfg.recipe, stream_cfg.recipe_processes, keys=stream_cfg.staged)
    try:
        yield
    finally:
        cool_down()
