"""What ``prepare`` and ``filter`` share outside their Beam graph: the config fields and options of a job over
input streams, the recipe epilog of their help, and their end-of-run summary. No Beam here (``--help``), and the
recipe's registries are imported only when the epilog is shown."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from pipelines.arguments import EPILOG_BEAM, add_format_and_text_field, positive
from schemas.options import DEFAULT_STREAM_BYTES
from transforms.errors import TokenmillError
from transforms.report.summary import summary_table


class ConfigError(TokenmillError, ValueError):
    """An option value that cannot work, found before any work starts."""


@dataclass(kw_only=True)
class JobConfig:
    """The options every job over input streams has (prepare and filter), as the user configured them."""

    # the order manifests list the options in (``manifest_config``): kept as released, so outputs stay byte-identical
    MANIFEST_ORDER: ClassVar[tuple[str, ...]] = ()

    inputs: list[str]
    output: str
    recipe: str | None = None  # a preset name or a recipe YAML file: quality filters, language, dedup
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
    recipe_processes: int | None = None  # processes per worker for the recipe's filters (None: automatic)
    argv: list[str] = field(default_factory=list)

    def manifest_config(self) -> dict[str, Any]:
        """Every option as the manifest's ``job.config`` records it: ``MANIFEST_ORDER`` first, any other field after."""
        values = asdict(self)
        return {**{name: values[name] for name in self.MANIFEST_ORDER}, **values}


def job_fields(args: argparse.Namespace, command_line: list[str]) -> dict[str, Any]:
    """The JobConfig fields from the options the add_*_arguments functions below define."""
    return {
        "inputs": args.input, "output": args.output, "text_field": args.text_field, "id_field": args.id_field,
        "input_format": args.input_format, "meta_fields": args.meta_field, "recipe": args.recipe,
        "filter_engine": args.filter_engine, "emit_modified": args.emit_modified,
        "recipe_processes": args.recipe_processes, "stream_bytes": args.stream_mb * 1024 * 1024,
        "strict": args.strict, "overwrite": args.overwrite, "workers": args.workers, "argv": command_line,
    }


def recipe_epilog() -> str:
    """The recipe stages, presets and scorers, from the modules that define them (the one place they are)."""
    from transforms.filter.registry import STAGES
    from transforms.recipe.recipes import PRESETS

    lines = ["Recipe stages (YAML: filters: [{name: STAGE, params: {...}}, ...]; dedup: {exact: true, minhash: "
             "{ngram: 5, bands: 14, rows: 8}}):"]
    lines += [f"  {name:<18} {spec.doc}" for name, spec in STAGES.items()]
    lines.append("Dedup (dedup: {...}): exact: true; minhash: {ngram, bands, rows, seed}; lines: {unit: line|paragraph, "
                 "min_docs: 2, keep_first: true} (lines/paragraphs repeated across the corpus); after: STAGE (keys "
                 "of that stage's text); save_index: true; against: OUTPUT (an earlier output's saved index).")
    lines.append(f"Presets: {', '.join(PRESETS)}.")
    from transforms.select.registry import SCORERS
    from transforms.select.scoring import CRITERIA

    lines.append("Scorers (scorers: [{name: SCORER, key: NAME, params: {...}}]; scores go to meta.scores):")
    lines += [f"  {name:<18} {spec.doc}" for name, spec in SCORERS.items()]
    lines.append("Ensemble: {buckets: 20, sample_fraction: 1.0, weight: bytes|tokens|documents, combine: max|mean} "
                 "(meta.bucket). Select one of: " + ", ".join(CRITERIA) + " (and score: KEY|bucket). "
                 "Upsample: {BUCKET: FACTOR}.")
    return "\n".join(lines) + "\n\n"


def job_epilog() -> str:
    """The epilog of ``prepare --help`` and ``filter --help``: the recipe's vocabulary, then the Beam options."""
    return recipe_epilog() + EPILOG_BEAM


def add_input_arguments(ap: argparse.ArgumentParser) -> None:
    """Inputs and the output directory."""
    io = ap.add_argument_group("input and output")
    io.add_argument("--input", "-i", action="append", required=True, metavar="PATH",
                    help="file, glob, directory or fsspec URL (s3://, gs://, hf://, memory://...); repeat for more. "
                         "JSONL (.jsonl/.json/.ndjson, plain, .gz, .zst, .bz2, .xz), Parquet, text (.txt: one "
                         "document per file), Arrow, WARC/WET (.warc, .warc.gz, .warc.wet.gz: HTML responses and text conversions "
                         "as documents; add the extract stage for text), or a saved Hugging Face dataset directory")
    add_format_and_text_field(io)
    io.add_argument("--id-field", default="id",
                    help="field/column holding the document id (default: id); when missing, the id is "
                         "'<file>:<line>' (JSONL) or '<file>#<row>' (tables)")
    io.add_argument("--meta-field", action="append", default=[], metavar="NAME",
                    help="an input field/column to keep in each document's meta (repeat for more), e.g. url; "
                         "recipe stages that read a field (url_filter) add it themselves")
    io.add_argument("--output", "-o", required=True, metavar="DIR",
                    help="output directory (local or fsspec URL); manifest.json is written last")
    io.add_argument("--overwrite", action="store_true",
                    help="replace an output directory that holds another job's result (tokenmill still deletes "
                         "only files its manifest lists: any other file there makes the run refuse)")


def add_recipe_arguments(ap: argparse.ArgumentParser, required: bool) -> None:
    """The recipe options (``required``: filter needs a recipe, prepare does not)."""
    fl = ap.add_argument_group("quality filtering and deduplication")
    fl.add_argument("--recipe", default=None, required=required, metavar="NAME|FILE",
                    help="filters, language identification and deduplication applied before anything else: a "
                         "preset (fineweb, fineweb-full: from WARC, dolma, gopher, c4) or a recipe YAML file; "
                         "dropped documents go to rejected/ with stage and reason")
    fl.add_argument("--filter-engine", choices=("fast", "datatrove"), default=None,
                    help="fast (the recipe's default): tokenmill's implementation; datatrove: datatrove's own "
                         "filter classes (same decisions, slower)")
    fl.add_argument("--emit-modified", action="store_true",
                    help="write each kept document whose text a stage changed (C4 line removal) with its original "
                         "text under modified/ (id, source, line/row, stages, original_text)")
    fl.add_argument("--recipe-processes", type=positive, default=None, metavar="N",
                    help="processes per worker running the recipe's filters and dedup keys (default: the local "
                         "cores shared among --workers when the input is 16 MB or more, else 1; 1 on remote runners)")


def add_running_arguments(ap: argparse.ArgumentParser) -> None:
    """How the job runs."""
    run = ap.add_argument_group("running")
    run.add_argument("--stream-mb", type=positive, default=DEFAULT_STREAM_BYTES >> 20,
                     help=f"input MB per stream (default: {DEFAULT_STREAM_BYTES >> 20}): streams are processed in "
                          "parallel, each in order by one worker")
    run.add_argument("--workers", type=positive, default=1,
                     help="local worker processes for the default runner (default: 1)")
    run.add_argument("--strict", action="store_true",
                     help="stop at the first bad record with an error naming its file and line, instead of "
                          "rejecting it into rejected/ and going on")
    run.add_argument("--no-progress", action="store_true", help="no live progress line, even on a terminal")
    run.add_argument("--verbose", "-v", action="store_true", help="show Beam's own log messages")


def job_summary(manifest: dict[str, Any] | None, output: str) -> str:
    """The run's summary table, or for a template launch (no manifest yet) where the result will appear."""
    if manifest is None:
        return (f"tokenmill: job described for a Dataflow template; when it runs, its workers write "
                f"{output.rstrip('/')}/manifest.json and report.html")
    return summary_table(manifest, output)
