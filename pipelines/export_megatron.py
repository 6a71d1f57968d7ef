"""``tokenmill export-megatron``: a finished prepare output → Megatron-LM's indexed dataset (PREFIX.bin + PREFIX.idx).

No Beam: the export is one sequential pass over the shards in manifest order (the order training reads them),
writing one file, so it streams in one process. Memory holds one batch of rows plus one end offset per document.
The export (numpy, pyarrow) is imported by the functions that run it, so ``export-megatron --help`` loads neither.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transforms.export.megatron import ExportSummary

DESCRIPTION = ("Rebuild the documents of a finished prepare output (shards in manifest order, padding dropped, each "
               "document ending with its EOS, BOS kept if configured) and write them as Megatron-LM's "
               "MMapIndexedDataset, one sequence and one document each, as preprocess_data.py --append-eod writes "
               "them. Streams: .bin is written as the shards are read. Both files are written under temporary names "
               "and renamed into place at the end. Real tokens after the last EOS are exported as one more document "
               "and reported as incomplete.")
EPILOG = None
BEAM = False  # no Beam here: an unknown option is a typo, not a pipeline option


@dataclass
class ExportConfig:
    """Options of one export."""

    out_dir: str
    output: str
    dtype: str = "auto"
    overwrite: bool = False


def add_arguments(exp: argparse.ArgumentParser) -> None:
    """The options of ``export-megatron``."""
    exp.add_argument("out_dir", metavar="OUT_DIR", help="a finished tokenmill prepare output directory "
                                                        "(with manifest.json; local or fsspec URL)")
    exp.add_argument("--output", "-o", required=True, metavar="PREFIX",
                     help="local path prefix of the dataset: writes PREFIX.bin and PREFIX.idx (Megatron's "
                          "--data-path PREFIX)")
    exp.add_argument("--dtype", choices=("auto", "uint16", "int32"), default="auto",
                     help="token dtype in PREFIX.bin; auto (default): Megatron's rule, uint16 if the tokenizer has "
                          "fewer than 65500 ids, else int32")
    exp.add_argument("--overwrite", action="store_true", help="replace an existing PREFIX.bin / PREFIX.idx")


def config_from_args(args: argparse.Namespace, command_line: list[str]) -> ExportConfig:
    """The config the parsed options describe."""
    return ExportConfig(out_dir=args.out_dir, output=args.output, dtype=args.dtype, overwrite=args.overwrite)


def run(cfg: ExportConfig) -> ExportSummary:
    """Export every document of ``cfg.out_dir``'s shards, in order, one Megatron sequence and document each."""
    from transforms.export.megatron import ExportSummary, IndexedDatasetWriter, check_output_prefix, choose_dtype
    from transforms.export.packed_source import iter_token_blocks, load_packed_source

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


def launch(cfg: ExportConfig, beam_args: list[str], show_progress: bool) -> int:
    """Run as ``tokenmill export-megatron`` does (the summary on stderr); the exit code."""
    from transforms.export.megatron import summary_table

    print(summary_table(run(cfg)), file=sys.stderr)
    return 0
