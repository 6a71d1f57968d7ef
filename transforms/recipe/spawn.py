"""Starting worker processes safely from any caller: the recipe's process pool and the regex helper process."""

from __future__ import annotations

import importlib.machinery
import sys
import types
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def children_skip_main() -> Iterator[None]:
    """Processes spawned meanwhile import only what they unpickle, never the parent's ``__main__``: a script that
    runs tokenmill without a main guard (a notebook, a scheduler's file) would otherwise run again in each child."""
    main = sys.modules["__main__"]
    stand_in = types.ModuleType("__main__")
    stand_in.__spec__ = importlib.machinery.ModuleSpec("tokenmill.__main__", None)  # spawn skips "*.__main__"
    sys.modules["__main__"] = stand_in
    try:
        yield
    finally:
        sys.modules["__main__"] = main
