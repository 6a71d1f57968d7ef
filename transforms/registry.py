"""Finding a package's stages: every module of the package defines one, so adding a stage is adding a module."""

from __future__ import annotations

import importlib
import pkgutil
from types import MappingProxyType, ModuleType
from typing import Mapping, TypeVar

T = TypeVar("T")


def discover(package: ModuleType, attribute: str, kind: type[T]) -> Mapping[str, T]:
    """Read-only {name: stage} of ``attribute`` in every module of ``package``, ordered by (``listed``, name)."""
    found: list = []
    for module in pkgutil.iter_modules(package.__path__):
        stage = getattr(importlib.import_module(f"{package.__name__}.{module.name}"), attribute, None)
        if not isinstance(stage, kind):
            raise TypeError(f"{package.__name__}.{module.name}.{attribute} is not a {kind.__name__}")
        found.append(stage)
    return MappingProxyType({s.name: s for s in sorted(found, key=lambda s: (s.listed, s.name))})
