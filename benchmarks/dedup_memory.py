"""Memory and recall of ``tokenmill filter`` deduplication (exact + MinHash-LSH) on a large corpus.

What it measures, in one run: the ``tokenmill filter`` command (default options: one Beam worker whose recipe
work runs in one process per core) with a dedup-only recipe (``dedup: {exact: true, minhash: {ngram: 5, bands: 14,
rows: 8}}``) over a corpus of about 1 GB of real text, into which exact copies and lightly edited copies (Jaccard >=
0.9 with their original) of ``--planted`` of its documents are mixed. A planted copy counts as found when it is
rejected naming its original (or, when the original is itself a duplicate, the document kept in its place). Peak
RSS is the summed RSS of the command's whole process tree (Beam, the recipe processes), sampled every 50 ms.

The default corpus is the real ``mix`` corpus of ``benchmarks/corpora.py`` (~1.1 GB of text, 1.2 GB of JSONL: the
multilingual prose and code corpora plus the rest of the kernel tree's text files, from Debian packages; built and
cached in ``.bench-cache/corpora`` on first use), whole; ``--slice-mb N`` takes its first N MB, ``--corpus
multilingual`` or ``code`` the smaller ones, a glob for your JSONL files. ``--corpus generated`` is the generated corpus
of ``benchmarks/prepare_throughput.py`` (about --size-mb MB: this Python's standard library sources and docstrings
plus the multilingual chatterbot conversations, in variants with reordered paragraphs and respelled words), cached
with --workdir. The planted copies (of documents picked at random all over the corpus) go into one more file. The
corpus used is printed first.

Printed: MB/s, peak RSS, the duplicate counts and rate, and the recall on the planted copies (every exact copy and
every edited copy must be rejected naming its original; no original may be rejected as a copy of its own copy).
Target (PASS/MISS, never asserted): MinHash dedup of a 1 GB corpus within 4 GB of peak RSS.

``--scale`` measures how memory grows with the number of documents instead: the same command and recipe over
corpora of many small documents taken from ``--corpus`` (the ``mix`` by default), each run once without dedup
(``filters: []``, the anchor) and once with it:

* tiny: ``--tiny`` millions of short JSON lines: lines of 3 or more words (at most 200 characters) of the corpus's
  documents, in order, with about 20% exact copies of earlier lines mixed in (some with other whitespace) and 5%
  near copies (the same words in other case and punctuation), on top of the copies the real lines have;
* real: ``--real`` millions of paragraphs (blocks between blank lines) of the corpus's documents, in order; their
  duplicates are the ones real text has (licence blocks, boilerplate, translations left in English).

With ``--corpus generated`` they are the corpora of before: tiny lines of 6-14 generated words (with the same
copies), and the paragraphs of this machine's files (this Python's standard library, /usr/share/doc, the installed
packages' sources). Printed per run: seconds, peak RSS of the process tree, GB per million documents, the duplicate
counts; per corpus the dedup run against its anchor. Target (PASS/MISS, never asserted): peak RSS <= 1 GB per
million documents.

Usage (from the repository root):

    .venv/bin/python benchmarks/dedup_memory.py [--corpus mix] [--slice-mb MB] [--planted 2000] [--workdir DIR]
    .venv/bin/python benchmarks/dedup_memory.py --corpus generated [--size-mb 1000]
    .venv/bin/python benchmarks/dedup_memory.py --scale [--tiny 1 4] [--real 1] [--workdir DIR] [--code DIR]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import random
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prepare_throughput import (  # noqa: E402  (a sibling script)
    GB,
    GENERATED,
    MB,
    cached_corpus,
    corpus_arguments,
    corpus_files,
    fmt_gb,
    generated_corpus,
    iter_json_records,
    log,
    machine_line,
    run_measured,
    tail,
    tokenmill_command,
    verdict,
)
from schemas import manifest as m  # noqa: E402
from schemas.shards import read_manifest  # noqa: E402

RECIPE = "dedup: {exact: true, minhash: {ngram: 5, bands: 14, rows: 8}}\n"
TARGET_RSS_BYTES = 4 * GB
TARGET_CORPUS_MB = 1000
NO_DEDUP_RECIPE = "filters: []\n"  # the anchor: the same command with nothing to decide
TARGET_GB_PER_MILLION = 1.0
SCALE_CORPUS_VERSION = 2  # bump when a scale corpus generator changes (cached corpora are rebuilt)
PICK_RATE = 0.02  # the least share of the corpus's documents picked for planted copies
TINY_MAX_CHARS = 200  # a corpus line longer than this is not a tiny document
TINY_MIN_WORDS = 3


def edited_copy(text: str, rng: random.Random) -> str | None:
    """A copy of ``text`` with about 1% of its words replaced and Jaccard >= 0.9 with it (None if too short)."""
    from transforms.dedup.keys import jaccard

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


def plant(files: list[str], directory: Path, count: int, text_field: str = "text",
          id_field: str = "id") -> tuple[str, dict[str, tuple[str, str]]]:
    """A JSONL file of exact and edited copies of ``count`` corpus documents (picked at random over the whole corpus);
    returns it and copy id → (reason, original id)."""
    import orjson

    rng = random.Random(2024)
    records = sum(1 for path in files for _ in iter_json_records(path))
    rate = max(PICK_RATE, min(1.0, 4 * count / max(records, 1)))
    picked = []
    for path in files:
        for rec in iter_json_records(path):
            if isinstance(rec, dict) and isinstance(rec.get(text_field), str) and rng.random() < rate:
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
            edited = edited_copy(rec[text_field], rng)
            if edited is None:
                continue
            for kind, text in (("exact_duplicate", rec[text_field]), ("near_duplicate", edited)):
                copy_id = f"planted-{kind}-{rec[id_field]}"
                fh.write(orjson.dumps({id_field: copy_id, text_field: text}) + b"\n")
                expected[copy_id] = (kind, str(rec[id_field]))
    if len(expected) < 2 * count:
        log(f"warning: only {len(expected) // 2:,} documents of >= 100 words could be planted, not {count:,}")
    return str(path), expected


def tiny_records(n: int, seed: int = 1, lines: Iterable[str] | None = None) -> Iterator[dict[str, str]]:
    """``n`` short records: ~75% distinct lines (the next of ``lines``, or 6-14 generated words when None), ~20% exact
    copies of an earlier line (half of them with doubled spaces, which exact dedup normalises), ~5% near copies
    (other case and punctuation)."""
    rng = random.Random(seed)
    source = iter(lines) if lines is not None else None
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = ["".join(rng.choices(letters, k=rng.randint(3, 9))) for _ in range(20_000)] if source is None else []
    earlier: list[str] = []
    for i in range(n):
        r = rng.random()
        if earlier and r < 0.20:
            text = rng.choice(earlier)
            text = text.replace(" ", "  ", 1) if r < 0.10 else text
        elif earlier and r < 0.25:
            text = rng.choice(earlier).upper().replace(".", "!")
        else:
            if source is None:
                text = " ".join(rng.choices(vocab, k=rng.randint(6, 14))).capitalize() + "."
            else:
                text = next(source, None)
                if text is None:
                    raise SystemExit(f"the corpus has too few short lines for {n:,} tiny records; ask for fewer "
                                     "(--tiny)")
            earlier.append(text)
        yield {"id": f"t{i}", "text": text}


def corpus_texts(files: list[str], text_field: str) -> Iterator[tuple[str, str]]:
    """(id, text) of the corpus's records, in order."""
    for n, path in enumerate(files):
        for k, rec in enumerate(iter_json_records(path)):
            if isinstance(rec, dict) and isinstance(rec.get(text_field), str):
                yield str(rec.get("id", f"{n}:{k}")), rec[text_field]


def corpus_lines(files: list[str], text_field: str) -> Iterator[str]:
    """The corpus's lines of at least TINY_MIN_WORDS words and at most TINY_MAX_CHARS characters, stripped, in order."""
    for _, text in corpus_texts(files, text_field):
        for line in text.split("\n"):
            line = line.strip()
            if len(line) <= TINY_MAX_CHARS and len(line.split()) >= TINY_MIN_WORDS:
                yield line


def paragraphs(texts: Iterable[tuple[str, str]], n: int, where: str) -> Iterator[dict[str, str]]:
    """``n`` records: the non-empty paragraphs of the (name, text) pairs, in order, ids ``name#k``."""
    done = 0
    for name, text in texts:
        for k, para in enumerate(text.replace("\r\n", "\n").split("\n\n")):
            if para.strip():
                yield {"id": f"{name}#{k}", "text": para.strip("\n")}
                done += 1
                if done >= n:
                    return
    raise SystemExit(f"only {done:,} paragraphs {where}; ask for fewer (--real)")


def corpus_paragraphs(files: list[str], text_field: str, n: int) -> Iterator[dict[str, str]]:
    """``n`` records: the non-empty paragraphs of the corpus's documents, in order."""
    return paragraphs(corpus_texts(files, text_field), n, "in the corpus")


def _real_files() -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of text files not written here, sorted: this Python's standard library, the Debian-packaged
    docs in /usr/share/doc, then the installed packages' sources (site-packages)."""
    suffixes = {".py", ".txt", ".rst", ".cfg", ".ini", ".toml", ".html", ".xml", ".json", ".csv", ".md"}
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(p for p in stdlib.rglob("*") if p.suffix in suffixes and "site-packages" not in p.parts):
        if path.is_file():
            yield f"stdlib/{path.relative_to(stdlib)}", path.read_bytes()
    docs = Path("/usr/share/doc")
    for path in sorted(docs.rglob("*")) if docs.is_dir() else []:
        if path.is_file() and not path.is_symlink():
            try:
                data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
            except (OSError, EOFError):
                continue
            yield f"doc/{path.relative_to(docs)}", data
    packages = Path(sysconfig.get_paths()["purelib"])
    for path in sorted(p for p in packages.rglob("*") if p.suffix in suffixes):
        if path.is_file():
            yield f"site-packages/{path.relative_to(packages)}", path.read_bytes()


def real_records(n: int) -> Iterator[dict[str, str]]:
    """``n`` records: the non-empty paragraphs of ``_real_files`` (UTF-8 text only), in order."""
    def texts() -> Iterator[tuple[str, str]]:
        for name, data in _real_files():
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                continue
            if "\x00" not in text:
                yield name, text

    return paragraphs(texts(), n, "of real text on this machine")


def scale_run(label: str, files: list[str], workdir: Path, recipe_text: str, code: Path | None) -> dict:
    """One ``tokenmill filter`` run over ``files``: seconds, peak tree RSS, records, the dedup counts."""
    recipe = workdir / f"{label}.yaml"
    recipe.write_text(recipe_text)
    out = workdir / f"out-{label}"
    argv_ = [sys.executable, "-m", "pipelines.cli", "filter", "--output", str(out), "--recipe", str(recipe),
             "--overwrite", "--no-progress"]
    for path in files:
        argv_ += ["--input", path]
    # another checkout's code: first on the path (PYTHONSAFEPATH: not this checkout, the working directory)
    env = dict(os.environ, PYTHONPATH=str(code), PYTHONSAFEPATH="1") if code is not None else None
    log(f"running tokenmill filter ({label}) ...")
    code_, seconds, peak, _ = run_measured(argv_, workdir / f"{label}.log", env)
    if code_ != 0:
        print(tail(workdir / f"{label}.log"), file=sys.stderr)
        raise SystemExit(f"{label} failed")
    manifest = read_manifest(str(out))
    return {"seconds": seconds, "peak": peak, "records": manifest[m.K_COUNTS]["records"],
            "dedup": manifest.get(m.K_DEDUP) or {}}


def scale(args: argparse.Namespace, workdir: Path) -> int:
    """The --scale report: tiny and real corpora, each without and with dedup."""
    code = Path(args.code).resolve() if args.code else None
    generated = args.corpus == GENERATED
    if generated:
        source, description, key = None, ("generated: tiny lines of generated words; paragraphs of this machine's "
                                          "files (stdlib, /usr/share/doc, site-packages)"), "generated"
    else:
        source, description = corpus_files(args, workdir, generated_corpus, "")
        key = hashlib.sha256(json.dumps([[os.path.abspath(f), os.path.getsize(f)] for f in source]).encode()
                             ).hexdigest()[:12]
        description = f"tiny lines and paragraphs of {description}"
    print(f"corpus: {description}", flush=True)
    corpora = []
    for millions in args.tiny:
        n = int(millions * 1_000_000)
        lines = None if source is None else (lambda: corpus_lines(source, args.text_field))
        files = cached_corpus(workdir / f"tiny-{key}-{millions:g}m",
                              {"version": SCALE_CORPUS_VERSION, "tiny": n, "source": key}, f"{n:,} tiny records",
                              lambda n=n, lines=lines: tiny_records(n, lines=lines() if lines else None))
        corpora.append((f"tiny-{millions:g}m", files))
    for millions in args.real:
        n = int(millions * 1_000_000)
        records = (lambda n=n: real_records(n)) if source is None else (
            lambda n=n: corpus_paragraphs(source, args.text_field, n))
        files = cached_corpus(workdir / f"real-{key}-{millions:g}m",
                              {"version": SCALE_CORPUS_VERSION, "real": n, "source": key}, f"{n:,} real paragraphs",
                              records)
        corpora.append((f"real-{millions:g}m", files))
    print(f"machine: {machine_line()}")
    print(f"code: {code or 'this checkout'}; recipe: {RECIPE.strip()}; anchor: {NO_DEDUP_RECIPE.strip()}")
    for name, files in corpora:
        anchor = scale_run(f"{name}-nodedup", files, workdir, NO_DEDUP_RECIPE, code) if args.anchor else None
        run = scale_run(f"{name}-dedup", files, workdir, RECIPE, code)
        docs_m = run["records"] / 1e6
        per_m = run["peak"] / GB / docs_m
        d = run["dedup"]
        print(f"{name}: {run['records']:,} documents, {sum(os.path.getsize(f) for f in files) / MB:,.0f} MB")
        if anchor is not None:
            print(f"  without dedup: {anchor['seconds']:,.1f} s, peak RSS {fmt_gb(anchor['peak'])} "
                  f"({anchor['peak'] / GB / docs_m:.2f} GB per million documents)")
        print(f"  with dedup:    {run['seconds']:,.1f} s, peak RSS {fmt_gb(run['peak'])} "
              f"({per_m:.2f} GB per million documents); {d.get(m.EXACT_DUPLICATE, 0):,} exact and "
              f"{d.get(m.NEAR_DUPLICATE, 0):,} near duplicates")
        if anchor is not None:
            print(f"  dedup costs {run['seconds'] / anchor['seconds']:.1f}x the time and "
                  f"{(run['peak'] - anchor['peak']) / GB / docs_m:+.2f} GB per million documents over the anchor")
        print(f"  target: peak RSS <= {TARGET_GB_PER_MILLION:g} GB per million documents: "
              f"{verdict(per_m <= TARGET_GB_PER_MILLION)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the measurement and print the report."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    corpus_arguments(ap, TARGET_CORPUS_MB, unique_ids=True, default="mix")
    ap.add_argument("--planted", type=int, default=2000, help="documents given an exact and an edited copy")
    ap.add_argument("--workdir", default=None, help="directory for the corpus (kept) and the output")
    ap.add_argument("--scale", action="store_true", help="memory per million documents (tiny and real corpora)")
    ap.add_argument("--tiny", type=float, nargs="*", default=[1, 4], help="--scale: tiny corpora, millions of docs")
    ap.add_argument("--real", type=float, nargs="*", default=[1], help="--scale: real corpora, millions of docs")
    ap.add_argument("--no-anchor", dest="anchor", action="store_false", help="--scale: skip the runs without dedup")
    ap.add_argument("--code", default=None, help="--scale: run the code of another checkout (a before/after)")
    args = ap.parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="tokenmill-dedup-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if args.scale:
        return scale(args, workdir)
    files, description = corpus_files(args, workdir, generated_corpus,
                                      "stdlib sources/docstrings + chatterbot multilingual")
    log(f"corpus: {description}")
    planted_path, expected = plant(files, workdir, args.planted, args.text_field, args.id_field)
    recipe = workdir / "dedup.yaml"
    recipe.write_text(RECIPE)
    out = workdir / "out"
    argv_ = tokenmill_command("filter", "--output", str(out), "--recipe", str(recipe), "--overwrite", "--no-progress",
                              "--text-field", args.text_field, "--id-field", args.id_field)
    for path in files + [planted_path]:
        argv_ += ["--input", path]
    log(f"running tokenmill filter (dedup) on {len(files) + 1} files ...")
    code, seconds, peak, _ = run_measured(argv_, workdir / "filter.log")
    if code != 0:
        print(tail(workdir / "filter.log"), file=sys.stderr)
        return 1
    manifest = read_manifest(str(out))
    c = manifest[m.K_COUNTS]
    kept_as: dict[str, str] = {}  # every rejected duplicate -> the kept document it names
    for path in sorted((out / "rejected").glob("*.jsonl")):
        for line in path.open():
            rec = json.loads(line)
            if rec.get(m.REJ_DUPLICATE_OF) is not None:
                kept_as[rec[m.REJ_ID]] = rec[m.REJ_DUPLICATE_OF]
    # a copy names its original, or the document kept in the original's place when the original is itself a copy
    recalled = sum(kept_as.get(k) == kept_as.get(orig, orig) for k, (_, orig) in expected.items())
    wrong = sorted(k for k, v in kept_as.items() if v.startswith("planted-"))
    mb = c["bytes_read"] / MB
    print(f"machine: {machine_line()}")
    print(f"corpus: {description}")
    print(f"input: {mb:,.0f} MB in {len(files) + 1} JSONL files, {c['records']:,} documents "
          f"({len(expected):,} planted copies)")
    print(f"tokenmill filter, dedup exact + MinHash 14x8 on 5-grams: {seconds:,.1f} s, {mb / seconds:,.1f} MB/s, "
          f"peak RSS {fmt_gb(peak)}")
    dedup = manifest[m.K_DEDUP]
    print(f"duplicates: {dedup[m.EXACT_DUPLICATE]:,} exact, {dedup[m.NEAR_DUPLICATE]:,} near, rate "
          f"{100 * dedup[m.DEDUP_RATE]:.2f}%")
    print(f"planted copies found naming their original: {recalled:,} of {len(expected):,}; originals rejected as "
          f"copies of a planted copy: {len(wrong)}")
    ok = peak <= TARGET_RSS_BYTES
    scaled = "" if mb >= 0.95 * TARGET_CORPUS_MB else f" (corpus of {mb:,.0f} MB, not {TARGET_CORPUS_MB:,} MB)"
    print(f"target: peak RSS <= {fmt_gb(TARGET_RSS_BYTES)} on 1 GB: {verdict(ok)}{scaled}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
