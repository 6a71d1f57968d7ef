"""SuperBPE (Liu et al. 2025): a second BPE stage whose merges may span words.

Stage 1 is the recipe's ordinary byte-level BPE with ``transition`` tokens. Stage 2 keeps learning merges on the
same sample without the whitespace pretokenization: texts are cut only at digits (the recipe's digit rule),
punctuation and symbols, and newlines, so a chunk such as " of the" holds several words. Each distinct chunk is
first tokenized by the stage-1 model alone (its merges by rank over the whole chunk, exactly what the final tokenizer
does before any stage-2 merge, since stage-2 merges rank after every stage-1 merge and their tokens take part in no
stage-1 merge), then the most frequent adjacent pair (weighted by chunk counts; ties: the smallest pair) is merged,
again and again, until the vocabulary has ``vocab_size`` tokens. The result is one ``tokenizer.json``: stage 1's
vocabulary and merges followed by stage 2's, with the stage-2 pretokenizer.
"""

from __future__ import annotations

import heapq
import json
from collections import Counter
from typing import Iterable

STAGE2_PATTERN = r"""[^\r\n\p{N}]+|\p{N}+|[\r\n]+"""


def stage2_pretokenizer(digits: str):
    """The stage-2 pretokenizer: the digit rule, then cuts at digits, punctuation, symbols and newlines only."""
    from tokenizers import Regex, pre_tokenizers

    from transforms.tokenizer_training import DIGIT_PATTERNS

    steps = []
    if digits != "none":
        steps.append(pre_tokenizers.Split(Regex(DIGIT_PATTERNS[digits]), behavior="isolated"))
    steps.append(pre_tokenizers.Split(Regex(STAGE2_PATTERN), behavior="isolated"))
    steps.append(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False))
    return pre_tokenizers.Sequence(steps)


def learn_merges(sequences: dict[tuple[str, ...], int], count: int) -> list[tuple[str, str]]:
    """Up to ``count`` BPE merges over token sequences with their frequencies (most frequent pair first, ties by the
    smallest pair), with incremental pair counts and a lazy max-heap."""
    words = [list(seq) for seq in sequences]
    freqs = list(sequences.values())
    pairs: Counter = Counter()
    where: dict[tuple[str, str], set[int]] = {}
    for w, (word, f) in enumerate(zip(words, freqs)):
        for pair in zip(word, word[1:]):
            pairs[pair] += f
            where.setdefault(pair, set()).add(w)
    heap = [(-c, pair) for pair, c in pairs.items()]
    heapq.heapify(heap)
    merges: list[tuple[str, str]] = []
    while heap and len(merges) < count:
        c, pair = heapq.heappop(heap)
        if -c != pairs.get(pair, 0) or -c <= 0:
            continue  # stale entry
        merges.append(pair)
        merged = pair[0] + pair[1]
        changed: set[tuple[str, str]] = set()
        for w in sorted(where.pop(pair, ())):
            word, f = words[w], freqs[w]
            for old in zip(word, word[1:]):
                pairs[old] -= f
                changed.add(old)
            new, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and word[i] == pair[0] and word[i + 1] == pair[1]:
                    new.append(merged)
                    i += 2
                else:
                    new.append(word[i])
                    i += 1
            words[w] = new
            for p in zip(new, new[1:]):
                pairs[p] += f
                where.setdefault(p, set()).add(w)
                changed.add(p)
        pairs.pop(pair, None)
        for p in changed:
            if pairs.get(p, 0) > 0:
                heapq.heappush(heap, (-pairs[p], p))
    return merges


def superbpe(stage1, texts: Iterable[str], vocab_size: int, digits: str):
    """The SuperBPE tokenizer extending a trained stage-1 tokenizer to ``vocab_size`` tokens (ValueError when the
    texts hold too few pairs for that)."""
    from tokenizers import Tokenizer

    pretok = stage2_pretokenizer(digits)
    normalizer = stage1.normalizer
    chunks: Counter = Counter()
    for text in texts:
        if normalizer is not None:
            text = normalizer.normalize_str(text)
        chunks.update(piece for piece, _ in pretok.pre_tokenize_str(text))
    model = stage1.model
    sequences: Counter = Counter()
    for chunk, n in chunks.items():
        sequences[tuple(t.value for t in model.tokenize(chunk))] += n
    base = stage1.get_vocab_size(with_added_tokens=True)
    wanted = vocab_size - base
    spec = json.loads(stage1.to_str())
    vocab = spec["model"]["vocab"]
    kept: list[tuple[str, str]] = []
    next_id = base
    # a merge may spell a token stage 1 already has (another split of the same bytes): it adds no token, so learn a
    # few more than needed and keep merges until the vocabulary is full
    for a, b in learn_merges(dict(sequences), wanted + wanted // 10 + 16):
        if next_id == vocab_size:
            break
        kept.append((a, b))
        if a + b not in vocab:
            vocab[a + b] = next_id  # ids: stage 1's, then each new stage-2 token in merge order
            next_id += 1
    if next_id != vocab_size:
        raise ValueError(f"the sample supports only {next_id} tokens with SuperBPE: lower --vocab-size or sample "
                         "more text")
    spec["model"]["merges"] = [list(m) for m in spec["model"]["merges"]] + [[a, b] for a, b in kept]
    holder = Tokenizer.from_str(stage1.to_str())
    holder.pre_tokenizer = pretok
    spec["pre_tokenizer"] = json.loads(holder.to_str())["pre_tokenizer"]
    return Tokenizer.from_str(json.dumps(spec, ensure_ascii=False))
