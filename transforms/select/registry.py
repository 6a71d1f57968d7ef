"""The scorers tokenmill knows, found by importing every module of ``transforms.select.scorers``: adding a scorer
is adding one module there (defining ``SCORER``, a ``ScorerStage``) and its tests."""

from __future__ import annotations

from typing import Mapping

from transforms.registry import discover
from transforms.select import scorers
from transforms.select.scorer import ScorerStage

SCORERS: Mapping[str, ScorerStage] = discover(scorers, "SCORER", ScorerStage)
