"""``tokenmill filter``: read → recipe (filters, language, dedup) → kept documents as Parquet → commit manifest.

The same graph as ``prepare`` (``pipelines.stream_graph``) without tokenizing: every kept document lands in
``documents/`` (id, text as the filters left it, source, line/row, meta), every dropped one in ``rejected/`` with its
stage and reason. What a run needs beyond its options (the transforms: numpy, fsspec) is imported by the functions
that run it, so ``filter --help`` answers without it.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipelines.runner import run_with_progress
from pipelines.stream_setup import manifest_header, recipe_started, selection_unit, stream_config
from pipelines.stream_job import (
    JobConfig,
    add_input_arguments,
    add_recipe_arguments,
    add_running_arguments,
    job_epilog,
    job_fields,
    job_summary,
)
from schemas import manifest as m

if TYPE_CHECKING:
    from transforms.recipe.recipes import Recipe

DESCRIPTION = ("Read every input, apply the recipe (quality filters, language identification, exact and MinHash "
               "deduplication) and write the kept documents as Parquet under documents/ (id, text as the filters "
               "left it, source, line/row, meta such as lang), every dropped document under rejected/ with its "
               "stage and reason, and a manifest (written last). No tokenizer needed.")
EPILOG = job_epilog  # the recipe's stages: computed when the help is shown
BEAM = True


@dataclass(kw_only=True)
class FilterConfig(JobConfig):
    """The filter job as the user configured it."""

    recipe: str  # a preset name or a recipe YAML file


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The options of ``filter``."""
    add_input_arguments(ap)
    add_recipe_arguments(ap, required=True)
    add_running_arguments(ap)


def config_from_args(args: argparse.Namespace, command_line: list[str]) -> FilterConfig:
    """The config the parsed options describe (``command_line``: recorded in the manifest)."""
    return FilterConfig(**job_fields(args, command_line))


def fingerprint(cfg: FilterConfig, recipe: Recipe) -> str:
    """Identity of the job's result (not runner, workers, engine or temp paths)."""
    from transforms import hashing

    keys = ("inputs", "text_field", "id_field", "input_format", "stream_bytes", "meta_fields", "emit_modified")
    ident = {k: getattr(cfg, k) for k in keys}
    ident["command"] = "filter"
    ident["recipe"] = recipe.identity()
    return hashing.fingerprint(ident)


def run(cfg: FilterConfig, beam_args: list[str] | None = None,
        progress_dir: str | None = None) -> dict[str, Any] | None:
    """Check everything that can be checked up front, run the pipeline, return the manifest (None for a Dataflow
    template launch)."""
    from transforms.dedup.index import resolve_against
    from transforms.output.guard import claim_output
    from transforms.read.sources import check_field_options, expand_inputs
    from transforms.recipe.files import check_recipe_files
    from transforms.recipe.recipes import load_recipe

    beam_args = list(beam_args or [])
    started = time.time()
    files = expand_inputs(cfg.inputs, cfg.input_format)
    check_field_options(files, cfg.text_field, cfg.id_field)
    recipe = resolve_against(load_recipe(cfg.recipe, cfg.filter_engine), cfg.output)  # dedup.against (fingerprint)
    if recipe.selection is not None and recipe.selection.global_pass:
        selection_unit(recipe, tokenizes=False)  # a token budget needs a tokenizer: say so before starting
    fp = fingerprint(cfg, recipe)
    check_recipe_files(recipe)
    with claim_output(cfg.output, fp, cfg.overwrite, cfg.argv):
        stream_cfg = stream_config(cfg, files, recipe, beam_args, progress_dir, tokenizer=None, seq_len=0,
                                   shard_rows=0, emit_documents=True)
        manifest_base = manifest_header(m.DOCUMENTS_FORMAT, "filter", cfg, fp, files, beam_args, stream_cfg)
        with recipe_started(stream_cfg, beam_args, cfg.workers):  # its processes start while Beam is imported
            from pipelines.stream_graph import execute  # Beam: for a run, not for --help

            return execute(cfg, files, stream_cfg, manifest_base, fp, beam_args, started)


def launch(cfg: FilterConfig, beam_args: list[str], show_progress: bool) -> int:
    """Run as ``tokenmill filter`` does (a progress line on a terminal, the summary on stderr); the exit code."""
    print(job_summary(run_with_progress(run, cfg, beam_args, show_progress), cfg.output), file=sys.stderr)
    return 0
