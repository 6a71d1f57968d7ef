"""Packing benchmark: what each packing strategy does to real documents, and how fast the loader reads the shards.

What it measures, in one run, on the same corpus and tokenizer (each ``tokenmill prepare`` a fresh process):

* ``--packing concat``, ``best-fit`` and ``decompose`` at ``--seq-len`` (default 2048; decompose with lengths
  2^8..2^11): wall seconds, rows, padding (share of row slots that are padding), documents cut (concat: at a row
  boundary; best-fit: longer than a row; decompose: into several pieces), and, read back from best-fit's shards,
  the documents shorter than a row that were cut (every segment shorter than a row must end with EOS: a whole
  document or the last piece of a long one).
* the loader (``schemas.loader``, numpy path, its defaults) on ~``--loader-gb`` GB of token ids written as prepare
  writes them (``benchmarks/loader_throughput.py``'s generator: the first 20 MB of the same corpus tokenized, its
  documents drawn at random and packed): GB of ids (4 bytes each) per second, two processes each reading its rank of
  world_size 2, against pyarrow's ``read_table`` of the same files.

The default corpus is the real multilingual corpus of ``benchmarks/corpora.py`` (~110 MB of prose in Latin,
Cyrillic and CJK scripts from translated documentation in Debian packages: help pages, manual pages, guides and
kernel documentation, from a few hundred bytes to hundreds of KB, so a long tail of document lengths; built and
cached in ``.bench-cache/corpora`` on first use). ``--corpus code`` or ``mix`` takes another one, ``--slice-mb N``
its first N MB, a glob for your JSONL files; ``--corpus generated`` is the standard-library corpus of before (this
Python's standard library, each module's source and its docstrings as documents, no download). The corpus used is
printed first.

Targets (printed with PASS/MISS, never asserted): best-fit cuts no document shorter than a row and pads at most 1% at
seq_len 2048; the loader reads >= 1 GB of tokens per second on 2 cores.

Usage (from the repository root):

    .venv/bin/python benchmarks/packing.py [--seq-len 2048] [--loader-gb 1] [--workdir DIR] [--corpus NAME|GLOB]
                                           [--slice-mb MB]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from prepare_throughput import (
    cached_corpus,
    corpus_arguments,
    corpus_files,
    corpus_stats,
    log,
    machine_line,
    run_benchmark,
    run_measured,
    tail,
    training_tokenizer,
    verdict,
    tokenmill_command,
)

TARGET_PADDING = 0.01
TARGET_LOADER_GBPS = 1.0
DECOMPOSE_RANGE = "8:11"


def stdlib_corpus(workdir: Path) -> list[str]:
    """The standard library as JSONL documents (sources and docstrings), written once into the workdir."""
    from transforms.read.demo_corpus import demo_records

    return cached_corpus(workdir / "stdlib-corpus", {"corpus": "stdlib"}, "the standard-library corpus",
                         lambda: ({"id": r["id"], "text": r["text"]} for r in demo_records()), n_files=4)


def run_prepare(files: list[str], tokenizer: str, out: Path, args: argparse.Namespace, extra: list[str],
                log_path: Path) -> dict[str, Any]:
    """One ``tokenmill prepare`` (whole command timed); its manifest."""
    cmd = tokenmill_command()
    cmd += ["prepare", "--tokenizer", tokenizer, "--output", str(out), "--text-field", args.text_field,
            "--no-progress", "--overwrite", *extra]
    for f in files:
        cmd += ["--input", f]
    code, seconds, _, _ = run_measured(cmd, log_path)
    if code != 0:
        raise RuntimeError(f"tokenmill prepare failed (exit {code}); see {log_path}:\n{tail(log_path)}")
    from schemas.shards import read_manifest

    return {"seconds": seconds, "manifest": read_manifest(str(out))}


def short_documents_cut(out: Path, manifest: dict[str, Any]) -> int:
    """Segments shorter than their row that do not end with EOS: pieces of documents shorter than a row."""
    from schemas import manifest as m
    from schemas.shards import iter_packed_rows

    eos = manifest[m.K_TOKENIZER][m.T_EOS_ID]
    cut = 0
    for row in iter_packed_rows(str(out)):  # the manifest's shards, in order
        ids, cu = row.input_ids.tolist(), row.cu_seqlens.tolist()
        for a, b in zip(cu[:-1], cu[1:]):
            cut += (b - a) < len(ids) and ids[b - 1] != eos
    return cut


def loader_rates(workdir: Path, gb: float, files: list[str], text_field: str,
                 rounds: int = 3) -> dict[str, float]:
    """The loader (defaults) and the pyarrow anchor on ~``gb`` GB of ids written as prepare writes them (the first
    MB of ``files`` tokenized; see loader_throughput.py): medians of GB/s over ``rounds``, 2 processes."""
    import statistics

    from loader_throughput import (POOL_MB, child_anchor, child_loader, files_key, generate_shards, measure,
                                   token_documents, warm)

    key = files_key(files, POOL_MB)
    directory = workdir / f"loader-shards-{key}-{gb:g}gb"
    if not (directory / "manifest.json").exists():
        log(f"writing ~{gb:g} GB of token shards for the loader ...")
        generate_shards(directory, gb, token_documents(workdir, files, text_field, POOL_MB))
    warm(str(directory))
    loader = [measure(child_loader, str(directory), {}, 8) for _ in range(rounds)]
    anchor = [measure(child_anchor, str(directory), {}, 8) for _ in range(rounds)]
    return {"gbps": statistics.median(r["gbps"] for r in loader),
            "tokps": statistics.median(r["tokps"] for r in loader),
            "anchor_gbps": statistics.median(r["gbps"] for r in anchor), "tokens": loader[0]["tokens"]}


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    corpus_arguments(ap, None)
    ap.add_argument("--seq-len", type=int, default=2048, help="tokens per row (default 2048)")
    ap.add_argument("--loader-gb", type=float, default=1.0,
                    help="GB of token ids the loader reads (generated once into the workdir; default 1.0)")
    ap.add_argument("--workdir", default=None, metavar="DIR",
                    help="where corpus, tokenizer and outputs go; kept and reused (default: a temporary directory)")
    return ap.parse_args(argv)


def benchmark(args: argparse.Namespace, workdir: Path, cores: int) -> int:
    """The whole benchmark in ``workdir``."""
    from schemas import manifest as m

    started = time.perf_counter()
    files, corpus_desc = corpus_files(args, workdir, lambda directory, _size: stdlib_corpus(directory),
                                      "this Python's standard library: module sources and docstrings")
    log(f"corpus: {corpus_desc}")
    n_docs, text_bytes = corpus_stats(files, args.text_field)
    tokenizer = training_tokenizer(workdir, files, args.text_field)
    runs = workdir / "runs"
    runs.mkdir(exist_ok=True)
    high = args.seq_len.bit_length() - 1
    systems = {
        "concat": [],
        "best-fit": ["--packing", "best-fit"],
        "decompose": ["--packing", "decompose", "--decompose-range", f"{min(8, high)}:{high}"],
    }
    results = {}
    for name, extra in systems.items():
        seq_len = args.seq_len if name != "decompose" else 1 << high
        log(f"running prepare --packing {name} ...")
        out = workdir / f"out-{name}"
        results[name] = run_prepare(files, tokenizer, out, args, ["--seq-len", str(seq_len), *extra],
                                    runs / f"{name}.log")
        results[name]["out"] = out
        log(f"  {results[name]['seconds']:.1f} s")
    cut_short = short_documents_cut(results["best-fit"]["out"], results["best-fit"]["manifest"])
    log("measuring the loader (2 processes) ...")
    loader = loader_rates(workdir, args.loader_gb, files, args.text_field)

    p = print
    p("")
    p("tokenmill packing benchmark")
    p("===========================")
    p(f"machine:  {machine_line()}")
    p(f"corpus:   {corpus_desc}")
    p(f"          {len(files)} JSONL file(s), {n_docs} documents, {text_bytes / 1e6:.1f} MB of text; seq_len "
      f"{args.seq_len}")
    p("")
    header = f"{'packing':<12} {'seconds':>8} {'rows':>9} {'tokens':>12} {'padding':>9} {'docs cut':>9} {'dropped':>9}"
    p(header)
    p("-" * len(header))
    for name, r in results.items():
        counts, stats = r["manifest"][m.K_COUNTS], r["manifest"][m.K_PACKING_STATS]
        p(f"{name:<12} {r['seconds']:>8.1f} {counts['sequences']:>9} {counts['tokens']:>12} "
          f"{stats[m.K_PADDING_FRACTION]:>8.3%} {stats[m.K_DOCUMENTS_SPLIT]:>9} {counts.get('tokens_dropped', 0):>9}")
    decomposed = results["decompose"]["manifest"][m.K_PACKING_STATS]
    p("")
    p("decompose per length: " + ", ".join(f"{k}: {v[m.L_SEQUENCES]} rows"
                                           for k, v in decomposed[m.K_LENGTHS].items()))
    p("decompose curriculum: " + json.dumps(decomposed[m.K_CURRICULUM]))
    p(f"loader: {loader['tokens'] / 1e6:.0f} M tokens per epoch, {loader['gbps']:.2f} GB/s of token ids "
      f"({loader['tokps'] / 1e6:.0f} M tokens/s), 2 processes; pyarrow read_table of the same files "
      f"{loader['anchor_gbps']:.2f} GB/s (median of 3; more systems: benchmarks/loader_throughput.py)")
    p("")
    best = results["best-fit"]["manifest"][m.K_PACKING_STATS]
    p("targets (informational, never asserted):")
    p(f"  [{verdict(cut_short == 0)}] best-fit cuts no document shorter than a row: {cut_short} cut "
      f"(concat cut {results['concat']['manifest'][m.K_PACKING_STATS][m.K_DOCUMENTS_SPLIT]} documents at row "
      "boundaries)")
    p(f"  [{verdict(best[m.K_PADDING_FRACTION] <= TARGET_PADDING)}] best-fit padding <= {TARGET_PADDING:.0%} at "
      f"seq_len {args.seq_len}: {best[m.K_PADDING_FRACTION]:.3%}")
    p(f"  [{verdict(loader['gbps'] >= TARGET_LOADER_GBPS)}] loader >= {TARGET_LOADER_GBPS:g} GB of tokens/s on 2 "
      f"cores: {loader['gbps']:.2f} GB/s")
    p("")
    p(f"total benchmark time: {time.perf_counter() - started:.0f} s")
    return 0


def child_main(spec_path: str) -> int:  # no child systems: every system is a tokenmill command
    raise SystemExit(f"unexpected child spec {spec_path}")


def main(argv: list[str] | None = None) -> int:
    """Run the packings and the loader, print the table and the targets."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_benchmark(argv, parse_args, child_main, benchmark, "tokenmill-packing-bench-")


if __name__ == "__main__":
    sys.exit(main())
