"""Constants of datatrove's modules, read from their source without importing them: importing
``datatrove.pipeline.filters`` loads ``datatrove.io`` and with it ``huggingface_hub`` (~0.2-0.45 s), which a fast
rule needing only a word list or a regular expression must not pay on every start. The tests check that the values
read equal the imported ones."""

from __future__ import annotations

import ast
import importlib.util
import os
import re
from functools import lru_cache
from typing import Any


class ReferenceConstantError(LookupError):
    """A constant that is not a literal (or ``re.compile`` of one) in the reference module's source."""


@lru_cache(maxsize=None)
def _assignments(module: str) -> dict[str, ast.expr]:
    package, _, rest = module.partition(".")
    spec = importlib.util.find_spec(package)  # the top-level package only: its __init__ is light
    if spec is None or not spec.submodule_search_locations:
        raise ReferenceConstantError(f"{package} is not installed")
    path = os.path.join(list(spec.submodule_search_locations)[0], *rest.split(".")) + ".py"
    with open(path, encoding="utf-8") as fh:
        tree = ast.parse(fh.read(), path)
    found: dict[str, ast.expr] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            found[node.targets[0].id] = node.value
    return found


def _value(module: str, name: str, node: ast.expr) -> Any:
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "compile"
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "re" and len(node.args) == 1
            and not node.keywords):
        return re.compile(ast.literal_eval(node.args[0]))
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise ReferenceConstantError(f"{module}.{name} is not a literal") from None


def reference_constants(module: str, *names: str) -> tuple[Any, ...]:
    """The values of ``names`` in ``module``'s source (literals, or ``re.compile`` of a literal), in order."""
    found = _assignments(module)
    missing = [n for n in names if n not in found]
    if missing:
        raise ReferenceConstantError(f"{module} assigns no {', '.join(missing)}")
    return tuple(_value(module, n, found[n]) for n in names)
