"""``tokenmill prepare``: read → recipe (filters) → [dedup] → tokenize → pack → write shards → commit manifest.

The command: its options, its config, the checks made before any work starts, its summary. The Beam graph is
``pipelines.stream_graph`` (shared with ``filter``), imported when a job runs (``--help`` loads no Beam); the
transforms the checks use (numpy, fsspec, tokenizers) are imported by the functions that use them, for the same
reason.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pipelines.arguments import positive
from pipelines.runner import run_with_progress
from pipelines.stream_setup import manifest_header, recipe_started, stream_config
from pipelines.stream_job import (
    ConfigError,
    JobConfig,
    add_input_arguments,
    add_recipe_arguments,
    add_running_arguments,
    job_epilog,
    job_fields,
    job_summary,
)
from schemas import manifest as m
from schemas.options import AUTO, BACKENDS, LOSS_MASKS, PACKINGS, TIKTOKEN_SCHEMES

if TYPE_CHECKING:
    from transforms.pack.packers import PackingSpec
    from transforms.recipe.recipes import Recipe

DESCRIPTION = ("Read every input, tokenize each document, append EOS, pack the token stream into rows of exactly "
               "--seq-len tokens and write Parquet shards, rejected records and a manifest (written last).")
EPILOG = job_epilog  # the recipe's stages: computed when the help is shown
BEAM = True


@dataclass(kw_only=True)
class PrepareConfig(JobConfig):
    """The prepare job as the user configured it."""

    MANIFEST_ORDER: ClassVar[tuple[str, ...]] = (
        "inputs", "output", "tokenizer", "seq_len", "text_field", "id_field", "input_format", "eos_token", "bos_token",
        "pad_token", "tokenizer_backend", "tiktoken_scheme", "shard_rows", "stream_bytes", "packing", "best_fit_buffer",
        "decompose_range", "decompose_pad", "shuffle_seed", "loss_mask", "strict", "overwrite", "workers", "recipe",
        "filter_engine", "emit_documents", "emit_modified", "meta_fields", "recipe_processes", "argv",
    )

    tokenizer: str
    seq_len: int
    eos_token: str | None = None
    bos_token: str | None = None
    pad_token: str | None = None
    tokenizer_backend: str = AUTO
    tiktoken_scheme: str | None = None
    shard_rows: int = 8192
    packing: str = "concat"
    best_fit_buffer: int = 100_000  # best-fit: pieces packed together
    decompose_range: str = "8:13"  # decompose: piece lengths 2^low..2^high
    decompose_pad: bool = False  # decompose: pad remainders instead of dropping them
    shuffle_seed: int | None = None  # shuffle the rows across all shards (same seed, same bytes)
    loss_mask: str = "none"  # write a loss_mask column: none, padding or boundaries
    emit_documents: bool = False  # also write the kept documents under documents/


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The options of ``prepare``."""
    add_input_arguments(ap)
    ap.add_argument_group("input and output").add_argument(
        "--emit-documents", action="store_true",
        help="also write the kept documents (id, text, source, line/row, meta) as Parquet under documents/")
    add_recipe_arguments(ap, required=False)
    tk = ap.add_argument_group("tokenization")
    tk.add_argument("--tokenizer", "-t", required=True, metavar="PATH",
                    help="HF tokenizer.json or tiktoken rank file (local path or fsspec URL)")
    tk.add_argument("--tokenizer-backend", choices=BACKENDS, default="auto",
                    help="auto (default): gigatoken where it gives identical ids to the reference library on each "
                         "stream's first documents, else the reference; hf: the reference library only "
                         "(tokenizers, or tiktoken for rank files); gigatoken: gigatoken without checking")
    tk.add_argument("--tiktoken-scheme", choices=TIKTOKEN_SCHEMES, default=None,
                    help="split pattern and special tokens for a tiktoken rank file (default: from its file name)")
    tk.add_argument("--eos-token", default=None,
                    help="token appended to every document, as its text or id:N "
                         "(default: the tokenizer's end-of-text token)")
    tk.add_argument("--bos-token", default=None,
                    help="token prepended to every document, as its text or id:N (default: none)")
    tk.add_argument("--pad-token", default=None,
                    help="token that pads the last row of a stream, as its text or id:N (default: EOS)")
    pk = ap.add_argument_group("packing and shards")
    pk.add_argument("--seq-len", type=positive, required=True, help="tokens per packed row")
    pk.add_argument("--shard-rows", type=positive, default=8192,
                    help="rows per shard at most (default: 8192); each stream starts a new shard and ends with at "
                         "most one padded row")
    pk.add_argument("--packing", choices=PACKINGS, default="concat",
                    help="concat: documents back to back, cut every --seq-len tokens (default); best-fit: only "
                         "documents longer than a row are cut, pieces packed by best-fit-decreasing, padding at row "
                         "ends; decompose: each document cut into power-of-two pieces, one row each, shards per "
                         "length under shards/len=N/ (--seq-len must be the longest length)")
    pk.add_argument("--best-fit-buffer", type=positive, default=100_000, metavar="PIECES",
                    help="best-fit: pieces packed together (bounds memory; default: 100000)")
    pk.add_argument("--decompose-range", default="8:13", metavar="LOW:HIGH",
                    help="decompose: piece lengths 2^LOW..2^HIGH (default: 8:13, 256..8192 tokens)")
    pk.add_argument("--loss-mask", choices=LOSS_MASKS, default="none",
                    help="write a loss_mask column (1: train on the token): padding (0 on padding), boundaries (0 on "
                         "padding and on each document's first token: its BOS or the token after the previous EOS); "
                         "default: none (no column)")
    pk.add_argument("--shuffle-seed", type=int, default=None, metavar="SEED",
                    help="shuffle the rows across all shards with this seed (two passes over the shards, one shard "
                         "in memory at a time; the same seed gives the same bytes on any runner and worker count)")
    pk.add_argument("--decompose-pad", action="store_true",
                    help="decompose: pad a remainder shorter than 2^LOW into a row of its own instead of dropping "
                         "it (dropped tokens are counted; a document with no piece goes to rejected/)")
    add_running_arguments(ap)


def config_from_args(args: argparse.Namespace, command_line: list[str]) -> PrepareConfig:
    """The config the parsed options describe (``command_line``: recorded in the manifest)."""
    return PrepareConfig(
        **job_fields(args, command_line), tokenizer=args.tokenizer, seq_len=args.seq_len,
        eos_token=args.eos_token, bos_token=args.bos_token, pad_token=args.pad_token,
        tokenizer_backend=args.tokenizer_backend, tiktoken_scheme=args.tiktoken_scheme, shard_rows=args.shard_rows,
        packing=args.packing, best_fit_buffer=args.best_fit_buffer, decompose_range=args.decompose_range,
        decompose_pad=args.decompose_pad, shuffle_seed=args.shuffle_seed, loss_mask=args.loss_mask,
        emit_documents=args.emit_documents,
    )


def fingerprint(cfg: PrepareConfig, tokenizer_sha: str, recipe: Recipe | None = None) -> str:
    """Identity of the job's result: what decides the shards' bytes (not runner, workers or paths of temp files)."""
    from transforms import hashing

    keys = ("inputs", "text_field", "id_field", "input_format", "eos_token", "bos_token", "pad_token", "seq_len",
            "shard_rows", "stream_bytes", "packing", "tiktoken_scheme", "emit_documents", "meta_fields",
            "emit_modified", "best_fit_buffer", "decompose_range", "decompose_pad", "shuffle_seed",
            "loss_mask")
    ident = {k: getattr(cfg, k, None) for k in keys} | {"tokenizer_sha256": tokenizer_sha}
    if recipe is not None:  # what the filters decide is part of the result (the engine is not: same decisions)
        ident["recipe"] = recipe.identity()
    return hashing.fingerprint(ident)


def packing_spec(cfg: PrepareConfig) -> PackingSpec:
    """The packing options as a checked PackingSpec (ConfigError names the option that is wrong)."""
    from transforms.pack.packers import PackingSpec

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
    from transforms.dedup.index import resolve_against
    from transforms.output.guard import claim_output
    from transforms.read.sources import check_field_options, expand_inputs
    from transforms.recipe.files import check_recipe_files
    from transforms.recipe.recipes import load_recipe
    from transforms.tokenize.tokenizer import resolve_tokenizer

    beam_args = list(beam_args or [])
    started = time.time()
    if cfg.seq_len < 1:
        raise ConfigError(f"--seq-len must be a positive number of tokens, got {cfg.seq_len}")
    if cfg.shard_rows < 1:
        raise ConfigError(f"--shard-rows must be positive, got {cfg.shard_rows}")
    packing = packing_spec(cfg)
    files = expand_inputs(cfg.inputs, cfg.input_format)
    check_field_options(files, cfg.text_field, cfg.id_field)
    recipe = load_recipe(cfg.recipe, cfg.filter_engine) if cfg.recipe is not None else None
    recipe = resolve_against(recipe, cfg.output)  # dedup.against: the earlier indexes' identities (fingerprint)
    spec = resolve_tokenizer(cfg.tokenizer, cfg.eos_token, cfg.bos_token, cfg.pad_token,
                             cfg.tokenizer_backend, cfg.tiktoken_scheme)
    fp = fingerprint(cfg, spec.sha256, recipe)
    if recipe is not None:
        check_recipe_files(recipe)
    with claim_output(cfg.output, fp, cfg.overwrite, cfg.argv):
        stream_cfg = stream_config(cfg, files, recipe, beam_args, progress_dir, tokenizer=spec, seq_len=cfg.seq_len,
                                   shard_rows=cfg.shard_rows, packing=packing, emit_documents=cfg.emit_documents)
        manifest_base = manifest_header(m.MANIFEST_FORMAT, "prepare", cfg, fp, files, beam_args, stream_cfg)
        manifest_base.update({m.K_TOKENIZER: spec.manifest(), m.K_SEQ_LEN: cfg.seq_len, m.K_PACKING: cfg.packing,
                              m.K_PACKING_SETTINGS: packing.manifest()})
        with recipe_started(stream_cfg, beam_args, cfg.workers):  # its processes start while Beam is imported
            from pipelines.stream_graph import execute  # Beam: for a run, not for --help

            return execute(cfg, files, stream_cfg, manifest_base, fp, beam_args, started, shuffle_seed=cfg.shuffle_seed)


def launch(cfg: PrepareConfig, beam_args: list[str], show_progress: bool) -> int:
    """Run as ``tokenmill prepare`` does (a progress line on a terminal, the summary on stderr); the exit code."""
    print(job_summary(run_with_progress(run, cfg, beam_args, show_progress), cfg.output), file=sys.stderr)
    return 0
