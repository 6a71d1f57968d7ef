"""Live progress for local runs: workers write small JSON files into a local directory; the launcher sums them.

FnApiRunner's ``run()`` blocks until the pipeline is done, so progress cannot come from Beam metrics; a side
channel on the local disk works for in-process and multi-process workers alike. Remote runners get none.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import uuid
from typing import TextIO


class ProgressWriter:
    """Cumulative counts of one worker, rewritten at most every ``interval`` seconds."""

    def __init__(self, directory: str | None, interval: float = 0.5) -> None:
        self.directory = directory
        self.interval = interval
        self.path = os.path.join(directory, f"{os.getpid()}-{uuid.uuid4().hex}.json") if directory else None
        self.values = {"docs": 0, "records": 0, "bytes": 0, "tokens": 0, "streams": 0}
        self._last = 0.0

    def add(self, force: bool = False, **deltas: int) -> None:
        """Add to the counts and write them out if the interval passed (or ``force``)."""
        for key, value in deltas.items():
            self.values[key] = self.values.get(key, 0) + value
        if self.path is None:
            return
        now = time.monotonic()
        if force or now - self._last >= self.interval:
            self._last = now
            tmp = self.path + ".tmp"
            try:
                with open(tmp, "w") as fh:
                    json.dump(self.values, fh)
                os.replace(tmp, self.path)
            except OSError:
                self.path = None  # the launcher went away: stop reporting, keep working


def read_progress(directory: str) -> dict[str, int]:
    """Sum of all workers' counts."""
    total: dict[str, int] = {}
    try:
        names = os.listdir(directory)
    except OSError:
        return total
    for name in names:
        if not name.endswith(".json"):
            continue
        try:
            with open(os.path.join(directory, name)) as fh:
                values = json.load(fh)
        except (OSError, ValueError):
            continue
        for key, value in values.items():
            total[key] = total.get(key, 0) + int(value)
    return total


class ProgressDisplay:
    """A one-line live display on a terminal: records, documents, MB read (and the share of the input), MB/s,
    documents/s, tokens, elapsed time and, when the input size is known, the estimated time left."""

    def __init__(self, directory: str, total_bytes: int, total_streams: int | None, out: TextIO = sys.stderr) -> None:
        self.directory = directory
        self.total_bytes = total_bytes
        self.total_streams = total_streams
        self.out = out
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._start = time.monotonic()

    def __enter__(self) -> "ProgressDisplay":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.out.write("\r\033[K")
        self.out.flush()

    def line(self) -> str:
        """The current progress line."""
        p = read_progress(self.directory)
        elapsed = max(1e-9, time.monotonic() - self._start)
        mb = p.get("bytes", 0) / 1e6
        pct = f" ({100 * p.get('bytes', 0) / self.total_bytes:4.1f}%)" if self.total_bytes else ""
        tokens = f"{p['tokens'] / 1e6:,.1f}M tokens  " if p.get("tokens") else ""
        done = p.get("bytes", 0)
        eta = ""
        if self.total_bytes and done and done < self.total_bytes and elapsed >= 2:
            eta = f"  ETA {(self.total_bytes - done) * elapsed / done:,.0f}s"
        return (
            f"tokenmill: {p.get('records', 0):,} records  {p.get('docs', 0):,} docs  {mb:,.1f} MB{pct}  "
            f"{mb / elapsed:,.1f} MB/s  {p.get('docs', 0) / elapsed:,.0f} docs/s  {tokens}{elapsed:,.0f}s{eta}"
        )

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            self.out.write("\r\033[K" + self.line())
            self.out.flush()
