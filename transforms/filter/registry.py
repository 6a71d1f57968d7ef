"""The filter stages tokenmill knows, found by importing every module of ``transforms.filter.stages``: adding a
stage is adding one module there (defining ``STAGE``, a ``FilterStage``) and its tests."""

from __future__ import annotations

import importlib
import pkgutil
from types import MappingProxyType
from typing import Any, Mapping

from transforms.filter import stages
from transforms.filter.stage import FilterStage, Stage


def _discover() -> dict[str, FilterStage]:
    """{name: stage} of every module of the stages package, in their ``listed`` order."""
    found: list[FilterStage] = []
    for module in pkgutil.iter_modules(stages.__path__):
        stage = importlib.import_module(f"{stages.__name__}.{module.name}").STAGE
        if not isinstance(stage, FilterStage):
            raise TypeError(f"{stages.__name__}.{module.name}.STAGE is not a FilterStage")
        found.append(stage)
    return {stage.name: stage for stage in sorted(found, key=lambda s: (s.listed, s.name))}


STAGES: Mapping[str, FilterStage] = MappingProxyType(_discover())  # read-only: the stages are their modules


def datatrove_filter(stage: Stage) -> Any:
    """datatrove's own filter object for a configured stage (a datatrove pipeline step)."""
    return STAGES[stage.name].datatrove_filter(stage)
