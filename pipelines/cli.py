"""The ``tokenmill`` command line: a registry of commands, each a module of ``pipelines`` with the same interface.

A command module has ``HELP``, ``DESCRIPTION`` and ``EPILOG`` (its help texts), ``BEAM`` (whether the options it does
not define are Beam pipeline options, else they are an error), ``add_arguments(parser)`` (Beam-free, so ``--help``
loads no Beam), ``config_from_args(args, command_line)`` and ``launch(config, beam_args, show_progress)``, which runs
the command, prints its summary and returns the exit code.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from types import ModuleType
from typing import Sequence

from pipelines import demo, eval_tokenizer, export_megatron, inspect_output, prepare, stats, tokenmill_version
from pipelines import filter as filter_command
from pipelines import train_classifier, train_tokenizer
from pipelines.runner import beam_arguments, was_interrupted
from transforms.errors import TokenmillError

COMMANDS: dict[str, ModuleType] = {
    "prepare": prepare,
    "filter": filter_command,
    "train-tokenizer": train_tokenizer,
    "demo": demo,
    "train-classifier": train_classifier,
    "export-megatron": export_megatron,
    "eval-tokenizer": eval_tokenizer,
    "stats": stats,
    "inspect": inspect_output,
}
INTERRUPTED = "tokenmill: interrupted; the output has no manifest and is not a result (rerun to finish)"


def build_parser() -> argparse.ArgumentParser:
    """The full command-line parser: one subcommand per registered command."""
    ap = argparse.ArgumentParser(
        prog="tokenmill",
        description="Turn raw text corpora into training-ready packed token shards with Apache Beam.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'tokenmill COMMAND --help' for a command's options.",
    )
    ap.add_argument("--version", action="version", version=f"tokenmill {tokenmill_version()}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in COMMANDS.items():
        command.add_arguments(sub.add_parser(name, help=command.HELP, description=command.DESCRIPTION,
                                             epilog=command.EPILOG,
                                             formatter_class=argparse.RawDescriptionHelpFormatter))
    return ap


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
    parser = build_parser()
    args, beam_args = parser.parse_known_args(argv)
    stray = [a for a in beam_args if not a.startswith("-")]
    if stray and not any(a.startswith("--") for a in beam_args):
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    command = COMMANDS[args.command]
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
