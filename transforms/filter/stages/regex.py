"""``regex``: drop documents matching a regular expression (datatrove's RegexFilter), on RE2 where it means the
same as in ``re``, else on ``re`` in a helper process that enforces the stage time limit."""

from __future__ import annotations

import re
from typing import Any

from transforms.filter.stage import DatatroveRule, FilterStage, Stage, StageRule
from transforms.recipe.errors import RecipeError
from transforms.recipe.limits import compile_search


class RegexRule(DatatroveRule):
    """datatrove's RegexFilter searching with RE2 where it can (it tests ``self.regex.search(text)``)."""

    def __init__(self, regex_filter: Any, pattern: str, limit: float) -> None:
        super().__init__(regex_filter)
        self.regex_engine, self.datatrove.regex = compile_search(pattern, limit)
        # re's search runs in a helper process that enforces the limit itself (the clock cannot stop a C call)
        self.own_limit = self.regex_engine == "re"


class RegexStage(FilterStage):
    """The ``regex`` stage (both engines run datatrove's filter)."""

    name = "regex"
    datatrove_class = "datatrove.pipeline.filters.RegexFilter"
    params = {"regex_exp": None}
    doc = "drop documents matching a regular expression"
    listed = 8

    def validate(self, params: dict[str, Any], where: str) -> None:
        """The pattern is required and must compile."""
        if not isinstance(params["regex_exp"], str):
            raise RecipeError(f"{where} (regex): 'regex_exp' (a regular expression) is required")
        try:
            re.compile(params["regex_exp"])
        except re.error as exc:
            raise RecipeError(f"{where} (regex): 'regex_exp' is not a valid regular expression ({exc})") from exc

    def reference(self, stage: Stage, limit: float) -> StageRule:
        """datatrove's RegexFilter on RE2 or on a killable ``re`` search."""
        return RegexRule(self.datatrove_filter(stage), stage.params["regex_exp"], limit)


STAGE = RegexStage()
