"""Document Parquet files (``documents/``: kept documents of ``filter`` and ``prepare --emit-documents``).

One row per kept document, in input order within each file::

    id      string   the record's id (or ``<file>:<line>`` / ``<file>#<row>``)
    text    string   the text as tokenized (after any recipe stage that changes text, e.g. C4's line removal)
    source  string   the input file it came from
    line    int64    1-based line in a JSONL file (null for tables and text files)
    row     int64    0-based row in a table (null otherwise)
    meta    string   a JSON object of signals (``lang``, ``lang_score`` with a language stage; ``scores`` with
                     scorers; ``{}`` otherwise)

Reading back::

    import datasets
    ds = datasets.load_dataset("parquet", data_files="out/documents/*.parquet", split="train")

    from schemas.documents import iter_documents
    for doc in iter_documents("out/"):     # file order from the manifest; meta decoded
        doc["id"], doc["text"], doc["meta"].get("lang")
"""

from __future__ import annotations

import json
from functools import cache
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    import pyarrow as pa

# pyarrow is imported where the schema is built and files are read: the filter stages import this module for the
# names of meta keys, and ``prepare --help`` imports every stage (pyarrow and numpy take a third of a second)
DOC_ID = "id"
DOC_TEXT = "text"
DOC_SOURCE = "source"
DOC_LINE = "line"
DOC_ROW = "row"
DOC_META = "meta"

# keys inside meta
META_LANG = "lang"
META_LANG_SCORE = "lang_score"
META_SCORES = "scores"  # {scorer key: score} with a recipe's scorers
META_BUCKET = "bucket"  # the ensemble bucket (0 = lowest) with a recipe's ensemble
META_UPSAMPLE = "upsample"  # times the document is packed (the recipe's upsample factor of its bucket), when > 1

DOCUMENTS_DIR = "documents"
DOCUMENT_NAME = "part-{index:05d}.parquet"


@cache
def document_schema() -> pa.Schema:
    """The Arrow schema of a document file (the columns above, in that order)."""
    import pyarrow as pa

    return pa.schema(
        [
            pa.field(DOC_ID, pa.string(), nullable=False),
            pa.field(DOC_TEXT, pa.string(), nullable=False),
            pa.field(DOC_SOURCE, pa.string(), nullable=False),
            pa.field(DOC_LINE, pa.int64()),
            pa.field(DOC_ROW, pa.int64()),
            pa.field(DOC_META, pa.string(), nullable=False),
        ]
    )


def document_paths(output_dir: str) -> list[str]:
    """Document file paths of a finished output directory, in manifest order."""
    from schemas.manifest import E_PATH, K_DOCUMENTS
    from schemas.shards import join_url, read_manifest

    return [join_url(output_dir, d[E_PATH]) for d in read_manifest(output_dir).get(K_DOCUMENTS, [])]


def iter_documents(output_dir: str) -> Iterator[dict[str, Any]]:
    """Every kept document of a finished output directory as a dict (``meta`` decoded), in order."""
    import fsspec
    import pyarrow.parquet as pq

    for path in document_paths(output_dir):
        with fsspec.open(path, "rb") as fh:
            for batch in pq.ParquetFile(fh).iter_batches(batch_size=1024):
                for rec in batch.to_pylist():
                    rec[DOC_META] = json.loads(rec[DOC_META])
                    yield rec
