"""``tokenmill train-classifier``: labelled documents → seeded sample → hold out → fastText → metrics → card.

No Beam: a quality classifier's training set (DCLM: a few hundred thousand documents) fits one machine, and
fastText trains in one process. The card (``<output>.json``) is written last, after the model. The classifier's
module (numpy, fsspec, the readers) is imported by the functions that run it: ``--help`` loads none of them.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from pipelines import tokenmill_version
from pipelines.arguments import add_format_and_text_field, positive
from schemas.options import DEFAULT_NEGATIVE_LABEL, DEFAULT_POSITIVE_LABEL

DESCRIPTION = ("Read the positive (high-quality) and negative documents, sample them by a seeded hash "
               "(--max-per-class, --balance), hold out a fraction of each class, train a fastText supervised "
               "classifier on the rest and measure precision, recall, F1 (probability >= 0.5) and ROC AUC on the "
               "held-out documents. Writes the model to --output and a JSON card next to it (<output>.json: inputs, "
               "counts, options, fastText version, metrics), last. Texts are normalised as in scoring: whitespace "
               "runs become one space, case is kept. Bad records are skipped and counted. Same inputs and --seed "
               "with --threads 1 give the same model bytes.")
EPILOG = None
BEAM = False  # no Beam here: an unknown option is a typo, not a pipeline option


@dataclass
class TrainClassifierConfig:
    """The train-classifier job as the user configured it."""

    positive: list[str]
    negative: list[str]
    output: str  # the model file; its card goes to output + ".json"
    text_field: str = "text"
    id_field: str = "id"
    input_format: str | None = None
    epochs: int = 5
    lr: float = 0.1
    dim: int = 100
    word_ngrams: int = 2
    min_count: int = 1
    bucket: int = 2_000_000
    seed: int = 0
    threads: int = 1
    max_per_class: int | None = None
    balance: bool = False
    holdout: float = 0.1
    positive_label: str = DEFAULT_POSITIVE_LABEL
    negative_label: str = DEFAULT_NEGATIVE_LABEL
    overwrite: bool = False
    argv: list[str] = field(default_factory=list)


def add_arguments(clf: argparse.ArgumentParser) -> None:
    """The options of ``train-classifier``."""
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
    add_format_and_text_field(cio)
    cio.add_argument("--id-field", default="id",
                     help="field/column holding the document id, hashed with the text for sampling (default: id; "
                          "when missing, '<file>:<line>' or '<file>#<row>')")
    cio.add_argument("--overwrite", action="store_true", help="replace an existing model file and card")
    cdata = clf.add_argument_group("training data")
    cdata.add_argument("--max-per-class", type=positive, default=None, metavar="N",
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
    cft.add_argument("--epochs", type=positive, default=5, help="training epochs (default: 5)")
    cft.add_argument("--lr", type=float, default=0.1, help="learning rate (default: 0.1)")
    cft.add_argument("--dim", type=positive, default=100, help="word vector size (default: 100)")
    cft.add_argument("--word-ngrams", type=positive, default=2, help="word n-gram length (default: 2)")
    cft.add_argument("--min-count", type=positive, default=1, help="minimal word occurrences (default: 1)")
    cft.add_argument("--bucket", type=positive, default=2_000_000,
                     help="hash buckets for word n-grams (default: 2000000, fastText's); the model holds "
                          "BUCKET x DIM floats, so 2000000 x 100 is about 800 MB on disk")
    cft.add_argument("--seed", type=int, default=0,
                     help="seed of the sampling, the held-out split, the training file's order and fastText "
                          "(default: 0)")
    cft.add_argument("--threads", type=positive, default=1,
                     help="fastText training threads (default: 1); fastText is deterministic only with 1 thread: "
                          "more threads train faster but the model differs from run to run")


def config_from_args(args: argparse.Namespace, command_line: list[str]) -> TrainClassifierConfig:
    """The config the parsed options describe (``command_line``: recorded in the card)."""
    return TrainClassifierConfig(
        positive=args.positive, negative=args.negative, output=args.output, text_field=args.text_field,
        id_field=args.id_field, input_format=args.input_format, epochs=args.epochs, lr=args.lr,
        dim=args.dim, word_ngrams=args.word_ngrams, min_count=args.min_count, bucket=args.bucket,
        seed=args.seed, threads=args.threads, max_per_class=args.max_per_class, balance=args.balance,
        holdout=args.holdout, positive_label=args.positive_label, negative_label=args.negative_label,
        overwrite=args.overwrite, argv=command_line,
    )


def run(cfg: TrainClassifierConfig) -> dict[str, Any]:
    """Check everything that can be checked up front, train, evaluate on the held-out documents; returns the card."""
    import numpy as np

    from transforms.select.classifier import (
        CARD_FORMAT,
        NEGATIVE,
        POSITIVE,
        Hyperparameters,
        balance,
        binary_metrics,
        check_disjoint,
        check_options,
        check_output,
        fasttext_version,
        positive_probability,
        read_class,
        resolve_inputs,
        save_model,
        split_holdout,
        train_fasttext,
        training_lines,
        write_card,
    )

    started = time.time()
    hp = Hyperparameters(epoch=cfg.epochs, lr=cfg.lr, dim=cfg.dim, word_ngrams=cfg.word_ngrams,
                         min_count=cfg.min_count, bucket=cfg.bucket, threads=cfg.threads, seed=cfg.seed)
    check_options(hp, cfg.holdout, cfg.max_per_class, cfg.positive_label, cfg.negative_label)
    check_output(cfg.output, cfg.overwrite)
    pos = resolve_inputs(POSITIVE, cfg.positive_label, cfg.positive, cfg.input_format)
    neg = resolve_inputs(NEGATIVE, cfg.negative_label, cfg.negative, cfg.input_format)
    check_disjoint(pos, neg)

    for cls in (pos, neg):
        read_class(cls, cfg.text_field, cfg.id_field, cfg.seed, cfg.max_per_class)
    if cfg.balance:
        balance(pos, neg)
    train, held_out = [], []
    for cls in (pos, neg):
        cls_train, cls_held = split_holdout(cls, cfg.holdout)
        train += [(cls.label, doc_id, text) for _, doc_id, text in cls_train]
        held_out += [(cls is pos, text) for _, _, text in cls_held]
        cls.docs = []

    train_started = time.time()
    model, reproducible = train_fasttext(training_lines(train, cfg.seed), hp)
    train_time = time.time() - train_started
    is_positive = np.array([p for p, _ in held_out], dtype=bool)
    metrics = binary_metrics(is_positive, positive_probability(model, [t for _, t in held_out], pos.label))
    size, sha256 = save_model(model, cfg.output)

    card = {
        "format": CARD_FORMAT,
        "tokenmill_version": tokenmill_version(),
        "model": {"path": cfg.output, "bytes": size, "sha256": sha256, "fasttext": fasttext_version()},
        "labels": {POSITIVE: pos.label, NEGATIVE: neg.label},
        "inputs": {cls.name: {"patterns": cls.patterns, "files": [f.url for f in cls.files]} for cls in (pos, neg)},
        "options": {"text_field": cfg.text_field, "id_field": cfg.id_field, "input_format": cfg.input_format,
                    "max_per_class": cfg.max_per_class, "balance": cfg.balance, "holdout": cfg.holdout,
                    "normalization": "normalize_for_fasttext: whitespace runs to one space, stripped, case kept"},
        "hyperparameters": hp.fasttext_kwargs(),
        "seed": cfg.seed,
        "reproducible": reproducible,  # one thread (and zero-filled memory): same inputs and seed, same model bytes
        "counts": {cls.name: cls.counts.to_dict() for cls in (pos, neg)},
        "metrics": metrics,
        "train_time": train_time,
        "wall_time": time.time() - started,
        "argv": cfg.argv,
    }
    write_card(card, cfg.output)
    return card


def launch(cfg: TrainClassifierConfig, beam_args: list[str], show_progress: bool) -> int:
    """Run as ``tokenmill train-classifier`` does (the summary on stderr); the exit code."""
    from transforms.select.classifier import summary_table

    print(summary_table(run(cfg)), file=sys.stderr)
    return 0
