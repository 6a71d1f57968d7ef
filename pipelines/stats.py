"""``tokenmill stats``: what is in a corpus, in one Beam pass, with combinable sketches only.

    files ─► splits ─► Reshuffle ─► CorpusStats (per split: measures, sketches, line summary, text hashes;
                                      merged globally; hashes shuffled by bucket for the exact distinct count)
          ─► stats.json + report.html (+ the summary table on the terminal)

The input may also be a ``tokenmill prepare`` or ``filter`` output directory: a filter output's kept documents are
measured (``documents/``), a prepare output's inputs (from its manifest), and the funnel of that run is added.

Beam, fsspec and the measures (numpy) are imported by the functions that run the job, so ``stats --help`` loads none.
"""

from __future__ import annotations

import argparse
import json
import posixpath
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from pipelines import tokenmill_version
from pipelines.arguments import EPILOG_BEAM, add_format_and_text_field, positive
from pipelines.runner import embedded, pipeline, run_with_progress
from schemas import manifest as mf
from schemas import stats as s
from transforms.errors import TokenmillError
from transforms.report.summary import key_value_table

DESCRIPTION = ("Measure every input in one Beam pass with combinable sketches only (no document leaves its worker): "
               "documents, bytes, characters, words, lines (and tokens with --tokenizer); distributions of document "
               "length (count, mean, exact min/max, quantiles within 1%, log-binned histograms) and of the quality "
               "signals the filters use; breakdowns by metadata fields; the exact-duplicate rate and a HyperLogLog "
               "distinct count; the most frequent lines. The input may also be a prepare/filter output directory "
               "(its funnel is added). Writes stats.json (schema: schemas/stats.py) and a self-contained "
               "report.html under --output.")
EPILOG = EPILOG_BEAM
BEAM = True


class StatsError(TokenmillError, ValueError):
    """A stats option or input that cannot be used."""


@dataclass
class StatsConfig:
    """The stats job as the user configured it."""

    inputs: list[str]
    output: str
    by: list[str] = field(default_factory=list)
    tokenizer: str | None = None
    text_field: str = "text"
    id_field: str = "id"
    input_format: str | None = None
    top_lines: int = 50
    max_groups: int = 100
    workers: int = 1
    overwrite: bool = False


def add_arguments(st: argparse.ArgumentParser) -> None:
    """The options of ``stats``."""
    st.add_argument("--input", "-i", action="append", required=True, metavar="PATH",
                    help="file, glob, directory or fsspec URL (repeatable), or one prepare/filter output directory")
    st.add_argument("--output", "-o", required=True, metavar="DIR",
                    help="directory for stats.json and report.html (local or fsspec URL)")
    st.add_argument("--by", action="append", default=[], metavar="FIELDS",
                    help="break the counts down by these metadata fields, comma-separated (repeatable), e.g. "
                         "source,lang; 'source' falls back to the input file and 'lang'/'language' to the offline "
                         "language identifier when the records have no such field")
    st.add_argument("--tokenizer", default=None, metavar="PATH",
                    help="also count tokens with this tokenizer (HF tokenizer.json or tiktoken file; default: none)")
    add_format_and_text_field(st)
    st.add_argument("--id-field", default="id", help="field/column with the document id (default: id)")
    st.add_argument("--top-lines", type=int, default=50, metavar="N",
                    help="report the N most frequent lines (default: 50; 0: none)")
    st.add_argument("--max-groups", type=positive, default=100, metavar="N",
                    help="per --by field, keep the N largest values, the rest as (other) (default: 100)")
    st.add_argument("--workers", type=positive, default=1, help="local worker processes (default: 1)")
    st.add_argument("--overwrite", action="store_true", help="replace an existing stats.json")
    st.add_argument("--no-progress", action="store_true", help="no live progress line, even on a terminal")
    st.add_argument("--verbose", "-v", action="store_true", help="show Beam's own log messages")


def config_from_args(args: argparse.Namespace, command_line: list[str]) -> StatsConfig:
    """The config the parsed options describe."""
    return StatsConfig(
        inputs=args.input, output=args.output, by=[b for arg in args.by for b in arg.split(",")],
        tokenizer=args.tokenizer, text_field=args.text_field, id_field=args.id_field,
        input_format=args.input_format, top_lines=args.top_lines, max_groups=args.max_groups,
        workers=args.workers, overwrite=args.overwrite,
    )


def _run_output(inputs: list[str]) -> tuple[list[str], str | None, dict[str, Any] | None]:
    """If the single input is a prepare/filter output directory: (inputs to read, their format, its manifest)."""
    import fsspec

    from schemas.shards import MANIFEST_FILE, read_output_manifest

    if len(inputs) != 1:
        return inputs, None, None
    fs, path = fsspec.core.url_to_fs(inputs[0])
    if not fs.isdir(path) or not fs.exists(posixpath.join(path.rstrip("/"), MANIFEST_FILE)):
        return inputs, None, None
    _, _, manifest = read_output_manifest(inputs[0], "--input", StatsError)
    base = inputs[0].rstrip("/")
    if manifest.get(mf.K_FORMAT) == mf.DOCUMENTS_FORMAT or manifest.get(mf.K_DOCUMENTS):
        files = [f"{base}/{d[mf.E_PATH]}" for d in manifest.get(mf.K_DOCUMENTS, [])]
        if not files:
            raise StatsError(f"--input {inputs[0]!r}: the run kept no documents to measure")
        return files, "parquet", manifest
    urls = [f["url"] for f in manifest.get(mf.K_INPUTS, [])]
    if not urls:
        raise StatsError(f"--input {inputs[0]!r}: its manifest lists no inputs")
    return urls, None, manifest


def run(cfg: StatsConfig, beam_args: list[str] | None = None, progress_dir: str | None = None) -> dict[str, Any]:
    """Measure the inputs; writes ``stats.json`` and ``report.html`` under ``cfg.output``; returns the stats."""
    import fsspec

    from transforms.read.roots import common_root
    from transforms.read.sources import check_field_options, expand_inputs
    from transforms.stats.split import StatsSpec, start_pool, stop_pool

    started = time.time()
    if cfg.top_lines < 0 or cfg.max_groups < 1:
        raise StatsError("--top-lines must be >= 0 and --max-groups >= 1")
    fs, out_path = fsspec.core.url_to_fs(cfg.output)
    stats_path = posixpath.join(out_path, s.STATS_JSON)
    if fs.exists(stats_path) and not cfg.overwrite:
        raise StatsError(f"--output {cfg.output!r} already holds {s.STATS_JSON}; pass --overwrite to replace it")
    inputs, forced, manifest = _run_output(cfg.inputs)
    files = expand_inputs(inputs, forced or cfg.input_format)
    check_field_options(files, cfg.text_field, cfg.id_field)
    tok_spec = None
    if cfg.tokenizer:
        from transforms.tokenize.tokenizer import resolve_tokenizer

        tok_spec = resolve_tokenizer(cfg.tokenizer)
    by = tuple(dict.fromkeys(b.strip() for b in cfg.by if b.strip()))
    spec = StatsSpec(cfg.text_field, cfg.id_field, by, tok_spec, max(4 * cfg.top_lines, 1000),
                     common_root([f.url for f in files]), progress_dir)
    fs.makedirs(out_path, exist_ok=True)
    beam_args = list(beam_args or [])
    temp = posixpath.join(cfg.output.rstrip("/"), ".stats-tmp")
    if fs.exists(temp):
        fs.rm(temp, recursive=True)
    result_url = posixpath.join(temp, "result.pickle")
    # --workers N on the local runner: N processes measure (started now: they are ready when Beam, imported and
    # running in this process meanwhile, hands them the splits); elsewhere Beam's own workers do
    pooled = cfg.workers > 1 and embedded(beam_args)
    try:
        if pooled:
            start_pool(spec, cfg.workers)
        part, distinct = _measure(files, spec, beam_args, 1 if pooled else cfg.workers, pooled, result_url)
    finally:
        stop_pool()
        if fs.exists(temp):
            fs.rm(temp, recursive=True)
    seconds = time.time() - started
    stats = build_stats(cfg, files, part, distinct, manifest, seconds)
    with fsspec.open(posixpath.join(cfg.output.rstrip("/"), s.STATS_JSON), "w", encoding="utf-8") as fh:
        json.dump(stats, fh, indent=1, ensure_ascii=False)
    from transforms.stats.html_report import render_stats_html

    with fsspec.open(posixpath.join(cfg.output.rstrip("/"), s.REPORT_HTML), "w", encoding="utf-8") as fh:
        fh.write(render_stats_html(stats))
    return stats


def _measure(files: list[Any], spec: Any, beam_args: list[str], workers: int, pooled: bool,
             result_url: str) -> tuple[Any, int]:
    """The Beam job: every file's splits measured and merged into (Partial, exact distinct count), passed back
    through ``result_url``."""
    import apache_beam as beam  # for a run, not for --help

    from transforms.gather import read_pickle, write_pickle
    from transforms.read.sources import plan_splits
    from transforms.stats.steps import CorpusStats

    with pipeline(beam_args, workers) as p:
        (p
         | "Files" >> beam.Create(list(enumerate(files)))
         | "Splits" >> beam.FlatMapTuple(plan_splits)
         | "Spread" >> beam.Reshuffle()
         | "Stats" >> CorpusStats(spec, pooled)
         | "Keep" >> beam.Map(write_pickle, result_url))
    return read_pickle(result_url)


def build_stats(cfg: StatsConfig, files: list[Any], part: Any, distinct: int, manifest: dict[str, Any] | None,
                seconds: float) -> dict[str, Any]:
    """The stats.json document."""
    from transforms.read.sources import escaped_names
    from transforms.stats.measures import capped_groups, duplicate_summary

    with_tokens = cfg.tokenizer is not None
    totals = {k: v for k, v in part.counts.items() if with_tokens or k != s.TOKENS}
    totals[s.REJECTED] = dict(sorted(part.rejected.items()))
    dists = {name: d.to_dict() for name, d in part.dists.items()}
    out: dict[str, Any] = {
        s.K_FORMAT: s.STATS_FORMAT,
        s.K_VERSION: tokenmill_version(),
        s.K_INPUTS: [f.url for f in files],
        s.K_CONFIG: escaped_names(asdict(cfg)),  # an --input with a non-UTF-8 name is written escaped
        s.K_SECONDS: round(seconds, 3),
        s.K_MB_PER_SECOND: round(part.counts[s.BYTES] / 1e6 / seconds, 3) if seconds > 0 else None,
        s.K_TOTALS: totals,
        s.K_DISTRIBUTIONS: dists,
        s.K_GROUPS: capped_groups(part.groups, cfg.max_groups, with_tokens),
        s.K_DUPLICATES: duplicate_summary(part.counts[s.DOCUMENTS], distinct, part.hll.estimate()),
        s.K_TOP_LINES: {"k": part.lines.k, "lines_counted": part.lines.total, "max_undercount": part.lines.undercount,
                        "lines": [{"line": line, "count": n} for line, n in part.lines.top(cfg.top_lines)]},
    }
    if manifest is not None:
        from transforms.report.run_report import funnel

        out[s.K_FUNNEL] = [{"stage": stage, "documents": n} for stage, n in funnel(manifest)]
    return out


def summary_table(stats: dict[str, Any]) -> str:
    """A compact table for the terminal."""
    t, d, dup = stats[s.K_TOTALS], stats[s.K_DISTRIBUTIONS], stats[s.K_DUPLICATES]

    def q(name: str) -> str:
        dist = d.get(name)
        if not dist or not dist[s.D_COUNT]:
            return "-"
        qs = dist[s.D_QUANTILES]
        return f"p10 {qs['p10']:,.0f} · p50 {qs['p50']:,.0f} · p90 {qs['p90']:,.0f} · max {dist[s.D_MAX]:,.0f}"

    rows = [
        ("documents", f"{t[s.DOCUMENTS]:,} of {t[s.RECORDS]:,} records"
                      + (f" ({sum(t[s.REJECTED].values()):,} unreadable)" if t[s.REJECTED] else "")),
        ("text", f"{t[s.BYTES] / 1e6:,.1f} MB, {t[s.CHARACTERS]:,} characters, {t[s.WORDS]:,} words, "
                 f"{t[s.LINES]:,} lines" + (f", {t[s.TOKENS]:,} tokens" if s.TOKENS in t else "")),
        ("bytes / document", q(s.DOC_BYTES)),
        ("words / document", q(s.DOC_WORDS)),
        *([("tokens / document", q(s.DOC_TOKENS))] if s.DOC_TOKENS in d else []),
        ("exact duplicates", f"{dup[s.EXACT_DUPLICATES]:,} documents ({100 * dup[s.EXACT_DUPLICATE_RATE]:.2f}%); "
                             f"distinct {dup[s.DISTINCT]:,} (HyperLogLog {dup[s.DISTINCT_APPROX]:,})"),
        ("lines ending in punct.", f"median {d[s.FRAC_LINES_END_PUNCT][s.D_QUANTILES]['p50'] or 0:.2f} per document"),
    ]
    for by, table in stats[s.K_GROUPS].items():
        top = list(table.items())[:5]
        rows.append((f"by {by}", ", ".join(f"{v} {g[s.BYTES] / 1e6:,.1f} MB" for v, g in top)
                     + (f" (+{len(table) - 5} more)" if len(table) > 5 else "")))
    lines = stats[s.K_TOP_LINES]["lines"][:3]
    if lines:
        rows.append(("most frequent lines", " | ".join(f"{x['count']:,}× {x['line'][:40]!r}" for x in lines)))
    rows.append(("time", f"{stats[s.K_SECONDS]:.1f} s ({stats[s.K_MB_PER_SECOND] or 0:,.1f} MB/s)"))
    rows.append(("output", f"{stats[s.K_CONFIG]['output'].rstrip('/')}/{s.STATS_JSON}, {s.REPORT_HTML}"))
    return key_value_table(rows, max_rule=120)


def launch(cfg: StatsConfig, beam_args: list[str], show_progress: bool) -> int:
    """Run as ``tokenmill stats`` does (a progress line on a terminal, the summary on stderr); the exit code."""
    print(summary_table(run_with_progress(run, cfg, beam_args, show_progress)), file=sys.stderr)
    return 0

