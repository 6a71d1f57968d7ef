"""Offline language identification on real text in many languages (chatterbot-corpus conversations)."""

from __future__ import annotations

from pathlib import Path

import pytest

from transforms.filter.langid import LanguageIdentifier

# corpus directory -> expected code (the corpus's "swedish" files are mostly untranslated English, and its
# telugu, thai and urdu files hold too little text for documents of 300 characters: left out)
LANGUAGES = {
    "english": "en", "german": "de", "french": "fr", "spanish": "es", "russian": "ru", "japanese": "ja",
    "chinese": "zh", "portuguese": "pt", "italian": "it", "dutch": "nl", "turkish": "tr", "ukrainian": "uk",
    "korean": "ko", "hebrew": "he", "hindi": "hi", "persian": "fa", "indonesian": "id", "bengali": "bn",
    "tamil": "ta", "marathi": "mr",
}


@pytest.fixture(scope="module")
def identifier():
    return LanguageIdentifier()


def _documents(language: str) -> list[str]:
    """Each corpus file of a language as documents of about 300+ characters (conversations joined)."""
    import chatterbot_corpus
    import yaml

    docs = []
    for path in sorted((Path(chatterbot_corpus.__file__).parent / "data" / language).glob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        current = ""
        for conv in data.get("conversations", []) or []:
            current += "\n".join(str(x) for x in conv if x is not None) + "\n"
            if len(current) >= 300:
                docs.append(current)
                current = ""
    return docs


def test_at_least_twenty_languages_including_the_big_ones(identifier):
    assert len(identifier.languages) >= 20
    assert {"en", "de", "fr", "es", "ru", "ja", "zh"} <= set(identifier.languages)


@pytest.mark.parametrize("language", sorted(LANGUAGES))
def test_real_documents_are_identified(identifier, language):
    docs = _documents(language)
    assert len(docs) >= 3, language
    got = identifier.identify_batch(docs)
    right = sum(lang == LANGUAGES[language] for lang, _ in got)
    assert right / len(docs) >= 0.8, (language, got)
    assert all(0.0 <= p <= 1.0 for _, p in got)


def test_text_without_letters_is_undetermined(identifier):
    assert identifier.identify("12345 !!! ...") == ("und", 0.0)
    assert identifier.identify("") == ("und", 0.0)
