"""``dedup.lines``: the recipe's line- or paragraph-level deduplication across the whole corpus (its settings).

    dedup: {lines: {unit: line, min_docs: 2, keep_first: true}}     # or dedup: {lines: true} for these defaults

Every line (``unit: line``: the text between two ``\\n``) or paragraph (``unit: paragraph``: a run of non-blank
lines between blank ones) whose normalised form occurs in at least ``min_docs`` distinct documents of the corpus is
removed; with ``keep_first`` its occurrences in the first-read of those documents stay. Normalised: Unicode NFC,
leading and trailing whitespace stripped, every run of whitespace one space (a paragraph: its lines so, joined by
``\\n``); case and punctuation are kept. Blank (whitespace-only) lines are ignored: never counted, never removed
(Dolma's ``skip_empty``); every other line counts, however short (Dolma and BFF have no minimum either).

The defaults are Dolma's paragraph dedup and DCLM's BFF: both cut the text at newlines, and a Bloom filter keeps
the first occurrence of a line and drops every later one, which is ``unit: line, min_docs: 2, keep_first: true``.
Boilerplate removal (a footer or a menu dropped from every page that has it, FineWeb/CCNet style) is
``keep_first: false`` with a ``min_docs`` well above 2. Which documents count, and how lines are removed, is
``transforms.dedup.lines``'s docstring.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas import manifest as m
from transforms.recipe.errors import RecipeError

LINE, PARAGRAPH = "line", "paragraph"
UNITS = (LINE, PARAGRAPH)
DEFAULTS = {m.LD_UNIT: LINE, m.LD_MIN_DOCS: 2, m.LD_KEEP_FIRST: True}


@dataclass(frozen=True)
class LineDedup:
    """Remove each ``unit`` found in at least ``min_docs`` documents (with ``keep_first``: but from the first)."""

    unit: str = LINE
    min_docs: int = 2
    keep_first: bool = True

    def to_dict(self) -> dict[str, Any]:
        """As recorded under the manifest recipe's dedup section (every setting explicit)."""
        return {m.LD_UNIT: self.unit, m.LD_MIN_DOCS: self.min_docs, m.LD_KEEP_FIRST: self.keep_first}


def parse_line_dedup(dedup: Any, where: str) -> LineDedup | None:
    """The ``lines`` setting of a recipe's (already checked) ``dedup`` mapping; None when absent or false."""
    config = dedup.get("lines") if isinstance(dedup, dict) else None
    if config is None or config is False:
        return None
    if config is True:
        config = {}
    if not isinstance(config, dict):
        raise RecipeError(f"{where}: dedup.lines must be true or a mapping of {', '.join(DEFAULTS)}, got {config!r}")
    unknown = sorted(set(config) - set(DEFAULTS))
    if unknown:
        raise RecipeError(f"{where}: dedup.lines has unknown key(s) {', '.join(map(repr, unknown))}; "
                          f"valid: {', '.join(DEFAULTS)}")
    values = {**DEFAULTS, **config}
    unit, min_docs, keep_first = values[m.LD_UNIT], values[m.LD_MIN_DOCS], values[m.LD_KEEP_FIRST]
    if unit not in UNITS:
        raise RecipeError(f"{where}: dedup.lines.unit must be one of {', '.join(UNITS)}, got {unit!r}")
    if isinstance(min_docs, bool) or not isinstance(min_docs, int) or min_docs < 2:
        raise RecipeError(f"{where}: dedup.lines.min_docs must be an integer of at least 2 (the documents a line "
                          f"must be in to be removed), got {min_docs!r}")
    if not isinstance(keep_first, bool):
        raise RecipeError(f"{where}: dedup.lines.keep_first must be true or false, got {keep_first!r}")
    return LineDedup(unit, min_docs, keep_first)
