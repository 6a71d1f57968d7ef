"""The filter stages tokenmill knows, found by importing every module of ``transforms.filter.stages``: adding a
stage is adding one module there (defining ``STAGE``, a ``FilterStage``) and its tests."""

from __future__ import annotations

from typing import Any, Mapping

from transforms.filter import stages
from transforms.filter.stage import FilterStage, Stage
from transforms.registry import discover

STAGES: Mapping[str, FilterStage] = discover(stages, "STAGE", FilterStage)  # read-only: the stages are their modules


def datatrove_filter(stage: Stage) -> Any:
    """datatrove's own filter object for a configured stage (a datatrove pipeline step)."""
    return STAGES[stage.name].datatrove_filter(stage)
