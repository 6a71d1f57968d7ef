"""``tokenmill demo``: embedded corpus → tokenizer → ``prepare`` → summary. No download, no arguments needed."""

from __future__ import annotations

import argparse
import gzip
import os
import shlex
import sys
import time
from typing import Callable

import orjson

from transforms.read.demo_corpus import demo_records, stdlib_root
from transforms.tokenize.training import train_byte_level_bpe

_FILES = 4
_TRAIN_SAMPLE_CHARS = 6_000_000


def write_corpus(directory: str) -> list[str]:
    """Write the stdlib corpus as JSONL files (the last one gzipped) and return their paths."""
    os.makedirs(directory, exist_ok=True)
    records = list(demo_records())
    paths = []
    per_file = -(-len(records) // _FILES)
    for i in range(_FILES):
        name = f"stdlib-{i:02d}.jsonl" + (".gz" if i == _FILES - 1 else "")
        path = os.path.join(directory, name)
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "wb") as fh:
            for rec in records[i * per_file : (i + 1) * per_file]:
                fh.write(orjson.dumps(rec) + b"\n")
        paths.append(path)
    return paths


def _training_texts(paths: list[str]) -> list[str]:
    texts, total = [], 0
    for path in paths:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rb") as fh:
            for line in fh:
                text = orjson.loads(line)["text"]
                texts.append(text)
                total += len(text)
                if total >= _TRAIN_SAMPLE_CHARS:
                    return texts
    return texts


def run_demo(args: argparse.Namespace, beam_args: list[str], run_prepare: Callable) -> int:
    """Build the corpus and tokenizer (once), run prepare, print where everything is."""
    from pipelines.prepare import PrepareConfig
    from transforms.report.summary import summary_table

    out = args.output
    corpus_dir = os.path.join(out, "corpus")
    tok_path = os.path.join(out, f"tokenizer-{args.vocab_size}.json")
    result = os.path.join(out, "result")
    t0 = time.time()
    print(f"tokenmill demo: corpus from {stdlib_root()} -> {corpus_dir}", file=sys.stderr)
    paths = write_corpus(corpus_dir)
    if not os.path.exists(tok_path):
        print(f"tokenmill demo: training a {args.vocab_size}-token byte-level BPE -> {tok_path}", file=sys.stderr)
        train_byte_level_bpe(_training_texts(paths), args.vocab_size).save(tok_path)
    print(f"tokenmill demo: ready in {time.time() - t0:.1f}s; running prepare", file=sys.stderr)
    argv = ["tokenmill", "prepare", "--input", f"{corpus_dir}/*.jsonl*", "--tokenizer", tok_path,
            "--seq-len", str(args.seq_len), "--output", result, "--overwrite"]
    cfg = PrepareConfig(inputs=[f"{corpus_dir}/*.jsonl*"], output=result, tokenizer=tok_path, seq_len=args.seq_len,
                        workers=args.workers, overwrite=True, argv=argv)
    manifest = run_prepare(cfg, beam_args, not args.no_progress)
    print(summary_table(manifest, result), file=sys.stderr)
    print(f"shards:   {os.path.abspath(result)}/shards/")
    print(f"manifest: {os.path.abspath(result)}/manifest.json")
    print(f"report:   {os.path.abspath(result)}/report.html (open it in a browser)")
    print(f"same run by hand: {shlex.join(argv)}")
    return 0
