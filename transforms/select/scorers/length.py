"""``length``: a document's length in bytes (UTF-8), characters or whitespace-separated words."""

from __future__ import annotations

from typing import Any

from transforms.select.scorer import ScorerConfig, ScorerStage


class LengthScorer:
    """Document length in bytes (UTF-8), characters or whitespace-separated words."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.unit = params["unit"]

    def score(self, texts: list[str]) -> list[float]:
        """One score per text."""
        if self.unit == "bytes":
            return [float(len(t.encode("utf-8", "surrogatepass"))) for t in texts]
        if self.unit == "chars":
            return [float(len(t)) for t in texts]
        return [float(len(t.split())) for t in texts]


class LengthStage(ScorerStage):
    """The ``length`` scorer (any per-document signal can be a score)."""

    name = "length"
    params = {"unit": "bytes"}
    doc = "document length"
    choices = {"unit": ("bytes", "chars", "words")}
    listed = 3

    def build(self, config: ScorerConfig, fitted: Any | None) -> LengthScorer:
        """Nothing to load."""
        return LengthScorer(config.params)


SCORER = LengthStage()
