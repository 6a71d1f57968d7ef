"""The error of a recipe that cannot be used: raised by recipe parsing, the filter stages and the scoring sections."""

from __future__ import annotations

from transforms.errors import TokenmillError


class RecipeError(TokenmillError, ValueError):
    """A recipe that cannot be used, with what would be valid."""
