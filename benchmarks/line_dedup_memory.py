"""Memory of line dedup's count on one machine (``transforms.dedup.line_files``) against its stated bound.

What it measures: pass 1's key files for ``--lines`` million line keys over ``--streams`` streams, then the count
of the frequent keys with several ``group_rows``. By default the keys are those of real text: the documents of the
real ``mix`` corpus of ``benchmarks/corpora.py`` (multilingual prose, code and the rest of the kernel tree's text
files, from Debian packages; built and cached in ``.bench-cache/corpora`` on first use), read in order and dealt
round-robin to the streams, each document's distinct line keys computed as pass 1 does (``batch_keys``: normalised
non-blank lines, ``stable_hash64``), until ``--lines`` million keys (a prefix of ~180 MB for the default 5; the mix
holds ~30 million lines, the multilingual corpus only ~1.7 million, so it is the mix). Their duplicates are the
ones real text has (licence headers, boilerplate, code idioms, translations left in English). ``--corpus
multilingual`` or ``code`` takes another corpus, a glob for your JSONL files (if a corpus has fewer keys, all of them
are used and the report says so). ``--corpus generated`` takes synthetic keys instead: documents of ``--per-doc``
lines, ``--shared`` of the lines drawn from a pool of boilerplate lines with Zipf frequencies (a few of them in a
large share of the documents), the rest unique. The corpus used is printed first.

Per run it prints the seconds, the peak of numpy's allocations during the count (``tracemalloc``, which numpy
reports its buffers to), the bound the module docstring states (~40 B x the largest group's rows plus one run's
slice at ~30 B a row, plus ~2 MB) and the whole process's peak RSS (a fresh child process per count, so the numbers
do not mix). It also prints how fast pass 1 cuts and hashes real text lines (``batch_keys`` on the first 300,000
lines of the corpus; with ``generated``, of this Python's standard library sources) and the writer's peak while it
writes a stream. Nothing is asserted: PASS when each measured peak is within its bound.

Usage (from the repository root):

    .venv/bin/python benchmarks/line_dedup_memory.py [--corpus mix] [--lines 5] [--streams 8] [--workdir DIR]
    .venv/bin/python benchmarks/line_dedup_memory.py --corpus generated [--lines 5] [--per-doc 20] [--shared 0.3]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import sysconfig
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Iterable, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from transforms.dedup import line_files  # noqa: E402
from transforms.dedup.line_files import LineKeyFile, LineKeyWriter, frequent_lines_in_files  # noqa: E402
from transforms.dedup.lines import batch_keys  # noqa: E402

from prepare_throughput import GENERATED, REAL_CORPORA, corpus_source, iter_json_records, log  # noqa: E402

MB = 1_000_000
GROUP_BYTES_PER_ROW = 40  # the docstring's bound: merged rows of the largest group
SLICE_BYTES_PER_ROW = 30  # and one run's slice
FIXED_BYTES = 2 * MB  # the indexes, file buffers and the Python objects of the step itself
DEFAULT_CORPUS = "mix"  # the real corpus with enough lines for the default 5 million keys
BATCH_TEXTS = 64  # documents hashed at a time per stream
HASHING_LINES = 300_000


def stream_rows(rng: np.random.Generator, docs: int, per_doc: int, shared: float,
                pool: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(keys, ordinals) of one stream: each document's distinct keys, documents in order."""
    ordinals = np.repeat(np.arange(docs, dtype=np.uint32), per_doc)
    keys = rng.integers(0, 2**64, ordinals.size, dtype=np.uint64)
    common = rng.random(ordinals.size) < shared
    keys[common] = pool[np.minimum(rng.zipf(1.3, int(common.sum())) - 1, pool.size - 1)]
    order = np.lexsort((keys, ordinals))
    keys, ordinals = keys[order], ordinals[order]
    distinct = np.concatenate(([True], (keys[1:] != keys[:-1]) | (ordinals[1:] != ordinals[:-1])))
    return keys[distinct], ordinals[distinct]


def synthetic_streams(args: argparse.Namespace) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(keys, ordinals) of each synthetic stream, made one at a time."""
    rng = np.random.default_rng(1)
    pool = rng.integers(0, 2**64, 50_000, dtype=np.uint64)
    per_stream = int(args.lines * 1e6 / args.streams)
    for _ in range(args.streams):
        yield stream_rows(rng, per_stream // args.per_doc, args.per_doc, args.shared, pool)


def corpus_texts(files: list[str], text_field: str) -> Iterator[str]:
    """The texts of the corpus's records, in order."""
    for path in files:
        for rec in iter_json_records(path):
            if isinstance(rec, dict) and isinstance(rec.get(text_field), str):
                yield rec[text_field]


def real_streams(files: list[str], text_field: str, lines: float, streams: int
                 ) -> tuple[list[tuple[np.ndarray, np.ndarray]], int, bool]:
    """(keys, ordinals) of each stream from the corpus's documents dealt round-robin, each document's distinct line
    keys as pass 1 computes them, until ``lines`` million keys; the documents read; whether the corpus ran out."""
    target = int(lines * 1e6)
    keys: list[list[np.ndarray]] = [[] for _ in range(streams)]
    ordinals: list[list[np.ndarray]] = [[] for _ in range(streams)]
    pending: list[list[str]] = [[] for _ in range(streams)]
    first = [0] * streams
    total = docs = 0

    def flush(s: int) -> int:
        """Hash stream s's pending documents; the keys added."""
        k, o = batch_keys(pending[s], "line", first[s])
        keys[s].append(k)
        ordinals[s].append(o)
        first[s] += len(pending[s])
        pending[s] = []
        return k.size

    exhausted = True
    for text in corpus_texts(files, text_field):
        s = docs % streams
        pending[s].append(text)
        docs += 1
        if len(pending[s]) >= BATCH_TEXTS:
            total += flush(s)
            if total >= target:
                exhausted = False
                break
    for s in range(streams):
        if pending[s]:
            total += flush(s)
    out = [(np.concatenate(k) if k else np.zeros(0, np.uint64), np.concatenate(o) if o else np.zeros(0, np.uint32))
           for k, o in zip(keys, ordinals)]
    return out, docs, exhausted


def write_streams(streams: Iterable[tuple[np.ndarray, np.ndarray]], workdir: Path) -> tuple[list[LineKeyFile], int]:
    """The key files, and the writer's peak numpy allocation while it writes one stream."""
    files, peak = [], 0
    for s, (keys, ordinals) in enumerate(streams):
        tracemalloc.start()
        writer = LineKeyWriter(str(workdir / f"s{s:03d}"), s)
        for start in range(0, keys.size, 20_000):  # batches of documents, as pass 1 hands them on
            writer.add(keys[start:start + 20_000], ordinals[start:start + 20_000])
        files.append(writer.close())
        peak = max(peak, tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    return files, peak


def count_child(spec_path: str) -> int:
    """In a fresh process: one count; prints its seconds, peak numpy allocation, RSS and result size as JSON."""
    spec = json.loads(Path(spec_path).read_text())
    files = [LineKeyFile(**f) for f in spec["files"]]
    tracemalloc.start()
    started = time.perf_counter()
    frequent = frequent_lines_in_files(files, np.zeros(0, np.uint64), spec["min_docs"], True, spec["prefix"],
                                       spec["group_rows"])
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    print(json.dumps({"seconds": seconds, "peak": peak, "frequent": frequent.size,
                      "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
    return 0


def largest_group(files: list[LineKeyFile], group_rows: int) -> tuple[int, int, int]:
    """(groups, rows of the largest group, rows of the largest run slice of a group)."""
    indexes = [line_files.read_index(f) for f in files]
    sizes = sum((np.diff(ix, axis=1).sum(axis=0) for ix in indexes), np.zeros(line_files.BUCKETS, np.int64))
    groups = line_files.bucket_groups(sizes, group_rows)
    biggest = max(int(sizes[lo:hi].sum()) for lo, hi in groups)
    slices = max(int((ix[:, hi] - ix[:, lo]).max()) for ix in indexes for lo, hi in groups)
    return len(groups), biggest, slices


def hashing_speed(files: list[str] | None, text_field: str, limit: int = HASHING_LINES) -> tuple[int, float]:
    """(lines, seconds) of ``batch_keys`` over real text: the first documents of the corpus (None: this Python's
    standard library sources) up to ``limit`` lines."""
    texts, lines = [], 0
    if files is None:
        source = (path.read_text(encoding="utf-8", errors="replace")
                  for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")))
    else:
        source = corpus_texts(files, text_field)
    for text in source:
        texts.append(text)
        lines += text.count("\n") + 1
        if lines >= limit:
            break
    started = time.perf_counter()
    for start in range(0, len(texts), 16):
        batch_keys(texts[start:start + 16], "line", start)
    return lines, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    """Write the key files, count them with several group sizes, print peaks against the bound."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", default=DEFAULT_CORPUS, metavar="NAME|GLOB",
                    help=f"where the line keys come from: {', '.join(REAL_CORPORA)} (real corpora of "
                         f"benchmarks/corpora.py, built on first use: the documents' line keys), {GENERATED} "
                         f"(synthetic keys: --per-doc, --shared) or a glob of JSONL files (default: {DEFAULT_CORPUS})")
    ap.add_argument("--text-field", default="text", help="text field of --corpus records (default: text)")
    ap.add_argument("--lines", type=float, default=5.0, help="millions of line keys (default 5)")
    ap.add_argument("--streams", type=int, default=8)
    ap.add_argument("--per-doc", type=int, default=20, help=f"--corpus {GENERATED}: lines per document")
    ap.add_argument("--shared", type=float, default=0.3,
                    help=f"--corpus {GENERATED}: share of the lines drawn from the boilerplate pool")
    ap.add_argument("--min-docs", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return count_child(args.child)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="line-dedup-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    corpus_files, description = corpus_source(args.corpus)
    if corpus_files is None:
        description = (f"generated: synthetic line keys, documents of {args.per_doc} lines, {args.shared:.0%} of them "
                       "from a Zipf pool of 50,000 boilerplate lines")
    print(f"corpus: {description}", flush=True)
    lines, seconds = hashing_speed(corpus_files, args.text_field)
    where = "this Python's standard library sources" if corpus_files is None else "the corpus"
    print(f"pass 1 keys of real text ({where}): {lines:,} lines in {seconds:.2f} s "
          f"({lines / seconds / 1e6:.2f} M lines/s)")
    started = time.perf_counter()
    if corpus_files is None:
        streams: Iterable[tuple[np.ndarray, np.ndarray]] = synthetic_streams(args)
    else:
        log(f"computing the line keys of the corpus's documents (up to {args.lines:g} million) ...")
        streams, docs, exhausted = real_streams(corpus_files, args.text_field, args.lines, args.streams)
        keys = sum(k.size for k, _ in streams)
        print(f"line keys: {keys:,} of {docs:,} documents dealt to {args.streams} streams, "
              f"{time.perf_counter() - started:.1f} s"
              + (f"; the whole corpus: fewer than the {args.lines:g} million asked for" if exhausted else ""))
        started = time.perf_counter()
    files, writer_peak = write_streams(streams, workdir)
    rows = sum(f.rows for f in files)
    print(f"key files: {rows:,} rows in {args.streams} streams, {sum(f.runs for f in files)} runs, "
          f"{rows * 12 / MB:,.0f} MB, {time.perf_counter() - started:.1f} s; writer peak {writer_peak / MB:.1f} MB "
          f"per stream (bound ~{line_files.RUN_ROWS * 44 / MB:.0f} MB: one run, 12 B a row, sorted copies)")
    print(f"all keys in memory at once would be >= {rows * GROUP_BYTES_PER_ROW / MB:,.0f} MB")
    ok = True
    for group_rows in (1 << 19, 1 << 20, line_files.GROUP_ROWS):
        groups, biggest, slices = largest_group(files, group_rows)
        bound = GROUP_BYTES_PER_ROW * biggest + SLICE_BYTES_PER_ROW * slices + FIXED_BYTES
        spec = {"files": [f.__dict__ for f in files], "min_docs": args.min_docs, "group_rows": group_rows,
                "prefix": str(workdir / f"frequent-{group_rows}")}
        (workdir / "spec.json").write_text(json.dumps(spec))
        out = subprocess.run([sys.executable, __file__, "--child", str(workdir / "spec.json")], check=True,
                             capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        ok &= r["peak"] <= bound
        print(f"group_rows {group_rows:>9,}: {groups:>4} groups, largest {biggest:,} rows; {r['seconds']:.2f} s; "
              f"numpy peak {r['peak'] / MB:6.1f} MB (bound {bound / MB:6.1f} MB); process RSS {r['rss'] / MB:6.1f} MB;"
              f" {r['frequent']:,} frequent keys")
    print("PASS" if ok else "MISS", "(peaks within the bound)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
