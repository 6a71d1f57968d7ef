"""Fixed costs of the ad hoc commands: ``--help``, an argument error, and ``prepare``/``filter``/``stats`` of a
20-document file, wall clock of the whole command (a fresh process each time), with where the time goes.

The 20 documents are the first 20 with text of ``--corpus``: by default the real multilingual corpus of
``benchmarks/corpora.py`` (prose in Latin, Cyrillic and CJK scripts from Debian packages, built and cached in
``.bench-cache/corpora`` on first use; ``code`` and ``mix`` are the others), ``generated`` for the demo corpus (this
Python's standard library, no download), or a glob of JSONL files; the corpus used is printed first. ``prepare``
uses a small BPE trained on them (not timed). Each command runs ``--repeat`` times (default 5) and the median is
reported. Targets (printed PASS/MISS, never asserted): a 20-document ``prepare``, ``filter``
or ``stats`` in <= 2 s; ``--help`` and argument errors in <= 0.3 s.

Where the time goes: every command is also run once with ``python -X importtime``; the table splits its import time
by top-level package (apache_beam, numpy, pyarrow, tokenmill's own modules, ...); the rest of the wall time is the
run itself (Beam's pipeline construction and runner start-up, the work, writing the outputs).

    .venv/bin/python benchmarks/fixed_cost.py [--repeat 5] [--corpus multilingual|code|mix|generated|GLOB]
                                              [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prepare_throughput import (  # noqa: E402
    DEFAULT_CORPUS, GENERATED, REAL_CORPORA, corpus_source, iter_json_records, log, machine_line, repo_root,
    run_benchmark, verdict)
from prepare_throughput import tokenmill_command as tm  # noqa: E402  (the argv of a tokenmill command)

DOCUMENTS = 20
TARGET_RUN_S = 2.0
TARGET_HELP_S = 0.3
OWN = ("pipelines", "transforms", "schemas")


def source_records(corpus: str) -> tuple[Iterator[dict], str]:
    """(records, description): the records the 20 documents are taken from, of a named real corpus, the demo corpus
    (``generated``) or a glob's files."""
    if corpus == GENERATED:
        from transforms.read.demo_corpus import demo_records

        return demo_records(), "generated: the demo corpus (this Python's standard library, sources and docstrings)"
    files, description = corpus_source(corpus)
    description = f"the first {DOCUMENTS} documents of {description}"
    return (obj for file in files for obj in iter_json_records(file)), description


def small_input(workdir: Path, corpus: str) -> tuple[Path, str]:
    """The 20-document JSONL file (the first documents with text of the corpus) and where they come from."""
    path = workdir / "twenty.jsonl"
    records, description = source_records(corpus)
    n = 0
    with open(path, "w", encoding="utf-8") as out:
        for obj in records:
            if isinstance(obj, dict) and isinstance(obj.get("text"), str) and obj["text"].strip():
                out.write(json.dumps({"id": str(obj.get("id", n)), "text": obj["text"]}, ensure_ascii=False) + "\n")
                n += 1
                if n == DOCUMENTS:
                    return path, description
    raise SystemExit(f"the corpus has fewer than {DOCUMENTS} documents")


def timed(argv: list[str], expect: int = 0, env: dict[str, str] | None = None) -> tuple[float, str]:
    """(wall seconds, stderr) of one run; fails if its exit code is not ``expect``."""
    t0 = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, cwd=str(repo_root()), env=env)
    seconds = time.perf_counter() - t0
    if done.returncode != expect:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode} (expected {expect}):\n{done.stderr[-3000:]}")
    return seconds, done.stderr


def import_split(argv: list[str], expect: int) -> dict[str, float]:
    """Seconds of import time per top-level package (self times summed) of one run under ``-X importtime``."""
    env = dict(os.environ, PYTHONPROFILEIMPORTTIME="1")
    _, err = timed(argv, expect, env)
    by: dict[str, float] = {}
    for line in err.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _, name = line[len("import time:"):].split("|")
        top = name.strip().split(".")[0]
        top = "tokenmill" if top in OWN else top
        by[top] = by.get(top, 0.0) + int(self_us) / 1e6
    return by


def cases(workdir: Path, small: Path, tok: Path) -> list[tuple[str, list[str], int, float]]:
    """(label, argv, expected exit code, target seconds) of every measured command."""
    out = workdir / "out"
    return [
        ("tokenmill --help", tm("--help"), 0, TARGET_HELP_S),
        ("tokenmill prepare --help", tm("prepare", "--help"), 0, TARGET_HELP_S),
        ("tokenmill filter --help", tm("filter", "--help"), 0, TARGET_HELP_S),
        ("tokenmill stats --help", tm("stats", "--help"), 0, TARGET_HELP_S),
        ("prepare, bad option value", tm("prepare", "-i", str(small), "-o", str(out / "x"), "-t", str(tok),
                                                "--seq-len", "many"), 2, TARGET_HELP_S),
        ("prepare, 20 documents", tm("prepare", "-i", str(small), "-o", str(out / "prepare"), "-t", str(tok),
                                            "--seq-len", "256", "--overwrite", "--no-progress"), 0, TARGET_RUN_S),
        ("filter --recipe fineweb, 20 documents", tm("filter", "-i", str(small), "-o", str(out / "filter"),
                                                            "--recipe", "fineweb", "--overwrite", "--no-progress"),
         0, TARGET_RUN_S),
        ("stats, 20 documents", tm("stats", "-i", str(small), "-o", str(out / "stats"), "--overwrite",
                                          "--no-progress"), 0, TARGET_RUN_S),
    ]


def benchmark(args: argparse.Namespace, workdir: Path, cores: int) -> int:
    """Measure every case; the report on stdout."""
    small, corpus_desc = small_input(workdir, args.corpus)
    log(f"corpus: {corpus_desc}")
    tok = workdir / "tok.json"
    if not tok.exists():
        timed(tm("train-tokenizer", "-i", str(small), "-o", str(tok), "--vocab-size", "600", "--overwrite",
                        "--no-progress"))
    rows = []
    for label, argv, expect, target in cases(workdir, small, tok):
        log(f"{label} ...")
        timed(argv, expect)  # warm the page cache: every run after this one sees the same files
        times = [timed(argv, expect)[0] for _ in range(args.repeat)]
        split = import_split(argv, expect)
        rows.append((label, statistics.median(times), min(times), max(times), target, split))
    print("")
    print(f"machine: {machine_line()}")
    print(f"corpus: {corpus_desc}")
    print(f"input: {DOCUMENTS} documents ({small.stat().st_size:,} bytes of JSONL); median of {args.repeat} runs, "
          "whole command, a fresh process each")
    print(f"{'command':<40} {'median s':>8} {'min':>6} {'max':>6} {'target':>7}  imports (s, by package)")
    ok_all = True
    for label, median, low, high, target, split in rows:
        ok = median <= target
        ok_all &= ok
        top = sorted(split.items(), key=lambda kv: -kv[1])
        total = sum(split.values())
        parts = ", ".join(f"{k} {v:.2f}" for k, v in top[:5] if v >= 0.01)
        print(f"{label:<40} {median:>8.2f} {low:>6.2f} {high:>6.2f} {target:>5.1f} {verdict(ok)}  "
              f"all {total:.2f}: {parts}")
    print(f"targets: every command within its target: {verdict(ok_all)}")
    return 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="runs of each command; the median is reported (default 5)")
    ap.add_argument("--corpus", default=DEFAULT_CORPUS, metavar="NAME|GLOB",
                    help=f"where the 20 documents come from: {', '.join(REAL_CORPORA)} (real corpora of "
                         f"benchmarks/corpora.py, built on first use), {GENERATED} (the demo corpus: this Python's "
                         f"standard library) or a glob of JSONL files (default: {DEFAULT_CORPUS})")
    ap.add_argument("--workdir", default=None, metavar="DIR", help="kept (default: a temporary folder)")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark."""
    return run_benchmark(list(sys.argv[1:] if argv is None else argv), parse_args, lambda spec: 0, benchmark,
                         "tokenmill-fixed-cost-")


if __name__ == "__main__":
    sys.exit(main())
