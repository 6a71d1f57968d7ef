"""SuperBPE (Liu et al. 2025): a second BPE stage whose merges may span words.

Stage 1 is the recipe's ordinary byte-level BPE with ``transition`` tokens. Stage 2 keeps learning merges on the
same sample without the whitespace pretokenization, the digit and punctuation rules kept: texts are cut at digits
(the recipe's digit rule, then digit runs), at runs of punctuation and symbols (with one leading space, as in the
GPT-4 pattern) and at newlines, so a chunk such as " of the" holds several words. ``boundaries="newlines"`` cuts
only at digits and newlines (a chunk may be a whole line of code), which suits code-heavy corpora. Each chunk is
tokenized by the stage-1 model alone (its merges by rank over the whole chunk: exactly what the final tokenizer does
before any stage-2 merge, since stage-2 merges rank after every stage-1 merge), and the distinct stage-1 token
sequences are counted in Beam (``CountChunks``), so the sample may be of any size and the counting runs on every
worker.

Stock ``tokenizers`` cannot resume BPE training from given merges, but its trainer learns merges over any symbols:
stage 2 writes stage-1 token ``i`` as the character ``chr(SYMBOL_BASE + i)``, so a counted chunk is a word of
symbols, and ``BpeTrainer`` (Rust: incremental pair counts, most frequent pair first, ties to the smallest pair of
symbol ids) learns the stage-2 merges over the chunk counts, which map back to merges of stage-1 tokens. The result
is one ``tokenizer.json``: stage 1's vocabulary and merges followed by stage 2's, with the stage-2 pretokenizer.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, Iterable, Iterator

import apache_beam as beam
import fsspec
import numpy as np

from transforms.tokenize.training import STAGE2_PATTERNS

SYMBOL_BASE = 0x10000  # stage-1 token i is chr(SYMBOL_BASE + i) in stage 2 (no surrogates above U+FFFF)
MAX_SYMBOLS = 0x110000 - SYMBOL_BASE
BATCH_BYTES = 1 << 20  # texts tokenized together when counting chunks


def stage2_pretokenizer(digits: str, boundaries: str = "punctuation"):
    """The stage-2 pretokenizer: the digit rule, then cuts at digit runs, newlines and (``punctuation``, the default)
    runs of punctuation and symbols, never at spaces."""
    from tokenizers import Regex, pre_tokenizers

    from transforms.tokenize.training import DIGIT_PATTERNS

    steps = []
    if digits != "none":
        steps.append(pre_tokenizers.Split(Regex(DIGIT_PATTERNS[digits]), behavior="isolated"))
    steps.append(pre_tokenizers.Split(Regex(STAGE2_PATTERNS[boundaries]), behavior="isolated"))
    steps.append(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False))
    return pre_tokenizers.Sequence(steps)


def chunk_tokenizer(stage1_json: str, digits: str, boundaries: str = "punctuation"):
    """Stage 1's normalizer and model behind the stage-2 pretokenizer: encodes a text as its stage-2 chunks' stage-1
    tokens (word ids = chunks)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(stage1_json)
    tok.pre_tokenizer = stage2_pretokenizer(digits, boundaries)
    tok.post_processor = None
    return tok


def chunk_symbols(tok: Any, texts: list[str]) -> Iterator[str]:
    """The symbol strings (one character per stage-1 token) of the chunks of ``texts`` that hold two tokens or more
    (a single token has no pair to merge); special tokens met in a text cut it and are left out."""
    for enc in tok.encode_batch(texts, add_special_tokens=False):
        n = len(enc.ids)
        if n < 2:
            continue
        words = enc.word_ids
        if None in words:
            words = [-1 if w is None else w for w in words]
        w = np.array(words, np.int64)
        starts = np.flatnonzero(np.concatenate(([True], w[1:] != w[:-1])))
        ends = np.append(starts[1:], n)
        keep = (ends - starts > 1) & (w[starts] >= 0)
        line = (np.array(enc.ids, np.uint32) + SYMBOL_BASE).astype("<u4").tobytes().decode("utf-32-le")
        for a, b in zip(starts[keep].tolist(), ends[keep].tolist()):
            yield line[a:b]


class _CountChunks(beam.DoFn):
    """Sample part → (symbols, count) of its chunks, counted per part."""

    def __init__(self, stage1_json: str, digits: str, boundaries: str, text_field: str) -> None:
        self.stage1_json, self.digits, self.boundaries, self.text_field = stage1_json, digits, boundaries, text_field
        self.tok: Any = None

    def setup(self) -> None:
        self.tok = chunk_tokenizer(self.stage1_json, self.digits, self.boundaries)

    def process(self, part: dict[str, Any]) -> Iterator[tuple[str, int]]:
        counts: Counter = Counter()
        batch: list[str] = []
        size = 0
        with fsspec.open(part["url"], "r", encoding="utf-8") as fh:
            for line in fh:
                text = json.loads(line)[self.text_field]
                batch.append(text)
                size += len(text)
                if size >= BATCH_BYTES:
                    counts.update(chunk_symbols(self.tok, batch))
                    batch, size = [], 0
        if batch:
            counts.update(chunk_symbols(self.tok, batch))
        yield from counts.items()


class CountChunks(beam.PTransform):
    """Sample parts → the stage-2 chunk counts written as ``<prefix>-NNNNN-of-NNNNN`` text files, one
    ``count<TAB>symbols`` line per distinct chunk; yields the file pattern."""

    def __init__(self, stage1_json: str, digits: str, boundaries: str, prefix: str, text_field: str = "text") -> None:
        super().__init__()
        self.stage1_json, self.digits, self.boundaries = stage1_json, digits, boundaries
        self.prefix, self.text_field = prefix, text_field

    def expand(self, parts):
        return (
            parts
            | "Spread" >> beam.Reshuffle()
            | "Chunks" >> beam.ParDo(_CountChunks(self.stage1_json, self.digits, self.boundaries, self.text_field))
            | "Sum" >> beam.CombinePerKey(sum)
            | "Line" >> beam.MapTuple(lambda symbols, n: f"{n}\t{symbols}")
            | "Write" >> beam.io.WriteToText(self.prefix)
        )


def read_chunk_counts(pattern: str) -> dict[str, int]:
    """The chunk counts CountChunks wrote (files matching ``pattern``)."""
    counts: dict[str, int] = {}
    fs, path = fsspec.core.url_to_fs(pattern)
    for name in sorted(fs.glob(path)):
        with fs.open(name, "r", encoding="utf-8") as fh:
            for line in fh:
                n, symbols = line.rstrip("\n").split("\t")
                counts[symbols] = counts.get(symbols, 0) + int(n)
    return counts


def _words(counts: dict[str, int]) -> Iterator[list[str]]:
    """Each chunk as often as it was counted, in batches (the trainer counts words itself), in a fixed order."""
    batch: list[str] = []
    for symbols in sorted(counts):
        batch.extend([symbols] * counts[symbols])
        if len(batch) >= 4096:
            yield batch
            batch = []
    if batch:
        yield batch


def superbpe(stage1: Any, counts: dict[str, int], vocab_size: int, digits: str, min_frequency: int = 2,
             boundaries: str = "punctuation") -> Any:
    """The SuperBPE tokenizer extending a trained stage-1 tokenizer to ``vocab_size`` tokens from the stage-2 chunk
    counts (ValueError when the chunks hold too few pairs for that)."""
    from tokenizers import Tokenizer, models, trainers

    base = stage1.get_vocab_size(with_added_tokens=True)
    if base > MAX_SYMBOLS:
        raise ValueError(f"--superbpe-transition {base} is above the {MAX_SYMBOLS} stage-1 tokens stage 2 can hold")
    wanted = vocab_size - base
    spec = json.loads(stage1.to_str())
    vocab: dict[str, int] = spec["model"]["vocab"]
    token_of = {i: t for t, i in vocab.items()}
    # a merge may spell a token stage 1 already has (another split of the same bytes): it adds no token, so learn a
    # few more than needed and keep merges until the vocabulary is full
    learner = Tokenizer(models.BPE())
    learner.train_from_iterator(_words(counts), trainers.BpeTrainer(
        vocab_size=base + wanted + wanted // 10 + 16, min_frequency=max(1, min_frequency), show_progress=False,
        special_tokens=[], initial_alphabet=[chr(SYMBOL_BASE + i) for i in range(base)]))

    def spell(symbols: str) -> str:
        return "".join(token_of[ord(c) - SYMBOL_BASE] for c in symbols)

    kept: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    next_id = base
    for a, b in json.loads(learner.to_str())["model"]["merges"]:
        if next_id == vocab_size:
            break
        pair = (spell(a), spell(b))
        if pair in seen:  # two symbol merges with the same bytes: one merge of the final tokenizer
            continue
        seen.add(pair)
        kept.append(pair)
        if pair[0] + pair[1] not in vocab:
            vocab[pair[0] + pair[1]] = next_id  # ids: stage 1's, then each new stage-2 token in merge order
            next_id += 1
    if next_id != vocab_size:
        raise ValueError(f"the sample supports only {next_id} tokens with SuperBPE: lower --vocab-size or sample "
                         "more text")
    spec["model"]["merges"] = [list(m) for m in spec["model"]["merges"]] + [[a, b] for a, b in kept]
    holder = Tokenizer.from_str(stage1.to_str())
    holder.pre_tokenizer = stage2_pretokenizer(digits, boundaries)
    spec["pre_tokenizer"] = json.loads(holder.to_str())["pre_tokenizer"]
    return Tokenizer.from_str(json.dumps(spec, ensure_ascii=False))


def spanning_tokens(tok: Any) -> int:
    """Tokens of a byte-level vocabulary with a space inside (not only leading): tokens spanning words."""
    return sum(1 for t in tok.get_vocab() if "Ġ" in t.lstrip("Ġ") and t.replace("Ġ", ""))


def sample_texts(parts: Iterable[dict[str, Any]], text_field: str = "text") -> Iterator[str]:
    """The texts of sample parts, in order."""
    for part in parts:
        with fsspec.open(part["url"], "r", encoding="utf-8") as fh:
            for line in fh:
                yield json.loads(line)[text_field]
