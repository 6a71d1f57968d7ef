"""Throughput and exactness benchmark of the quality-filter engines against datatrove's own pipeline.

What it measures, in one run, on the same JSONL files and the same cores (every system in a fresh process):

* tokenmill filter CLI, ``--recipe fineweb`` with ``--filter-engine fast`` and with ``--filter-engine datatrove``
  (the whole command, interpreter start and imports included; its defaults use every core): the headline numbers.
* the engine core: ``transforms.filter.chain.make_engine(recipe).apply(texts, ids)`` in as many processes as cores,
  each reading and parsing its share of the JSONL files (files dealt round-robin, as datatrove deals them to its
  tasks) and applying the engine in batches of 1,000 documents; timed from the start of the pool to the last
  result (process start-up, engine construction, reading and JSON parsing included), for both engines.
* datatrove itself: ``JsonlReader -> GopherRepetitionFilter -> GopherQualityFilter -> C4QualityFilter
  (filter_no_terminal_punct=False) -> FineWebQualityFilter -> JsonlWriter`` on a ``LocalPipelineExecutor`` with
  tasks = workers = cores, each filter with its own exclusion ``JsonlWriter`` so that every document's fate (the
  filter that dropped it and datatrove's reason, or kept with its final text) is known; ``executor.run()`` timed.

Throughput is MB of document text (UTF-8 bytes of the text field, MB = 10^6 bytes) per wall-clock second.
Agreement: for each filter, the share of documents on which a system and datatrove (run as above) agree about that
filter (both dropped the document there with the same reason, or neither did); also the share of identical final
outcomes and of identical kept text (C4 removes lines).

The default corpus is the real multilingual corpus of ``benchmarks/corpora.py`` (~110 MB of prose in Latin,
Cyrillic and CJK scripts from translated documentation in Debian packages, built and cached in
``.bench-cache/corpora`` on first use; ``--slice-mb 10`` for its first 10 MB, ``--corpus code`` or ``mix`` for the
others). The corpus used is printed first.

``--corpus generated`` is a generated corpus (about --size-mb MB of text, no download), prose first: this Python's
standard library docstrings (English technical prose with code examples) and the multilingual conversations of the
``chatterbot_corpus`` package (28 languages, grouped into documents of 8-40 conversations), plus 15% of the bytes in
standard-library module sources (code, which the filters mostly drop). Each round is a new variant whose paragraphs
are reordered and about 1 in 4 distinct words respelled (``perturb`` of prepare_throughput.py), so word caches
meet new words all along as on a larger real corpus; shuffled deterministically, written as several JSONL files.

Targets (printed with PASS/MISS, never asserted): the fast engine >= 15x datatrove's LocalPipelineExecutor on the
same cores (>= 5x below 20 MB, where fixed costs weigh), with 100% agreement on every filter.

Usage (from the repository root):

    .venv/bin/python benchmarks/filter_throughput.py [--corpus multilingual] [--slice-mb MB] [--workdir DIR] [--quick]
    .venv/bin/python benchmarks/filter_throughput.py --corpus generated [--size-mb 75]
    .venv/bin/python benchmarks/filter_throughput.py --corpus 'data/*.jsonl' --text-field text --id-field id
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prepare_throughput import (
    MB,
    cached_corpus,
    chatterbot_conversations,
    corpus_arguments,
    corpus_files,
    corpus_stats,
    fmt_ratio,
    iter_json_records,
    log,
    machine_line,
    multilingual_documents,
    perturb,
    run_benchmark,
    run_measured,
    tail,
    verdict,
    tokenmill_command,
)

CORPUS_FILES = 8
CORPUS_VERSION = 1  # bump when the generator changes, so cached corpora in a --workdir are rebuilt
CODE_SHARE = 0.15
ML_VARIANTS_PER_ROUND = 2
BATCH_DOCS = 1000
RECIPE = "fineweb"
TARGET_VS_DATATROVE = 15.0  # on ~100 MB
TARGET_VS_DATATROVE_SMALL = 5.0  # on a 10 MB slice, where fixed costs weigh
SMALL_MB = 20.0  # below this, the small-input target applies
TARGET_AGREEMENT = 1.0
KEPT = "kept"

# the fineweb preset's stages, as datatrove classes with the preset's parameters
DATATROVE_CHAIN = (
    ("gopher_repetition", "GopherRepetitionFilter", {}),
    ("gopher_quality", "GopherQualityFilter", {}),
    ("c4_quality", "C4QualityFilter", {"filter_no_terminal_punct": False}),
    ("fineweb_quality", "FineWebQualityFilter", {}),
)


# ---------------------------------------------------------------------------------------------------------------
# corpus
# ---------------------------------------------------------------------------------------------------------------


def prose_corpus_records(size_bytes: int) -> Iterator[dict[str, str]]:
    """Records {id, text, source}: docstring prose and multilingual dialogues with 15% code, in variant rounds."""
    from transforms.read.demo_corpus import demo_records

    stdlib = list(demo_records())
    prose = [r for r in stdlib if r["source"] == "stdlib-docstrings"]
    code = [r for r in stdlib if r["source"] == "stdlib-source"]
    random.Random(3).shuffle(code)
    conversations = chatterbot_conversations()
    chosen: list[dict[str, str]] = []
    total = variant = next_code = 0
    while total < size_bytes:
        respell: dict[str, str] = {}
        docs = [{"id": f"{r['id']}#v{variant}", "source": r["source"],
                 "text": perturb(r["text"], variant, k, respell) if variant else r["text"]}
                for k, r in enumerate(prose)]
        for v in range(ML_VARIANTS_PER_ROUND):
            docs += [{"id": i, "text": t, "source": "chatterbot"}
                     for i, t in multilingual_documents(conversations, variant * ML_VARIANTS_PER_ROUND + v)]
        code_bytes = 0
        code_wanted = sum(len(d["text"].encode("utf-8")) for d in docs) * CODE_SHARE / (1 - CODE_SHARE)
        while code_bytes < code_wanted:
            r = code[next_code % len(code)]
            next_code += 1
            docs.append({"id": f"{r['id']}#{next_code}", "text": r["text"], "source": r["source"]})
            code_bytes += len(r["text"].encode("utf-8"))
        random.Random(variant).shuffle(docs)
        for doc in docs:
            chosen.append(doc)
            total += len(doc["text"].encode("utf-8"))
            if total >= size_bytes:
                break
        variant += 1
    random.Random(12345).shuffle(chosen)
    yield from chosen


def generated_corpus(workdir: Path, size_mb: float) -> list[str]:
    """The generated corpus files in ``workdir`` (built, or reused when an identical one is there)."""
    return cached_corpus(workdir / f"filter-corpus-{size_mb:g}mb", {"version": CORPUS_VERSION, "size_mb": size_mb},
                         f"a ~{size_mb:g} MB corpus (stdlib docstrings + chatterbot multilingual + 15% code)",
                         lambda: prose_corpus_records(int(size_mb * MB)), CORPUS_FILES)


# ---------------------------------------------------------------------------------------------------------------
# systems (each runs in a child process: ``--_child spec.json``)
# ---------------------------------------------------------------------------------------------------------------


def prose_first_corpus(args: argparse.Namespace, workdir: Path) -> tuple[list[str], str, int, float]:
    """(files, description, documents, MB of text) of ``--corpus`` or of the generated prose-first corpus."""
    files, description = corpus_files(args, workdir, generated_corpus,
                                      "stdlib docstrings + chatterbot multilingual + 15% code")
    log(f"corpus: {description}")
    n_docs, text_bytes = corpus_stats(files, args.text_field)
    return files, description, n_docs, text_bytes / MB


def text_digest(text: str) -> str:
    """A short digest of a kept text (to compare final texts without keeping them)."""
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def engine_share(spec: dict[str, Any], rank: int) -> list[list[str]]:
    """One pool process: its files (round-robin), read, parsed and filtered; [id, stage or 'kept', reason, digest]."""
    from transforms.filter.chain import make_engine
    from transforms.recipe.recipes import load_recipe

    engine = make_engine(load_recipe(RECIPE, engine=spec["engine"]))
    out: list[list[str]] = []
    texts: list[str] = []
    ids: list[str] = []

    def flush() -> None:
        """Apply the engine to the pending batch."""
        for doc_id, d in zip(ids, engine.apply(texts, ids)):
            out.append([doc_id, KEPT, "", text_digest(d.text)] if d.keep else [doc_id, d.stage, d.reason, ""])
        texts.clear()
        ids.clear()

    for path in spec["files"][rank :: spec["workers"]]:
        for obj in iter_json_records(path):
            text = obj.get(spec["text_field"]) if isinstance(obj, dict) else None
            if isinstance(text, str):
                texts.append(text)
                ids.append(str(obj.get(spec["id_field"])))
                if len(texts) >= BATCH_DOCS:
                    flush()
    flush()
    return out


def child_engine(spec: dict[str, Any]) -> dict[str, Any]:
    """The engine core in a pool of processes; the pool's whole life timed."""
    import multiprocessing

    t0 = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(spec["workers"]) as pool:
        shares = pool.starmap(engine_share, [(spec, rank) for rank in range(spec["workers"])])
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "outcomes": [row for share in shares for row in share]}


def child_datatrove(spec: dict[str, Any]) -> dict[str, Any]:
    """datatrove's LocalPipelineExecutor running the chain with per-filter exclusion writers; run() timed."""
    import datatrove.pipeline.filters as filters
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    output = Path(spec["output"])
    steps: list[Any] = [JsonlReader(spec["input_dir"], text_key=spec["text_field"], id_key=spec["id_field"],
                                    glob_pattern="*")]
    for stage, cls, params in DATATROVE_CHAIN:
        excluded = JsonlWriter(str(output / "excluded" / stage), compression=None)
        steps.append(getattr(filters, cls)(exclusion_writer=excluded, **params))
    steps.append(JsonlWriter(str(output / KEPT), compression=None))
    executor = LocalPipelineExecutor(pipeline=steps, tasks=spec["workers"], workers=spec["workers"],
                                     logging_dir=str(output / "logs"), skip_completed=False)
    t0 = time.perf_counter()
    executor.run()
    seconds = time.perf_counter() - t0
    outcomes = []
    for stage, _, _ in DATATROVE_CHAIN:
        for path in sorted((output / "excluded" / stage).glob("*.jsonl")):
            for obj in iter_json_records(str(path)):
                outcomes.append([obj["id"], stage, obj["metadata"]["filter_reason"], ""])
    for path in sorted((output / KEPT).glob("*.jsonl")):
        for obj in iter_json_records(str(path)):
            outcomes.append([obj["id"], KEPT, "", text_digest(obj["text"])])
    return {"seconds": seconds, "outcomes": outcomes}


def child_main(spec_path: str) -> int:
    """Entry point of a child process: run one system and write its result next to the spec."""
    spec = json.loads(Path(spec_path).read_text())
    result = {"engine": child_engine, "datatrove": child_datatrove}[spec["kind"]](spec)
    Path(spec["result"]).write_text(json.dumps(result))
    return 0


def run_child(spec: dict[str, Any], runs: Path, label: str) -> dict[str, Any]:
    """Run one system in a fresh interpreter; its result plus the whole process's wall seconds."""
    spec = dict(spec, result=str(runs / f"{label}.result.json"))
    spec_path = runs / f"{label}.spec.json"
    spec_path.write_text(json.dumps(spec))
    log_path = runs / f"{label}.log"
    code, seconds, _, _ = run_measured([sys.executable, str(Path(__file__).resolve()), "--_child", str(spec_path)],
                                       log_path)
    if code != 0 or not Path(spec["result"]).exists():
        raise RuntimeError(f"{label} failed (exit {code}); its output is in {log_path}:\n{tail(log_path)}")
    return json.loads(Path(spec["result"]).read_text()) | {"process_seconds": seconds}


def run_cli(files: list[str], engine: str, output: Path, args: argparse.Namespace, log_path: Path) -> dict[str, Any]:
    """``tokenmill filter --recipe fineweb --filter-engine ENGINE``, the whole command timed; its outcomes."""
    cmd = tokenmill_command()
    cmd += ["filter", "--recipe", RECIPE, "--filter-engine", engine, "--output", str(output), "--text-field",
            args.text_field, "--id-field", args.id_field, "--no-progress", "--overwrite"]
    for f in files:
        cmd += ["--input", f]
    code, seconds, _, _ = run_measured(cmd, log_path)
    if code != 0:
        raise RuntimeError(f"tokenmill filter ({engine}) failed (exit {code}); see {log_path}:\n{tail(log_path)}")
    import pyarrow.parquet as pq

    outcomes = []
    for path in sorted(output.glob("rejected/*.jsonl")):
        for obj in iter_json_records(str(path)):
            # a filter's rejection names its filter in detail: "<filter>/<reason>"
            stage, _, reason = obj["detail"].partition("/") if "/" in (obj.get("detail") or "") else (
                obj["stage"], "", obj["reason"])
            outcomes.append([obj["id"], stage, reason, ""])
    for path in sorted(output.glob("documents/**/*.parquet")):
        table = pq.read_table(path, columns=["id", "text"])
        outcomes += [[i, KEPT, "", text_digest(t)] for i, t in zip(table["id"].to_pylist(), table["text"].to_pylist())]
    return {"seconds": seconds, "process_seconds": seconds, "outcomes": outcomes}


# ---------------------------------------------------------------------------------------------------------------
# agreement and report
# ---------------------------------------------------------------------------------------------------------------


def agreement(outcomes: list[list[str]], reference: list[list[str]]) -> dict[str, float]:
    """Per filter: share of documents on which both agree about that filter; 'outcome' and 'kept text' overall."""
    ours = {row[0]: row for row in outcomes}
    ref = {row[0]: row for row in reference}
    ids = ref.keys() | ours.keys()
    missing = ("", "missing", "", "")
    out: dict[str, float] = {}
    for stage, _, _ in DATATROVE_CHAIN:
        same = sum((ours.get(i, missing)[1] == stage) == (ref.get(i, missing)[1] == stage)
                   and (ref.get(i, missing)[1] != stage or ours[i][2] == ref[i][2]) for i in ids)
        out[stage] = same / len(ids) if ids else 1.0
    out["outcome"] = sum(ours.get(i, missing)[1:3] == ref.get(i, missing)[1:3] for i in ids) / max(len(ids), 1)
    kept = [i for i in ids if ref.get(i, missing)[1] == KEPT]
    out["kept text"] = sum(ours.get(i, missing)[3] == ref[i][3] for i in kept) / len(kept) if kept else 1.0
    return out


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    corpus_arguments(ap, 75, unique_ids=True)
    ap.add_argument("--quick", action="store_true", help="a smoke run on 3 MB of the corpus (--slice-mb 3)")
    ap.add_argument("--skip-cli", action="store_true", help="do not run the tokenmill filter command")
    ap.add_argument("--workdir", default=None, metavar="DIR",
                    help="where the corpus and outputs go; kept, and the corpus reused by later runs (default: a "
                         "temporary directory removed at the end)")
    args = ap.parse_args(argv)
    if args.quick:
        args.size_mb = 3
        args.slice_mb = args.slice_mb or 3
    return args


def main(argv: list[str] | None = None) -> int:
    """Run every system, print throughput, ratios, agreement and verdicts."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_benchmark(argv, parse_args, child_main, benchmark, "tokenmill-filter-bench-")


def benchmark(args: argparse.Namespace, workdir: Path, cores: int) -> int:
    """The whole benchmark in ``workdir``."""
    started = time.perf_counter()
    files, corpus_desc, n_docs, mb = prose_first_corpus(args, workdir)
    dt_input = workdir / "datatrove-input"  # datatrove reads a folder: links to exactly these files
    shutil.rmtree(dt_input, ignore_errors=True)
    dt_input.mkdir()
    for n, f in enumerate(files):
        os.symlink(f, dt_input / f"{n:05d}-{os.path.basename(f)}")
    runs = workdir / "runs"
    runs.mkdir(exist_ok=True)
    common = {"files": files, "text_field": args.text_field, "id_field": args.id_field, "workers": cores}

    results: dict[str, dict[str, Any]] = {}
    names = {
        "dt": f"datatrove LocalPipelineExecutor (tasks={cores})",
        "cli-fast": "tokenmill filter --filter-engine fast",
        "cli-dt": "tokenmill filter --filter-engine datatrove",
        "core-fast": f"fast engine core ({cores} processes)",
        "core-dt": f"datatrove engine core ({cores} processes)",
    }
    for key in names:
        if key.startswith("cli") and args.skip_cli:
            continue
        log(f"running {names[key]} ...")
        out = workdir / "out" / key
        shutil.rmtree(out, ignore_errors=True)
        if key == "dt":
            results[key] = run_child(dict(common, kind="datatrove", input_dir=str(dt_input), output=str(out)), runs,
                                     key)
        elif key.startswith("cli"):
            results[key] = run_cli(files, key.split("-")[1].replace("dt", "datatrove"), out, args,
                                   runs / f"{key}.log")
        else:
            results[key] = run_child(dict(common, kind="engine", engine=key.split("-")[1].replace("dt", "datatrove")),
                                     runs, key)
        log(f"  {results[key]['seconds']:.1f} s, {mb / results[key]['seconds']:.2f} MB/s")
        shutil.rmtree(out, ignore_errors=True)
    print_report(results, names, corpus_desc, mb, n_docs, cores, time.perf_counter() - started)
    return 0


def print_report(results: dict[str, dict[str, Any]], names: dict[str, str], corpus_desc: str, mb: float,
                 n_docs: int, cores: int, total_seconds: float) -> None:
    """The final report on stdout."""
    p = print
    dt_rate = mb / results["dt"]["seconds"]
    reference = results["dt"]["outcomes"]
    fates = Counter(row[1] if row[1] == KEPT else f"{row[1]}/{row[2]}" for row in reference)
    p("")
    p("tokenmill quality-filter throughput benchmark (recipe fineweb)")
    p("=" * 62)
    p(f"machine:    {machine_line()}")
    p(f"corpus:     {corpus_desc}; {n_docs} documents, {mb:.1f} MB of text")
    p(f"datatrove:  kept {fates[KEPT]}; dropped " + ", ".join(f"{k} {v}" for k, v in fates.most_common() if k != KEPT))
    p("throughput: MB of document text (10^6 UTF-8 bytes) / wall seconds, each system in a fresh process")
    p("")
    stages = [s for s, _, _ in DATATROVE_CHAIN]
    p("agreement: share of documents on which the system and datatrove's executor agree about each filter (both "
      "dropped it there with the same reason, or neither did), about the whole outcome, and about kept text")
    header = f"{'system':<44} {'seconds':>8} {'MB/s':>7} {'vs datatrove':>13} " + \
             " ".join(f"{s:>17}" for s in stages + ["outcome", "kept text"])
    p(header)
    p("-" * len(header))
    for key, name in names.items():
        if key not in results:
            continue
        r = results[key]
        rate = mb / r["seconds"]
        agree = agreement(r["outcomes"], reference) if key != "dt" else {}
        cells = " ".join(f"{agree[s]:>17.3%}" if s in agree else f"{'(reference)':>17}"
                         for s in stages + ["outcome", "kept text"])
        p(f"{name:<44} {r['seconds']:>8.1f} {rate:>7.2f} {fmt_ratio(rate, dt_rate):>13} {cells}")
    p("")
    p("how each was timed: datatrove: executor.run(); tokenmill filter: the whole command (start-up and imports "
      "included); engine core: the process pool's whole life (start, engine construction, JSONL reading and parsing, "
      f"apply() in batches of {BATCH_DOCS})")
    p("")
    p("targets (informational, never asserted):")
    fast_key = "cli-fast" if "cli-fast" in results else "core-fast"
    fast_rate = mb / results[fast_key]["seconds"]
    target = TARGET_VS_DATATROVE_SMALL if mb < SMALL_MB else TARGET_VS_DATATROVE
    p(f"  [{verdict(fast_rate >= target * dt_rate)}] {names[fast_key]} >= {target:g}x "
      f"datatrove's LocalPipelineExecutor on {cores} cores: {fast_rate / dt_rate:.2f}x ({fast_rate:.2f} vs "
      f"{dt_rate:.2f} MB/s)")
    if fast_key != "core-fast":
        core_rate = mb / results["core-fast"]["seconds"]
        p(f"  (info) {names['core-fast']}: {core_rate / dt_rate:.2f}x ({core_rate:.2f} MB/s)")
    for key in ("core-fast", "core-dt", "cli-fast", "cli-dt"):
        if key in results:
            agree = agreement(results[key]["outcomes"], reference)
            worst = min(stages, key=lambda s: agree[s])
            p(f"  [{verdict(agree[worst] >= TARGET_AGREEMENT)}] {names[key]}: >= {TARGET_AGREEMENT:.1%} of decisions "
              f"identical to datatrove's on every filter: lowest {agree[worst]:.3%} ({worst})")
    p("")
    p(f"total benchmark time: {total_seconds:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
