"""``tokenmill inspect``: summarise a finished prepare or filter output, decode some of its rows, verify its files.

No Beam: one process reads the manifest, the rows asked for and (``--verify``) every file the manifest lists. The
readers (numpy, pyarrow, fsspec) are imported by the functions that read, so ``inspect --help`` loads none of them.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from pipelines.arguments import whole_number
from schemas import manifest as m
from schemas.options import DEFAULT_MAX_CHARS
from transforms.inspection.summary import DOC_MARK, plural, summary_text

if TYPE_CHECKING:
    from transforms.inspection.output import OutputDir

DESCRIPTION = (
    "Print a summary of a finished tokenmill prepare or filter output (job, inputs, tokenizer, packing, counts, "
    "files, dedup and selection), optionally decode some of its packed rows with the manifest's tokenizer (each "
    f"segment of a row after a {DOC_MARK.format(n='N')} marker, from the row's cu_seqlens; for a filter output, its "
    "documents), and optionally verify every file against the manifest. Exit code: 0, or 1 when --verify finds a "
    "mismatch, 2 when OUTPUT_DIR or an option cannot be used."
)
EPILOG = None
BEAM = False  # no Beam here: an unknown option is a typo

_count = whole_number(0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``tokenmill inspect`` (OUTPUT_DIR, --rows, --seed, --tokenizer, --max-chars, --verify)."""
    if parser.description is None:
        parser.description = DESCRIPTION
    parser.add_argument("output_dir", metavar="OUTPUT_DIR",
                        help="a finished tokenmill prepare or filter output directory (with manifest.json; local "
                             "path or fsspec URL such as s3://bucket/out or memory://out)")
    parser.add_argument("--rows", type=_count, default=0, metavar="N",
                        help="decode N packed rows (prepare) or show N documents (filter), the first N in manifest "
                             "order unless --seed is given (default: 0, none)")
    parser.add_argument("--seed", type=_count, default=None, metavar="S",
                        help="with --rows: show N rows drawn at random with this seed, in manifest order "
                             "(default: none, the first N rows)")
    parser.add_argument("--tokenizer", default=None, metavar="PATH",
                        help="tokenizer file to decode rows with (local path or fsspec URL), instead of the one the "
                             "manifest records (default: the manifest's tokenizer path)")
    parser.add_argument("--max-chars", type=_count, default=DEFAULT_MAX_CHARS, metavar="N",
                        help="show at most N characters of each decoded segment or document, noting how many were "
                             f"left out; 0 shows everything (default: {DEFAULT_MAX_CHARS})")
    parser.add_argument("--verify", action="store_true",
                        help="recompute every listed file's size, sha256 and rows (shards: also every row's "
                             "cu_seqlens and padding, and their tokens; rejected/ and modified/ files: their "
                             "records), check the manifest's totals against them, and report files the manifest "
                             "does not list; exit code 1 on any mismatch (default: off)")


def config_from_args(args: argparse.Namespace, command_line: list[str]) -> argparse.Namespace:
    """The parsed options themselves: inspect reads them as they are."""
    return args


def launch(args: argparse.Namespace, beam_args: list[str], show_progress: bool) -> int:
    """Run as ``tokenmill inspect`` does: the summary, rows and verification on stdout; the exit code."""
    return run_inspect(args)


def run_inspect(args: argparse.Namespace) -> int:
    """Run ``tokenmill inspect`` with parsed arguments: print to stdout, return the exit code."""
    from transforms.inspection.output import InspectError

    try:
        return _inspect(args)
    except InspectError as exc:
        print(f"tokenmill: error: {exc}", file=sys.stderr)
        return 2


def _inspect(args: argparse.Namespace) -> int:
    from transforms.inspection.output import InspectError, open_output

    out = open_output(args.output_dir)
    if args.seed is not None and not args.rows:
        raise InspectError("--seed chooses which rows --rows shows: give --rows N too")
    if args.tokenizer is not None and not out.packed:
        raise InspectError(f"--tokenizer: {args.output_dir} is a filter output (documents, no token shards): "
                           "its documents are shown as text")
    print(summary_text(out.manifest, args.output_dir))
    if args.rows:
        _show_rows(out, args)
    if args.verify:
        return _verify(out)
    return 0


def _show_rows(out: OutputDir, args: argparse.Namespace) -> None:
    from transforms.inspection.rows import (
        decoded_rows,
        format_document,
        format_row,
        load_decoder,
        pick_rows,
        read_rows,
        total_rows,
    )

    total = total_rows(out)
    indices = pick_rows(total, args.rows, args.seed)
    which = f"{len(indices)} of {total:,} {'rows' if out.packed else 'documents'}"
    print(f"\n{which}" + (f", drawn with seed {args.seed}" if args.seed is not None else ", the first ones"))
    if not out.packed:
        for i, entry, r, doc in read_rows(out, indices, None):
            print()
            print(format_document(i, entry, r, doc, args.max_chars))
        return
    decode, warning = load_decoder(out, args.tokenizer)
    if warning:
        print(warning)
    for row in decoded_rows(out, indices, decode):
        print()
        print(format_row(row, args.max_chars))


def _verify(out: OutputDir) -> int:
    from transforms.inspection.verify import verify_output

    problems = verify_output(out)
    man = out.manifest
    labels = ((m.K_SHARDS, "shard"), (m.K_DOCUMENTS, "document file"), (m.K_REJECTED, "rejected file"),
              (m.K_MODIFIED, "modified file"))
    what = ", ".join(plural(len(man.get(key) or []), label) for key, label in labels if man.get(key))
    print(f"\nverify: {what or 'no files'} and the manifest's totals")
    if not problems:
        print("OK: every file and total matches the manifest")
        return 0
    for p in problems:
        print(f"MISMATCH {p}")
    print(f"{len(problems)} mismatch{'es' if len(problems) != 1 else ''}: the directory does not match its manifest")
    return 1
