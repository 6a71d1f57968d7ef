"""Input files named relative to the inputs' common directory (what a report or a sample records as a source)."""

from __future__ import annotations

import posixpath


def common_root(urls: list[str]) -> str:
    """The directory every input lives under (empty when they share none)."""
    if not urls:
        return ""
    root = posixpath.commonpath([posixpath.dirname(u) for u in urls]) if all("://" not in u for u in urls) else ""
    return root


def relative_source(source: str, root: str) -> str:
    """A source's name below the inputs' common directory: the sample does not change when the corpus moves."""
    return source[len(root):].lstrip("/") if root and source.startswith(root) else source
