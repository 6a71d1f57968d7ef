"""Every file a recipe names, opened and checked before the output is touched (a bad one fails the run up front,
in one line, instead of inside the pipeline after the output was cleared); and what stages build from them once
per job, placed in the job's temp folder for the workers once the output is claimed."""

from __future__ import annotations

from dataclasses import replace

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


def place_recipe_files(recipe: Recipe, temp_dir: str) -> Recipe:
    """The recipe as the workers get it: each stage with what it builds once per job (decontam's n-gram index)
    written under ``temp_dir`` (see ``FilterStage.place_files``); its identity is unchanged."""
    return replace(recipe, filters=tuple(STAGES[s.name].place_files(s, temp_dir) for s in recipe.filters))
