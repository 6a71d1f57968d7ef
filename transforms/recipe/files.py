"""Every file a recipe names, opened and checked before the output is touched (a bad one fails the run up front,
in one line, instead of inside the pipeline after the output was cleared)."""

from __future__ import annotations

import struct

import fsspec

from transforms.filter.registry import STAGES
from transforms.recipe.errors import RecipeError
from transforms.recipe.recipes import Recipe

FASTTEXT_MAGIC = 793712314  # the first int32 of every fastText model file (fastText's FASTTEXT_FILEFORMAT_MAGIC_INT32)
FASTTEXT_VERSION = 12


def check_recipe_files(recipe: Recipe) -> None:
    """Raise RecipeError naming the stage, the option and the file for any file the recipe names that cannot be
    used: the filter stages' files (bad-words list folders), fastText models, DSIR target corpora."""
    for stage in recipe.filters:
        STAGES[stage.name].check_files(stage)
    selection = recipe.selection
    for scorer in selection.scorers if selection is not None else ():
        where = f"scorer {scorer.key!r} ({scorer.name})"
        if scorer.name == "fasttext":
            check_fasttext_model(scorer.params["model"], where)
        elif scorer.name == "dsir":
            from transforms.read.sources import InputError, expand_inputs

            try:
                expand_inputs([scorer.params["target"]], scorer.params["input_format"])
            except InputError as exc:
                raise RecipeError(f"{where}.target: {exc}") from exc


def check_fasttext_model(path: str, where: str = "fasttext scorer") -> None:
    """Raise RecipeError unless ``path`` opens and starts like a fastText model (magic number and version)."""
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
