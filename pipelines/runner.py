"""How a command's Beam pipeline runs: its options, the local runner and its worker processes, the progress display.

Beam (and the input planning, with fsspec) is imported inside the functions that use it: every command module
imports this one, and ``tokenmill COMMAND --help`` must answer without loading either.
"""

from __future__ import annotations

import shlex
import shutil
import sys
import tempfile
from typing import Any, Callable, TypeVar

from transforms.errors import TokenmillError
from transforms.report.progress import ProgressDisplay

LOCAL_RUNNERS = ("FnApiRunner", "DirectRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner")

Result = TypeVar("Result")


def runner_name(args: list[str]) -> str | None:
    """The --runner named in Beam arguments, if any."""
    for i, a in enumerate(args):
        if a.startswith("--runner="):
            return a.split("=", 1)[1]
        if a == "--runner" and i + 1 < len(args):
            return args[i + 1]
    return None


DASK_RUNNER = "pipelines.dask_runner.DaskRunner"  # --runner dask
DASK_FLAGS = {"--dask-address": "--dask_client_address", "--dask-workers": "--dask_workers",
              "--dask-partitions": "--dask_npartitions"}


class RunnerOptionError(TokenmillError, ValueError):
    """A runner option that cannot work (a Dask option without --runner dask, a missing value)."""


def beam_arguments(args: list[str]) -> list[str]:
    """The Beam arguments as Beam reads them: ``--runner dask`` names tokenmill's Dask runner, ``--dask-address``,
    ``--dask-workers`` and ``--dask-partitions`` become its options, ``--job_endpoint embed`` is spelled with ``=``."""
    out: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        name, eq, value = a.partition("=")
        if name in (*DASK_FLAGS, "--runner", "--job_endpoint") and not eq:
            if i + 1 >= len(args) or args[i + 1].startswith("--"):
                raise RunnerOptionError(f"{name} needs a value")
            value, i = args[i + 1], i + 1
        if name == "--runner" and value.lower() == "dask":
            a = f"--runner={DASK_RUNNER}"
        elif name in DASK_FLAGS:
            a = f"{DASK_FLAGS[name]}={value}"
        elif name in ("--runner", "--job_endpoint"):
            a = f"{name}={value}"
        out.append(a)
        i += 1
    dask = [a.partition("=")[0] for a in out if a.startswith("--dask_")]
    if dask and runner_name(out) != DASK_RUNNER:
        flag = next(k for k, v in DASK_FLAGS.items() if v == dask[0])
        raise RunnerOptionError(f"{flag} is an option of the Dask runner: add --runner dask")
    return out


def embedded(args: list[str]) -> bool:
    """Whether Beam surely runs in this process on a local runner with one worker, told from the flags alone (no
    Beam import): no other runner, no ``--direct_*`` flag asking for more workers or another mode."""
    return (runner_name(args) or "FnApiRunner") in LOCAL_RUNNERS and not any(
        a.startswith(("--direct_num_workers", "--direct_running_mode")) for a in args)


def is_local(args: list[str]) -> bool:
    """Whether workers run on this machine (so progress can be shown)."""
    runner = runner_name(args) or "FnApiRunner"
    return runner in LOCAL_RUNNERS or (runner == "PortableRunner" and ("--job_endpoint=embed" in args or any(
        a == "--job_endpoint" and b == "embed" for a, b in zip(args, args[1:]))))


DASK_FILES_MAX_BYTES = 32 << 30  # Dask: up to this much input, dedup is resolved from key files in one step


def shares_files(args: list[str], input_bytes: int) -> bool:
    """Whether the job's steps hand each other files in the output's temp folder (dedup keys resolved in one step
    from compact key files, ~193 bytes a document; lines counted from key files; shuffle parts as files) rather
    than through the runner's shuffle: on local runners, and on Dask (whose workers share a filesystem) up to
    ``DASK_FILES_MAX_BYTES`` of input, past which one worker would hold too many keys."""
    return is_local(args) or (runner_name(args) == DASK_RUNNER and input_bytes <= DASK_FILES_MAX_BYTES)


def beam_options(beam_args: list[str], workers: int) -> Any:
    """Pipeline options: the user's Beam flags, FnApiRunner by default, --workers as local processes."""
    from apache_beam.options.pipeline_options import PipelineOptions

    args = list(beam_args)
    if runner_name(args) == DASK_RUNNER:
        import pipelines.dask_runner  # noqa: F401  (its options: --dask_client_address, --dask_workers)
    if runner_name(args) is None:
        args.append("--runner=FnApiRunner")
    if workers > 1 and runner_name(args) in LOCAL_RUNNERS:
        args.append(f"--direct_num_workers={workers}")
        if runner_name(args) != "FnApiRunner":  # FnApiRunner gets its worker processes from local_runner()
            args.append("--direct_running_mode=multi_processing")
    if not any(a.startswith("--default_sdk_harness_log_level") for a in args):
        args.append("--default_sdk_harness_log_level=WARNING")
    return PipelineOptions(args)


def local_runner(beam_args: list[str], workers: int) -> Any:
    """The runner instance for a local multi-process run (``--workers N``), else None (Beam picks by name).

    Worker processes start through ``pipelines.worker`` (Beam's harness with quiet logging), one per worker.
    """
    if workers <= 1 or (runner_name(beam_args) or "FnApiRunner") != "FnApiRunner":
        return None
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    from apache_beam.transforms.environments import SubprocessSDKEnvironment

    command = f"exec {shlex.quote(sys.executable)} -m pipelines.worker"  # exec: no shell between (Ctrl-C)
    return FnApiRunner(default_environment=SubprocessSDKEnvironment.from_command_string(command))


def pipeline(beam_args: list[str], workers: int) -> Any:
    """A ``beam.Pipeline`` on the runner and options the user's Beam flags and ``--workers`` ask for."""
    import apache_beam as beam

    return beam.Pipeline(runner=local_runner(beam_args, workers), options=beam_options(beam_args, workers))


def in_process(beam_args: list[str], workers: int) -> bool:
    """Whether the whole run happens in this process on one worker (the embedded default)."""
    if workers > 1 or (runner_name(beam_args) or "FnApiRunner") not in LOCAL_RUNNERS:
        return False
    from apache_beam.options.pipeline_options import PipelineOptions

    options = PipelineOptions(beam_args).get_all_options()
    return (options.get("direct_num_workers") or 1) == 1 and options.get("direct_running_mode") in (None, "in_memory")


def template_location(options: Any) -> str | None:
    """Where a Dataflow template launch writes the job description (``--template_location``), else None."""
    from apache_beam.options.pipeline_options import GoogleCloudOptions

    return options.view_as(GoogleCloudOptions).template_location


def was_interrupted(exc: BaseException) -> bool:
    """Whether an exception is, or was raised while handling, a Ctrl-C (Beam re-raises it as a RuntimeError)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt) or str(exc).startswith("KeyboardInterrupt"):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def run_with_progress(run: Callable[..., Result], cfg: Any, beam_args: list[str], show_progress: bool) -> Result:
    """``run(cfg, beam_args)``, with a live progress line on a terminal for local runs (``cfg``: a config with
    ``inputs`` and ``input_format``; ``run`` takes ``progress_dir``, where the workers report)."""
    if not (show_progress and sys.stderr.isatty() and is_local(beam_args)):
        return run(cfg, beam_args)
    from transforms.read.sources import expand_inputs

    progress_dir = tempfile.mkdtemp(prefix="tokenmill-progress-")
    try:
        total = sum(f.size for f in expand_inputs(cfg.inputs, cfg.input_format))
        with ProgressDisplay(progress_dir, total, None):
            return run(cfg, beam_args, progress_dir=progress_dir)
    finally:
        shutil.rmtree(progress_dir, ignore_errors=True)
