"""``dsir``: a document's DSIR log importance weight (Xie et al., 2023), fitted on the target and raw corpora in the
same run (``transforms.select.steps`` counts their hashed features; ``transforms.select.dsir`` is the core)."""

from __future__ import annotations

from typing import Any

from transforms.recipe.errors import RecipeError
from transforms.select.scorer import ScorerConfig, ScorerStage


class DsirStage(ScorerStage):
    """The ``dsir`` scorer: fitted before scoring (its weights come from a first look at both corpora)."""

    name = "dsir"
    params = {"target": None, "buckets": 10000, "text_field": "text", "input_format": None}
    doc = ("DSIR log importance weight: hashed unigram+bigram bag-of-words of a target corpus vs the raw input, "
           "fitted in the same run")
    required = ("target",)
    fitted = True
    listed = 2

    def check_files(self, config: ScorerConfig, where: str) -> None:
        """The target corpus names readable input."""
        from transforms.read.sources import InputError, expand_inputs

        try:
            expand_inputs([config.params["target"]], config.params["input_format"])
        except InputError as exc:
            raise RecipeError(f"{where}.target: {exc}") from exc

    def build(self, config: ScorerConfig, fitted: Any | None):
        """The scorer over the fitted weights (the pipeline fits every dsir scorer first)."""
        from transforms.select.dsir import DsirScorer

        if fitted is None:
            raise RuntimeError(f"scorer {config.key!r} (dsir) has not been fitted")
        return DsirScorer(config.params, fitted)


SCORER = DsirStage()
