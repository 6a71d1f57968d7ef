"""Before/after byte-identity of tokenmill outputs: digest every result directory, then compare two digest files.

A refactoring that claims "behaviour unchanged" proves it here. Two sources of results:

* the test suite: ``TOKENMILL_OUTPUT_DIGESTS=before.json make test`` makes ``tests/conftest.py`` digest every
  result directory (one holding a ``manifest.json``) left under pytest's temporary folder at the end of the session;
* the benchmarks' corpora: ``output_identity.py run --out before.json`` runs a matrix of ``tokenmill prepare`` /
  ``filter`` jobs (packing modes, recipes with filters, dedup and selection, kept documents and rejections) on the
  generated benchmark corpus and on the multilingual chatterbot conversations, and digests each result.

Then ``output_identity.py compare before.json after.json`` prints every file that differs and exits 1 if any does.

A digest is the sha256 of each file's bytes, except for JSON files, whose wall-clock fields (``wall_time_s``,
``stage_seconds``, any ``*_seconds``/``*_time*`` key, start and finish stamps) are dropped and whose temporary-folder
paths are replaced by a placeholder before hashing; ``report.html`` (timings) and the lock file are skipped.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

SKIP_NAMES = {"report.html", ".tokenmill.lock"}
VOLATILE_EXACT = {"wall_time_s", "stage_seconds", "started", "finished", "started_at", "finished_at", "elapsed",
                  "pid", "host", "hostname"}


TEXT_SUFFIXES = {".jsonl", ".txt", ".csv"}


def _volatile(key: str) -> bool:
    """A key whose value is a wall-clock measure (or the run's process), not a result."""
    k = key.lower()
    return k in VOLATILE_EXACT or k.endswith("_seconds") or k.endswith("_s") and "time" in k or "wall" in k


def _scrub(value: Any, replace: dict[str, str]) -> Any:
    """``value`` without volatile keys, with every ``replace`` key in strings swapped for its placeholder."""
    if isinstance(value, dict):  # keys too: per-file counts are keyed by the input's path
        return {_scrub(k, replace): _scrub(v, replace) for k, v in value.items() if not _volatile(str(k))}
    if isinstance(value, list):
        return [_scrub(v, replace) for v in value]
    if isinstance(value, str):
        for old, new in replace.items():
            value = value.replace(old, new)
    return value


def digest_file(path: Path, replace: dict[str, str]) -> str:
    """sha256 of the file (JSON: of its scrubbed canonical form)."""
    data = path.read_bytes()
    if path.suffix == ".json":
        try:
            obj = json.loads(data)
        except ValueError:
            pass
        else:
            data = json.dumps(_scrub(obj, replace), sort_keys=True).encode()
    elif path.suffix in TEXT_SUFFIXES:  # rejected records name their input files: the same file at another root
        text = data.decode("utf-8", "surrogateescape")
        for old, new in replace.items():
            text = text.replace(old, new)
        data = text.encode("utf-8", "surrogateescape")
    return hashlib.sha256(data).hexdigest()


def digest_results(root: Path, replace: dict[str, str]) -> dict[str, str]:
    """{relative path: digest} of every file of every result directory (one holding manifest.json) under root."""
    out: dict[str, str] = {}
    # the interpreter's environment first (it may live inside the tree), then the tree the run imported
    replace = {**replace, sys.prefix: "<env>", str(Path(__file__).resolve().parent.parent): "<repo>"}
    results = sorted({p.parent for p in root.rglob("manifest.json") if p.is_file()})
    for res in results:
        for path in sorted(res.rglob("*")):
            if path.is_file() and not path.is_symlink() and path.name not in SKIP_NAMES:
                out[str(path.relative_to(root))] = digest_file(path, replace)
    return out


def compare(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Lines describing every difference between two digest maps (empty when identical)."""
    lines = []
    for key in sorted(before.keys() | after.keys()):
        a, b = before.get(key), after.get(key)
        if a != b:
            lines.append(f"{'missing after' if b is None else 'new after' if a is None else 'differs'}: {key}")
    return lines


# ---------------------------------------------------------------------------------------------- the job matrix

RECIPE_FILTERS = """\
filters:
  - {name: gopher_repetition}
  - {name: gopher_quality, params: {min_doc_words: 20}}
  - {name: c4_quality, params: {filter_no_terminal_punct: false}}
  - {name: fineweb_quality}
  - {name: language, params: {languages: [en, de, fr, es, ru, zh, ja], min_score: 0.3}}
  - {name: regex, params: {regex_exp: 'lorem|ipsum'}}
"""

RECIPE_DEDUP = """\
filters:
  - {name: gopher_quality, params: {min_doc_words: 20}}
dedup: {exact: true, minhash: {ngram: 5, bands: 14, rows: 8}}
"""

RECIPE_SELECT = """\
filters:
  - {name: fineweb_quality}
scorers:
  - {name: length, params: {unit: words}}
  - {name: dsir, params: {target: '%s', buckets: 2000}}
ensemble: {buckets: 10, weight: tokens}
select: {top_fraction: 0.6}
upsample: {9: 2}
"""


def _jobs(corpus: list[str], ml: str, tok: str, work: Path) -> list[tuple[str, list[str]]]:
    """(name, tokenmill argv) of every job of the matrix."""
    (work / "filters.yaml").write_text(RECIPE_FILTERS)
    (work / "dedup.yaml").write_text(RECIPE_DEDUP)
    (work / "select.yaml").write_text(RECIPE_SELECT % ml)
    base = ["--tokenizer", tok, "--seq-len", "512", "--no-progress", "--workers", "2"]
    one = [a for path in corpus for a in ("--input", path)]
    both = [*one, "--input", ml]
    return [
        ("concat", ["prepare", *both, *base]),
        ("best_fit", ["prepare", *both, *base, "--packing", "best-fit", "--loss-mask", "boundaries"]),
        ("decompose", ["prepare", *one, *base, "--seq-len", "8192", "--packing", "decompose", "--shuffle-seed", "7"]),
        ("fineweb", ["prepare", *both, *base, "--recipe", "fineweb", "--emit-documents"]),
        ("filters", ["prepare", *both, *base, "--recipe", str(work / "filters.yaml")]),
        ("dedup", ["prepare", *both, *base, "--recipe", str(work / "dedup.yaml")]),
        ("select", ["prepare", *one, *base, "--recipe", str(work / "select.yaml"),
                    "--emit-documents"]),
        ("filter_cmd", ["filter", *both, "--recipe", "fineweb", "--no-progress", "--workers", "2"]),
    ]


def run_matrix(out: Path, work: Path, size_mb: float) -> dict[str, str]:
    """Run every job of the matrix into ``work`` and digest the results."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from prepare_throughput import generated_corpus, training_tokenizer  # the benchmarks' own corpus

    import chatterbot_corpus  # noqa: F401  (fails early when the test extra is not installed)
    from prepare_throughput import chatterbot_conversations

    work.mkdir(parents=True, exist_ok=True)
    corpus = generated_corpus(work, size_mb)
    ml = work / "chatterbot.jsonl"
    ml.write_text("".join(json.dumps({"id": f"c{i}", "text": t}) + "\n"
                          for i, t in enumerate(chatterbot_conversations())))
    tok = training_tokenizer(work, corpus, "text")
    exe = str(Path(sys.executable).with_name("tokenmill"))
    for name, argv in _jobs(corpus, str(ml), tok, work):
        dest = work / "results" / name
        print(f"[identity] {name}", flush=True)
        proc = subprocess.run([exe, *argv, "--output", str(dest), "--overwrite"], capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{name} failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    digests = digest_results(work / "results", {str(work): "<work>"})
    out.write_text(json.dumps(digests, indent=1, sort_keys=True))
    print(f"[identity] {len(digests)} files digested -> {out}")
    return digests


def main(argv: list[str] | None = None) -> int:
    """`run` the matrix and digest it, or `compare` two digest files."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the job matrix on the benchmark corpora and write digests")
    r.add_argument("--out", required=True, type=Path, help="digest file to write (JSON)")
    r.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "tokenmill-identity",
                   help="where the corpus, tokenizer and results go (the corpus is reused when it is there)")
    r.add_argument("--size-mb", type=float, default=8.0, help="generated corpus size (default 8)")
    c = sub.add_parser("compare", help="compare two digest files; exit 1 on any difference")
    c.add_argument("before", type=Path)
    c.add_argument("after", type=Path)
    args = ap.parse_args(argv)
    if args.cmd == "run":
        run_matrix(args.out, args.workdir, args.size_mb)
        return 0
    before, after = json.loads(args.before.read_text()), json.loads(args.after.read_text())
    diff = compare(before, after)
    for line in diff:
        print(line)
    print(f"{len(before)} files before, {len(after)} after, {len(diff)} differences")
    return 1 if diff else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main())
