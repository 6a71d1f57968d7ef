"""A real Dask cluster for the tests: ``dask scheduler`` and ``dask worker --nworkers 2`` on 127.0.0.1, free ports,
started from this interpreter's environment and stopped (with their process groups) at the end."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextmanager
def dask_cluster(log_dir: Path, workers: int = 2) -> Iterator[str]:
    """The scheduler's address (HOST:PORT) of a running cluster of ``workers`` one-thread worker processes."""
    import distributed

    dask = str(Path(sys.executable).with_name("dask"))
    port = free_port()
    address = f"127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    procs = []
    try:
        for name, argv in (("scheduler", [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                          "--no-dashboard"]),
                           ("worker", [dask, "worker", f"tcp://{address}", "--nworkers", str(workers), "--nthreads",
                                       "1", "--host", "127.0.0.1", "--no-dashboard", "--death-timeout", "60"])):
            log = open(log_dir / f"dask-{name}.log", "wb")
            procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                          start_new_session=True))
            log.close()
            if name == "scheduler":
                _wait_listening(port, procs[-1], log_dir / "dask-scheduler.log")
        with distributed.Client(address, timeout=60) as client:
            client.wait_for_workers(workers, timeout=120)
        yield address
    finally:
        for proc in reversed(procs):
            _stop(proc)


def _wait_listening(port: int, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dask scheduler exited: {log.read_text()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError("dask scheduler did not start listening within 60 s")
