"""Offline language identification: the naive Bayes model shipped inside the ``py3langid`` package (142 languages,
no download), returning ISO 639-1 codes (639-3 where no two-letter code exists) and a probability."""

from __future__ import annotations

from typing import Sequence

MAX_CHARS = 10_000  # the first 10k characters decide: enough for the model, bounded cost per document


class LanguageIdentifier:
    """Language and probability per document; load once per worker."""

    def __init__(self, max_chars: int = MAX_CHARS) -> None:
        import py3langid.langid as langid

        self._model = langid.LanguageIdentifier.from_model_file(langid.MODEL_FILE, norm_probs=True)
        self.max_chars = max_chars

    @property
    def languages(self) -> tuple[str, ...]:
        """Every code the model can answer."""
        return tuple(sorted(self._model.nb_classes))

    def identify(self, text: str) -> tuple[str, float]:
        """(language code, probability) of one text; ("und", 0.0) for a text without letters."""
        sample = text[: self.max_chars]
        if not any(c.isalpha() for c in sample):
            return "und", 0.0
        lang, prob = self._model.classify(sample)
        return str(lang), float(prob)

    def identify_batch(self, texts: Sequence[str]) -> list[tuple[str, float]]:
        """identify() for each text, in order."""
        return [self.identify(t) for t in texts]
