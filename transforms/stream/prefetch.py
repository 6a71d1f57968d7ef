"""Reading a stream's input in batches ahead of the work on them, and timing each step."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable, Iterable, Iterator

from transforms.read.readers import DocBatch, read_split
from transforms.read.sources import Stream
from transforms.stream.config import StreamConfig


def prefetch(items: Iterable[DocBatch], depth: int) -> Iterator[DocBatch]:
    """Run a reader in a thread so parsing overlaps tokenizing (the tokenizers release the GIL)."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def fill() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as exc:  # re-raised in the consumer (e.g. --strict's BadRecordError)
            q.put(exc)

    thread = threading.Thread(target=fill, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


def stream_batches(stream: Stream, cfg: StreamConfig) -> Iterator[DocBatch]:
    """The stream's records as read, split by split, each batch timed."""
    for split in stream.splits:
        yield from timed(read_split(split, cfg.text_field, cfg.id_field, cfg.batch_bytes, cfg.strict,
                                    cfg.meta_fields))


def timed(batches: Iterator[DocBatch]) -> Iterator[DocBatch]:
    """The batches, each with the seconds its reader took to make it added to ``DocBatch.seconds``."""
    while True:
        started = time.perf_counter()
        batch = next(batches, None)
        if batch is None:
            return
        batch.seconds += time.perf_counter() - started
        yield batch


def call_timed(fn: Callable[..., Any], *args: Any) -> float:
    """Call ``fn(*args)`` and return the seconds it took (what a timed writer-thread task gives back)."""
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started
