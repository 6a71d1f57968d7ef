"""What a fastText quality scorer adds to ``tokenmill prepare``'s wall time, against anchors measured in the same run.

What it measures, in one run, on the same JSONL files, the same ``tokenizer.json`` and the same cores (every system a
fresh ``tokenmill prepare --seq-len 2048 --no-progress --overwrite`` process, the whole command timed: interpreter
start, imports, model loading, the Beam pipeline and the manifest written):

* ``fineweb filters``: a recipe with the fineweb preset's filters (gopher_repetition, gopher_quality, c4_quality
  with filter_no_terminal_punct false, fineweb_quality); the anchor of the target.
* ``fineweb filters + fastText scorer``: the same filters plus a ``fasttext`` scorer (``meta.scores``, one pass).
* ``fineweb filters + fastText + selection``: the same plus ``ensemble: {buckets: 20, weight: tokens}`` and
  ``select: {top_fraction: 0.5}``: two passes (candidates and their scores, the selection plan, then the selected
  documents tokenized and packed); informational, anchored on the filters-only run.
* ``bare prepare``: no recipe at all (read, tokenize, pack, write).
* ``fastText scorer only``: a recipe with nothing but the scorer; anchored on the bare run.

The classifier is a real one, trained by the real command before the runs (its time reported):
``tokenmill train-classifier --positive P --negative N --output WORKDIR/quality.bin --overwrite`` with positives =
paragraphs of this Python's standard-library docstrings (English prose) and negatives = paragraphs of the standard
library's source code with its triple-quoted strings removed, written as JSONL. fastText's default bucket count is
kept (2,000,000 x dim 100: a model of about 800 MB, the size of DCLM's classifier), so each process running the
scorer pays the real cost of loading and querying a full-size model. Its held-out ROC AUC comes from the card next
to the model (``quality.bin.json``).

Throughput is MB of document text (UTF-8 bytes of the text field of every record, MB = 10^6 bytes) per wall-clock
second. The documents each run read, kept and (with selection) selected, and the share of the text it kept, are
taken from its ``manifest.json`` to show that the runs did the work they were meant to; the scorer sees only the
documents the filters kept, so that share bounds what it scores. fastText inference alone is measured too, in a
fresh process on one core: the model's load, then the scorer's ``positive_probability`` (normalisation and predict)
over up to 10 MB of the corpus (read first, untimed). The bare run goes first (it absorbs any first-run warm-up:
page cache, bytecode), then the others in table order; this is repeated in --repeat rounds (default 3: single runs
of a few seconds vary by 10-20% on a small machine, as much as the margin of the target): each system's median
seconds are reported, and each ratio is the median over the rounds of the ratio within a round (a round slowed as a
whole does not move it). The model and corpus just written are flushed to disk (``os.sync``) before the first round.

prepare chooses its recipe processes itself: 1 below 16 MiB of input (so with ``--quick``, whose 3 MB run is
mostly start-up and model loading, a smoke test rather than a measurement), else one per core.

The default corpus is the real multilingual corpus of ``benchmarks/corpora.py`` (~110 MB of prose in Latin,
Cyrillic and CJK scripts from translated documentation in Debian packages, built and cached in
``.bench-cache/corpora`` on first use; ``--slice-mb N`` for its first N MB, ``--corpus code`` or ``mix`` for the
others); ``--corpus generated`` is the generated corpus of filter_throughput.py (about --size-mb MB of text, no
download: standard-library docstrings and chatterbot multilingual conversations, 15% code, in respelled variants).
The corpus used is printed first. The tokenizer is a 32k byte-level BPE trained on a sample of the corpus
(prepare_throughput.py). With --workdir the generated corpus, slices and the tokenizer are cached there and reused
by later runs.

Target (printed with PASS/MISS, never asserted): scoring adds <= 30% to prepare's wall time for a fastText scorer
on 2 cores, i.e. wall(filters + fastText) / wall(filters) <= 1.30.

Usage (from the repository root):

    .venv/bin/python benchmarks/scoring_overhead.py [--corpus multilingual] [--slice-mb MB] [--workdir DIR] [--quick]
                                                    [--repeat 3]
    .venv/bin/python benchmarks/scoring_overhead.py --corpus generated [--size-mb 40]
    .venv/bin/python benchmarks/scoring_overhead.py --corpus 'data/*.jsonl' --text-field text --id-field id
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from filter_throughput import prose_first_corpus
from prepare_throughput import (
    MB,
    corpus_arguments,
    fmt_ratio,
    iter_json_records,
    log,
    machine_line,
    run_benchmark,
    run_measured,
    tail,
    training_tokenizer,
    verdict,
    tokenmill_command,
)

SEQ_LEN = 2048
TARGET_OVERHEAD = 0.30
CLASSIFIER_PER_CLASS = 8000  # docstring paragraphs available: ~9,700 on CPython 3.11
CLASSIFIER_PER_CLASS_QUICK = 2000
POSITIVE_LABEL = "__label__hq"
INFERENCE_SAMPLE_BYTES = 10 * MB  # text scored in one process to measure fastText inference per core

# system key -> (name, the key of its anchor or None for an anchor); recipes() holds their recipes
SYSTEMS: dict[str, tuple[str, str | None]] = {
    "a": ("fineweb filters", None),
    "b": ("fineweb filters + fastText scorer", "a"),
    "c": ("fineweb filters + fastText + selection", "a"),
    "d": ("bare prepare (no recipe)", None),
    "e": ("fastText scorer only", "d"),
}
RUN_ORDER = ("d", "a", "b", "c", "e")


# ---------------------------------------------------------------------------------------------------------------
# the classifier and the recipes
# ---------------------------------------------------------------------------------------------------------------


def classifier_inputs(directory: Path, per_class: int) -> tuple[str, str, int, int]:
    """(positive JSONL, negative JSONL, counts): stdlib docstring paragraphs vs stdlib code without docstrings.

    The code paragraphs are taken evenly across the whole standard library (not its first modules only).
    """
    import orjson

    from transforms.read.demo_corpus import prose_and_code

    prose, code = prose_and_code(per_class, spread=True)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, texts in (("positive", prose), ("negative", code)):
        path = directory / f"{name}.jsonl"
        with open(path, "wb") as fh:
            for i, text in enumerate(texts):
                fh.write(orjson.dumps({"id": f"{name}-{i}", "text": text}) + b"\n")
        paths.append(str(path))
    return paths[0], paths[1], len(prose), len(code)


def train_classifier(workdir: Path, per_class: int, runs: Path) -> dict[str, Any]:
    """Train the quality classifier with ``tokenmill train-classifier`` (timed); its card plus the wall seconds."""
    positive, negative, n_pos, n_neg = classifier_inputs(workdir / "classifier-data", per_class)
    model = workdir / "quality.bin"
    log(f"training the fastText quality classifier ({n_pos} docstring paragraphs vs {n_neg} code paragraphs, "
        "default bucket: a full-size model) ...")
    cmd = tokenmill_command() + ["train-classifier", "--positive", positive, "--negative", negative,
                             "--output", str(model), "--overwrite"]
    log_path = runs / "train-classifier.log"
    code, seconds, peak, _ = run_measured(cmd, log_path)
    card_path = Path(str(model) + ".json")
    if code != 0 or not card_path.exists():
        raise RuntimeError(f"tokenmill train-classifier failed (exit {code}); see {log_path}:\n{tail(log_path)}")
    card = json.loads(card_path.read_text())
    log(f"  {seconds:.1f} s, held-out ROC AUC {card['metrics']['roc_auc']:.4f}, "
        f"model {card['model']['bytes'] / MB:.0f} MB")
    return card | {"path": str(model), "command_seconds": seconds, "peak_rss": peak}


def recipes(model: str) -> dict[str, dict[str, Any] | None]:
    """The recipe of each system (None: prepare without --recipe)."""
    from transforms.recipe.recipes import PRESETS

    filters = json.loads(json.dumps(PRESETS["fineweb"]["filters"]))  # the fineweb preset's filters, as YAML data
    scorers = [{"name": "fasttext", "params": {"model": model, "label": POSITIVE_LABEL}}]
    return {
        "a": {"filters": filters},
        "b": {"filters": filters, "scorers": scorers},
        "c": {"filters": filters, "scorers": scorers, "ensemble": {"buckets": 20, "weight": "tokens"},
              "select": {"top_fraction": 0.5}},
        "d": None,
        "e": {"scorers": scorers},
    }


def write_recipes(directory: Path, model: str) -> dict[str, str | None]:
    """Each system's recipe written as a YAML file (None: no recipe)."""
    import yaml

    directory.mkdir(parents=True, exist_ok=True)
    out: dict[str, str | None] = {}
    for key, recipe in recipes(model).items():
        if recipe is None:
            out[key] = None
            continue
        path = directory / f"recipe-{key}.yaml"
        path.write_text(f"# {SYSTEMS[key][0]}\n" + yaml.safe_dump(recipe, sort_keys=False, default_flow_style=None))
        out[key] = str(path)
    return out


# ---------------------------------------------------------------------------------------------------------------
# runs
# ---------------------------------------------------------------------------------------------------------------


def run_prepare(files: list[str], tokenizer: str, recipe: str | None, output: Path, args: argparse.Namespace,
                log_path: Path) -> dict[str, Any]:
    """``tokenmill prepare`` with this recipe, the whole command timed; its wall seconds and manifest."""
    cmd = tokenmill_command() + ["prepare"]
    for f in files:
        cmd += ["--input", f]
    cmd += ["--output", str(output), "--tokenizer", tokenizer, "--seq-len", str(SEQ_LEN), "--text-field",
            args.text_field, "--id-field", args.id_field, "--no-progress", "--overwrite"]
    if recipe is not None:
        cmd += ["--recipe", recipe]
    code, seconds, peak, _ = run_measured(cmd, log_path)
    manifest_path = output / "manifest.json"
    if code != 0 or not manifest_path.exists():
        raise RuntimeError(f"tokenmill prepare failed (exit {code}); see {log_path}:\n{tail(log_path)}")
    from schemas.shards import read_manifest

    return {"seconds": seconds, "peak_rss": peak, "manifest": read_manifest(str(output))}


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    corpus_arguments(ap, 40)
    ap.add_argument("--quick", action="store_true", help="a smoke run on 3 MB of the corpus and a classifier "
                    f"trained on {CLASSIFIER_PER_CLASS_QUICK} paragraphs per class (still a full-size model)")
    ap.add_argument("--repeat", type=int, default=None,
                    help="runs of each system, in rounds; the median is reported (default 3, with --quick 1)")
    ap.add_argument("--workdir", default=None, metavar="DIR",
                    help="where corpus, tokenizer, classifier and outputs go; kept, and the corpus and tokenizer "
                         "are reused by later runs (default: a temporary directory removed at the end)")
    args = ap.parse_args(argv)
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")
    if args.quick:
        args.size_mb = 3
        args.slice_mb = args.slice_mb or 3
    return args


def child_inference(spec: dict[str, Any]) -> dict[str, Any]:
    """fastText inference on one core: the model's load and ``positive_probability`` (normalisation and predict,
    as the scorer calls it) over about ``sample_bytes`` of the corpus (read first, untimed), timed separately."""
    from transforms.select.classifier import positive_probability
    from transforms.select.scorers.fasttext import load_fasttext

    texts: list[str] = []
    size = 0
    for path in spec["files"]:
        for obj in iter_json_records(path):
            text = obj.get(spec["text_field"]) if isinstance(obj, dict) else None
            if isinstance(text, str) and size < spec["sample_bytes"]:
                texts.append(text)
                size += len(text.encode("utf-8", "surrogatepass"))
    t0 = time.perf_counter()
    model = load_fasttext(spec["model"])
    load = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(0, len(texts), 1000):
        positive_probability(model, texts[i : i + 1000], POSITIVE_LABEL)
    return {"load_seconds": load, "seconds": time.perf_counter() - t0, "bytes": size, "docs": len(texts)}


def child_main(spec_path: str) -> int:
    """Entry point of a child process (fastText inference alone): run it, write its result next to the spec."""
    spec = json.loads(Path(spec_path).read_text())
    result = child_inference(spec)
    Path(spec["result"]).write_text(json.dumps(result))
    return 0


def measure_inference(files: list[str], model: str, args: argparse.Namespace, runs: Path) -> dict[str, Any]:
    """fastText inference alone, in a fresh process of this script."""
    spec = {"files": files, "text_field": args.text_field, "model": model, "sample_bytes": INFERENCE_SAMPLE_BYTES,
            "result": str(runs / "inference.result.json")}
    spec_path = runs / "inference.spec.json"
    spec_path.write_text(json.dumps(spec))
    Path(spec["result"]).unlink(missing_ok=True)
    log_path = runs / "inference.log"
    log("measuring fastText inference alone (one process, one core) ...")
    code, _, _, _ = run_measured([sys.executable, str(Path(__file__).resolve()), "--_child", str(spec_path)],
                                 log_path)
    if code != 0 or not Path(spec["result"]).exists():
        raise RuntimeError(f"fastText inference failed (exit {code}); its output is in {log_path}:\n{tail(log_path)}")
    result = json.loads(Path(spec["result"]).read_text())
    log(f"  model load {result['load_seconds']:.1f} s, {result['bytes'] / MB / result['seconds']:.1f} MB/s")
    return result


def main(argv: list[str] | None = None) -> int:
    """Train the classifier, run every system, print the table, the target and the information lines."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_benchmark(argv, parse_args, child_main, benchmark, "tokenmill-scoring-bench-")


def benchmark(args: argparse.Namespace, workdir: Path, cores: int) -> int:
    """The whole benchmark in ``workdir``."""
    started = time.perf_counter()
    files, corpus_desc, n_docs, mb = prose_first_corpus(args, workdir)
    tokenizer = training_tokenizer(workdir, files, args.text_field)
    runs = workdir / "runs"
    runs.mkdir(exist_ok=True)
    card = train_classifier(workdir, CLASSIFIER_PER_CLASS_QUICK if args.quick else CLASSIFIER_PER_CLASS, runs)
    recipe_paths = write_recipes(workdir / "recipes", card["path"])
    inference = measure_inference(files, card["path"], args, runs)
    os.sync()  # the model and corpus just written: their write-back must not land in the timed runs

    results: dict[str, list[dict[str, Any]]] = {key: [] for key in SYSTEMS}
    for rep in range(args.repeat):
        tag = f" (run {rep + 1}/{args.repeat})" if args.repeat > 1 else ""
        for key in RUN_ORDER:
            log(f"running tokenmill prepare: {SYSTEMS[key][0]}{tag} ...")
            out = workdir / "out" / key
            shutil.rmtree(out, ignore_errors=True)
            r = run_prepare(files, tokenizer, recipe_paths[key], out, args, runs / f"prepare-{key}-{rep}.log")
            results[key].append(r)
            log(f"  {r['seconds']:.1f} s, {mb / r['seconds']:.2f} MB/s")
            shutil.rmtree(out, ignore_errors=True)
    print_report(args, results, card, inference, corpus_desc, tokenizer, mb, n_docs, cores,
                 time.perf_counter() - started)
    return 0


# ---------------------------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------------------------


def recipe_paths_used(runs: list[dict[str, Any]]) -> bool:
    """Whether the run had a recipe (its manifest records one)."""
    from schemas import manifest as m

    return m.K_RECIPE in runs[0]["manifest"]


def median_seconds(runs: list[dict[str, Any]]) -> float:
    """Median wall seconds over the repeats."""
    return statistics.median(r["seconds"] for r in runs)


def paired_ratio(results: dict[str, list[dict[str, Any]]], key: str, anchor: str) -> float:
    """Median over the rounds of wall(key) / wall(anchor) within the round (robust to a round slowed as a whole)."""
    return statistics.median(r["seconds"] / a["seconds"] for r, a in zip(results[key], results[anchor]))


def work_done(manifest: dict[str, Any]) -> dict[str, Any]:
    """What a run did, from its manifest: records read, documents written, rejected, tokens, selection."""
    from schemas import manifest as m

    counts = manifest[m.K_COUNTS]
    selection = manifest.get(m.K_SELECTION) or {}
    scores = (selection.get(m.S_SCORES) or {}).get("fasttext") or {}
    return {
        "records": counts["records"],
        "written": counts["docs_written"],
        "rejected": sum(counts["docs_rejected"].values()),
        "tokens": counts["tokens"],
        "text_chars": counts["text_chars"],
        "recipe_processes": (manifest.get(m.K_RUNNER) or {}).get("recipe_processes"),
        "candidates": (selection.get(m.S_CANDIDATES) or {}).get(m.S_DOCUMENTS),
        "selected": (selection.get(m.S_SELECTED) or {}).get(m.S_DOCUMENTS),
        "score_p50": scores.get(m.S_QUANTILE.format(50)),
    }


def pipeline_rate(runs: list[dict[str, Any]], mb: float) -> str:
    """MB/s of the pipeline alone (the manifest's wall_time_s: start-up and imports excluded), median over repeats."""
    from schemas import manifest as m

    walls = [r["manifest"].get(m.K_WALL_TIME) for r in runs]
    if not all(walls):
        return "-"
    return f"{mb / statistics.median(walls):.1f} MB/s"


def print_report(args: argparse.Namespace, results: dict[str, list[dict[str, Any]]], card: dict[str, Any],
                 inference: dict[str, Any], corpus_desc: str, tokenizer: str, mb: float, n_docs: int, cores: int,
                 total_seconds: float) -> None:
    """The final report on stdout."""
    p = print
    seconds = {key: median_seconds(runs) for key, runs in results.items()}
    all_chars = work_done(results["d"][0]["manifest"])["text_chars"] or 1
    p("")
    p("tokenmill scoring overhead benchmark (fastText quality scorer in prepare)")
    p("=" * 74)
    p(f"machine:    {machine_line()}")
    p(f"corpus:     {corpus_desc}; {n_docs} documents, {mb:.1f} MB of text")
    p(f"tokenizer:  {tokenizer}")
    hp = card["hyperparameters"]
    counts = card["counts"]
    p(f"classifier: {card['path']} ({card['model']['bytes'] / MB:.0f} MB, bucket {hp['bucket']:,}, dim {hp['dim']}, "
      f"wordNgrams {hp['wordNgrams']}, epochs {hp['epoch']}); trained on {counts['positive']['train']} docstring "
      f"vs {counts['negative']['train']} code paragraphs")
    p(f"prepare:    --seq-len {SEQ_LEN} --no-progress --overwrite, default options otherwise (workers 1, "
      f"--recipe-processes by default); each system a fresh `tokenmill prepare` process, the whole command timed; "
      f"median of {args.repeat} run(s)")
    p("throughput: MB of document text (10^6 UTF-8 bytes of the text field) / wall seconds")
    p("")
    header = (f"{'system':<42} {'seconds':>8} {'MB/s':>7} {'vs anchor':>14} {'procs':>5} {'records':>8} {'written':>8} "
              f"{'rejected':>8} {'selected':>15} {'text kept':>9} {'tokens':>11}")
    p(header)
    p("-" * len(header))
    for key, (name, anchor) in SYSTEMS.items():
        s = seconds[key]
        ratio = f"{fmt_ratio(paired_ratio(results, key, anchor), 1)} of ({anchor})" if anchor else "(anchor)"
        w = work_done(results[key][0]["manifest"])
        sel = f"{w['selected']} of {w['candidates']}" if w["selected"] is not None else "-"
        procs = w["recipe_processes"] if recipe_paths_used(results[key]) else "-"
        p(f"({key}) {name:<38} {s:>8.1f} {mb / s:>7.2f} {ratio:>14} {procs:>5} {w['records']:>8} {w['written']:>8} "
          f"{w['rejected']:>8} {sel:>15} {w['text_chars'] / all_chars:>9.1%} {w['tokens']:>11}")
    p("")
    p("columns: seconds = median wall seconds; vs anchor = wall seconds / the anchor's wall seconds in the same round "
      "(median over the rounds); procs = processes running the recipe "
      "(prepare's automatic --recipe-processes); records read, documents written to the shards, "
      "rejected (filters, or not selected), selected of the selection candidates, text kept (characters written "
      "/ those of the bare run: C4 also removes lines), tokens packed (with EOS) - from each run's manifest.json "
      "(of the first repeat)")
    for key in ("b", "c", "e"):
        w = work_done(results[key][0]["manifest"])
        if w["score_p50"] is not None:
            p(f"  ({key}) median fastText P({POSITIVE_LABEL}) over the scored documents: {w['score_p50']:.3f}")
    if args.repeat > 1:
        p("runs (s): " + "; ".join(f"({k}) " + ", ".join(f"{r['seconds']:.1f}" for r in v)
                                    for k, v in results.items()))
    p("")
    p("targets (informational, never asserted):")
    ratio_b = paired_ratio(results, "b", "a")
    p(f"  [{verdict(ratio_b <= 1 + TARGET_OVERHEAD)}] scoring adds <= {TARGET_OVERHEAD:.0%} to prepare's wall time "
      f"for a fastText scorer on {cores} cores: (b)/(a) = {ratio_b:.2f}x ({ratio_b - 1:+.1%}; medians "
      f"{seconds['b']:.1f} vs {seconds['a']:.1f} s, {mb / seconds['b']:.2f} vs {mb / seconds['a']:.2f} MB/s)")
    if args.repeat > 1:
        rounds = [rb["seconds"] / ra["seconds"] for ra, rb in zip(results["a"], results["b"])]
        p("         (b)/(a) of each round: " + ", ".join(f"{r:.2f}x" for r in rounds))
    kept = work_done(results["a"][0]["manifest"])
    rounds = list(zip(results["a"], results["d"], results["e"]))
    whole = statistics.median(e["seconds"] - d["seconds"] for _, d, e in rounds)
    whole_share = statistics.median((e["seconds"] - d["seconds"]) / a["seconds"] for a, d, e in rounds)
    p(f"  (info) the scorer runs on the documents the filters keep: here {kept['written']} of {kept['records']} "
      f"documents, {kept['text_chars'] / all_chars:.1%} of the text; scoring the whole corpus costs (e)-(d) = "
      f"{whole:.1f} s (model loading included), {whole_share:+.1%} of (a): about what (b) would add if "
      "the filters kept everything")
    ratio_c = paired_ratio(results, "c", "a")
    p(f"  (info) fastText + selection (top half by ensemble bucket, two passes) vs filters only: (c)/(a) = "
      f"{ratio_c:.2f}x ({ratio_c - 1:+.1%})")
    ratio_e = paired_ratio(results, "e", "d")
    p(f"  (info) fastText scorer only vs bare prepare: (e)/(d) = {ratio_e:.2f}x ({ratio_e - 1:+.1%}); large once "
      f"start-up no longer dominates: bare prepare is tokenizer-bound ({mb / seconds['d']:.1f} MB/s here with "
      "start-up; "
      f"{pipeline_rate(results['d'], mb)} by its manifest's wall_time_s) while fastText inference runs at "
      f"{inference['bytes'] / MB / inference['seconds']:.1f} MB/s per core on this corpus (measured alone, "
      f"normalisation + predict, {inference['bytes'] / MB:.1f} MB) and every scoring process first loads the "
      f"full-size model ({inference['load_seconds']:.1f} s); with the filters first (the target's case) the scorer "
      "sees only the kept documents")
    mt = card["metrics"]
    p(f"  (info) classifier: held-out ROC AUC {mt['roc_auc']:.4f}, F1 {mt['f1']:.4f} on {mt['held_out_positive']} + "
      f"{mt['held_out_negative']} held-out paragraphs; `tokenmill train-classifier` {card['command_seconds']:.1f} s "
      f"(fastText training {card['train_time']:.1f} s of it)")
    p("")
    p(f"total benchmark time: {total_seconds:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
