"""The same ``tokenmill prepare`` job on every runner that runs here: wall time, peak memory, byte identity.

The job is a full recipe (the default one below: C4 and Gopher filters, exact and MinHash dedup, a length scorer
with a token budget of one token per 8 bytes of text, best-fit packing, a row shuffle) over real text nobody here
wrote: by default the first 20 MB (``--slice-mb``; 0 for all of it) of the real multilingual corpus of
``benchmarks/corpora.py`` (prose in Latin, Cyrillic and CJK scripts from translated documentation in Debian
packages, built and cached in ``.bench-cache/corpora`` on first use; ``--corpus code`` or ``mix`` for the others, a
glob for your JSONL files, ``generated`` for the generated corpus of prepare_throughput.py, ``--size-mb``), or with
``--paragraphs N`` the first N non-empty paragraphs of this Python's standard library, /usr/share/doc and the
installed packages (``dedup_memory.real_records``, about 20 MB per 60,000 paragraphs), with a 4k byte-level BPE
trained on it by ``tokenmill train-tokenizer``. The corpus used is printed first. Each runner runs the whole
command in a fresh process (start-up included; the Dask run starts and stops its local cluster of ``--workers``
processes inside the command, ``--dask-address`` uses a running one):

* FnApiRunner, the default (one process), and ``--workers N`` (N worker processes);
* the portable runner, embedded (``--runner PortableRunner --job_endpoint=embed --environment_type=LOOPBACK``);
* Beam's multi-process direct runner (``--runner DirectRunner --direct_num_workers N``);
* tokenmill's Dask runner (``--runner dask --dask-workers N``).

Every run's shards/, documents/ and rejected/ are compared byte for byte with FnApiRunner's; the report prints each
runner's seconds, its ratio to FnApiRunner and the peak RSS of its process tree. Target (informational): Dask within
2x FnApiRunner on this job (issue: a MinHash run).

    .venv/bin/python benchmarks/runners.py [--corpus multilingual] [--slice-mb 20] [--workers 2] [--workdir DIR]
    .venv/bin/python benchmarks/runners.py --paragraphs 60000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from dedup_memory import real_records
from prepare_throughput import (MB, corpus_arguments, corpus_files, corpus_stats, fmt_gb, generated_corpus, log,
                                machine_line, run_benchmark, run_measured, tail, verdict)
from prepare_throughput import tokenmill_command as tokenmill  # the argv of a tokenmill command

RECIPE = """\
filters:
  - {name: c4_quality, params: {filter_no_terminal_punct: false}}
  - {name: gopher_repetition}
dedup: {exact: true, minhash: {ngram: 5, bands: 14, rows: 8}}
scorers: [length]
select: {tokens: BUDGET}
"""
TARGET_DASK_VS_FNAPI = 2.0
SLICE_MB = 20.0  # the job's size by default: a few minutes on each runner
BYTES_PER_BUDGET_TOKEN = 8  # the selection's token budget: one token per 8 bytes of text (about half the tokens)


def runners(workers: int, address: str | None) -> list[tuple[str, list[str]]]:
    """(label, extra tokenmill arguments) of every runner measured."""
    dask = ["--runner", "dask"] + (["--dask-address", address] if address else ["--dask-workers", str(workers)])
    return [
        ("FnApiRunner (default)", []),
        (f"FnApiRunner --workers {workers}", ["--workers", str(workers)]),
        ("PortableRunner (embedded, loopback)", ["--runner", "PortableRunner", "--job_endpoint=embed",
                                                 "--environment_type=LOOPBACK"]),
        (f"DirectRunner multi-process ({workers})", ["--runner", "DirectRunner", f"--direct_num_workers={workers}",
                                                     "--direct_running_mode=multi_processing"]),
        (f"Dask ({'cluster at ' + address if address else f'local cluster, {workers} workers'})", dask),
    ]


def paragraphs_corpus(workdir: Path, paragraphs: int) -> Path:
    """The real-paragraph JSONL (cached in the workdir)."""
    path = workdir / f"real-{paragraphs}.jsonl"
    if not path.exists():
        log(f"writing {paragraphs:,} real paragraphs ...")
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as fh:
            for record in real_records(paragraphs):
                fh.write(json.dumps(record) + "\n")
        tmp.rename(path)
    return path


def corpus(args: argparse.Namespace, workdir: Path) -> tuple[list[str], str]:
    """(JSONL files, description) of the job's input: --paragraphs, else --corpus."""
    if args.paragraphs:
        path = paragraphs_corpus(workdir, args.paragraphs)
        return [str(path)], (f"{args.paragraphs:,} real paragraphs of this Python's standard library, "
                             f"/usr/share/doc and the installed packages ({path.stat().st_size / MB:.1f} MB)")
    return corpus_files(args, workdir, generated_corpus, "stdlib sources/docstrings + chatterbot multilingual")


def tokenizer(workdir: Path, files: list[str]) -> Path:
    """A 4k BPE trained on the corpus (cached, by the files' paths, sizes and mtimes)."""
    digest = hashlib.sha256()
    for f in files:
        st = os.stat(f)
        digest.update(f"{os.path.abspath(f)}:{st.st_size}:{st.st_mtime_ns};".encode())
    path = workdir / f"tok-{digest.hexdigest()[:12]}.json"
    if not path.exists():
        log("training a 4k tokenizer ...")
        code, _, _, _ = run_measured(tokenmill("train-tokenizer", *[a for f in files for a in ("-i", f)], "-o",
                                               str(path), "--vocab-size", "4000", "--no-progress", "--overwrite"),
                                     workdir / "tok.log")
        if code != 0:
            raise SystemExit(f"train-tokenizer failed:\n{tail(workdir / 'tok.log')}")
    return path


def tree_digest(out: Path) -> str:
    """sha256 over every file of shards/, documents/ and rejected/ (names and bytes)."""
    h = hashlib.sha256()
    for sub in ("shards", "documents", "rejected"):
        for p in sorted((out / sub).rglob("*")):
            if p.is_file():
                h.update(str(p.relative_to(out)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def benchmark(args: argparse.Namespace, workdir: Path, cores: int) -> int:
    """Every runner on the same job; the report on stdout (exit 1 if any output differs)."""
    files, corpus_desc = corpus(args, workdir)
    log(f"corpus: {corpus_desc}")
    n_docs, text_bytes = corpus_stats(files, args.text_field)
    tok = tokenizer(workdir, files)
    recipe = workdir / "recipe.yaml"
    recipe.write_text(RECIPE.replace("BUDGET", str(text_bytes // BYTES_PER_BUDGET_TOKEN)))
    results: list[dict[str, Any]] = []
    for label, extra in runners(args.workers, args.dask_address):
        out = workdir / f"out-{len(results)}"
        log(f"running {label} ...")
        argv = tokenmill("prepare", *[a for f in files for a in ("-i", f)], "-t", str(tok), "--text-field",
                         args.text_field, "--id-field", args.id_field, "--seq-len", "512", "--recipe", str(recipe),
                         "--packing", "best-fit", "--shuffle-seed", "7", "--stream-mb", "4", "--emit-documents",
                         "-o", str(out), "--overwrite", "--no-progress", *extra)
        log_path = workdir / f"run-{len(results)}.log"
        code, seconds, peak, _ = run_measured(argv, log_path)
        if code != 0:
            results.append({"label": label, "failed": tail(log_path, 3).strip()})
            log(f"  FAILED: {results[-1]['failed']}")
            continue
        results.append({"label": label, "seconds": seconds, "peak": peak, "digest": tree_digest(out)})
        log(f"  {seconds:.1f} s")
    base = results[0]
    print("")
    print(f"machine: {machine_line()}")
    print(f"corpus: {corpus_desc}")
    print(f"job: tokenmill prepare, {n_docs:,} documents, {text_bytes / MB:.1f} MB of text, recipe "
          f"{' '.join(RECIPE.split())}, best-fit, shuffle; each runner the whole command")
    print(f"{'runner':<48} {'seconds':>8} {'vs FnApiRunner':>15} {'peak RSS':>9}  bytes")
    for r in results:
        if "failed" in r:
            print(f"{r['label']:<48} FAILED {r['failed'].splitlines()[-1] if r['failed'] else ''}")
            continue
        same = "identical" if r["digest"] == base.get("digest") else "DIFFERENT"
        print(f"{r['label']:<48} {r['seconds']:>8.1f} {r['seconds'] / base['seconds']:>14.2f}x "
              f"{fmt_gb(r['peak']):>9}  {same}")
    dask = results[-1]
    if "seconds" in dask and "seconds" in base:
        ratio = dask["seconds"] / base["seconds"]
        print(f"target: Dask within {TARGET_DASK_VS_FNAPI:g}x FnApiRunner: {ratio:.2f}x "
              f"{verdict(ratio <= TARGET_DASK_VS_FNAPI)}")
    return 0 if all(r.get("digest") == base.get("digest") for r in results) else 1


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    corpus_arguments(ap, SLICE_MB, slice_mb=SLICE_MB)
    ap.add_argument("--paragraphs", type=int, default=None, metavar="N",
                    help="instead of --corpus: the first N paragraphs of this Python's standard library, "
                         "/usr/share/doc and the installed packages (60000 are about 20 MB)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes of the multi-process runs (default 2)")
    ap.add_argument("--dask-address", default=None, metavar="HOST:PORT",
                    help="a running Dask scheduler instead of a local cluster")
    ap.add_argument("--workdir", default=None, metavar="DIR", help="kept and reused (default: a temporary folder)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark."""
    return run_benchmark(list(sys.argv[1:] if argv is None else argv), parse_args, lambda spec: 0, benchmark,
                         "tokenmill-runners-bench-")


if __name__ == "__main__":
    sys.exit(main())
