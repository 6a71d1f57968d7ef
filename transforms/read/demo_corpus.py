"""The embedded default corpus: the running Python's standard library (module sources and their docstrings).

Real text and code found on every machine, so the quick start needs no download. Sources are read as text
(never imported) and walked in sorted order, so the corpus is the same on every run.
"""

from __future__ import annotations

import inspect
import os
import re
import sysconfig
from typing import Iterable, Iterator

# triple-quoted string literals: docstrings and other long prose (a regex: parsing every module with ast takes ~10 s)
_TRIPLE_QUOTED = re.compile(r'(?s)("""|\'\'\')(.*?)\1')

_SKIP_DIRS = {"site-packages", "dist-packages", "__pycache__", "idlelib", "turtledemo", "tkinter"}


def stdlib_root() -> str:
    """Directory of the running interpreter's standard library."""
    return sysconfig.get_paths()["stdlib"]


def stdlib_sources(root: str | None = None) -> Iterator[tuple[str, str]]:
    """(relative path, source text) of every standard-library .py file, in sorted order."""
    root = root or stdlib_root()
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith("."))
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            path = os.path.join(directory, name)
            try:
                with open(path, encoding="utf-8") as fh:
                    yield os.path.relpath(path, root), fh.read()
            except (OSError, UnicodeDecodeError):
                continue


def docstrings(source: str) -> str:
    """The module's triple-quoted strings (docstrings, mostly) joined as prose ('' if none)."""
    parts = []
    for match in _TRIPLE_QUOTED.finditer(source):
        doc = inspect.cleandoc(match.group(2))
        if len(doc) > 40 and " " in doc:
            parts.append(doc)
    return "\n\n".join(parts)


def demo_records(root: str | None = None) -> Iterator[dict[str, str]]:
    """Corpus records {id, text, source}: each module's source, then its docstrings as a prose document."""
    for rel, source in stdlib_sources(root):
        if source.strip():
            yield {"id": f"src/{rel}", "text": source, "source": "stdlib-source"}
        prose = docstrings(source)
        if prose:
            yield {"id": f"doc/{rel}", "text": prose, "source": "stdlib-docstrings"}


def paragraphs(texts: Iterable[str], n: int, min_chars: int = 80) -> list[str]:
    """Up to ``n`` paragraphs (blank-line separated) of at least ``min_chars`` characters, in order."""
    out: list[str] = []
    for text in texts:
        for para in text.split("\n\n"):
            if len(para.strip()) >= min_chars:
                out.append(para)
                if len(out) == n:
                    return out
    return out


def prose_and_code(per_class: int, spread: bool = False) -> tuple[list[str], list[str]]:
    """(docstring paragraphs, code paragraphs without docstrings) of this Python's standard library: two clearly
    different kinds of real text, ``per_class`` of each; ``spread`` takes the code evenly across the library."""
    records = list(demo_records())
    prose = paragraphs((r["text"] for r in records if r["source"] == "stdlib-docstrings"), per_class)
    code_texts = (_TRIPLE_QUOTED.sub("", r["text"]) for r in records if r["source"] == "stdlib-source")
    if not spread:
        return prose, paragraphs(code_texts, per_class)
    code = paragraphs(code_texts, 10**9)
    return prose, code[:: max(1, len(code) // max(1, len(prose)))][: len(prose)]
