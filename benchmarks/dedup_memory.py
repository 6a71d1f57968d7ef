"""Memory and recall of ``tokenmill filter`` deduplication (exact + MinHash-LSH) on a large corpus.

What it measures, in one run: the ``tokenmill filter`` command (default options: one Beam worker whose recipe
work runs in one process per core) with a dedup-only recipe (``dedup: {exact: true, minhash: {ngram: 5, bands: 14,
rows: 8}}``) over a generated corpus of about ``--size-mb`` MB of text, into which exact copies and lightly edited
copies (Jaccard >= 0.9 with their original) of ``--planted`` documents are mixed. A planted copy counts as found
when it is rejected naming its original (or, when the original is itself a duplicate, the document kept in its
place). Peak RSS is the summed RSS of the command's whole process tree (Beam, the recipe processes), sampled every
50 ms.

The corpus is the generator of ``benchmarks/prepare_throughput.py`` (this Python's standard library sources and
docstrings plus the multilingual chatterbot conversations, in variants with reordered paragraphs and respelled
words), written as JSONL files; the planted copies go into one more file. With --workdir the corpus is cached.

Printed: MB/s, peak RSS, the duplicate counts and rate, and the recall on the planted copies (every exact copy and
every edited copy must be rejected naming its original; no original may be rejected as a copy of its own copy).
Target (PASS/MISS, never asserted): MinHash dedup of a 1 GB corpus within 4 GB of peak RSS.

Usage (from the repository root):

    .venv/bin/python benchmarks/dedup_memory.py [--size-mb 1000] [--planted 2000] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prepare_throughput import (  # noqa: E402  (a sibling script)
    GB,
    MB,
    fmt_gb,
    generated_corpus,
    iter_json_records,
    log,
    machine_line,
    run_measured,
    tail,
    verdict,
)

RECIPE = "dedup: {exact: true, minhash: {ngram: 5, bands: 14, rows: 8}}\n"
TARGET_RSS_BYTES = 4 * GB
TARGET_CORPUS_MB = 1000


def edited_copy(text: str, rng: random.Random) -> str | None:
    """A copy of ``text`` with about 1% of its words replaced and Jaccard >= 0.9 with it (None if too short)."""
    from transforms.dedup import jaccard

    words = text.split(" ")
    if len(words) < 100:
        return None
    for _ in range(5):
        out = list(words)
        for i in rng.sample(range(len(out)), max(1, len(out) // 100)):
            out[i] = f"w{rng.randrange(10**6)}"
        copy = " ".join(out)
        if jaccard(copy, text, 5) >= 0.9:
            return copy
    return None


def plant(files: list[str], directory: Path, count: int) -> tuple[str, dict[str, tuple[str, str]]]:
    """A JSONL file of exact and edited copies of ``count`` corpus documents; returns it and copy id → (reason,
    original id)."""
    import orjson

    rng = random.Random(2024)
    picked = []
    for path in files:
        for rec in iter_json_records(path):
            if rng.random() < 0.02:
                picked.append(rec)
        if len(picked) >= 4 * count:
            break
    rng.shuffle(picked)
    expected: dict[str, tuple[str, str]] = {}
    path = directory / "zz-planted.jsonl"
    with open(path, "wb") as fh:
        for rec in picked:
            if len(expected) >= 2 * count:
                break
            edited = edited_copy(rec["text"], rng)
            if edited is None:
                continue
            for kind, text in (("exact_duplicate", rec["text"]), ("near_duplicate", edited)):
                copy_id = f"planted-{kind}-{rec['id']}"
                fh.write(orjson.dumps({"id": copy_id, "text": text}) + b"\n")
                expected[copy_id] = (kind, rec["id"])
    return str(path), expected


def main(argv: list[str] | None = None) -> int:
    """Run the measurement and print the report."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=float, default=TARGET_CORPUS_MB, help="generated corpus size (default 1000)")
    ap.add_argument("--planted", type=int, default=2000, help="documents given an exact and an edited copy")
    ap.add_argument("--workdir", default=None, help="directory for the corpus (kept) and the output")
    args = ap.parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="tokenmill-dedup-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    files = generated_corpus(workdir, args.size_mb)
    planted_path, expected = plant(files, workdir, args.planted)
    recipe = workdir / "dedup.yaml"
    recipe.write_text(RECIPE)
    out = workdir / "out"
    exe = Path(sys.executable).parent / "tokenmill"
    argv_ = [str(exe), "filter", "--output", str(out), "--recipe", str(recipe), "--overwrite", "--no-progress"]
    for path in files + [planted_path]:
        argv_ += ["--input", path]
    log(f"running tokenmill filter (dedup) on {len(files) + 1} files ...")
    code, seconds, peak, _ = run_measured(argv_, workdir / "filter.log")
    if code != 0:
        print(tail(workdir / "filter.log"), file=sys.stderr)
        return 1
    manifest = json.loads((out / "manifest.json").read_text())
    c = manifest["counts"]
    kept_as: dict[str, str] = {}  # every rejected duplicate -> the kept document it names
    for path in sorted((out / "rejected").glob("*.jsonl")):
        for line in path.open():
            rec = json.loads(line)
            if rec.get("duplicate_of") is not None:
                kept_as[rec["id"]] = rec["duplicate_of"]
    # a copy names its original, or the document kept in the original's place when the original is itself a copy
    recalled = sum(kept_as.get(k) == kept_as.get(orig, orig) for k, (_, orig) in expected.items())
    wrong = sorted(k for k, v in kept_as.items() if v.startswith("planted-"))
    mb = c["bytes_read"] / MB
    print(f"machine: {machine_line()}")
    print(f"corpus: {mb:,.0f} MB in {len(files) + 1} JSONL files, {c['records']:,} documents "
          f"({len(expected):,} planted copies)")
    print(f"tokenmill filter, dedup exact + MinHash 14x8 on 5-grams: {seconds:,.1f} s, {mb / seconds:,.1f} MB/s, "
          f"peak RSS {fmt_gb(peak)}")
    dedup = manifest["dedup"]
    print(f"duplicates: {dedup['exact_duplicate']:,} exact, {dedup['near_duplicate']:,} near, rate "
          f"{100 * dedup['duplicate_rate']:.2f}%")
    print(f"planted copies found naming their original: {recalled:,} of {len(expected):,}; originals rejected as "
          f"copies of a planted copy: {len(wrong)}")
    ok = peak <= TARGET_RSS_BYTES
    scaled = "" if mb >= 0.95 * TARGET_CORPUS_MB else f" (corpus of {mb:,.0f} MB, not {TARGET_CORPUS_MB:,} MB)"
    print(f"target: peak RSS <= {fmt_gb(TARGET_RSS_BYTES)} on 1 GB: {verdict(ok)}{scaled}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
