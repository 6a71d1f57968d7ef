"""``tokenmill train-classifier``: labelled documents → seeded sample → hold out → fastText → metrics → card.

No Beam: a quality classifier's training set (DCLM: a few hundred thousand documents) fits one machine, and
fastText trains in one process. The card (``<output>.json``) is written last, after the model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipelines import tokenmill_version
from transforms.select.classifier import (
    CARD_FORMAT,
    DEFAULT_NEGATIVE_LABEL,
    DEFAULT_POSITIVE_LABEL,
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


def run(cfg: TrainClassifierConfig) -> dict[str, Any]:
    """Check everything that can be checked up front, train, evaluate on the held-out documents; returns the card."""
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
