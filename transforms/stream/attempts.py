"""One attempt at one pass over a stream, and the JSON-lines temp files (rejected, modified) it writes."""

from __future__ import annotations

import uuid
from typing import Any

import fsspec
import orjson

from schemas.manifest import E_RECORDS, E_TEMP_URL, Counts
from transforms.read.records import Rejection
from transforms.report.progress import ProgressWriter
from transforms.stream.config import StreamConfig


class JsonlFile:
    """A JSON-lines temp file opened on its first record, counting its records."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.records = 0
        self._fh: Any = None

    def write(self, record: dict[str, Any]) -> None:
        """Append one record."""
        if self._fh is None:
            self._fh = fsspec.open(self.url, "wb").open()
        self._fh.write(orjson.dumps(record) + b"\n")
        self.records += 1

    def close(self) -> list[dict[str, Any]]:
        """Close it: [{temp_url, records}] (empty when nothing was written)."""
        if self._fh is None:
            return []
        self._fh.close()
        return [{E_TEMP_URL: self.url, E_RECORDS: self.records}]

    def delete(self) -> None:
        """Close and remove it."""
        if self._fh is not None:
            self._fh.close()
            fs, path = fsspec.core.url_to_fs(self.url)
            if fs.exists(path):
                fs.rm(path)


class Attempt:
    """One attempt at one pass over a stream: its counts, its rejected (and modified) files and its share of the
    progress. Temp names carry a random attempt id, so retried or speculative attempts never write over each other.
    """

    def __init__(self, cfg: StreamConfig, stream_index: int, progress: ProgressWriter, name: str) -> None:
        self.stream = stream_index
        self.prefix = f"{cfg.temp_dir}/s{stream_index:05d}-{name}-{uuid.uuid4().hex[:12]}"
        self.counts = Counts()
        self.progress = progress
        self._shown: dict[str, int] = {}
        self.rejected = JsonlFile(f"{self.prefix}-rejected.jsonl")
        self.modified = JsonlFile(f"{self.prefix}-modified.jsonl") if cfg.emit_modified else None

    def show(self, force: bool = False, **deltas: int) -> None:
        """Add to the live progress (remembered, so that a discarded attempt can take it back)."""
        for key, value in deltas.items():
            self._shown[key] = self._shown.get(key, 0) + value
        self.progress.add(force=force, **deltas)

    def reject(self, rejections: list[Rejection]) -> None:
        """Write rejected records and count them."""
        for rej in rejections:
            self.counts.reject(rej.count_key, source=rej.source)
            self.rejected.write(rej.to_dict())

    def files(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Close the files: (rejected, modified), each as [{temp_url, records}]."""
        return self.rejected.close(), self.modified.close() if self.modified else []

    def discard(self) -> None:
        """Throw away this attempt's files and take back its progress."""
        for f in (self.rejected, self.modified):
            if f is not None:
                f.delete()
        self.progress.add(**{k: -v for k, v in self._shown.items()})

    def close(self) -> None:
        """Close files after a failure (the temp directory is cleared by the next run)."""
        self.files()
