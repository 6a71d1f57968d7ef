"""``tokenmill export-megatron``: a finished prepare output → Megatron-LM's indexed dataset (PREFIX.bin + PREFIX.idx).

No Beam: the export is one sequential pass over the shards in manifest order (the order training reads them),
writing one file, so it streams in one process. Memory holds one batch of rows plus one end offset per document.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from transforms.export.megatron import (
    ExportSummary,
    IndexedDatasetWriter,
    check_output_prefix,
    choose_dtype,
    iter_token_blocks,
    load_packed_source,
)


@dataclass
class ExportConfig:
    """Options of one export."""

    out_dir: str
    output: str
    dtype: str = "auto"
    overwrite: bool = False


def run(cfg: ExportConfig) -> ExportSummary:
    """Export every document of ``cfg.out_dir``'s shards, in order, one Megatron sequence and document each."""
    check_output_prefix(cfg.output, cfg.overwrite)  # before reading anything
    source = load_packed_source(cfg.out_dir)
    dtype = choose_dtype(cfg.dtype, source.vocab_size)
    with IndexedDatasetWriter(cfg.output, dtype, cfg.overwrite) as writer:
        for shard, tokens, ends in iter_token_blocks(source):
            writer.add(tokens, ends, where=shard)
        documents, incomplete = writer.commit()
    vocab = f", vocab {source.vocab_size:,}" if source.vocab_size is not None else ""
    return ExportSummary(
        documents=documents, incomplete_documents=incomplete, tokens=writer.tokens,
        dtype=f"{dtype.name} ({cfg.dtype}{vocab})" if cfg.dtype == "auto" else dtype.name,
        bin_path=writer.bin_path, idx_path=writer.idx_path, bin_bytes=os.path.getsize(writer.bin_path),
        source=cfg.out_dir, shards=len(source.shards),
    )
