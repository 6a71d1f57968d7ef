"""An output location: its filesystem and root, whether it is local disk, JSON written atomically."""

from __future__ import annotations

import json
from typing import Any

import fsspec
from fsspec.core import url_to_fs

from transforms.errors import TokenmillError


class OutputError(TokenmillError, ValueError):
    """A problem with --output found before any work starts."""


def output_fs(output: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem and root path (no trailing slash) of an output URL."""
    fs, path = url_to_fs(output)
    return fs, path.rstrip("/")


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    """Whether ``fs`` is this machine's disk."""
    protocol = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocol or "local" in protocol


def write_json(fs: fsspec.AbstractFileSystem, path: str, value: Any) -> None:
    """``value`` as JSON at ``path``, through a temporary name (readers see the old file or the whole new one)."""
    with fs.open(path + ".tmp", "wb") as fh:
        fh.write(json.dumps(value, indent=2).encode("utf-8", "surrogateescape") + b"\n")
    fs.mv(path + ".tmp", path)
