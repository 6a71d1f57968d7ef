"""What one stream's work hands to the commit: its counts and the files it wrote under temporary names.

A plain dataclass of plain values (Beam pickles it between steps). Each file entry is a dict that the commit
places under its directory and lists in the manifest as it is (``temp_url`` replaced by ``path``):

- ``shards``: temp_url, rows, bytes, sha256, tokens, pad_tokens (+ bucket, + seq_len for decompose);
- ``documents``: temp_url, rows, bytes, sha256;
- ``rejected`` and ``modified``: temp_url, records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from schemas.manifest import Counts


@dataclass
class StreamResult:
    """One stream's result (of its one pass, of dedup/selection's pass 1, or of both passes merged)."""

    stream: int  # the stream's index in the plan
    counts: Counts
    shards: list[dict[str, Any]] = field(default_factory=list)
    backend: str | None = None  # the encoder that tokenized the stream (None: nothing tokenized)
    backend_note: str = ""  # why not gigatoken, or where it differed from the reference
    documents: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    modified: list[dict[str, Any]] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)  # the input files the stream reads
    staged: str | None = None  # pass 1 only: the temp url of the staged documents (None: none kept)
    cluster_samples: list[list[Any]] = field(default_factory=list)  # pass 2: [[cluster rank, member], ...]

    def merge(self, second: "StreamResult") -> "StreamResult":
        """This pass 1 result and the stream's ``second`` pass as one: counts added, files of both."""
        return StreamResult(
            stream=second.stream, counts=Counts().merge(self.counts).merge(second.counts), shards=second.shards,
            backend=second.backend, backend_note=second.backend_note, documents=second.documents,
            rejected=self.rejected + second.rejected, modified=self.modified + second.modified,
            inputs=second.inputs, staged=second.staged, cluster_samples=self.cluster_samples + second.cluster_samples,
        )
