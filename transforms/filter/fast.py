"""What the fast implementations of the filter stages share: datatrove-identical words and per-word facts.

The fast rules (in ``transforms.filter.stages``) keep datatrove's parameters, order of checks and reason names, so
decisions match (tests compare with the datatrove engine). A text's words are int32 ids from the splitter's
vocabulary: per-word facts are arrays indexed by id, and the Gopher n-gram counts run over the ids (and the words
joined, for datatrove's separator-less duplicate n-grams) in C (``transforms.filter.ngrams``); every count is exact,
no shortcut changes a decision.
Known difference: where datatrove would divide by zero (a document without words when ``min_doc_words`` is
disabled), these rules treat the ratio as 0 instead of raising."""

from __future__ import annotations

import numpy as np

from transforms.filter.words import WordSplitter


def punctuation() -> tuple[frozenset[str], tuple[str, ...]]:
    """datatrove's punctuation characters and its terminal punctuation."""
    from datatrove.utils.text import PUNCTUATION_SET, TERMINAL_PUNCTUATION

    return frozenset(PUNCTUATION_SET), tuple(TERMINAL_PUNCTUATION)


class WordFacts:
    """Per-word facts as arrays indexed by word id (computed once per distinct word), summed over a text's ids:
    the word's length if it holds something other than punctuation (else 0), whether it holds a letter."""

    def __init__(self, punctuation: frozenset[str]) -> None:
        chars = "".join(sorted(punctuation))
        if any(c.isalpha() for c in chars) or any(len(c) != 1 for c in punctuation):
            raise ValueError("punctuation must be single characters that are not letters")
        # a word holds a character that is not punctuation iff stripping punctuation leaves something (C-level)
        self._non_symbol_length = lambda w: len(w) if w.isalpha() or w.strip(chars) else 0

    def non_symbol_length(self, words: WordSplitter) -> np.ndarray:
        """By word id: its length if any character is not punctuation, else 0."""
        return words.fact("non_symbol_length", self._non_symbol_length)

    @staticmethod
    def alpha(words: WordSplitter) -> np.ndarray:
        """By word id: 1 if any character is a letter."""
        return words.fact("alpha", lambda w: w.isalpha() or any(c.isalpha() for c in w))


class FastTools:
    """One fast engine's shared tools: a word splitter per language, per-word facts, terminal punctuation."""

    def __init__(self) -> None:
        chars, self.terminal = punctuation()
        self.facts = WordFacts(chars)
        self._splitters: dict[str, WordSplitter] = {}

    def splitter(self, language: str) -> WordSplitter | None:
        """The language's word splitter (shared by the stages), or None where there is no fast one yet."""
        try:
            if language not in self._splitters:
                self._splitters[language] = WordSplitter(language)
            return self._splitters[language]
        except ValueError:  # no fast splitter for this language yet: datatrove's filter instead
            return None
