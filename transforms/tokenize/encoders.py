"""A worker's encoders for one tokenizer: the reference and (if wanted and loadable) gigatoken, loaded once."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from transforms.tokenize.tokenizer import (
    AUTO,
    GIGATOKEN,
    HF,
    Encoder,
    GigatokenEncoder,
    TokenizerSpec,
    first_mismatch,
    load_file,
    load_reference,
    verification_sample,
)

log = logging.getLogger(__name__)


class Encoders:
    """The reference encoder and (if wanted and loadable) gigatoken, loaded once per worker in the background.

    Loading starts at construction (a worker's ``setup()``) and overlaps the first reads; the reference encoder
    loads only when needed (``--tokenizer-backend hf``, a fallback, or ``auto``'s verification).
    """

    def __init__(self, spec: TokenizerSpec) -> None:
        self.spec = spec
        self.fast_error = ""
        self._lock = threading.Lock()
        self._reference: Encoder | None = None
        self._fast: Encoder | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="tokenmill-encoders")
        self._data = self._pool.submit(load_file, spec)
        self._fast_loaded = self._pool.submit(self._load_fast) if spec.backend in (AUTO, GIGATOKEN) else None

    def _load_fast(self) -> Encoder | None:
        try:
            return GigatokenEncoder(self.spec.path, self._data.result(), self.spec.kind, self.spec.tiktoken_scheme)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # gigatoken refuses (or panics on) some tokenizers: auto falls back
            if self.spec.backend == GIGATOKEN:
                raise
            self.fast_error = f"gigatoken cannot load this tokenizer ({exc})"
            return None

    @property
    def fast(self) -> Encoder | None:
        """gigatoken, or None if not wanted or not loadable (``fast_error`` says why)."""
        if self._fast_loaded is not None:
            self._fast = self._fast_loaded.result()
            self._fast_loaded = None
        return self._fast

    @fast.setter
    def fast(self, encoder: Encoder | None) -> None:
        self._fast_loaded = None
        self._fast = encoder

    @property
    def reference(self) -> Encoder:
        """The format-of-record encoder (HF tokenizers or tiktoken)."""
        with self._lock:
            if self._reference is None:
                self._reference = load_reference(self.spec, self._data.result())
            return self._reference

    def choose(self, sample: list[str], where: str) -> tuple[Encoder, str]:
        """The encoder for a stream, given its first documents; returns (encoder, note)."""
        encoder, pending = self.start(sample, where)
        return pending.result() if pending is not None else (encoder, self.fast_error)

    def start(self, sample: list[str], where: str) -> tuple[Encoder, Future | None]:
        """The encoder to start a stream with, and for ``auto`` a pending verification on the stream's own first
        documents that resolves to the encoder to keep and a note (gigatoken, or the reference on a mismatch)."""
        fast = self.fast if self.spec.backend != HF else None
        if fast is None:
            return self.reference, None
        if self.spec.backend == GIGATOKEN:
            return fast, None
        return fast, self._pool.submit(self._verify, fast, verification_sample(sample), where)

    def _verify(self, fast: Encoder, sample: list[str], where: str) -> tuple[Encoder, str]:
        reference = self.reference
        mismatch = first_mismatch(fast, reference, sample)
        if mismatch is None:
            return fast, ""
        note = f"gigatoken differs from {reference.name} on {where}: {mismatch}; using {reference.name}"
        log.warning("tokenmill: %s", note)
        return reference, note
