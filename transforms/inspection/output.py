"""Looking inside a finished prepare or filter output: its location and manifest (``open_output``).

What is done with it: a summary of the manifest (``transforms.inspection.summary``), packed rows decoded into their
document segments (``transforms.inspection.rows``) and a verification of every file and total against what the
manifest records (``transforms.inspection.verify``).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any

from schemas import manifest as m
from schemas.shards import MANIFEST_FILE, join_url, read_output_manifest
from transforms.errors import TokenmillError


class InspectError(TokenmillError, ValueError):
    """A problem with OUTPUT_DIR, --tokenizer, --rows or --seed that stops the inspection."""


@dataclass(frozen=True)
class OutputDir:
    """A finished prepare or filter output: its location, filesystem and manifest."""

    url: str
    fs: Any  # fsspec.AbstractFileSystem
    root: str
    manifest: dict[str, Any]

    @property
    def packed(self) -> bool:
        """Whether it holds token shards (a prepare output)."""
        return isinstance(self.manifest.get(m.K_SHARDS), list)

    def locate(self, rel: str) -> tuple[Any, str]:
        """(filesystem, path) of a path the manifest lists (relative to the directory, or an absolute URL/path)."""
        if "://" in rel:
            from fsspec.core import url_to_fs

            return url_to_fs(rel)
        return self.fs, rel if rel.startswith("/") else posixpath.join(self.root, rel)


def open_output(url: str) -> OutputDir:
    """Read OUTPUT_DIR's manifest (local path or fsspec URL); InspectError says what is wrong with it."""
    fs, root, manifest = read_output_manifest(url, "OUTPUT_DIR", InspectError)
    fmt = manifest.get(m.K_FORMAT)
    if fmt not in (m.MANIFEST_FORMAT, m.DOCUMENTS_FORMAT):
        raise InspectError(f"{join_url(url, MANIFEST_FILE)} has format {fmt!r}, expected {m.MANIFEST_FORMAT!r} "
                           f"(tokenmill prepare) or {m.DOCUMENTS_FORMAT!r} (tokenmill filter)")
    if not isinstance(manifest.get(m.K_COUNTS), dict):
        raise InspectError(f"{join_url(url, MANIFEST_FILE)} has no {m.K_COUNTS!r} section")
    return OutputDir(url, fs, root, manifest)
