"""The ``tokenmill`` command line: a registry of commands, each a module of ``pipelines`` with the same interface.

The registry names each command's module and its one-line help. A command module has ``DESCRIPTION`` and ``EPILOG``
(its help texts; the epilog may be a function, called only when the help is shown), ``BEAM`` (whether the options it
does not define are Beam pipeline options, else they are an error), ``add_arguments(parser)`` (Beam-free, so
``--help`` loads no Beam), ``config_from_args(args, command_line)`` and ``launch(config, beam_args, show_progress)``,
which runs the command, prints its summary and returns the exit code.

Only the command being run is imported, and only its options are built: ``tokenmill --help`` and an argument error
answer in a tenth of a second instead of the most of a second that importing every command (and the numpy, pyarrow,
fsspec and tokenizers they use) would take. The command modules import those inside the functions that run a job.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import threading
from types import ModuleType
from typing import Any, Collection, NamedTuple, Sequence

from pipelines.runner import beam_arguments, was_interrupted
from transforms.errors import TokenmillError


class Command(NamedTuple):
    """A registered command: the module that implements it and its one-line help (``tokenmill --help``)."""

    module: str
    help: str


COMMANDS: dict[str, Command] = {
    "prepare": Command("pipelines.prepare", "tokenize a corpus and pack it into Parquet shards with a manifest"),
    "filter": Command("pipelines.filter", "filter and deduplicate a corpus by a recipe: kept documents as Parquet, "
                                          "dropped ones with reasons"),
    "train-tokenizer": Command("pipelines.train_tokenizer",
                               "train a byte-level BPE tokenizer on a deterministic sample of a corpus"),
    "demo": Command("pipelines.demo", "build a corpus from this Python's standard library, train a small tokenizer, "
                                      "run prepare on it"),
    "train-classifier": Command("pipelines.train_classifier",
                                "train a fastText quality classifier (DCLM style) on positive and negative documents"),
    "export-megatron": Command("pipelines.export_megatron",
                               "write a prepare output as a Megatron-LM indexed dataset (PREFIX.bin + PREFIX.idx)"),
    "eval-tokenizer": Command("pipelines.eval_tokenizer", "compare tokenizers: compression per language and source, "
                                                          "parity premium, vocabulary checks"),
    "stats": Command("pipelines.stats",
                     "corpus statistics: sizes, length distributions, quality signals, duplicates, frequent lines"),
    "inspect": Command("pipelines.inspect_output",
                       "summarise a prepare/filter output, decode rows, verify checksums and counts"),
}
INTERRUPTED = "tokenmill: interrupted; the output has no manifest and is not a result (rerun to finish)"


def command_module(name: str) -> ModuleType:
    """The module of a registered command, imported now."""
    return importlib.import_module(COMMANDS[name].module)


class CommandParser(argparse.ArgumentParser):
    """A command's parser, whose epilog may be a function: called when the help is shown, not when it is parsed
    (prepare's and filter's list the recipe stages, whose modules are imported for it)."""

    def format_help(self) -> str:
        """The help text, with the epilog computed first if it is a function."""
        if callable(self.epilog):
            self.epilog = self.epilog()
        return super().format_help()


class _Version(argparse._VersionAction):
    """--version, with the installed version read only when asked for (importlib.metadata takes ~40 ms)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        from pipelines import tokenmill_version

        self.version = f"tokenmill {tokenmill_version()}"
        super().__call__(parser, namespace, values, option_string)


def build_parser(built: Collection[str] | None = None) -> argparse.ArgumentParser:
    """The command-line parser: one subcommand per registered command, with the options of those in ``built``
    (default: every command's); the others have their help line only, and their modules are not imported."""
    ap = argparse.ArgumentParser(
        prog="tokenmill",
        description="Turn raw text corpora into training-ready packed token shards with Apache Beam.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'tokenmill COMMAND --help' for a command's options.",
    )
    ap.add_argument("--version", action=_Version)
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=CommandParser)
    for name, entry in COMMANDS.items():
        if built is not None and name not in built:
            sub.add_parser(name, help=entry.help)
            continue
        command = command_module(name)
        command.add_arguments(sub.add_parser(name, help=entry.help, description=command.DESCRIPTION,
                                             epilog=command.EPILOG,
                                             formatter_class=argparse.RawDescriptionHelpFormatter))
    return ap


def named_command(argv: Sequence[str]) -> list[str]:
    """The command an argument list runs, as argparse will find it (its first argument that is not an option: the
    top-level options take no value), when it is one; else none."""
    first = next((a for a in argv if not a.startswith("-")), None)
    return [first] if first in COMMANDS else []


def _quiet_logs(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if verbose:
        os.environ.setdefault("TOKENMILL_WORKER_LOG_LEVEL", "INFO")  # read by pipelines.worker (--workers N)
    else:
        # a failing stage re-raises its exception to main(), which reports it once; Beam's own log copy is noise
        logging.getLogger("apache_beam").setLevel(logging.CRITICAL)
        for name in ("root", "absl"):
            logging.getLogger(name).setLevel(logging.ERROR)
        logging.getLogger().setLevel(logging.ERROR)
        logging.getLogger("transforms").setLevel(logging.WARNING)


def user_error(exc: BaseException) -> tuple[str, int] | None:
    """The one-line message and exit code of an error a user can fix, found even inside Beam's wrapped exceptions."""
    from transforms.output.commit import IncompleteResultError
    from transforms.read.gzip_members import WarcCutError
    from transforms.read.readers import BadRecordError

    marked = (BadRecordError, IncompleteResultError, WarcCutError)  # raised in workers: Beam hands them back inside its own text
    if isinstance(exc, TokenmillError) and not isinstance(exc, marked):
        return str(exc), exc.exit_code
    text = str(exc)
    for error in marked:
        if error.PREFIX in text:
            return error.PREFIX + text.split(error.PREFIX, 1)[1].splitlines()[0].strip().strip("\"'"), error.exit_code
    return None


_INTERRUPTED = threading.Event()


def _quiet_after_interrupt() -> None:
    """After a Ctrl-C, the runner's threads that watch the (stopping) workers die without their tracebacks."""
    if getattr(threading.excepthook, "tokenmill", False):
        return
    original = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        if not _INTERRUPTED.is_set():
            original(args)

    hook.tokenmill = True  # type: ignore[attr-defined]
    threading.excepthook = hook


def _interrupted(signum: int, frame: object) -> None:
    _INTERRUPTED.set()
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tokenmill`` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if threading.current_thread() is not threading.main_thread():
        return _main(argv)
    previous = signal.signal(signal.SIGINT, _interrupted)
    _quiet_after_interrupt()
    _INTERRUPTED.clear()
    try:
        return _main(argv)
    finally:
        signal.signal(signal.SIGINT, previous)


def _main(argv: list[str]) -> int:
    _quiet_logs("--verbose" in argv or "-v" in argv)
    parser = build_parser(named_command(argv))  # only the command being run: its module, its options
    args, beam_args = parser.parse_known_args(argv)
    stray = [a for a in beam_args if not a.startswith("-")]
    if stray and not any(a.startswith("--") for a in beam_args):
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    command = command_module(args.command)
    if beam_args and not command.BEAM:  # no Beam here: an unknown option is a typo, not a pipeline option
        parser.error(f"unrecognized arguments: {' '.join(beam_args)}")
    try:
        config = command.config_from_args(args, ["tokenmill", *argv])
        beam_args = beam_arguments(beam_args)  # --runner dask and its options, as Beam reads them
        return command.launch(config, beam_args, not getattr(args, "no_progress", False))  # (no Beam: no option)
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return 130
    except Exception as exc:  # user errors get one clear line; anything else keeps its traceback
        if was_interrupted(exc):
            print(INTERRUPTED, file=sys.stderr)
            return 130
        found = user_error(exc)
        if found is None:
            raise
        message, code = found
        print(f"tokenmill: error: {message.removeprefix('tokenmill: ')}", file=sys.stderr)
        return code


def console() -> None:
    """The ``tokenmill`` program: run main() and exit; after a Ctrl-C, exit at once with 130.

    The interrupted run has already removed its temp files and said so; tearing the interpreter down while the
    runner's threads (gRPC, worker watchers) are still stopping can crash it (SIGSEGV instead of 130), so the
    process ends here without that teardown.
    """
    code = main()
    if code == 130 and _INTERRUPTED.is_set():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    sys.exit(code)


if __name__ == "__main__":
    console()
