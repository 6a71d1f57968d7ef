"""The lock on an output directory, held from the claim until the manifest lands (or the run fails).

The lock is ``.tokenmill.lock`` in the output, created atomically (``O_CREAT`` + ``flock`` on local disk, so
the kernel frees it when its holder dies; ``open(mode="xb")`` on fsspec stores that offer exclusive create). It
records the holder's host, pid, start time and command; a lock left by a dead process of this host is taken over,
any other is refused with one line naming its holder.
"""

from __future__ import annotations

import errno
import json
import os
import posixpath
import socket
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any

from schemas.shards import LOCK_FILE
from transforms.output.location import OutputError, is_local, output_fs


@dataclass
class OutputLock:
    """The lock on one output directory, held until ``release()``."""

    fs: Any
    path: str
    holder: dict[str, Any]
    fd: int | None = None  # local disk: the flock'ed descriptor
    took_over: dict[str, Any] | None = None  # the record of a dead holder whose lock this one replaced

    def release(self) -> None:
        """Remove the lock file (while still holding it, so no other run can take a half-removed lock)."""
        try:
            if self.fd is not None:
                try:
                    if os.fstat(self.fd).st_ino == os.stat(self.path).st_ino:
                        os.unlink(self.path)
                except FileNotFoundError:
                    pass
                os.close(self.fd)
                self.fd = None
            elif _read_holder(self.fs, self.path).get("token") == self.holder["token"]:
                self.fs.rm(self.path)
        except OSError:
            pass  # the lock is gone with its process either way (local), or names a dead holder (stores)

    def __enter__(self) -> "OutputLock":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def holder_record(argv: list[str] | None = None) -> dict[str, Any]:
    """Who takes a lock: host, pid, start time (UTC), command and a unique token."""
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "command": " ".join(argv or sys.argv), "token": uuid.uuid4().hex}


def describe_holder(holder: dict[str, Any]) -> str:
    """'pid 12 on host h since ...: tokenmill prepare ...' (or what is known of it)."""
    if not holder.get("pid"):
        return "a run that is just starting"
    text = f"pid {holder['pid']} on host {holder.get('host', '?')} since {holder.get('started', '?')}"
    command = str(holder.get("command") or "")
    return f"{text}: {command[:120]}" if command else text


def acquire_lock(output: str, argv: list[str] | None = None) -> OutputLock:
    """Take the output's lock (the directory must exist) or raise OutputError naming the run that holds it."""
    fs, root = output_fs(output)
    path = posixpath.join(root, LOCK_FILE)
    holder = holder_record(argv)
    if is_local(fs):
        return _acquire_local(fs, path, holder, output)
    return _acquire_store(fs, path, holder, output)


def _refusal(output: str, holder: dict[str, Any], path: str) -> OutputError:
    return OutputError(f"--output {output!r} is in use by another tokenmill run ({describe_holder(holder)}); wait "
                       f"for it to finish or choose another --output (if that run is gone, delete {path})")


def _acquire_local(fs: Any, path: str, holder: dict[str, Any], output: str) -> OutputLock:
    import fcntl

    for _ in range(100):  # retried only when a finishing holder removed the file between our open and flock
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise _refusal(output, _read_holder(fs, path), path) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            continue
        earlier = _read_fd(fd)  # a record here is a dead holder's: a live one would still hold the flock
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode("utf-8", "surrogateescape") + b"\n", 0)
        return OutputLock(fs, path, holder, fd=fd, took_over=earlier or None)
    raise OutputError(f"--output {output!r}: could not take the lock {path}")


def _acquire_store(fs: Any, path: str, holder: dict[str, Any], output: str) -> OutputLock:
    data = json.dumps(holder).encode("utf-8", "surrogateescape") + b"\n"
    took_over = None
    for _ in range(2):
        try:
            with fs.open(path, "xb") as fh:
                fh.write(data)
            return OutputLock(fs, path, holder, took_over=took_over)
        except FileExistsError:
            current = _read_holder(fs, path)
            if not _dead_here(current):
                raise _refusal(output, current, path) from None
            fs.rm(path)  # its holder ran on this host and is gone: take its place
            took_over = current
        except (NotImplementedError, ValueError):  # no exclusive create on this store: check, then write
            current = _read_holder(fs, path) if fs.exists(path) else {}
            if current and not _dead_here(current):
                raise _refusal(output, current, path) from None
            with fs.open(path, "wb") as fh:
                fh.write(data)
            return OutputLock(fs, path, holder, took_over=current or None)
    raise _refusal(output, _read_holder(fs, path), path)


def _dead_here(holder: dict[str, Any]) -> bool:
    """Whether a lock's holder ran on this host and its process no longer exists."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _read_fd(fd: int) -> dict[str, Any]:
    try:
        value = json.loads(os.pread(fd, 1 << 16, 0) or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _read_holder(fs: Any, path: str) -> dict[str, Any]:
    try:
        with fs.open(path, "rb") as fh:
            value = json.loads(fh.read(1 << 16) or b"{}")
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
