"""Throughput of ``tokenmill stats`` (no tokenizer) against datatrove's DocStats and LineStats on the same input.

What it measures, in one run, on the same JSONL files and the same cores:

* ``tokenmill stats --workers 2``: the whole CLI command in a subprocess (start-up, imports, Beam, writing stats.json
  and report.html), wall clock, and the run's own seconds as stats.json records them (from the call to the written
  statistics). Every measure of the command is on: sizes, length distributions, the nine quality signals, the
  exact-duplicate count (a shuffle of text hashes), the HyperLogLog distinct count and the frequent-lines summary.
* ``tokenmill stats --by source``: the same with a breakdown by the records' source field.
* ``datatrove``: ``JsonlReader`` → ``DocStats`` → ``LineStats`` on a ``LocalPipelineExecutor`` with tasks = workers =
  cores (``executor.run()`` timed in a subprocess, imports not), computing the summary and histogram groups
  (its per-domain groups need URL metadata), followed by its ``StatsMerger`` (timed separately: datatrove needs it
  to get corpus-wide numbers).

Throughput is MB (10^6 bytes) of document text (UTF-8 bytes of every record's text) per wall-clock second. The
corpus is by default the real multilingual corpus of ``benchmarks/corpora.py`` (~110 MB of prose in Latin, Cyrillic
and CJK scripts from translated documentation in Debian packages, built and cached in ``.bench-cache/corpora`` on
first use); ``--corpus mix`` is its 1 GB+ mix of prose and code, ``--corpus code`` the code corpus, ``--slice-mb N``
the first N MB of one, ``--corpus generated`` the generated corpus (``--size-mb``, no download), or a glob of JSONL
files. The corpus used is printed first. Each system runs --repeat times (default 1); the median is reported.

Targets (printed with PASS/MISS, never asserted): tokenmill stats without a tokenizer >= 30 MB/s on 2 cores (>= 40
MB/s on 1 GB and more), and >= 2x datatrove's DocStats + LineStats on the same files.

Usage (from the repository root):

    .venv/bin/python benchmarks/stats_throughput.py [--corpus multilingual|code|mix|generated|GLOB] [--repeat 1] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prepare_throughput import (  # noqa: E402
    corpus_arguments, corpus_files, corpus_stats, generated_corpus, log, run_measured,
    tokenmill_command
)


TARGET_MB_S = 30  # on ~100 MB
TARGET_1GB_MB_S = 40  # on 1 GB and more (fixed costs spread thinner)
TARGET_VS_DATATROVE = 2.0
GROUPS = ["summary", "histogram"]  # corpus-wide numbers and histograms (the fqdn/suffix groups need URLs)


def child_datatrove(spec: dict[str, Any]) -> dict[str, Any]:
    """datatrove: JsonlReader -> DocStats -> LineStats, then StatsMerger; both timed."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.stats import DocStats, LineStats, StatsMerger

    out = Path(spec["output"])
    stats_dir = str(out / "stats")
    executor = LocalPipelineExecutor(
        pipeline=[JsonlReader(spec["input_dir"], text_key=spec["text_field"], glob_pattern="*.jsonl"),
                  DocStats(stats_dir, groups_to_compute=GROUPS), LineStats(stats_dir, groups_to_compute=GROUPS)],
        tasks=spec["tasks"], workers=spec["tasks"], logging_dir=str(out / "logs"), skip_completed=False)
    t0 = time.perf_counter()
    executor.run()
    seconds = time.perf_counter() - t0
    merger = LocalPipelineExecutor(
        pipeline=[StatsMerger(stats_dir, str(out / "merged"))],
        tasks=spec["tasks"], workers=spec["tasks"], logging_dir=str(out / "logs-merge"), skip_completed=False)
    t0 = time.perf_counter()
    merger.run()
    return {"seconds": seconds, "merge_seconds": time.perf_counter() - t0}


def tokenmill_stats(files_dir: str, output: Path, workers: int, extra: list[str]) -> list[str]:
    """The ``tokenmill stats`` command line."""
    cmd = tokenmill_command()
    return cmd + ["stats", "-i", os.path.join(files_dir, "*.jsonl"), "-o", str(output), "--workers", str(workers),
                  "--overwrite", "--no-progress", *extra]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    corpus_arguments(ap, 150.0)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        spec = json.loads(Path(args._child).read_text())
        Path(spec["result"]).write_text(json.dumps(child_datatrove(spec)))
        return 0
    started = time.perf_counter()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="tokenmill-stats-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    files, description = corpus_files(args, workdir, generated_corpus, "stdlib sources/docstrings + chatterbot")
    log(f"corpus: {description}")
    if len({os.path.dirname(f) for f in files}) != 1:
        raise SystemExit("--corpus files must be in one directory")
    files_dir = os.path.dirname(files[0])
    docs, text_bytes = corpus_stats(files, args.text_field)
    mb = text_bytes / 1e6
    log(f"corpus: {len(files)} files, {docs:,} documents, {mb:.1f} MB of text")
    for path in files:  # page cache: every system reads from memory
        Path(path).read_bytes()

    results: dict[str, list[dict[str, float]]] = {}
    for r in range(args.repeat):
        for name, extra in (("tokenmill stats", []), ("tokenmill stats --by source", ["--by", "source"])):
            out = workdir / "out-stats"
            shutil.rmtree(out, ignore_errors=True)
            code, seconds, peak, _ = run_measured(tokenmill_stats(files_dir, out, args.workers, extra),
                                                  workdir / "stats.log")
            if code != 0:
                raise SystemExit(f"tokenmill stats failed; see {workdir / 'stats.log'}")
            stats = json.loads((out / "stats.json").read_text())
            if stats["totals"]["bytes"] != text_bytes:
                raise SystemExit(f"tokenmill stats measured {stats['totals']['bytes']} bytes, not {text_bytes}")
            results.setdefault(name, []).append({"seconds": seconds, "run_seconds": stats["seconds"],
                                                 "peak": peak})
            log(f"round {r + 1}: {name}: {seconds:.1f} s ({mb / seconds:.1f} MB/s)")
        out = workdir / "out-datatrove"
        shutil.rmtree(out, ignore_errors=True)
        spec_path = workdir / "datatrove.spec.json"
        spec = {"input_dir": files_dir, "text_field": args.text_field, "tasks": args.workers, "output": str(out),
                "result": str(workdir / "datatrove.result.json")}
        spec_path.write_text(json.dumps(spec))
        code, seconds, peak, _ = run_measured([sys.executable, str(Path(__file__).resolve()), "--_child",
                                               str(spec_path)], workdir / "datatrove.log")
        if code != 0:
            raise SystemExit(f"datatrove failed; see {workdir / 'datatrove.log'}")
        res = json.loads(Path(spec["result"]).read_text())
        results.setdefault("datatrove DocStats + LineStats", []).append(
            {"seconds": res["seconds"], "run_seconds": res["seconds"], "merge": res["merge_seconds"], "peak": peak})
        log(f"round {r + 1}: datatrove: {res['seconds']:.1f} s (+ merge {res['merge_seconds']:.1f} s)")

    import apache_beam
    import datatrove

    print()
    print("tokenmill stats benchmark")
    print("=========================")
    print(f"machine:  cores={os.cpu_count()} python={sys.version.split()[0]} apache-beam={apache_beam.__version__} "
          f"datatrove={datatrove.__version__ if hasattr(datatrove, '__version__') else '?'}")
    print(f"corpus:   {description}")
    print(f"          {len(files)} JSONL files, {docs:,} documents, {mb:.1f} MB of text; {args.workers} workers; "
          f"median of {args.repeat}")
    print()
    print(f"{'system':<34} {'seconds':>8} {'MB/s':>7} {'inner s':>8} {'inner MB/s':>11} {'peak RSS GB':>12}")
    print("-" * 86)
    med: dict[str, float] = {}
    for name, runs in results.items():
        sec = statistics.median(x["seconds"] for x in runs)
        inner = statistics.median(x["run_seconds"] for x in runs)
        med[name] = sec
        extra = f"  (+ StatsMerger {statistics.median(x['merge'] for x in runs):.1f} s)" if "merge" in runs[0] else ""
        print(f"{name:<34} {sec:>8.1f} {mb / sec:>7.1f} {inner:>8.1f} {mb / inner:>11.1f} "
              f"{statistics.median(x['peak'] for x in runs) / 1e9:>12.2f}{extra}")
    rate = mb / med["tokenmill stats"]
    vs_datatrove = med["datatrove DocStats + LineStats"] / med["tokenmill stats"]
    target = TARGET_1GB_MB_S if mb >= 1000 else TARGET_MB_S
    print()
    print("targets (informational, never asserted):")
    print(f"  [{'PASS' if rate >= target else 'MISS'}] tokenmill stats without a tokenizer >= {target} MB/s on "
          f"{args.workers} cores{' (1 GB and more)' if mb >= 1000 else ''}: {rate:.1f} MB/s, whole command")
    print(f"  [{'PASS' if vs_datatrove >= TARGET_VS_DATATROVE else 'MISS'}] >= {TARGET_VS_DATATROVE:g}x datatrove "
          f"DocStats + LineStats: {vs_datatrove:.2f}x ({mb / med['datatrove DocStats + LineStats']:.1f} MB/s)")
    print(f"\ntotal benchmark time: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
