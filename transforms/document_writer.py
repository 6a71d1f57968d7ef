"""Writes kept documents (id, text, source, line, row, meta) into one Parquet file, hashing it as it goes."""

from __future__ import annotations

from typing import Any, Sequence

import fsspec
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from schemas.documents import DOCUMENT_SCHEMA
from transforms.shard_writer import COMPRESSION, _HashingFile

ROW_GROUP_CHARS = 8 << 20  # of text per row group: bounded memory, whole groups for readers


class DocumentWriter:
    """Appends batches of documents to ``url`` (created on the first document); ``close()`` describes the file."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.rows = 0
        self._pending: list[pa.RecordBatch] = []
        self._pending_chars = 0
        self._writer: pq.ParquetWriter | None = None
        self._file: _HashingFile | None = None

    def write(self, ids: Sequence[str], texts: Sequence[str], source: str | Sequence[str],
              lines: Sequence[int | None], rows: Sequence[int | None],
              metas: Sequence[dict[str, Any] | str | None] | None = None) -> None:
        """Add documents (parallel sequences; one ``source`` string applies to all; a meta may be JSON text)."""
        n = len(texts)
        if not n:
            return
        sources = [source] * n if isinstance(source, str) else list(source)
        if not metas:
            meta = ["{}"] * n
        else:
            meta = [x if isinstance(x, str) else orjson.dumps(x).decode() if x else "{}" for x in metas]
        batch = pa.RecordBatch.from_arrays(
            [pa.array(ids, pa.string()), pa.array(texts, pa.string()), pa.array(sources, pa.string()),
             pa.array(lines, pa.int64()), pa.array(rows, pa.int64()), pa.array(meta, pa.string())],
            schema=DOCUMENT_SCHEMA,
        )
        self._pending.append(batch)
        self._pending_chars += sum(map(len, texts))
        self.rows += n
        if self._pending_chars >= ROW_GROUP_CHARS:
            self._flush()

    def close(self) -> dict[str, Any] | None:
        """Finish the file: {temp_url, rows, bytes, sha256}, or None when no document was written."""
        self._flush()
        if self._writer is None:
            return None
        self._writer.close()
        self._file.close()
        return {"temp_url": self.url, "rows": self.rows, "bytes": self._file.size,
                "sha256": self._file.sha256.hexdigest()}

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
            self._file = _HashingFile(fsspec.open(self.url, "wb").open())
            self._writer = pq.ParquetWriter(self._file, DOCUMENT_SCHEMA, compression=COMPRESSION,
                                            compression_level=3, write_statistics=False)
        self._writer.write_table(pa.Table.from_batches(self._pending))
        self._pending, self._pending_chars = [], 0


def read_documents(url: str, batch_rows: int = 4096):
    """Iterate a document file as pyarrow RecordBatches (staged documents between the two dedup passes)."""
    with fsspec.open(url, "rb") as fh:
        yield from pq.ParquetFile(fh).iter_batches(batch_size=batch_rows)
