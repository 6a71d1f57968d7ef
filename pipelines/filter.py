"""``tokenmill filter``: read → recipe (filters, language, dedup) → kept documents as Parquet → commit manifest.

The same graph as ``prepare`` without tokenizing: every kept document lands in ``documents/`` (id, text as the
filters left it, source, line/row, meta), every dropped one in ``rejected/`` with its stage and reason.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from pipelines.prepare import execute, manifest_header, meta_fields, recipe_processes, selection_unit
from schemas import manifest as m
from transforms.output.guard import claim_output
from transforms.recipe.files import check_recipe_files
from transforms.stream.stream import StreamConfig
from transforms.recipe.recipes import Recipe, load_recipe
from transforms.read.sources import DEFAULT_STREAM_BYTES, expand_inputs


@dataclass
class FilterConfig:
    """The filter job as the user configured it."""

    inputs: list[str]
    output: str
    recipe: str  # a preset name or a recipe YAML file
    text_field: str = "text"
    id_field: str = "id"
    input_format: str | None = None
    filter_engine: str | None = None  # overrides the recipe's engine
    emit_modified: bool = False  # write the original text of documents a recipe stage changed under modified/
    stream_bytes: int = DEFAULT_STREAM_BYTES
    strict: bool = False
    overwrite: bool = False
    workers: int = 1
    meta_fields: list[str] = field(default_factory=list)  # input fields kept in each document's meta
    recipe_processes: int | None = None  # processes per worker for the recipe (None: automatic)
    argv: list[str] = field(default_factory=list)


def fingerprint(cfg: FilterConfig, recipe: Recipe) -> str:
    """Identity of the job's result (not runner, workers, engine or temp paths)."""
    keys = ("inputs", "text_field", "id_field", "input_format", "stream_bytes", "meta_fields", "emit_modified")
    ident = {k: getattr(cfg, k) for k in keys}
    ident["command"] = "filter"
    ident["recipe"] = recipe.identity()
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


def run(cfg: FilterConfig, beam_args: list[str] | None = None,
        progress_dir: str | None = None) -> dict[str, Any] | None:
    """Check everything that can be checked up front, run the pipeline, return the manifest (None for a Dataflow
    template launch)."""
    beam_args = list(beam_args or [])
    started = time.time()
    files = expand_inputs(cfg.inputs, cfg.input_format)
    recipe = load_recipe(cfg.recipe, cfg.filter_engine)
    if recipe.selection is not None and recipe.selection.global_pass:
        selection_unit(recipe, tokenizes=False)  # a token budget needs a tokenizer: say so before starting
    fp = fingerprint(cfg, recipe)
    check_recipe_files(recipe)
    with claim_output(cfg.output, fp, cfg.overwrite, cfg.argv):
        return _run_claimed(cfg, beam_args, started, files, recipe, fp, progress_dir)


def _run_claimed(cfg: FilterConfig, beam_args: list[str], started: float, files: list, recipe: Recipe, fp: str,
                 progress_dir: str | None) -> dict[str, Any] | None:
    """The filter job once its output is claimed."""
    stream_cfg = StreamConfig(
        output=cfg.output, tokenizer=None, seq_len=0, shard_rows=0, text_field=cfg.text_field,
        id_field=cfg.id_field, strict=cfg.strict, progress_dir=progress_dir, recipe=recipe, emit_documents=True,
        emit_modified=cfg.emit_modified,
        recipe_processes=recipe_processes(cfg.recipe_processes, recipe, files, beam_args, cfg.workers),
        meta_fields=meta_fields(cfg.meta_fields, recipe),
    )
    manifest_base = manifest_header(m.DOCUMENTS_FORMAT, "filter", cfg, fp, files, beam_args, stream_cfg)
    return execute(cfg, files, stream_cfg, manifest_base, fp, beam_args, started)
