"""Throughput of the training-side loader (``schemas.loader.PackedShardDataset``, numpy path) on local shards.

What it measures, in one run, on the same shard files and the same cores:

* ``loader``: ``PackedShardDataset(DIR, rank=r, world_size=2, seed=...)`` in two processes (one per core, r = 0
  and 1), each reading one whole epoch of its rank with ``batches(batch_size)``: every batch complete, with
  ``input_ids`` (int64), ``position_ids`` (int64), ``cu_seqlens``, ``max_seqlen``, ``loss_mask`` and ``row_index``,
  rows shuffled in windows of 16 row groups (the defaults). Timed from a common start (both processes have read the
  manifest) until the last process has its last batch.
* ``loader, int32 ids and positions``: the same with ``ids_dtype=int32`` (a view of the stored uint32 ids) and
  ``position_dtype=int32``: half the bytes to write per token.
* ``loader, ids decoded by pyarrow``: the defaults with ``fast_decode=False`` (pyarrow's list decoding instead of
  the loader's own page decoding).
* ``anchor``: raw ``pyarrow.parquet.read_table`` of the same files (every column, ``use_threads=False``), in two
  processes each reading every other file, the ids then viewed as a numpy array: what decoding the Parquet data
  with pyarrow costs.

Throughput is GB (10^9 bytes) of token data per second, the token ids counted as 4-byte values (rows x seq_len x 4,
padding included, as the shards store them), and tokens per second. Each system runs --repeat times (default 3) in
fresh processes, in turn; the median is reported. The shards are read once before the first round so that every
system reads them from the page cache (the numbers are of decoding and batching, not of the disk).

The shards: --shards DIR takes a finished ``tokenmill prepare`` output (or an earlier run's). Otherwise about
--gb GB (default 1.5) of ids are generated and written with pyarrow exactly as ``tokenmill prepare`` writes them
(the ``schemas.shards`` schema, zstd level 1, BYTE_STREAM_SPLIT ids, 8192 rows per shard, row groups of 4 MB of
ids, seq_len 2048, a manifest.json), the last row of each shard padded. Token ids (--tokens real, the default):
real documents, by default the first --pool-mb MB (default 20) of the real multilingual corpus of
``benchmarks/corpora.py`` (prose in Latin, Cyrillic and CJK scripts from translated documentation in Debian
packages, built and cached in ``.bench-cache/corpora`` on first use; ``--corpus code`` or ``mix`` for the others, or
a glob of JSONL files), tokenized once by a 32k byte-level BPE trained here on a third of those documents, then
drawn at random and packed back to back: the token statistics of real text. The pool (some millions of tokens) is
smaller than the shards, so documents recur and zstd may find some long matches. ``--corpus generated`` takes the
pool of before instead (this Python's standard-library docstrings and the chatterbot-corpus conversations in 28
languages with module sources as ~15% of the tokens, no download; about 1.2M tokens in 8.7k documents). --tokens
zipf (i.i.d. Zipf ids over a 50k vocabulary, log-normal document lengths, no repeats) is the other bound and decodes
about as fast. The corpus used is printed first. With --workdir the tokenized documents and the shards are kept
there and reused by later runs.

Target (printed with PASS/MISS, never asserted): loader >= 1 GB of tokens/s from local shards on 2 cores (numpy
path), the default loader configuration, two processes.

Usage (from the repository root):

    .venv/bin/python benchmarks/loader_throughput.py [--gb 1.5] [--corpus multilingual] [--pool-mb 20] [--workdir DIR]
                                                     [--repeat 3] [--batch-size 8]
    .venv/bin/python benchmarks/loader_throughput.py --shards out/
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from schemas import manifest as m  # noqa: E402
from schemas.shards import INPUT_IDS, INPUT_IDS_LEAF, MANIFEST_FILE, SHARD_SCHEMA, read_manifest  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from prepare_throughput import (  # noqa: E402  (a sibling script)
    DEFAULT_CORPUS, GENERATED, REAL_CORPORA, MB, chatterbot_conversations, corpus_source, iter_json_records, log)

GB = 10 ** 9
TARGET_GBPS = 1.0
SEQ_LEN = 2048
SHARD_ROWS = 8192
GROUP_ROWS = (4 << 20) // (4 * SEQ_LEN)  # row groups of 4 MB of ids, as prepare writes them
VOCAB = 50_257
PAD_ID = 0
WORLD = 2
POOL_MB = 20.0  # MB of corpus text tokenized into the pool of documents the shards are drawn from
DEFAULT = "loader (defaults: int64 ids, shuffled)"
ANCHOR = "anchor: pyarrow read_table"


# -- shards -----------------------------------------------------------------------------------------------------------

def pool_source(corpus: str) -> tuple[list[str] | None, str]:
    """(JSONL files or None for the generated pool, description) of --corpus."""
    files, description = corpus_source(corpus)
    if files is None:
        return None, ("generated: this Python's standard-library docstrings and the chatterbot-corpus conversations, "
                      "module sources as ~15% of the tokens")
    return files, description


def files_key(files: list[str] | None, pool_mb: float) -> str:
    """A short key of the pool's source (paths, sizes, mtimes and MB taken) for the names of cached files."""
    if files is None:
        return "generated"
    digest = hashlib.sha256(f"{pool_mb:g};".encode())
    for path in files:
        st = os.stat(path)
        digest.update(f"{os.path.abspath(path)}:{st.st_size}:{st.st_mtime_ns};".encode())
    return digest.hexdigest()[:12]


def generated_texts() -> list[str]:
    """The generated pool's texts: stdlib docstrings and chatterbot conversations, module sources ~15% of it."""
    from transforms.read.demo_corpus import demo_records

    records = list(demo_records())
    prose = [r["text"] for r in records if r["source"] == "stdlib-docstrings"] + chatterbot_conversations()
    code = [r["text"] for r in records if r["source"] == "stdlib-source"]
    prose_bytes = sum(len(t) for t in prose)
    kept, size = [], 0
    for text in code:
        if size > prose_bytes * 0.15 / 0.85:
            break
        kept.append(text)
        size += len(text)
    return prose + kept


def corpus_texts(files: list[str], text_field: str, pool_mb: float) -> list[str]:
    """The texts of the first ``pool_mb`` MB of text of JSONL files, in order."""
    texts, size = [], 0
    for path in files:
        for obj in iter_json_records(path):
            text = obj.get(text_field) if isinstance(obj, dict) else None
            if isinstance(text, str) and text:
                texts.append(text)
                size += len(text.encode("utf-8", "surrogatepass"))
                if size >= pool_mb * MB:
                    return texts
    return texts


def token_documents(workdir: Path, files: list[str] | None, text_field: str = "text",
                    pool_mb: float = POOL_MB) -> tuple[np.ndarray, np.ndarray]:
    """Real token documents, cached in ``workdir``: (ids back to back, each ending with EOS; document lengths).

    The first ``pool_mb`` MB of text of ``files`` (``None``: the generated pool, this Python's standard-library
    docstrings and the chatterbot-corpus conversations with module sources as ~15% of the tokens), tokenized by a 32k
    byte-level BPE trained here on a third of them.
    """
    cache = workdir / ("token-documents.npz" if files is None else
                       f"token-documents-{files_key(files, pool_mb)}.npz")
    if cache.exists():
        data = np.load(cache)
        return data["ids"], data["lengths"]
    from transforms.tokenize.training import END_OF_TEXT, train_byte_level_bpe

    if files is None:
        log("tokenizing this Python's standard-library docstrings and sources and the chatterbot conversations ...")
        texts = generated_texts()
    else:
        log(f"tokenizing the first {pool_mb:g} MB of the corpus ...")
        texts = corpus_texts(files, text_field, pool_mb)
    tokenizer = train_byte_level_bpe(texts[::3], 32_000)
    eos = tokenizer.token_to_id(END_OF_TEXT)
    encoded = tokenizer.encode_batch(texts, add_special_tokens=False)
    docs = [np.append(np.asarray(e.ids, np.uint32), np.uint32(eos)) for e in encoded if e.ids]
    ids, lengths = np.concatenate(docs), np.array([d.size for d in docs], np.int64)
    log(f"  a pool of {ids.size:,} tokens in {lengths.size:,} documents")
    workdir.mkdir(parents=True, exist_ok=True)
    np.savez(cache, ids=ids, lengths=lengths)
    return ids, lengths


def packed_rows(rows: int, seed: int, pad: int, docs: tuple[np.ndarray, np.ndarray] | None) -> pa.Table:
    """A shard's packed rows: documents back to back (drawn at random from ``docs``, else i.i.d. Zipf ids with
    log-normal document lengths), cut into rows of SEQ_LEN, the last row padded with ``pad`` pad ids."""
    rng = np.random.default_rng(seed)
    real = rows * SEQ_LEN - pad
    ids = np.full(rows * SEQ_LEN, PAD_ID, np.uint32)
    if docs is None:
        lens = np.maximum(8, rng.lognormal(6.0, 1.0, real // 200 + 64).astype(np.int64))
        ids[:real] = np.minimum(rng.zipf(1.15, real), VOCAB - 1)
    else:
        pool, pool_lens = docs
        pool_starts = np.cumsum(pool_lens) - pool_lens
        picks = rng.integers(0, len(pool_lens), real // max(1, int(pool_lens.mean())) * 2 + 64)
        lens = pool_lens[picks]
        while lens.sum() < real:
            more = rng.integers(0, len(pool_lens), len(picks))
            picks, lens = np.append(picks, more), np.append(lens, pool_lens[more])
        starts = np.repeat(pool_starts[picks] - (np.cumsum(lens) - lens), lens)
        take = starts[:real] + np.arange(real)
        ids[:real] = pool[take]
    ends = np.cumsum(lens)
    ends = ends[ends < real]
    if docs is None:
        ids[ends - 1] = 1  # an EOS at each document end
    row_start = np.arange(rows, dtype=np.int64) * SEQ_LEN
    row_real_end = np.minimum(row_start + SEQ_LEN, real) - row_start
    # cu_seqlens of row r: 0, the document ends strictly inside its real tokens, its real end
    first = np.searchsorted(ends, row_start, side="right")
    last = np.searchsorted(ends, row_start + row_real_end, side="left")
    inner = last - first
    offsets = np.zeros(rows + 1, np.int64)
    np.cumsum(inner + 2, out=offsets[1:])
    values = np.empty(offsets[-1], np.int32)
    values[offsets[:-1]] = 0
    values[offsets[1:] - 1] = row_real_end
    before = np.cumsum(inner) - inner
    k = np.arange(int(inner.sum()))
    inner_pos = np.repeat(offsets[:-1] + 1 - before, inner) + k
    values[inner_pos] = ends[np.repeat(first - before, inner) + k] - np.repeat(row_start, inner)
    num_pad = SEQ_LEN - row_real_end
    id_lists = pa.ListArray.from_arrays(pa.array(np.arange(0, rows * SEQ_LEN + 1, SEQ_LEN, dtype=np.int32)),
                                        pa.array(ids))
    cu_lists = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values))
    return pa.Table.from_arrays([id_lists, cu_lists, pa.array(num_pad.astype(np.int32))], schema=SHARD_SCHEMA)


_DOCS: tuple[np.ndarray, np.ndarray] | None = None  # the token documents, shared with forked writers


def write_shard(args: tuple[str, int, int]) -> dict[str, Any]:
    """Write one shard as prepare does; its manifest entry."""
    path, index, rows = args
    rng = np.random.default_rng(10_000 + index)
    pad = int(rng.integers(0, SEQ_LEN // 2))
    table = packed_rows(rows, index, pad, _DOCS)
    with pq.ParquetWriter(path, SHARD_SCHEMA, compression="zstd", compression_level=1, use_dictionary=False,
                          write_statistics=False, column_encoding={INPUT_IDS_LEAF: "BYTE_STREAM_SPLIT"}) as w:
        w.write_table(table, row_group_size=GROUP_ROWS)
    return {m.E_PATH: f"shards/{Path(path).name}", m.E_ROWS: rows, m.E_BYTES: os.path.getsize(path),
            m.E_TOKENS: rows * SEQ_LEN - pad, m.E_PAD_TOKENS: pad}


def generate_shards(directory: Path, gb: float, docs: tuple[np.ndarray, np.ndarray] | None) -> None:
    """About ``gb`` GB of ids as tokenmill shards and a manifest, written by two processes."""
    global _DOCS
    _DOCS = docs
    n_shards = max(1, round(gb * GB / (SHARD_ROWS * SEQ_LEN * 4)))
    (directory / "shards").mkdir(parents=True, exist_ok=True)
    jobs = [(str(directory / "shards" / f"part-{i:05d}.parquet"), i, SHARD_ROWS) for i in range(n_shards)]
    log(f"writing {n_shards} shards of {SHARD_ROWS} rows x {SEQ_LEN} tokens to {directory} ...")
    t0 = time.perf_counter()
    with mp.get_context("fork").Pool(WORLD) as pool:
        shards = pool.map(write_shard, jobs)
    manifest = {m.K_FORMAT: m.MANIFEST_FORMAT, m.K_FINGERPRINT: f"loader-benchmark-{n_shards}-{SEQ_LEN}",
                m.K_SEQ_LEN: SEQ_LEN, m.K_SHARDS: shards,
                m.K_COUNTS: {"sequences": sum(s[m.E_ROWS] for s in shards),
                             "tokens": sum(s[m.E_TOKENS] for s in shards),
                             "pad_tokens": sum(s[m.E_PAD_TOKENS] for s in shards)}}
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    log(f"  {time.perf_counter() - t0:.1f} s, {sum(s[m.E_BYTES] for s in shards) / GB:.2f} GB on disk")


# -- measured children ------------------------------------------------------------------------------------------------

def child_loader(rank: int, path: str, options: dict[str, Any], batch_size: int, barrier: Any, out: Any) -> None:
    """Read one epoch of this rank; report start, end, tokens (rows x seq_len) and batches."""
    from schemas.loader import PackedShardDataset

    ds = PackedShardDataset(path, rank=rank, world_size=WORLD, seed=1234, **options)
    tokens = batches = 0
    barrier.wait()
    t0 = time.perf_counter()
    for batch in ds.batches(batch_size):
        tokens += batch["input_ids"].size
        batches += 1
    out.put((rank, t0, time.perf_counter(), tokens, batches))


def child_anchor(rank: int, path: str, options: dict[str, Any], batch_size: int, barrier: Any, out: Any) -> None:
    """Raw pyarrow read_table of every other shard file."""
    manifest = read_manifest(path)
    files = [str(Path(path) / s[m.E_PATH]) for s in manifest[m.K_SHARDS]][rank::WORLD]
    tokens = 0
    barrier.wait()
    t0 = time.perf_counter()
    for f in files:
        table = pq.read_table(f, use_threads=False)
        ids = table.column(INPUT_IDS).combine_chunks().values.to_numpy()
        tokens += ids.size
        del table, ids
    out.put((rank, t0, time.perf_counter(), tokens, len(files)))


def measure(target: Any, path: str, options: dict[str, Any], batch_size: int) -> dict[str, float]:
    """Two processes (one per core) run ``target``; aggregate tokens over the common wall time."""
    ctx = mp.get_context("fork")
    barrier, out = ctx.Barrier(WORLD), ctx.Queue()
    procs = [ctx.Process(target=target, args=(r, path, options, batch_size, barrier, out)) for r in range(WORLD)]
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
        if p.exitcode:
            raise RuntimeError(f"a measured process failed (exit code {p.exitcode})")
    wall = max(r[2] for r in results) - min(r[1] for r in results)
    tokens = sum(r[3] for r in results)
    return {"seconds": wall, "tokens": tokens, "gbps": tokens * 4 / GB / wall, "tokps": tokens / wall,
            "per_process": [r[3] * 4 / GB / (r[2] - r[1]) for r in sorted(results)]}


def warm(path: str) -> int:
    """Read every shard once (page cache) and return the bytes on disk."""
    manifest = read_manifest(path)
    total = 0
    for s in manifest[m.K_SHARDS]:
        with open(Path(path) / s[m.E_PATH], "rb") as fh:
            while chunk := fh.read(64 << 20):
                total += len(chunk)
    return total


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the report."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shards", help="a tokenmill prepare output directory to read instead of generated shards")
    ap.add_argument("--gb", type=float, default=1.5, help="GB of token ids to generate (default 1.5)")
    ap.add_argument("--tokens", choices=("real", "zipf"), default="real",
                    help="generated ids: real tokenized documents drawn at random (default), or i.i.d. Zipf ids "
                         "with log-normal document lengths (no text structure at all)")
    ap.add_argument("--corpus", default=DEFAULT_CORPUS, metavar="NAME|GLOB",
                    help=f"--tokens real: the documents tokenized: {', '.join(REAL_CORPORA)} (real corpora of "
                         f"benchmarks/corpora.py, built on first use), {GENERATED} (stdlib docstrings and sources + "
                         f"chatterbot conversations) or a glob of JSONL files (default: {DEFAULT_CORPUS})")
    ap.add_argument("--pool-mb", type=float, default=POOL_MB,
                    help=f"--tokens real: MB of text taken from the start of --corpus (default {POOL_MB:g})")
    ap.add_argument("--text-field", default="text", help="text field of --corpus records (default: text)")
    ap.add_argument("--workdir", help="keep generated shards here and reuse them (default: a temporary directory)")
    ap.add_argument("--repeat", type=int, default=3, help="rounds; medians are reported (default 3)")
    ap.add_argument("--batch-size", type=int, default=8, help="rows per batch (default 8)")
    args = ap.parse_args(argv)

    temp = None
    if args.shards:
        path = args.shards.rstrip("/")
        source = f"the shards of {path}"
        log(f"corpus: {source}")
    else:
        if args.workdir:
            workdir = Path(args.workdir)
        else:
            temp = tempfile.mkdtemp(prefix="loader-bench-")
            workdir = Path(temp)
        if args.tokens == "real":
            files, description = pool_source(args.corpus)
            source = f"the first {args.pool_mb:g} MB of {description}" if files else description
            key = files_key(files, args.pool_mb)
        else:
            source, key = "generated: i.i.d. Zipf ids, log-normal document lengths (no text)", "zipf"
        log(f"corpus: {source}")
        directory = workdir / f"shards-{args.tokens}-{key}-{args.gb:g}gb"
        if not (directory / MANIFEST_FILE).exists():
            docs = token_documents(workdir, files, args.text_field, args.pool_mb) if args.tokens == "real" else None
            generate_shards(directory, args.gb, docs)
        path = str(directory)
    try:
        on_disk = warm(path)
        manifest = read_manifest(path)
        rows = sum(s[m.E_ROWS] for s in manifest[m.K_SHARDS])
        seq_len = manifest.get(m.K_SEQ_LEN)
        log(f"{len(manifest[m.K_SHARDS])} shards, {rows:,} rows of {seq_len}, {on_disk / GB:.2f} GB on disk")
        systems = [
            (DEFAULT, child_loader, {}),
            ("loader, int32 ids and positions", child_loader, {"ids_dtype": "int32", "position_dtype": "int32"}),
            ("loader, ids decoded by pyarrow", child_loader, {"fast_decode": False}),
            (ANCHOR, child_anchor, {}),
        ]
        runs: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in systems}
        for r in range(args.repeat):
            for name, target, options in systems:
                res = measure(target, path, options, args.batch_size)
                runs[name].append(res)
                log(f"round {r + 1}: {name}: {res['gbps']:.2f} GB/s ({res['seconds']:.2f} s)")
        print(f"machine: cores={os.cpu_count()} python={sys.version.split()[0]} numpy={np.__version__} "
              f"pyarrow={pa.__version__}")
        print(f"corpus: {source}")
        print(f"shards: {path}: {len(manifest[m.K_SHARDS])} files, {rows:,} rows x {seq_len} tokens = "
              f"{rows * seq_len * 4 / GB:.2f} GB of ids (4 bytes each), {on_disk / GB:.2f} GB on disk; "
              f"batch_size {args.batch_size}; {WORLD} processes (world_size={WORLD}, one rank each); "
              f"median of {args.repeat}")
        anchor = statistics.median(x["gbps"] for x in runs[ANCHOR])
        print(f"{'system':<42} {'GB/s':>6} {'Mtok/s':>8} {'seconds':>8} {'per process GB/s':>18} {'vs anchor':>9}")
        for name, _, _ in systems:
            gbps = statistics.median(x["gbps"] for x in runs[name])
            best = min(runs[name], key=lambda x: abs(x["gbps"] - gbps))
            per = "/".join(f"{v:.2f}" for v in best["per_process"])
            print(f"{name:<42} {gbps:>6.2f} {best['tokps'] / 1e6:>8.0f} {best['seconds']:>8.2f} {per:>18} "
                  f"{gbps / anchor:>8.2f}x")
        loader = statistics.median(x["gbps"] for x in runs[DEFAULT])
        verdict = "PASS" if loader >= TARGET_GBPS else "MISS"
        print(f"[{verdict}] Loader >= {TARGET_GBPS:g} GB of tokens/s from local shards on 2 cores (numpy path): "
              f"{loader:.2f} GB/s ({loader * GB / 4 / 1e6:.0f}M tokens/s), anchor read_table {anchor:.2f} GB/s")
        return 0
    finally:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
