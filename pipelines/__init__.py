"""One module per command: each builds its Beam graph from a config; ``cli`` is the entry point."""

import argparse
from importlib.metadata import PackageNotFoundError, version
from typing import Callable


def tokenmill_version() -> str:
    """The installed tokenmill version."""
    try:
        return version("tokenmill")
    except PackageNotFoundError:
        return "0+unknown"


def whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number (underscores allowed) of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text.replace("_", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a number >= {minimum}, got {value}")
        return value

    return parse
