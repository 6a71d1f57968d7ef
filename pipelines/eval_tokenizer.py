"""``tokenmill eval-tokenizer``: compare tokenizers on a corpus, on parallel text and on their vocabularies alone.

The corpus pass is a Beam pipeline: each input split is read, languages identified and every tokenizer run over
each batch (batch encoding); a split emits small fixed-size arrays (per group stats, one bincount per tokenizer)
which are summed per key. Texts are never collected. The tokenizer-only checks and the parallel set run in this
process. Writes ``report.json`` (schema: ``transforms.tokenize.evaluation``) and a self-contained ``report.html``.
Beam, fsspec, numpy and the evaluation are imported by the functions that run it (``--help`` loads none of them).
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipelines.arguments import EPILOG_BEAM, add_format_and_text_field, positive
from pipelines.runner import pipeline, run_with_progress

if TYPE_CHECKING:
    from transforms.tokenize.evaluation import TokenizerInfo

DESCRIPTION = ("Run every tokenizer over the inputs (a Beam pipeline; language identified per document) and report "
               "bytes/token, chars/token, fertility, NSL (vs the first tokenizer), vocabulary utilisation and token "
               "lengths, overall, per source file and per language; the parity premium per language on aligned "
               "--parallel records; Magikarp-style checks (round-trip failures, partial-UTF-8 and unreachable "
               "tokens) and Qtok-style vocabulary classes. Writes report.json and a self-contained report.html "
               "under --output.")
EPILOG = EPILOG_BEAM
BEAM = True
REPORT_JSON = "report.json"
REPORT_HTML = "report.html"


@dataclass
class EvalConfig:
    """Options of one evaluation."""

    tokenizers: list[str]
    inputs: list[str]
    output: str
    text_field: str = "text"
    input_format: str | None = None
    parallel: list[str] = field(default_factory=list)
    reference_lang: str = "en"
    max_bytes: int | None = None
    overwrite: bool = False


def add_arguments(ev: argparse.ArgumentParser) -> None:
    """The options of ``eval-tokenizer``."""
    ev.add_argument("--tokenizer", "-t", action="append", required=True, metavar="PATH",
                    help="HF tokenizer.json (local path or fsspec URL); repeat for more; named by file stem; the "
                         "first is the NSL baseline")
    ev.add_argument("--input", "-i", action="append", required=True, metavar="PATH",
                    help="file, glob, directory or fsspec URL; repeat for more. Same formats as prepare's --input")
    add_format_and_text_field(ev)
    ev.add_argument("--parallel", action="append", default=[], metavar="GLOB",
                    help='JSONL of aligned texts, one record a line: {"id": ..., "texts": {"en": "...", '
                         '"de": "..."}}; repeat for more')
    ev.add_argument("--reference-lang", default="en",
                    help="language the parity premium is relative to (default: en)")
    ev.add_argument("--output", "-o", required=True, metavar="DIR",
                    help="directory for report.json and report.html (local or fsspec URL)")
    ev.add_argument("--overwrite", action="store_true", help="replace an existing report")
    ev.add_argument("--max-bytes", type=positive, default=None, metavar="N",
                    help="read at most about N bytes of document text, shared equally among the input splits "
                         "(default: all)")
    ev.add_argument("--no-progress", action="store_true", help="no live progress line, even on a terminal")
    ev.add_argument("--verbose", "-v", action="store_true", help="show Beam's own log messages")


def config_from_args(args: argparse.Namespace, command_line: list[str]) -> EvalConfig:
    """The config the parsed options describe."""
    return EvalConfig(
        tokenizers=args.tokenizer, inputs=args.input, output=args.output, text_field=args.text_field,
        input_format=args.input_format, parallel=args.parallel, reference_lang=args.reference_lang,
        max_bytes=args.max_bytes, overwrite=args.overwrite,
    )


def check_output(output: str, overwrite: bool) -> None:
    """Refuse to replace an existing report unless --overwrite."""
    import fsspec

    from transforms.tokenize.evaluation import TokenizerEvalError

    fs, root = fsspec.core.url_to_fs(output)
    if fs.exists(f"{root.rstrip('/')}/{REPORT_JSON}") and not overwrite:
        raise TokenizerEvalError(f"--output {output}: already holds a report (use --overwrite to replace it)")


def corpus_pass(cfg: EvalConfig, infos: list[TokenizerInfo], beam_args: list[str],
                progress_dir: str | None = None) -> dict[tuple[Any, int], Any]:
    """Run the Beam corpus pass; returns the summed arrays keyed by (group or "counts", tokenizer index)."""
    import apache_beam as beam  # for a run, not for --help
    import fsspec

    from transforms.gather import read_pickle, write_pickle
    from transforms.read.sources import check_field_options, expand_inputs, plan_splits
    from transforms.tokenize.eval_steps import EvalSplit, sum_arrays

    files = expand_inputs(cfg.inputs, cfg.input_format)
    check_field_options(files, cfg.text_field)
    splits = [s for i, f in enumerate(files) for s in plan_splits(i, f)]
    budget = None if cfg.max_bytes is None else max(1, cfg.max_bytes // max(1, len(splits)))
    fs, root = fsspec.core.url_to_fs(cfg.output)
    fs.makedirs(root, exist_ok=True)
    parts_url = f"{cfg.output.rstrip('/')}/_eval_parts_{uuid.uuid4().hex}.pkl"
    fn = EvalSplit([i.name for i in infos], [i.json_text for i in infos], cfg.text_field, budget, progress_dir)
    try:
        with pipeline(beam_args, 1) as p:
            _ = (p | "Splits" >> beam.Create(splits) | "Reshuffle" >> beam.Reshuffle()
                 | "Evaluate" >> beam.ParDo(fn) | "Sum" >> beam.CombinePerKey(sum_arrays)
                 | "Gather" >> beam.combiners.ToList() | "Write" >> beam.Map(write_pickle, parts_url))
        parts = read_pickle(parts_url)
    finally:
        if fs.exists(fs._strip_protocol(parts_url)):
            fs.rm(fs._strip_protocol(parts_url))
    return {k: v for k, v in parts}


def run(cfg: EvalConfig, beam_args: list[str] | None = None, progress_dir: str | None = None) -> dict[str, Any]:
    """Evaluate every tokenizer; writes report.json and report.html under ``cfg.output`` and returns the report
    (``progress_dir``: where the workers report progress for a live display)."""
    import fsspec
    import numpy as np

    from transforms.tokenize.eval_report import render_html
    from transforms.tokenize.evaluation import (
        STAT_FIELDS,
        TokenizerEvalError,
        corpus_section,
        load_tokenizer,
        magikarp,
        parity,
        qtok,
        read_parallel,
        tokenizer_names,
        vocabulary_section,
    )

    if not cfg.tokenizers:
        raise TokenizerEvalError("--tokenizer: give at least one tokenizer.json")
    check_output(cfg.output, cfg.overwrite)
    names = tokenizer_names(cfg.tokenizers)
    infos = [load_tokenizer(n, p) for n, p in zip(names, cfg.tokenizers)]
    records = read_parallel(cfg.parallel) if cfg.parallel else None
    sums = corpus_pass(cfg, infos, list(beam_args or []), progress_dir)
    stats = {k: v for k, v in sums.items() if k[0] != "counts"}
    report: dict[str, Any] = {
        "tokenmill_eval_tokenizer": 1,
        "options": {"inputs": list(cfg.inputs), "text_field": cfg.text_field, "max_bytes": cfg.max_bytes,
                    "parallel": list(cfg.parallel) or None, "reference_lang": cfg.reference_lang},
        "tokenizers": [{"name": i.name, "path": i.path, "vocab_size": i.vocab_size,
                        "special_tokens": len(i.special_ids), "byte_level": i.byte_level} for i in infos],
        "corpus": corpus_section(names, stats),
        "vocabulary": {i.name: vocabulary_section(i, sums.get(("counts", k), np.zeros(i.vocab_size, np.int64)))
                       for k, i in enumerate(infos)},
        "magikarp": {i.name: magikarp(i) for i in infos},
        "qtok": {i.name: qtok(i) for i in infos},
        "parity": parity(infos, records, cfg.reference_lang) if records is not None else None,
    }
    assert all(len(v) == len(STAT_FIELDS) for v in stats.values())
    out = cfg.output.rstrip("/")
    with fsspec.open(f"{out}/{REPORT_HTML}", "w", encoding="utf-8") as fh:
        fh.write(render_html(report))
    with fsspec.open(f"{out}/{REPORT_JSON}", "w", encoding="utf-8") as fh:  # last: its presence means done
        fh.write(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    return report


def launch(cfg: EvalConfig, beam_args: list[str], show_progress: bool) -> int:
    """Run as ``tokenmill eval-tokenizer`` does (a progress line on a terminal, the summary on stderr); the exit
    code."""
    from transforms.tokenize.evaluation import summary_table

    print(summary_table(run_with_progress(run, cfg, beam_args, show_progress), cfg.output), file=sys.stderr)
    return 0
