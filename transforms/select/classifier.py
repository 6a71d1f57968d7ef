"""fastText quality classifier cores (DCLM style): labelled documents → sample → training file → model, metrics.

Plain functions, no Beam. Every random choice (which documents a cap keeps, which are held out, the order of the
training file) comes from a seeded hash of the document's id and text, so the same inputs and seed give the same
training file whatever the file order, and, trained single-threaded, the same model bytes.
"""

from __future__ import annotations

import ctypes
import heapq
import json
import os
import re
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from schemas import manifest as m
from schemas.options import DEFAULT_POSITIVE_LABEL
from transforms.hashing import unit_hash
from transforms.read.readers import DEFAULT_BATCH_BYTES, read_split
from transforms.read.sources import InputError, InputFile, expand_inputs, plan_splits
from transforms.errors import TokenmillError
from transforms.report.summary import key_value_table

CARD_FORMAT = "tokenmill.classifier/1"
CARD_SUFFIX = ".json"
LABEL_PREFIX = "__label__"  # fastText's default: a word starting with it is a label
THRESHOLD = 0.5
POSITIVE = "positive"
NEGATIVE = "negative"
_MAX_SEED = 2**31 - 1  # fastText's seed is a C int
_M_PERTURB = -6  # glibc mallopt: fill new allocations with (value ^ 0xff)
_LABEL_WORD = re.compile(r"(?<!\S)" + LABEL_PREFIX)


class ClassifierError(TokenmillError, ValueError):
    """A train-classifier problem the user can fix: an option, an input, the output, or a diverging training."""


def normalize_for_fasttext(text: str) -> str:
    """The text as the classifier sees it, in training and in scoring alike (the one normalisation).

    fastText reads one example per line and splits words on whitespace, so every run of whitespace (newlines,
    tabs, Unicode spaces as ``str.split`` knows them) becomes one space and the ends are stripped. Case and
    punctuation are kept. A word starting with fastText's label prefix ``__label__`` loses its first underscore,
    so a document's own text can never add a label to its training line.
    """
    text = " ".join(text.split())
    return _LABEL_WORD.sub(LABEL_PREFIX[1:], text) if LABEL_PREFIX in text else text


@dataclass(frozen=True)
class Hyperparameters:
    """fastText supervised training settings; the defaults are DCLM's (plus minCount 1, one thread)."""

    epoch: int = 5
    lr: float = 0.1
    dim: int = 100
    word_ngrams: int = 2
    min_count: int = 1
    bucket: int = 2_000_000
    threads: int = 1  # fastText is deterministic for a seed only when single-threaded
    seed: int = 0

    def fasttext_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``fasttext.train_supervised``."""
        return {"epoch": self.epoch, "lr": self.lr, "dim": self.dim, "wordNgrams": self.word_ngrams,
                "minCount": self.min_count, "bucket": self.bucket, "thread": self.threads, "seed": self.seed,
                "loss": "softmax"}


def check_options(hp: Hyperparameters, holdout: float, max_per_class: int | None, positive_label: str,
                  negative_label: str) -> None:
    """Raise ClassifierError naming the option when a setting cannot work."""
    for option, value in (("--epochs", hp.epoch), ("--dim", hp.dim), ("--word-ngrams", hp.word_ngrams),
                          ("--min-count", hp.min_count), ("--bucket", hp.bucket), ("--threads", hp.threads),
                          ("--max-per-class", max_per_class)):
        if value is not None and value < 1:
            raise ClassifierError(f"{option} must be a whole number >= 1, got {value}")
    if not hp.lr > 0:
        raise ClassifierError(f"--lr must be a learning rate above 0, got {hp.lr}")
    if not 0 <= hp.seed <= _MAX_SEED:
        raise ClassifierError(f"--seed must be between 0 and {_MAX_SEED}, got {hp.seed}")
    if not 0 < holdout < 1:
        raise ClassifierError(f"--holdout must be a fraction between 0 and 1 (exclusive), got {holdout}: the "
                              "held-out documents are needed for the metrics, the rest for training")
    for option, label in (("--positive-label", positive_label), ("--negative-label", negative_label)):
        if not label.startswith(LABEL_PREFIX) or len(label) == len(LABEL_PREFIX) or label != "".join(label.split()):
            raise ClassifierError(f"{option} {label!r} must be '{LABEL_PREFIX}' followed by a name without spaces, "
                                  f"e.g. {DEFAULT_POSITIVE_LABEL}")
    if positive_label == negative_label:
        raise ClassifierError(f"--positive-label and --negative-label are both {positive_label!r}; give two labels")


@dataclass
class ClassCounts:
    """What happened to one class's records: read = train + held_out + dropped."""

    records: int = 0  # records seen in the inputs, good or bad
    rejected: dict[str, int] = field(default_factory=dict)  # bad records skipped, by reason
    read: int = 0  # usable documents
    dropped: int = 0  # usable but left out by --max-per-class or --balance
    train: int = 0
    held_out: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON form, with the total of rejected records."""
        d = asdict(self)
        d["rejected_total"] = sum(self.rejected.values())
        return d


Docs = list[tuple[float, str, str]]  # (seeded hash, id, normalised text) of documents, in hash order


@dataclass
class LabelledClass:
    """One class: its label, inputs, counts and documents as (order, id, normalised text), sorted by order."""

    name: str  # positive or negative
    label: str
    patterns: list[str]
    files: list[InputFile]
    counts: ClassCounts = field(default_factory=ClassCounts)
    docs: Docs = field(default_factory=list)

    @property
    def option(self) -> str:
        """The command-line option naming this class's inputs."""
        return f"--{self.name}"


def resolve_inputs(name: str, label: str, patterns: list[str], input_format: str | None) -> LabelledClass:
    """The class's input files (expanded like --input of the other commands); errors name --positive/--negative."""
    option = f"--{name}"
    if not patterns:
        raise ClassifierError(f"no {option} given: name at least one file, glob or directory of {name} documents")
    try:
        files = expand_inputs(patterns, input_format)
    except InputError as exc:
        raise ClassifierError(re.sub(r"--input(?![-\w])", option, str(exc))) from None
    return LabelledClass(name, label, list(patterns), files)


def check_disjoint(positive: LabelledClass, negative: LabelledClass) -> None:
    """A file cannot be both positive and negative."""
    both = sorted({f.url for f in positive.files} & {f.url for f in negative.files})
    if both:
        raise ClassifierError(f"{both[0]!r} is given as both --positive and --negative input; a file belongs to "
                              "one class")


def _documents(cls: LabelledClass, text_field: str, id_field: str, seed: int) -> Iterator[tuple[float, str, str]]:
    """(order, id, normalised text) of each usable document; counts records and rejections as it goes."""
    c = cls.counts
    for i, f in enumerate(cls.files):
        for split in plan_splits(i, f):
            for batch in read_split(split, text_field, id_field, DEFAULT_BATCH_BYTES, False, ()):
                c.records += batch.records
                for rejection in batch.rejections:
                    c.rejected[rejection.reason] = c.rejected.get(rejection.reason, 0) + 1
                for doc_id, text in zip(batch.ids, batch.texts):
                    text = normalize_for_fasttext(text)
                    if not text:  # whitespace only: nothing for fastText to learn from
                        c.rejected[m.EMPTY_TEXT] = c.rejected.get(m.EMPTY_TEXT, 0) + 1
                        continue
                    c.read += 1
                    yield unit_hash(f"{doc_id}\0{text}", seed), doc_id, text


def read_class(cls: LabelledClass, text_field: str, id_field: str, seed: int, max_per_class: int | None) -> None:
    """Read the class's documents into ``cls.docs`` in seeded-hash order, keeping at most ``max_per_class``.

    The cap keeps the documents with the smallest hashes (a seeded random sample, not the first N), holding only
    ``max_per_class`` documents in memory.
    """
    docs = _documents(cls, text_field, id_field, seed)
    cls.docs = heapq.nsmallest(max_per_class, docs) if max_per_class else sorted(docs)
    cls.counts.dropped = cls.counts.read - len(cls.docs)
    if not cls.docs:
        rejected = sum(cls.counts.rejected.values())
        raise ClassifierError(
            f"no usable {cls.name} documents in {cls.option} {' '.join(cls.patterns)} ({cls.counts.records} "
            f"records, {rejected} rejected); check the files and --text-field")


def balance(positive: LabelledClass, negative: LabelledClass) -> None:
    """Downsample the larger class to the smaller's size (keeping its smallest hashes: a seeded random sample)."""
    n = min(len(positive.docs), len(negative.docs))
    for cls in (positive, negative):
        cls.counts.dropped += len(cls.docs) - n
        del cls.docs[n:]


def split_holdout(cls: LabelledClass, fraction: float) -> tuple[Docs, Docs]:
    """(train, held out): the first round(fraction * n) documents in hash order are held out (stratified, exact)."""
    n = len(cls.docs)
    k = round(n * fraction)
    if k == 0:
        raise ClassifierError(f"--holdout {fraction} holds out no {cls.name} document (of {n} used); raise --holdout "
                              f"or give more {cls.option} documents")
    if k == n:
        raise ClassifierError(f"--holdout {fraction} leaves no {cls.name} document for training (of {n} used); lower "
                              f"--holdout or give more {cls.option} documents")
    cls.counts.held_out, cls.counts.train = k, n - k
    return cls.docs[k:], cls.docs[:k]


def training_lines(examples: Sequence[tuple[str, str, str]], seed: int) -> list[str]:
    """fastText training lines ``<label> <text>\\n`` for (label, id, normalised text), in a seeded shuffled order."""
    order = sorted(examples, key=lambda e: (unit_hash(f"shuffle\0{e[1]}\0{e[2]}", seed), e))
    return [f"{label} {text}\n" for label, _, text in order]


@contextmanager
def zero_filled_allocations() -> Iterator[bool]:
    """Within the block, glibc's malloc hands out zero-filled memory; yields False where that cannot be arranged.

    fastText allocates its input matrix without zeroing it (the fasttext-numpy2-wheel build uses an aligned
    allocator) and, with fewer than 10 threads, randomly initialises only threads/10 of it: the rest held whatever
    the heap held before, so models trained in one process differed from run to run (and could diverge to NaN).
    glibc's M_PERTURB option fills each new allocation with ``byte ^ 0xff``; 0xff gives the zeros that upstream
    fastText's zero-initialised matrix has, so a seed gives the same model in any process.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):  # not glibc
        yield False
        return
    if mallopt(_M_PERTURB, 0xFF) != 1:
        yield False
        return
    try:
        yield True
    finally:
        mallopt(_M_PERTURB, 0)


def train_fasttext(lines: Sequence[str], hp: Hyperparameters, temp_dir: str | None = None) -> tuple[Any, bool]:
    """(model, reproducible): fastText supervised on training lines (a temporary file, removed afterwards).

    ``reproducible``: one thread and zero-filled allocations, so the same lines and seed give the same model bytes.
    """
    import fasttext

    with tempfile.TemporaryDirectory(prefix="tokenmill-classifier-", dir=temp_dir) as tmp:
        path = os.path.join(tmp, "train.txt")
        with open(path, "w", encoding="utf-8") as fh:
            fh.writelines(lines)
        try:
            with zero_filled_allocations() as zero_filled:
                model = fasttext.train_supervised(path, verbose=0, **hp.fasttext_kwargs())
            return model, zero_filled and hp.threads == 1
        except RuntimeError as exc:
            if "NaN" not in str(exc):
                raise
            raise ClassifierError(f"fastText training diverged (NaN) with --lr {hp.lr}; lower --lr, e.g. "
                                  f"--lr {hp.lr / 2:g}") from None


def positive_probability(model, texts: Sequence[str], label: str) -> np.ndarray:
    """The model's probability of ``label`` for each text, normalised as in training; one batch predict, 0 if absent."""
    out = np.zeros(len(texts), dtype=np.float64)
    if not len(texts):
        return out
    labels, probs = model.predict([normalize_for_fasttext(t) for t in texts], k=-1)
    for i, (names, p) in enumerate(zip(labels, probs)):
        if label in names:
            out[i] = p[names.index(label)]
    return np.clip(out, 0.0, 1.0)  # fastText's softmax can overshoot 1 by a rounding error


def roc_auc(is_positive: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum (Mann-Whitney U) formula; tied scores share their average rank."""
    y = np.asarray(is_positive, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"ROC AUC needs positive and negative examples, got {n_pos} and {n_neg}")
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)  # 1-based rank of the last member of each tie group
    ranks = (ends - (counts - 1) / 2.0)[inverse]
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def binary_metrics(is_positive: np.ndarray, probability: np.ndarray, threshold: float = THRESHOLD) -> dict[str, Any]:
    """Precision, recall, F1 and accuracy of ``probability >= threshold`` for the positive class, and ROC AUC."""
    y = np.asarray(is_positive, dtype=bool)
    predicted = np.asarray(probability) >= threshold
    tp = int((predicted & y).sum())
    fp = int((predicted & ~y).sum())
    fn = int((~predicted & y).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"threshold": threshold, "precision": precision, "recall": recall, "f1": f1,
            "accuracy": float((predicted == y).mean()), "roc_auc": roc_auc(y, probability),
            "held_out_positive": int(y.sum()), "held_out_negative": int((~y).sum())}


def card_path(output: str) -> str:
    """Where the model card of a model file goes: next to it, ``<output>.json``."""
    return output + CARD_SUFFIX


def check_output(output: str, overwrite: bool) -> None:
    """Refuse an existing model or card unless ``overwrite``; refuse a directory always."""
    fs, path = url_to_fs(output)
    if fs.isdir(path):
        raise ClassifierError(f"--output {output!r} is a directory; give the model's file name, e.g. "
                              f"{output.rstrip('/')}/quality.bin")
    existing = [p for p in (output, card_path(output)) if fs.exists(url_to_fs(p)[1])]
    if existing and not overwrite:
        raise ClassifierError(f"--output {existing[0]!r} already exists; pass --overwrite to replace it")


def save_model(model, output: str) -> tuple[int, str]:
    """Write the model to ``output`` (any fsspec URL) via a temporary file; returns (bytes, sha256)."""
    import hashlib

    fs, path = url_to_fs(output)
    card = url_to_fs(card_path(output))[1]
    if fs.exists(card):  # --overwrite: the card is written last, so no stale card may describe the new model
        fs.rm(card)
    parent = os.path.dirname(path)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    local_fs = isinstance(fs, LocalFileSystem)
    with tempfile.TemporaryDirectory(prefix="tokenmill-classifier-", dir=parent if local_fs else None) as tmp:
        local = os.path.join(tmp, "model.bin")
        model.save_model(local)
        sha = hashlib.sha256()
        with open(local, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                sha.update(chunk)
        size = os.path.getsize(local)
        if local_fs:
            os.replace(local, path)
        else:
            fs.put_file(local, path)
    return size, sha.hexdigest()


def write_card(card: dict[str, Any], output: str) -> str:
    """Write the model card (JSON) next to the model, last; returns its location."""
    fs, path = url_to_fs(card_path(output))
    fs.pipe_file(path, (json.dumps(card, indent=2, sort_keys=False) + "\n").encode("utf-8"))
    return card_path(output)


def fasttext_version() -> str:
    """The installed fastText distribution and version, e.g. 'fasttext-numpy2-wheel 0.9.2'."""
    from importlib.metadata import PackageNotFoundError, packages_distributions, version

    for dist in packages_distributions().get("fasttext", []):
        try:
            return f"{dist} {version(dist)}"
        except PackageNotFoundError:
            continue
    return "fasttext unknown"


def summary_table(card: dict[str, Any]) -> str:
    """A compact human summary of a train-classifier run, from its card."""
    counts = card["counts"]
    rows: list[tuple[str, str]] = []
    for name in (POSITIVE, NEGATIVE):
        c = counts[name]
        rows.append((f"{name} documents ({card['labels'][name]})",
                     f"{c['read']:,} read: {c['train']:,} train, {c['held_out']:,} held out, {c['dropped']:,} "
                     f"dropped"))
        if c["rejected_total"]:
            rows.append(("  rejected records", f"{c['rejected_total']:,} ("
                         + ", ".join(f"{reason} {n:,}" for reason, n in sorted(c["rejected"].items())) + ")"))
    mt = card["metrics"]
    rows += [
        (f"held-out precision @{mt['threshold']}", f"{mt['precision']:.4f}"),
        (f"held-out recall @{mt['threshold']}", f"{mt['recall']:.4f}"),
        (f"held-out F1 @{mt['threshold']}", f"{mt['f1']:.4f}"),
        ("held-out ROC AUC", f"{mt['roc_auc']:.4f}"),
        ("training time", f"{card['train_time']:,.1f} s"),
        ("wall time", f"{card['wall_time']:,.1f} s"),
        ("model", f"{card['model']['path']} ({card['model']['bytes'] / 1e6:,.1f} MB)"),
        ("card", card_path(card["model"]["path"])),
    ]
    return key_value_table(rows)
