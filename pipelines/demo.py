"""``tokenmill demo``: embedded corpus → tokenizer → ``prepare`` → summary. No download, no arguments needed.

orjson and ``prepare`` (with what it runs) are imported by the functions that build and run the demo, so
``demo --help`` loads neither.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shlex
import sys
import time
from dataclasses import dataclass

from pipelines.arguments import EPILOG_BEAM, positive
from pipelines.runner import run_with_progress
from transforms.read.demo_corpus import demo_records, stdlib_root
from transforms.report.summary import summary_table
from transforms.tokenize.training import train_byte_level_bpe

DESCRIPTION = ("The quick start: writes a JSONL corpus made of the running Python's standard library (module sources "
               "and their docstrings), trains a byte-level BPE tokenizer on it, runs prepare and prints where the "
               "shards and the manifest are. Needs no download.")
EPILOG = EPILOG_BEAM
BEAM = True

_FILES = 4
_TRAIN_SAMPLE_CHARS = 6_000_000


@dataclass
class DemoConfig:
    """Where the demo writes and the size of what it builds."""

    output: str
    seq_len: int
    vocab_size: int
    workers: int


def add_arguments(demo: argparse.ArgumentParser) -> None:
    """The options of ``demo``."""
    demo.add_argument("--output", "-o", default="demo-output", help="directory for corpus, tokenizer and result")
    demo.add_argument("--seq-len", type=positive, default=2048, help="tokens per packed row (default: 2048)")
    demo.add_argument("--vocab-size", type=positive, default=16384, help="tokenizer vocabulary (default: 16384)")
    demo.add_argument("--workers", type=positive, default=1, help="local worker processes (default: 1)")
    demo.add_argument("--no-progress", action="store_true", help="no live progress line")
    demo.add_argument("--verbose", "-v", action="store_true", help="show Beam's own log messages")


def config_from_args(args: argparse.Namespace, command_line: list[str]) -> DemoConfig:
    """The config the parsed options describe."""
    return DemoConfig(output=args.output, seq_len=args.seq_len, vocab_size=args.vocab_size, workers=args.workers)


def write_corpus(directory: str) -> list[str]:
    """Write the stdlib corpus as JSONL files (the last one gzipped) and return their paths."""
    import orjson

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
    import orjson

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


def launch(cfg: DemoConfig, beam_args: list[str], show_progress: bool) -> int:
    """Build the corpus and tokenizer (once), run prepare, print where everything is; the exit code."""
    from pipelines import prepare

    out = cfg.output
    corpus_dir = os.path.join(out, "corpus")
    tok_path = os.path.join(out, f"tokenizer-{cfg.vocab_size}.json")
    result = os.path.join(out, "result")
    t0 = time.time()
    print(f"tokenmill demo: corpus from {stdlib_root()} -> {corpus_dir}", file=sys.stderr)
    paths = write_corpus(corpus_dir)
    if not os.path.exists(tok_path):
        print(f"tokenmill demo: training a {cfg.vocab_size}-token byte-level BPE -> {tok_path}", file=sys.stderr)
        train_byte_level_bpe(_training_texts(paths), cfg.vocab_size).save(tok_path)
    print(f"tokenmill demo: ready in {time.time() - t0:.1f}s; running prepare", file=sys.stderr)
    argv = ["tokenmill", "prepare", "--input", f"{corpus_dir}/*.jsonl*", "--tokenizer", tok_path,
            "--seq-len", str(cfg.seq_len), "--output", result, "--overwrite"]
    prepare_cfg = prepare.PrepareConfig(inputs=[f"{corpus_dir}/*.jsonl*"], output=result, tokenizer=tok_path,
                                        seq_len=cfg.seq_len, workers=cfg.workers, overwrite=True, argv=argv)
    manifest = run_with_progress(prepare.run, prepare_cfg, beam_args, show_progress)
    print(summary_table(manifest, result), file=sys.stderr)
    print(f"shards:   {os.path.abspath(result)}/shards/")
    print(f"manifest: {os.path.abspath(result)}/manifest.json")
    print(f"report:   {os.path.abspath(result)}/report.html (open it in a browser)")
    print(f"same run by hand: {shlex.join(argv)}")
    return 0
