"""The ``tokenmill`` command line."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from typing import Sequence

from pipelines import whole_number

EPILOG_BEAM = """\
Any option not listed here is passed to Apache Beam as a pipeline option, so the same command scales out:
  --runner DataflowRunner --project P --region R --temp_location gs://...   (Dataflow)
  --runner PortableRunner --job_endpoint=embed --environment_type=LOOPBACK  (local portable runner)
The default runner is Beam's local FnApiRunner; --workers N runs N local worker processes.
"""


def recipe_epilog() -> str:
    """The recipe stages and presets, from the recipe module (the one place they are defined)."""
    from transforms.recipe.recipes import PRESETS, STAGES

    lines = ["Recipe stages (YAML: filters: [{name: STAGE, params: {...}}, ...]; dedup: {exact: true, minhash: "
             "{ngram: 5, bands: 14, rows: 8}}):"]
    lines += [f"  {name:<18} {spec.doc}" for name, spec in STAGES.items()]
    lines.append(f"Presets: {', '.join(PRESETS)}.")
    from transforms.select.scoring import CRITERIA, SCORERS

    lines.append("Scorers (scorers: [{name: SCORER, key: NAME, params: {...}}]; scores go to meta.scores):")
    lines += [f"  {name:<18} {spec.doc}" for name, spec in SCORERS.items()]
    lines.append("Ensemble: {buckets: 20, sample_fraction: 1.0, weight: bytes|tokens|documents, combine: max|mean} "
                 "(meta.bucket). Select one of: " + ", ".join(CRITERIA) + " (and score: KEY|bucket). "
                 "Upsample: {BUCKET: FACTOR}.")
    return "\n".join(lines) + "\n\n"


_positive = whole_number(1)


def _add_format_and_text_field(ap: argparse.ArgumentParser) -> None:
    """--input-format and --text-field (eval-tokenizer, stats)."""
    from transforms.read.sources import FORMATS

    ap.add_argument("--input-format", choices=FORMATS, default=None,
                    help="read every input as this format instead of deciding by file name")
    ap.add_argument("--text-field", default="text", help="field/column holding the document text (default: text)")


def add_input_arguments(ap: argparse.ArgumentParser) -> None:
    """Inputs and the output directory (prepare and filter)."""
    from transforms.read.sources import FORMATS

    io = ap.add_argument_group("input and output")
    io.add_argument("--input", "-i", action="append", required=True, metavar="PATH",
                    help="file, glob, directory or fsspec URL (s3://, gs://, hf://, memory://...); repeat for more. "
                         "JSONL (.jsonl/.json/.ndjson, plain, .gz, .zst, .bz2, .xz), Parquet, text (.txt: one "
                         "document per file), Arrow, or a saved Hugging Face dataset directory")
    io.add_argument("--input-format", choices=FORMATS, default=None,
                    help="read every input as this format instead of deciding by file name")
    io.add_argument("--text-field", default="text", help="field/column holding the document text (default: text)")
    io.add_argument("--id-field", default="id",
                    help="field/column holding the document id (default: id); when missing, the id is "
                         "'<file>:<line>' (JSONL) or '<file>#<row>' (tables)")
    io.add_argument("--meta-field", action="append", default=[], metavar="NAME",
                    help="an input field/column to keep in each document's meta (repeat for more), e.g. url; "
                         "recipe stages that read a field (url_filter) add it themselves")
    io.add_argument("--output", "-o", required=True, metavar="DIR",
                    help="output directory (local or fsspec URL); manifest.json is written last")
    io.add_argument("--overwrite", action="store_true",
                    help="replace an output directory that holds another job's result (tokenmill still deletes "
                         "only files its manifest lists: any other file there makes the run refuse)")


def add_recipe_arguments(ap: argparse.ArgumentParser, required: bool) -> None:
    """The recipe options (prepare and filter)."""
    fl = ap.add_argument_group("quality filtering and deduplication")
    fl.add_argument("--recipe", default=None, required=required, metavar="NAME|FILE",
                    help="filters, language identification and deduplication applied before anything else: a "
                         "preset (fineweb, gopher, c4) or a recipe YAML file; dropped documents go to rejected/ "
                         "with stage and reason")
    fl.add_argument("--filter-engine", choices=("fast", "datatrove"), default=None,
                    help="fast (the recipe's default): tokenmill's implementation; datatrove: datatrove's own "
                         "filter classes (same decisions, slower)")
    fl.add_argument("--emit-modified", action="store_true",
                    help="write each kept document whose text a stage changed (C4 line removal) with its original "
                         "text under modified/ (id, source, line/row, stages, original_text)")
    fl.add_argument("--recipe-processes", type=_positive, default=None, metavar="N",
                    help="processes per worker running the recipe's filters and dedup keys (default: the local "
                         "cores shared among --workers when the input is 16 MB or more, else 1; 1 on remote runners)")


def add_running_arguments(ap: argparse.ArgumentParser) -> None:
    """How the job runs (prepare and filter)."""
    from transforms.read.sources import DEFAULT_STREAM_BYTES

    run = ap.add_argument_group("running")
    run.add_argument("--stream-mb", type=_positive, default=DEFAULT_STREAM_BYTES >> 20,
                     help=f"input MB per stream (default: {DEFAULT_STREAM_BYTES >> 20}): streams are processed in "
                          "parallel, each in order by one worker")
    run.add_argument("--workers", type=_positive, default=1,
                     help="local worker processes for the default runner (default: 1)")
    run.add_argument("--strict", action="store_true",
                     help="stop at the first bad record with an error naming its file and line, instead of "
                          "rejecting it into rejected/ and going on")
    run.add_argument("--no-progress", action="store_true", help="no live progress line, even on a terminal")
    run.add_argument("--verbose", "-v", action="store_true", help="show Beam's own log messages")


def add_prepare_arguments(ap: argparse.ArgumentParser) -> None:
    """The options of ``prepare``."""
    from transforms.pack.packers import LOSS_MASKS, PACKINGS
    from transforms.tokenize.tokenizer import BACKENDS, TIKTOKEN_SCHEMES

    add_input_arguments(ap)
    ap.add_argument_group("input and output").add_argument(
        "--emit-documents", action="store_true",
        help="also write the kept documents (id, text, source, line/row, meta) as Parquet under documents/")
    add_recipe_arguments(ap, required=False)
    tk = ap.add_argument_group("tokenization")
    tk.add_argument("--tokenizer", "-t", required=True, metavar="PATH",
                    help="HF tokenizer.json or tiktoken rank file (local path or fsspec URL)")
    tk.add_argument("--tokenizer-backend", choices=BACKENDS, default="auto",
                    help="auto (default): gigatoken where it gives identical ids to the reference library on each "
                         "stream's first documents, else the reference; hf: the reference library only "
                         "(tokenizers, or tiktoken for rank files); gigatoken: gigatoken without checking")
    tk.add_argument("--tiktoken-scheme", choices=TIKTOKEN_SCHEMES, default=None,
                    help="split pattern and special tokens for a tiktoken rank file (default: from its file name)")
    tk.add_argument("--eos-token", default=None,
                    help="token appended to every document, as its text or id:N "
                         "(default: the tokenizer's end-of-text token)")
    tk.add_argument("--bos-token", default=None,
                    help="token prepended to every document, as its text or id:N (default: none)")
    tk.add_argument("--pad-token", default=None,
                    help="token that pads the last row of a stream, as its text or id:N (default: EOS)")
    pk = ap.add_argument_group("packing and shards")
    pk.add_argument("--seq-len", type=_positive, required=True, help="tokens per packed row")
    pk.add_argument("--shard-rows", type=_positive, default=8192,
                    help="rows per shard at most (default: 8192); each stream starts a new shard and ends with at "
                         "most one padded row")
    pk.add_argument("--packing", choices=PACKINGS, default="concat",
                    help="concat: documents back to back, cut every --seq-len tokens (default); best-fit: only "
                         "documents longer than a row are cut, pieces packed by best-fit-decreasing, padding at row "
                         "ends; decompose: each document cut into power-of-two pieces, one row each, shards per "
                         "length under shards/len=N/ (--seq-len must be the longest length)")
    pk.add_argument("--best-fit-buffer", type=_positive, default=100_000, metavar="PIECES",
                    help="best-fit: pieces packed together (bounds memory; default: 100000)")
    pk.add_argument("--decompose-range", default="8:13", metavar="LOW:HIGH",
                    help="decompose: piece lengths 2^LOW..2^HIGH (default: 8:13, 256..8192 tokens)")
    pk.add_argument("--loss-mask", choices=LOSS_MASKS, default="none",
                    help="write a loss_mask column (1: train on the token): padding (0 on padding), boundaries (0 on "
                         "padding and on each document's first token: its BOS or the token after the previous EOS); "
                         "default: none (no column)")
    pk.add_argument("--shuffle-seed", type=int, default=None, metavar="SEED",
                    help="shuffle the rows across all shards with this seed (two passes over the shards, one shard "
                         "in memory at a time; the same seed gives the same bytes on any runner and worker count)")
    pk.add_argument("--decompose-pad", action="store_true",
                    help="decompose: pad a remainder shorter than 2^LOW into a row of its own instead of dropping "
                         "it (dropped tokens are counted; a document with no piece goes to rejected/)")
    add_running_arguments(ap)


def _bytes(text: str) -> int:
    """A size such as 500MB, 2GB or 1000000 (bytes; K/M/G/T powers of 1000, KiB/MiB/GiB powers of 1024)."""
    units = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "K": 10**3, "M": 10**6,
             "G": 10**9, "T": 10**12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
    s = text.strip().upper().replace("_", "")
    number = s.rstrip("KMGTIB")
    unit = s[len(number):]
    try:
        value = float(number) * units[unit]
    except (ValueError, KeyError):
        raise argparse.ArgumentTypeError(f"expected a size such as 500MB or 2GB, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive size, got {text!r}")
    return int(value)


def add_train_tokenizer_arguments(ap: argparse.ArgumentParser) -> None:
    """The options of ``train-tokenizer``."""
    from transforms.tokenize.sampling import BALANCES
    from transforms.read.sources import FORMATS
    from transforms.tokenize.superbpe import BOUNDARIES
    from transforms.tokenize.training import DIGITS, NORMALIZATIONS, PRETOKENIZERS

    ap.add_argument("--input", "-i", action="append", required=True, metavar="PATH",
                    help="file, glob, directory or fsspec URL (repeatable)")
    ap.add_argument("--input-format", choices=FORMATS, default=None, help="format of every input (default: by name)")
    ap.add_argument("--text-field", default="text", help="field/column with the document text (default: text)")
    ap.add_argument("--output", "-o", required=True, help="the tokenizer.json to write (its card goes beside it)")
    ap.add_argument("--vocab-size", type=_positive, required=True, help="tokens in the vocabulary, exactly")
    ap.add_argument("--pretokenizer", choices=tuple(PRETOKENIZERS), default="gpt4",
                    help="pretokenization regex: gpt2, gpt4 (cl100k, default), llama3 (the same as cl100k), "
                         "whitespace")
    ap.add_argument("--digits", choices=DIGITS, default="none",
                    help="digit rule before the pretokenizer: none (the preset's), single (each digit alone), "
                         "l2r3 (groups of three from the left), r2l3 (groups of three from the right: 1 234 567)")
    ap.add_argument("--normalization", choices=NORMALIZATIONS, default="none",
                    help="Unicode normalisation applied before pretokenizing (default: none)")
    ap.add_argument("--special-token", action="append", default=[], metavar="TOKEN",
                    help="an extra special token (repeatable); ids follow <|endoftext|> = 0 and <|pad|> = 1")
    ap.add_argument("--sample-bytes", type=_bytes, default=10**9,
                    help="bytes of text to train on, about (default: 1GB; e.g. 500MB, 2GB)")
    ap.add_argument("--balance", choices=BALANCES, default="none",
                    help="share the sample budget equally among input files (source) or identified languages "
                         "(language); default: none (uniform over documents)")
    ap.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    ap.add_argument("--min-frequency", type=_positive, default=2,
                    help="a pair must occur this often to be merged (default: 2)")
    ap.add_argument("--superbpe-transition", type=_positive, default=None, metavar="TOKENS",
                    help="SuperBPE: train ordinary BPE up to this many tokens, then keep merging on the same sample "
                         "without whitespace pretokenization (digits, punctuation and newlines still cut; the "
                         "chunks are counted in Beam), so later tokens may span words (default: off)")
    ap.add_argument("--superbpe-boundaries", choices=BOUNDARIES, default="punctuation",
                    help="where SuperBPE's stage 2 still cuts the text: punctuation (runs of punctuation and "
                         "symbols, digits, newlines; the default) or newlines (digits and newlines only: a token "
                         "may span a whole line of code)")
    ap.add_argument("--workers", type=_positive, default=1,
                    help="local Beam worker processes for sampling and counting SuperBPE chunks (default: 1)")
    ap.add_argument("--no-progress", action="store_true",
                    help="no stage lines on stderr (default: shown on a terminal)")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    ap.add_argument("--verbose", "-v", action="store_true", help="show Beam's own log messages")


def build_parser() -> argparse.ArgumentParser:
    """The full command-line parser."""
    ap = argparse.ArgumentParser(
        prog="tokenmill",
        description="Turn raw text corpora into training-ready packed token shards with Apache Beam.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'tokenmill COMMAND --help' for a command's options.",
    )
    from pipelines import tokenmill_version

    ap.add_argument("--version", action="version", version=f"tokenmill {tokenmill_version()}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", required=True)
    prep = sub.add_parser(
        "prepare",
        help="tokenize a corpus and pack it into Parquet shards with a manifest",
        description="Read every input, tokenize each document, append EOS, pack the token stream into rows of "
                    "exactly --seq-len tokens and write Parquet shards, rejected records and a manifest "
                    "(written last).",
        epilog=recipe_epilog() + EPILOG_BEAM,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_prepare_arguments(prep)
    filt = sub.add_parser(
        "filter",
        help="filter and deduplicate a corpus by a recipe: kept documents as Parquet, dropped ones with reasons",
        description="Read every input, apply the recipe (quality filters, language identification, exact and "
                    "MinHash deduplication) and write the kept documents as Parquet under documents/ (id, text as "
                    "the filters left it, source, line/row, meta such as lang), every dropped document under "
                    "rejected/ with its stage and reason, and a manifest (written last). No tokenizer needed.",
        epilog=recipe_epilog() + EPILOG_BEAM,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_input_arguments(filt)
    add_recipe_arguments(filt, required=True)
    add_running_arguments(filt)
    tt = sub.add_parser(
        "train-tokenizer",
        help="train a byte-level BPE tokenizer on a deterministic sample of a corpus",
        description="Sample the inputs deterministically up to --sample-bytes (a Beam pipeline: bytes per group, "
                    "then each document kept when its seeded hash is under its group's rate; --balance shares the "
                    "budget equally among sources or languages), train a byte-level BPE tokenizer with the chosen "
                    "pretokenizer, digit rule and normalisation, and write a standard tokenizer.json (exactly "
                    "--vocab-size tokens; special tokens first: <|endoftext|> = 0, <|pad|> = 1, then yours) and a "
                    "card (<output>.card.json) with the sample and settings.",
        epilog=EPILOG_BEAM,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_train_tokenizer_arguments(tt)
    demo = sub.add_parser(
        "demo",
        help="build a corpus from this Python's standard library, train a small tokenizer, run prepare on it",
        description="The quick start: writes a JSONL corpus made of the running Python's standard library "
                    "(module sources and their docstrings), trains a byte-level BPE tokenizer on it, runs "
                    "prepare and prints where the shards and the manifest are. Needs no download.",
        epilog=EPILOG_BEAM,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--output", "-o", default="demo-output", help="directory for corpus, tokenizer and result")
    demo.add_argument("--seq-len", type=_positive, default=2048, help="tokens per packed row (default: 2048)")
    demo.add_argument("--vocab-size", type=_positive, default=16384, help="tokenizer vocabulary (default: 16384)")
    demo.add_argument("--workers", type=_positive, default=1, help="local worker processes (default: 1)")
    demo.add_argument("--no-progress", action="store_true", help="no live progress line")
    demo.add_argument("--verbose", "-v", action="store_true", help="show Beam's own log messages")
    from transforms.select.classifier import DEFAULT_NEGATIVE_LABEL, DEFAULT_POSITIVE_LABEL
    from transforms.read.sources import FORMATS

    clf = sub.add_parser(
        "train-classifier",
        help="train a fastText quality classifier (DCLM style) on positive and negative documents",
        description="Read the positive (high-quality) and negative documents, sample them by a seeded hash "
                    "(--max-per-class, --balance), hold out a fraction of each class, train a fastText supervised "
                    "classifier on the rest and measure precision, recall, F1 (probability >= 0.5) and ROC AUC on "
                    "the held-out documents. Writes the model to --output and a JSON card next to it "
                    "(<output>.json: inputs, counts, options, fastText version, metrics), last. Texts are "
                    "normalised as in scoring: whitespace runs become one space, case is kept. Bad records are "
                    "skipped and counted. Same inputs and --seed with --threads 1 give the same model bytes.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cio = clf.add_argument_group("input and output")
    cio.add_argument("--positive", action="append", required=True, metavar="GLOB",
                     help="file, glob, directory or fsspec URL of positive (high-quality) documents; repeat for "
                          "more. Same formats as prepare's --input")
    cio.add_argument("--negative", action="append", required=True, metavar="GLOB",
                     help="file, glob, directory or fsspec URL of negative documents (e.g. raw web crawl); repeat "
                          "for more")
    cio.add_argument("--output", "-o", required=True, metavar="PATH",
                     help="the model file to write, e.g. quality.bin (local or fsspec URL); the card goes to "
                          "PATH.json")
    cio.add_argument("--input-format", choices=FORMATS, default=None,
                     help="read every input as this format instead of deciding by file name")
    cio.add_argument("--text-field", default="text", help="field/column holding the document text (default: text)")
    cio.add_argument("--id-field", default="id",
                     help="field/column holding the document id, hashed with the text for sampling (default: id; "
                          "when missing, '<file>:<line>' or '<file>#<row>')")
    cio.add_argument("--overwrite", action="store_true", help="replace an existing model file and card")
    cdata = clf.add_argument_group("training data")
    cdata.add_argument("--max-per-class", type=_positive, default=None, metavar="N",
                       help="use at most N documents per class, a sample chosen by a seeded hash of id and text "
                            "(not the first N); default: all")
    cdata.add_argument("--balance", action="store_true",
                       help="downsample the larger class to the size of the smaller one (same seeded sample)")
    cdata.add_argument("--holdout", type=float, default=0.1, metavar="FRACTION",
                       help="fraction of each class held out for the metrics, chosen by a seeded hash "
                            "(default: 0.1); both the held-out and the training part must be non-empty")
    cdata.add_argument("--positive-label", default=DEFAULT_POSITIVE_LABEL,
                       help=f"fastText label of the positive class (default: {DEFAULT_POSITIVE_LABEL})")
    cdata.add_argument("--negative-label", default=DEFAULT_NEGATIVE_LABEL,
                       help=f"fastText label of the negative class (default: {DEFAULT_NEGATIVE_LABEL})")
    cft = clf.add_argument_group("fastText (defaults: DCLM's)")
    cft.add_argument("--epochs", type=_positive, default=5, help="training epochs (default: 5)")
    cft.add_argument("--lr", type=float, default=0.1, help="learning rate (default: 0.1)")
    cft.add_argument("--dim", type=_positive, default=100, help="word vector size (default: 100)")
    cft.add_argument("--word-ngrams", type=_positive, default=2, help="word n-gram length (default: 2)")
    cft.add_argument("--min-count", type=_positive, default=1, help="minimal word occurrences (default: 1)")
    cft.add_argument("--bucket", type=_positive, default=2_000_000,
                     help="hash buckets for word n-grams (default: 2000000, fastText's); the model holds "
                          "BUCKET x DIM floats, so 2000000 x 100 is about 800 MB on disk")
    cft.add_argument("--seed", type=int, default=0,
                     help="seed of the sampling, the held-out split, the training file's order and fastText "
                          "(default: 0)")
    cft.add_argument("--threads", type=_positive, default=1,
                     help="fastText training threads (default: 1); fastText is deterministic only with 1 thread: "
                          "more threads train faster but the model differs from run to run")
    exp = sub.add_parser(
        "export-megatron",
        help="write a prepare output as a Megatron-LM indexed dataset (PREFIX.bin + PREFIX.idx)",
        description="Rebuild the documents of a finished prepare output (shards in manifest order, padding dropped, "
                    "each document ending with its EOS, BOS kept if configured) and write them as Megatron-LM's "
                    "MMapIndexedDataset, one sequence and one document each, as preprocess_data.py --append-eod "
                    "writes them. Streams: .bin is written as the shards are read. Both files are written under "
                    "temporary names and renamed into place at the end. Real tokens after the last EOS are exported "
                    "as one more document and reported as incomplete.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    exp.add_argument("out_dir", metavar="OUT_DIR", help="a finished tokenmill prepare output directory "
                                                        "(with manifest.json; local or fsspec URL)")
    exp.add_argument("--output", "-o", required=True, metavar="PREFIX",
                     help="local path prefix of the dataset: writes PREFIX.bin and PREFIX.idx (Megatron's "
                          "--data-path PREFIX)")
    exp.add_argument("--dtype", choices=("auto", "uint16", "int32"), default="auto",
                     help="token dtype in PREFIX.bin; auto (default): Megatron's rule, uint16 if the tokenizer has "
                          "fewer than 65500 ids, else int32")
    exp.add_argument("--overwrite", action="store_true", help="replace an existing PREFIX.bin / PREFIX.idx")
    ev = sub.add_parser(
        "eval-tokenizer",
        help="compare tokenizers: compression per language and source, parity premium, vocabulary checks",
        description="Run every tokenizer over the inputs (a Beam pipeline; language identified per document) and "
                    "report bytes/token, chars/token, fertility, NSL (vs the first tokenizer), vocabulary "
                    "utilisation and token lengths, overall, per source file and per language; the parity premium "
                    "per language on aligned --parallel records; Magikarp-style checks (round-trip failures, "
                    "partial-UTF-8 and unreachable tokens) and Qtok-style vocabulary classes. Writes report.json "
                    "and a self-contained report.html under --output.",
        epilog=EPILOG_BEAM,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ev.add_argument("--tokenizer", "-t", action="append", required=True, metavar="PATH",
                    help="HF tokenizer.json (local path or fsspec URL); repeat for more; named by file stem; the "
                         "first is the NSL baseline")
    ev.add_argument("--input", "-i", action="append", required=True, metavar="PATH",
                    help="file, glob, directory or fsspec URL; repeat for more. Same formats as prepare's --input")
    _add_format_and_text_field(ev)
    ev.add_argument("--parallel", action="append", default=[], metavar="GLOB",
                    help='JSONL of aligned texts, one record a line: {"id": ..., "texts": {"en": "...", '
                         '"de": "..."}}; repeat for more')
    ev.add_argument("--reference-lang", default="en",
                    help="language the parity premium is relative to (default: en)")
    ev.add_argument("--output", "-o", required=True, metavar="DIR",
                    help="directory for report.json and report.html (local or fsspec URL)")
    ev.add_argument("--overwrite", action="store_true", help="replace an existing report")
    ev.add_argument("--max-bytes", type=_positive, default=None, metavar="N",
                    help="read at most about N bytes of document text, shared equally among the input splits "
                         "(default: all)")
    ev.add_argument("--no-progress", action="store_true", help="no live progress line, even on a terminal")
    ev.add_argument("--verbose", "-v", action="store_true", help="show Beam's own log messages")
    st = sub.add_parser(
        "stats",
        help="corpus statistics: sizes, length distributions, quality signals, duplicates, frequent lines",
        description="Measure every input in one Beam pass with combinable sketches only (no document leaves its "
                    "worker): documents, bytes, characters, words, lines (and tokens with --tokenizer); "
                    "distributions of document length (count, mean, exact min/max, quantiles within 1%, "
                    "log-binned histograms) and of the quality signals the filters use; breakdowns by metadata "
                    "fields; the exact-duplicate rate and a HyperLogLog distinct count; the most frequent lines. "
                    "The input may also be a prepare/filter output directory (its funnel is added). Writes "
                    "stats.json (schema: schemas/stats.py) and a self-contained report.html under --output.",
        epilog=EPILOG_BEAM,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    st.add_argument("--input", "-i", action="append", required=True, metavar="PATH",
                    help="file, glob, directory or fsspec URL (repeatable), or one prepare/filter output directory")
    st.add_argument("--output", "-o", required=True, metavar="DIR",
                    help="directory for stats.json and report.html (local or fsspec URL)")
    st.add_argument("--by", action="append", default=[], metavar="FIELDS",
                    help="break the counts down by these metadata fields, comma-separated (repeatable), e.g. "
                         "source,lang; 'source' falls back to the input file and 'lang'/'language' to the offline "
                         "language identifier when the records have no such field")
    st.add_argument("--tokenizer", default=None, metavar="PATH",
                    help="also count tokens with this tokenizer (HF tokenizer.json or tiktoken file; default: none)")
    _add_format_and_text_field(st)
    st.add_argument("--id-field", default="id", help="field/column with the document id (default: id)")
    st.add_argument("--top-lines", type=int, default=50, metavar="N",
                    help="report the N most frequent lines (default: 50; 0: none)")
    st.add_argument("--max-groups", type=_positive, default=100, metavar="N",
                    help="per --by field, keep the N largest values, the rest as (other) (default: 100)")
    st.add_argument("--workers", type=_positive, default=1, help="local worker processes (default: 1)")
    st.add_argument("--overwrite", action="store_true", help="replace an existing stats.json")
    st.add_argument("--no-progress", action="store_true", help="no live progress line, even on a terminal")
    st.add_argument("--verbose", "-v", action="store_true", help="show Beam's own log messages")
    from pipelines.inspect_output import add_inspect_arguments

    ins = sub.add_parser(
        "inspect",
        help="summarise a prepare/filter output, decode rows, verify checksums and counts",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_inspect_arguments(ins)
    return ap


def _quiet_logs(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if verbose:
        os.environ.setdefault("TOKENMILL_WORKER_LOG_LEVEL", "INFO")  # read by pipelines.worker (--workers N)
    else:
        # a failing stage re-raises its exception to main(), which reports it once; Beam's own log copy is noise
        logging.getLogger("apache_beam").setLevel(logging.CRITICAL)
        for name in ("root", "absl"):
            logging.getLogger(name).setLevel(logging.ERROR)
        logging.getLogger().setLevel(logging.ERROR)
        logging.getLogger("transforms").setLevel(logging.WARNING)


def _run_prepare(cfg, beam_args: list[str], show_progress: bool) -> dict:
    from pipelines import prepare

    return _run_with_progress(prepare.run, cfg, beam_args, show_progress)


def _run_with_progress(run, cfg, beam_args: list[str], show_progress: bool) -> dict:
    """``run(cfg, beam_args)``, with a live progress line on a terminal for local runs."""
    from pipelines.prepare import is_local
    from transforms.report.progress import ProgressDisplay

    if not (show_progress and sys.stderr.isatty() and is_local(beam_args)):
        return run(cfg, beam_args)
    progress_dir = tempfile.mkdtemp(prefix="tokenmill-progress-")
    try:
        from transforms.read.sources import expand_inputs

        total = sum(f.size for f in expand_inputs(cfg.inputs, cfg.input_format))
        with ProgressDisplay(progress_dir, total, None):
            return run(cfg, beam_args, progress_dir=progress_dir)
    finally:
        shutil.rmtree(progress_dir, ignore_errors=True)


def _summary_or_submitted(summary_table, manifest: dict | None, output: str) -> str:
    """The run's summary table, or for a template launch (no manifest yet) where the result will appear."""
    if manifest is None:
        return (f"tokenmill: job described for a Dataflow template; when it runs, its workers write "
                f"{output.rstrip('/')}/manifest.json and report.html")
    return summary_table(manifest, output)


def _user_error(exc: BaseException) -> str | None:
    """The one-line message for errors a user can fix, found even inside Beam's wrapped exceptions."""
    from pipelines.prepare import ConfigError
    from pipelines.stats import StatsError
    from pipelines.train_tokenizer import TokenizerTrainingError
    from transforms.select.classifier import ClassifierError
    from transforms.output.commit import IncompleteResultError
    from transforms.output.guard import OutputError
    from transforms.export.megatron import ExportError
    from transforms.read.readers import BadRecordError
    from transforms.recipe.recipes import RecipeError
    from transforms.read.sources import InputError
    from transforms.tokenize.tokenizer import TokenizerError

    if isinstance(exc, (InputError, OutputError, TokenizerError, ConfigError, RecipeError, ClassifierError,
                        ExportError, TokenizerTrainingError, StatsError)):
        return str(exc)
    text = str(exc)
    for marker in (BadRecordError.PREFIX, IncompleteResultError.PREFIX):
        if marker in text:
            return marker + text.split(marker, 1)[1].splitlines()[0].strip().strip("\"'")
    return None


_INTERRUPTED = threading.Event()


def _quiet_after_interrupt() -> None:
    """After a Ctrl-C, the runner's threads that watch the (stopping) workers die without their tracebacks."""
    if getattr(threading.excepthook, "tokenmill", False):
        return
    original = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        if not _INTERRUPTED.is_set():
            original(args)

    hook.tokenmill = True  # type: ignore[attr-defined]
    threading.excepthook = hook


def _interrupted(signum: int, frame: object) -> None:
    _INTERRUPTED.set()
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tokenmill`` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if threading.current_thread() is not threading.main_thread():
        return _main(argv)
    previous = signal.signal(signal.SIGINT, _interrupted)
    _quiet_after_interrupt()
    _INTERRUPTED.clear()
    try:
        return _main(argv)
    finally:
        signal.signal(signal.SIGINT, previous)


def _main(argv: list[str]) -> int:
    _quiet_logs("--verbose" in argv or "-v" in argv)
    parser = build_parser()
    args, beam_args = parser.parse_known_args(argv)
    stray = [a for a in beam_args if not a.startswith("-")]
    if stray and not any(a.startswith("--") for a in beam_args):
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    try:
        if args.command == "prepare":
            from pipelines.prepare import PrepareConfig
            from transforms.report.summary import summary_table

            cfg = PrepareConfig(
                inputs=args.input, output=args.output, tokenizer=args.tokenizer, seq_len=args.seq_len,
                text_field=args.text_field, id_field=args.id_field, input_format=args.input_format,
                eos_token=args.eos_token, bos_token=args.bos_token, pad_token=args.pad_token,
                tokenizer_backend=args.tokenizer_backend, tiktoken_scheme=args.tiktoken_scheme,
                shard_rows=args.shard_rows, stream_bytes=args.stream_mb * 1024 * 1024, strict=args.strict,
                packing=args.packing, best_fit_buffer=args.best_fit_buffer, decompose_range=args.decompose_range,
                decompose_pad=args.decompose_pad, shuffle_seed=args.shuffle_seed, loss_mask=args.loss_mask,
                overwrite=args.overwrite, workers=args.workers, recipe=args.recipe, filter_engine=args.filter_engine,
                emit_documents=args.emit_documents, recipe_processes=args.recipe_processes,
                meta_fields=args.meta_field, emit_modified=args.emit_modified,
                argv=["tokenmill", *argv],
            )
            manifest = _run_prepare(cfg, beam_args, not args.no_progress)
            print(_summary_or_submitted(summary_table, manifest, args.output), file=sys.stderr)
            return 0
        if args.command == "filter":
            from pipelines import filter as filter_job
            from transforms.report.summary import summary_table

            cfg = filter_job.FilterConfig(
                inputs=args.input, output=args.output, recipe=args.recipe, text_field=args.text_field,
                id_field=args.id_field, input_format=args.input_format, filter_engine=args.filter_engine,
                stream_bytes=args.stream_mb * 1024 * 1024, strict=args.strict, overwrite=args.overwrite,
                workers=args.workers, recipe_processes=args.recipe_processes, meta_fields=args.meta_field,
                emit_modified=args.emit_modified, argv=["tokenmill", *argv],
            )
            manifest = _run_with_progress(filter_job.run, cfg, beam_args, not args.no_progress)
            print(_summary_or_submitted(summary_table, manifest, args.output), file=sys.stderr)
            return 0
        if args.command == "demo":
            from pipelines.demo import run_demo

            return run_demo(args, beam_args, _run_prepare)
        if args.command == "stats":
            from pipelines.stats import StatsConfig
            from pipelines.stats import run as run_stats
            from pipelines.stats import summary_table as stats_summary

            cfg = StatsConfig(
                inputs=args.input, output=args.output, by=[b for arg in args.by for b in arg.split(",")],
                tokenizer=args.tokenizer, text_field=args.text_field, id_field=args.id_field,
                input_format=args.input_format, top_lines=args.top_lines, max_groups=args.max_groups,
                workers=args.workers, overwrite=args.overwrite,
            )
            print(stats_summary(_run_with_progress(run_stats, cfg, beam_args, not args.no_progress)),
                  file=sys.stderr)
            return 0
        if args.command == "inspect":
            from pipelines.inspect_output import run_inspect

            if beam_args:
                parser.error(f"unrecognized arguments: {' '.join(beam_args)}")
            return run_inspect(args)
        if args.command == "train-tokenizer":
            from pipelines.train_tokenizer import TrainTokenizerConfig
            from pipelines.train_tokenizer import run as train_tokenizer
            from pipelines.train_tokenizer import summary_table as tokenizer_summary

            cfg = TrainTokenizerConfig(
                inputs=args.input, output=args.output, vocab_size=args.vocab_size, pretokenizer=args.pretokenizer,
                digits=args.digits, normalization=args.normalization, special_tokens=args.special_token,
                sample_bytes=args.sample_bytes, balance=args.balance, seed=args.seed, text_field=args.text_field,
                input_format=args.input_format, min_frequency=args.min_frequency,
                superbpe_transition=args.superbpe_transition, superbpe_boundaries=args.superbpe_boundaries,
                overwrite=args.overwrite, workers=args.workers, progress=sys.stderr.isatty() and not args.no_progress,
            )
            print(tokenizer_summary(train_tokenizer(cfg, beam_args)), file=sys.stderr)
            return 0
        if args.command == "train-classifier":
            from pipelines.train_classifier import TrainClassifierConfig
            from pipelines.train_classifier import run as train_classifier
            from transforms.select.classifier import summary_table as classifier_summary

            if beam_args:  # no Beam here: an unknown option is a typo, not a pipeline option
                parser.error(f"unrecognized arguments: {' '.join(beam_args)}")
            cfg = TrainClassifierConfig(
                positive=args.positive, negative=args.negative, output=args.output, text_field=args.text_field,
                id_field=args.id_field, input_format=args.input_format, epochs=args.epochs, lr=args.lr,
                dim=args.dim, word_ngrams=args.word_ngrams, min_count=args.min_count, bucket=args.bucket,
                seed=args.seed, threads=args.threads, max_per_class=args.max_per_class, balance=args.balance,
                holdout=args.holdout, positive_label=args.positive_label, negative_label=args.negative_label,
                overwrite=args.overwrite, argv=["tokenmill", *argv],
            )
            print(classifier_summary(train_classifier(cfg)), file=sys.stderr)
            return 0
        if args.command == "export-megatron":
            from pipelines.export_megatron import ExportConfig
            from pipelines.export_megatron import run as export_megatron
            from transforms.export.megatron import summary_table as export_summary

            if beam_args:  # no Beam here: an unknown option is a typo, not a pipeline option
                parser.error(f"unrecognized arguments: {' '.join(beam_args)}")
            cfg = ExportConfig(out_dir=args.out_dir, output=args.output, dtype=args.dtype, overwrite=args.overwrite)
            print(export_summary(export_megatron(cfg)), file=sys.stderr)
            return 0
        if args.command == "eval-tokenizer":
            from pipelines.eval_tokenizer import EvalConfig
            from pipelines.eval_tokenizer import run as eval_tokenizer
            from transforms.tokenize.evaluation import summary_table as eval_summary

            cfg = EvalConfig(
                tokenizers=args.tokenizer, inputs=args.input, output=args.output, text_field=args.text_field,
                input_format=args.input_format, parallel=args.parallel, reference_lang=args.reference_lang,
                max_bytes=args.max_bytes, overwrite=args.overwrite,
            )
            report = _run_with_progress(eval_tokenizer, cfg, beam_args, not args.no_progress)
            print(eval_summary(report, args.output), file=sys.stderr)
            return 0
    except KeyboardInterrupt:
        print("tokenmill: interrupted; the output has no manifest and is not a result (rerun to finish)",
              file=sys.stderr)
        return 130
    except Exception as exc:  # user errors get one clear line; anything else keeps its traceback
        from pipelines.prepare import was_interrupted

        if was_interrupted(exc):
            print("tokenmill: interrupted; the output has no manifest and is not a result (rerun to finish)",
                  file=sys.stderr)
            return 130
        message = _user_error(exc)
        if message is None:
            raise
        print(f"tokenmill: error: {message.removeprefix('tokenmill: ')}", file=sys.stderr)
        return 1 if "incomplete run: " in message else 2  # a failed run, not a setting to fix
    return 0


if __name__ == "__main__":
    sys.exit(main())
