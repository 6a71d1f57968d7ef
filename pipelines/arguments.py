"""Command-line pieces several commands use: argument types, the Beam pass-through epilog, the format options."""

from __future__ import annotations

import argparse
from typing import Callable

from schemas.options import FORMATS

EPILOG_BEAM = """\
Any option not listed here is passed to Apache Beam as a pipeline option, so the same command scales out:
  --runner DataflowRunner --project P --region R --temp_location gs://...   (Dataflow)
  --runner PortableRunner --job_endpoint=embed --environment_type=LOOPBACK  (local portable runner)
  --runner dask --dask-address HOST:PORT   (a Dask cluster's scheduler; Slurm/PBS through dask-jobqueue)
  --runner dask --dask-workers N           (a local Dask cluster of N processes, started for the run)
The default runner is Beam's local FnApiRunner; --workers N runs N local worker processes.
"""


def whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number (underscores allowed) of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text.replace("_", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a number >= {minimum}, got {value}")
        return value

    return parse


positive = whole_number(1)


def byte_size(text: str) -> int:
    """A size such as 500MB, 2GB or 1000000 (bytes; K/M/G/T powers of 1000, KiB/MiB/GiB powers of 1024)."""
    units = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "K": 10**3, "M": 10**6,
             "G": 10**9, "T": 10**12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
    s = text.strip().upper().replace("_", "")
    number = s.rstrip("KMGTIB")
    unit = s[len(number):]
    try:
        value = float(number) * units[unit]
    except (ValueError, KeyError):
        raise argparse.ArgumentTypeError(f"expected a size such as 500MB or 2GB, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive size, got {text!r}")
    return int(value)


def add_format_and_text_field(ap: argparse._ActionsContainer) -> None:
    """--input-format and --text-field (prepare, filter, stats, eval-tokenizer, train-classifier)."""
    ap.add_argument("--input-format", choices=FORMATS, default=None,
                    help="read every input as this format instead of deciding by file name")
    ap.add_argument("--text-field", default="text", help="field/column holding the document text (default: text)")
