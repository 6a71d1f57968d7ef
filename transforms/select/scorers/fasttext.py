"""``fasttext``: the probability of a label under a fastText classifier (``tokenmill train-classifier`` makes one)."""

from __future__ import annotations

import struct
from typing import Any

from transforms.recipe.errors import RecipeError
from transforms.select.scorer import ScorerConfig, ScorerStage

FASTTEXT_MAGIC = 793712314  # the first int32 of every fastText model file (fastText's FASTTEXT_FILEFORMAT_MAGIC_INT32)
FASTTEXT_VERSION = 12


class FastTextScorer:
    """The probability of ``label`` under a fastText model (texts normalised as for training)."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.label = params["label"]
        self.model = load_fasttext(params["model"])

    def score(self, texts: list[str]) -> list[float]:
        """One probability per text."""
        from transforms.select.classifier import positive_probability

        return positive_probability(self.model, texts, self.label).tolist()


def load_fasttext(path: str):
    """A fastText model from a local path or any fsspec URL (copied to a temporary file first)."""
    import os
    import tempfile

    import fasttext
    import fsspec

    fs, local = fsspec.core.url_to_fs(path)
    if getattr(fs, "protocol", None) in ("file", ("file", "local")) or "file" in getattr(fs, "protocol", ()):
        return fasttext.load_model(local)
    with tempfile.TemporaryDirectory(prefix="tokenmill-fasttext-") as tmp:
        target = os.path.join(tmp, "model.bin")
        fs.get(local, target)
        return fasttext.load_model(target)


def check_fasttext_model(path: str, where: str = "fasttext scorer") -> None:
    """Raise RecipeError unless ``path`` opens and starts like a fastText model (magic number and version)."""
    # fsspec (and fastText) are imported where a model is read: the scorer registry behind prepare's --help imports
    # this module
    import fsspec

    try:
        with fsspec.open(path, "rb") as fh:
            head = fh.read(8)
    except (OSError, ValueError) as exc:
        raise RecipeError(f"{where}.model: cannot open {path!r} ({exc})") from exc
    if len(head) < 8:
        raise RecipeError(f"{where}.model: {path!r} is not a fastText model (only {len(head)} bytes)")
    magic, version = struct.unpack("<ii", head)
    if magic != FASTTEXT_MAGIC:
        raise RecipeError(f"{where}.model: {path!r} is not a fastText model (train one with tokenmill "
                          "train-classifier, or give a .bin file saved by fastText)")
    if version > FASTTEXT_VERSION:
        raise RecipeError(f"{where}.model: {path!r} is a fastText model of a newer format (version {version})")


class FastTextStage(ScorerStage):
    """The ``fasttext`` scorer (DCLM-style quality classification)."""

    name = "fasttext"
    params = {"model": None, "label": "__label__hq"}
    doc = "probability of a label under a fastText classifier (see train-classifier)"
    required = ("model",)
    listed = 1

    def check_files(self, config: ScorerConfig, where: str) -> None:
        """The model opens and is a fastText model."""
        check_fasttext_model(config.params["model"], where)

    def build(self, config: ScorerConfig, fitted: Any | None) -> FastTextScorer:
        """The model, loaded once per worker."""
        return FastTextScorer(config.params)


SCORER = FastTextStage()
