"""Writes kept documents (id, text, source, line, row, meta) into one Parquet file, hashing it as it goes.

Staged files (between the two passes of a job that dedups or selects) may also carry each document's token ids
(``TOKENS_COLUMN``) and the name of the encoder that produced them (``ENCODER_KEY`` in the file's metadata), so
that pass 2 packs them without tokenizing again.
"""

from __future__ import annotations

from typing import Any, Sequence

import fsspec
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from schemas.documents import document_schema
from schemas.manifest import E_BYTES, E_ROWS, E_SHA256, E_TEMP_URL
from transforms.output.shard_writer import COMPRESSION, HashingFile

ROW_GROUP_CHARS = 8 << 20  # of text per row group: bounded memory, whole groups for readers
TOKENS_COLUMN = "_token_ids"  # staged files only: the document's token ids (no EOS/BOS)
ENCODER_KEY = b"tokenmill.encoder"  # staged files only: which encoder produced TOKENS_COLUMN


class DocumentWriter:
    """Appends batches of documents to ``url`` (created on the first document); ``close()`` describes the file."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.rows = 0
        self.encoder: str | None = None  # set by the first write with token ids; all writes must then carry them
        self._pending: list[pa.RecordBatch] = []
        self._pending_chars = 0
        self._writer: pq.ParquetWriter | None = None
        self._file: HashingFile | None = None

    def write(self, ids: Sequence[str], texts: Sequence[str], source: str | Sequence[str],
              lines: Sequence[int | None], rows: Sequence[int | None],
              metas: Sequence[dict[str, Any] | str | None] | None = None,
              token_ids: tuple[str, Any, Any] | None = None) -> None:
        """Add documents (parallel sequences; one ``source`` string applies to all; a meta may be JSON text);
        ``token_ids``: (encoder name, flat ids, lengths) of the texts, for staged files."""
        n = len(texts)
        if not n:
            return
        sources = [source] * n if isinstance(source, str) else list(source)
        if not metas:
            meta = ["{}"] * n
        else:
            meta = [x if isinstance(x, str) else orjson.dumps(x).decode() if x else "{}" for x in metas]
        arrays = [pa.array(ids, pa.string()), pa.array(texts, pa.string()), pa.array(sources, pa.string()),
                  pa.array(lines, pa.int64()), pa.array(rows, pa.int64()), pa.array(meta, pa.string())]
        if self.rows == 0 and token_ids is not None:
            self.encoder = token_ids[0]
        if self.encoder is not None:
            if token_ids is None or token_ids[0] != self.encoder:
                raise ValueError(f"{self.url}: every batch of a staged file needs token ids of {self.encoder}")
            _, flat, lens = token_ids
            offsets = np.zeros(len(lens) + 1, np.int32)
            np.cumsum(lens, out=offsets[1:])
            arrays.append(pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, pa.uint32())))
        batch = pa.RecordBatch.from_arrays(arrays, schema=self._schema())
        self._pending.append(batch)
        self._pending_chars += sum(map(len, texts))
        self.rows += n
        if self._pending_chars >= ROW_GROUP_CHARS:
            self._flush()

    def _schema(self) -> pa.Schema:
        if self.encoder is None:
            return document_schema()
        return document_schema().append(pa.field(TOKENS_COLUMN, pa.list_(pa.uint32()), nullable=False)).with_metadata(
            {ENCODER_KEY: self.encoder.encode()})

    def close(self) -> dict[str, Any] | None:
        """Finish the file: {temp_url, rows, bytes, sha256}, or None when no document was written."""
        self._flush()
        if self._writer is None:
            return None
        self._writer.close()
        self._file.close()
        return {E_TEMP_URL: self.url, E_ROWS: self.rows, E_BYTES: self._file.size,
                E_SHA256: self._file.sha256.hexdigest()}

    def abort(self) -> None:
        """Close and delete the file (an attempt that is being redone)."""
        self._pending = []
        if self._writer is not None:
            self._writer.close()
            self._file.close()
            self._writer = None
            fs, path = fsspec.core.url_to_fs(self.url)
            if fs.exists(path):
                fs.rm(path)

    def _flush(self) -> None:
        if not self._pending:
            return
        if self._writer is None:
            self._file = HashingFile(fsspec.open(self.url, "wb").open())
            self._writer = pq.ParquetWriter(self._file, self._schema(), compression=COMPRESSION,
                                            compression_level=3, write_statistics=False)
        self._writer.write_table(pa.Table.from_batches(self._pending))
        self._pending, self._pending_chars = [], 0


def read_documents(url: str, batch_rows: int = 4096):
    """Iterate a document file as (pyarrow RecordBatch, encoder name of its token ids or None) (staged documents
    between the two passes)."""
    with fsspec.open(url, "rb") as fh:
        pf = pq.ParquetFile(fh)
        encoder = (pf.schema_arrow.metadata or {}).get(ENCODER_KEY)
        for batch in pf.iter_batches(batch_size=batch_rows):
            yield batch, None if encoder is None else encoder.decode()
