"""Every file a recipe names, opened and checked before the output is touched (a bad one fails the run up front,
in one line, instead of inside the pipeline after the output was cleared)."""

from __future__ import annotations

from transforms.filter.registry import STAGES
from transforms.recipe.recipes import Recipe
from transforms.select.registry import SCORERS


def check_recipe_files(recipe: Recipe) -> None:
    """Raise RecipeError naming the stage, the option and the file for any file the recipe names that cannot be
    used: the filter stages' files (bad-words list folders), fastText models, DSIR target corpora."""
    for stage in recipe.filters:
        STAGES[stage.name].check_files(stage)
    selection = recipe.selection
    for scorer in selection.scorers if selection is not None else ():
        SCORERS[scorer.name].check_files(scorer, f"scorer {scorer.key!r} ({scorer.name})")
