"""Training byte-level BPE tokenizers with HF ``tokenizers``: pretokenizer presets, digit rules, normalisation.

``train_byte_level_bpe`` is the plain GPT-2-style trainer (the demo, test fixtures). ``build_tokenizer`` and
``train_tokenizer`` are ``tokenmill train-tokenizer``'s core: a ``TokenizerRecipe`` names

* the pretokenizer preset: ``gpt2`` (GPT-2's regex), ``gpt4`` (cl100k's regex: letters, numbers in runs of at most
  three, punctuation, newlines), ``llama3`` (Llama 3's regex, the same as cl100k's), ``whitespace`` (a word with the
  space before it, or a run of whitespace);
* the digit rule, applied before the preset: ``none`` (the preset's own), ``single`` (every digit alone), ``l2r3``
  (groups of three from the left: 1234567 -> 123 456 7) or ``r2l3`` (from the right, as numbers are read:
  1 234 567);
* Unicode normalisation (``none``, ``NFC``, ``NFKC``) and the special tokens, which get ids 0, 1, ... in order.

The result is a standard ``tokenizer.json`` (``tokenizers.Tokenizer.from_file``, ``PreTrainedTokenizerFast``) whose
vocabulary has exactly the requested size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

END_OF_TEXT = "<|endoftext|>"
PAD = "<|pad|>"

# GPT-2's pretokenization regex, and cl100k's (GPT-4; Llama 3 uses the same)
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
CL100K_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
                  r"""\s*[\r\n]+|\s+(?!\S)|\s+""")
WHITESPACE_PATTERN = r""" ?\S+|\s+"""
PRETOKENIZERS = {"gpt2": GPT2_PATTERN, "gpt4": CL100K_PATTERN, "llama3": CL100K_PATTERN,
                 "whitespace": WHITESPACE_PATTERN}
DIGIT_PATTERNS = {"single": r"\p{N}", "l2r3": r"\p{N}{1,3}", "r2l3": r"\p{N}{1,3}(?=(?:\p{N}{3})*(?!\p{N}))"}
DIGITS = ("none",) + tuple(DIGIT_PATTERNS)
NORMALIZATIONS = ("none", "NFC", "NFKC")
BALANCES = ("none", "source", "language")  # how the sample shares its budget (transforms.tokenize.sampling)
# SuperBPE stage 2 (transforms.tokenize.superbpe) cuts texts at these, never at spaces
STAGE2_PATTERNS = {
    # digit runs | punctuation and symbols | letters, marks and spaces (words with the spaces between them) | newlines
    "punctuation": r"""\p{N}+| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|[\p{L}\p{M}\p{Zs}\t]+|\s+""",
    # anything but digits and newlines | digit runs | newlines: chunks are whole lines of code or prose
    "newlines": r"""[^\r\n\p{N}]+|\p{N}+|[\r\n]+""",
}
BOUNDARIES = tuple(STAGE2_PATTERNS)


@dataclass(frozen=True)
class TokenizerRecipe:
    """How to build and train a byte-level BPE tokenizer."""

    vocab_size: int
    pretokenizer: str = "gpt4"
    digits: str = "none"
    normalization: str = "none"
    special_tokens: tuple[str, ...] = (END_OF_TEXT, PAD)
    min_frequency: int = 2

    def check(self) -> None:
        """Raise ValueError naming the option that is wrong."""
        if self.pretokenizer not in PRETOKENIZERS:
            raise ValueError(f"--pretokenizer {self.pretokenizer!r} is not one of {', '.join(PRETOKENIZERS)}")
        if self.digits not in DIGITS:
            raise ValueError(f"--digits {self.digits!r} is not one of {', '.join(DIGITS)}")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"--normalization {self.normalization!r} is not one of {', '.join(NORMALIZATIONS)}")
        if len(set(self.special_tokens)) != len(self.special_tokens) or not all(self.special_tokens):
            raise ValueError("--special-token: special tokens must be distinct and non-empty")
        smallest = 256 + len(self.special_tokens)
        if self.vocab_size < smallest:
            raise ValueError(f"--vocab-size must be at least {smallest} (256 bytes + the special tokens), "
                             f"got {self.vocab_size}")


def build_tokenizer(recipe: TokenizerRecipe):
    """An untrained byte-level BPE tokenizer with the recipe's normaliser and pretokenizers."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

    tok = Tokenizer(models.BPE())
    if recipe.normalization != "none":
        tok.normalizer = getattr(normalizers, recipe.normalization)()
    steps = []
    if recipe.digits != "none":
        steps.append(pre_tokenizers.Split(Regex(DIGIT_PATTERNS[recipe.digits]), behavior="isolated"))
    steps.append(pre_tokenizers.Split(Regex(PRETOKENIZERS[recipe.pretokenizer]), behavior="isolated"))
    steps.append(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence(steps)
    tok.decoder = decoders.ByteLevel()
    return tok


def train_tokenizer(texts: Iterable[str], recipe: TokenizerRecipe):
    """Train the recipe's tokenizer on ``texts``; its vocabulary has exactly ``vocab_size`` tokens (ValueError if the
    texts are too few for that many merges)."""
    from tokenizers import pre_tokenizers, trainers

    recipe.check()
    tok = build_tokenizer(recipe)
    trainer = trainers.BpeTrainer(
        vocab_size=recipe.vocab_size, min_frequency=recipe.min_frequency, special_tokens=list(recipe.special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    size = tok.get_vocab_size(with_added_tokens=True)
    if size != recipe.vocab_size:
        raise ValueError(f"the sample supports only {size} tokens (fewer distinct pairs than merges asked for): lower "
                         f"--vocab-size below {size} or sample more text (--sample-bytes)")
    return tok


def train_byte_level_bpe(texts: Iterable[str], vocab_size: int, special_tokens: tuple[str, ...] = (END_OF_TEXT,)):
    """A GPT-2-style byte-level BPE tokenizer trained on ``texts`` (deterministic for the same texts)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return tok
