"""Claiming an output directory before a run: a lock, and the proof of what tokenmill may delete there.

tokenmill deletes only files it can prove it wrote: those an earlier manifest (or the journal a run leaves in its
temp folder while it replaces or commits a result) lists, and its own temp names under its own temp folder.
Anything else in the output makes the run refuse before any work, ``--overwrite`` or not, naming the first such
file. A run holds the output's lock from the check until its manifest lands (or it fails):

    lock ─► check every entry is provably ours ─► journal what will go ─► remove manifest, then the rest ─► run
    commit: journal the files it places ─► move them ─► manifest (last but the temp folder) ─► report ─► unlock

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
import re
import socket
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any, Iterator

import fsspec
from fsspec.core import url_to_fs

from schemas import manifest as m
from schemas.documents import DOCUMENTS_DIR
from schemas.shards import LOCK_FILE, MANIFEST_FILE, MODIFIED_DIR, REJECTED_DIR, SHARDS_DIR, TEMP_DIR
from transforms.output.faults import fault_point
from transforms.errors import TokenmillError

RESULT_DIRS = (SHARDS_DIR, DOCUMENTS_DIR, REJECTED_DIR, MODIFIED_DIR)
OWNED_JOURNAL = "owned.json"  # in TEMP_DIR: every file of earlier results a run is about to remove
COMMIT_JOURNAL = "commit.json"  # in TEMP_DIR: every file a commit is about to place
WRITE_PROBE = ".tokenmill-write-check"
# top-level names that are tokenmill's by name alone (temporary names and the lock)
_OURS_BY_NAME = {MANIFEST_FILE + ".tmp", m.REPORT_HTML + ".tmp", LOCK_FILE, WRITE_PROBE}
# temp names: a stream attempt's files (see prepare_stream._Attempt), the row shuffle's parts, the journals
_TEMP_NAME = re.compile(
    r"(s\d{5}-[a-z]-[0-9a-f]{12}-[^/]+|shuffle/(part|out)-[^/]+|"
    + "|".join(re.escape(n) + r"(\.tmp)?" for n in (OWNED_JOURNAL, COMMIT_JOURNAL)) + r")"
)


class OutputError(TokenmillError, ValueError):
    """A problem with --output found before any work starts."""


def output_fs(output: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem and root path (no trailing slash) of an output URL."""
    fs, path = url_to_fs(output)
    return fs, path.rstrip("/")


def read_manifest(output: str) -> dict[str, Any] | None:
    """The manifest of an output directory, or None if it has none."""
    fs, root = output_fs(output)
    path = posixpath.join(root, MANIFEST_FILE)
    if not fs.exists(path):
        return None
    with fs.open(path, "rb") as fh:
        return json.load(fh)


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    """Whether ``fs`` is this machine's disk."""
    protocol = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocol or "local" in protocol


def write_json(fs: fsspec.AbstractFileSystem, path: str, value: Any) -> None:
    """``value`` as JSON at ``path``, through a temporary name (readers see the old file or the whole new one)."""
    with fs.open(path + ".tmp", "wb") as fh:
        fh.write(json.dumps(value, indent=2).encode("utf-8", "surrogateescape") + b"\n")
    fs.mv(path + ".tmp", path)


# ----------------------------------------------------------------------------------------------------- the lock


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


# ------------------------------------------------------------------------------------------- what is ours


def manifest_files(manifest: dict[str, Any]) -> set[str]:
    """Every file (relative path) a manifest lists, itself and its report."""
    files = {MANIFEST_FILE, m.REPORT_HTML}
    for key in (m.K_SHARDS, m.K_DOCUMENTS, m.K_REJECTED, m.K_MODIFIED):
        for entry in manifest.get(key) or []:
            if isinstance(entry, dict) and isinstance(entry.get("path"), str):
                files.add(entry["path"])
    return files


def walk(fs: Any, root: str) -> Iterator[tuple[str, bool]]:
    """(relative path, is a symlink) of every file and symlink under ``root``; symlinks are not followed."""
    if is_local(fs):
        for top, dirs, files in os.walk(root):
            for name in dirs + files:
                full = os.path.join(top, name)
                link = os.path.islink(full)
                if link or name in files:
                    yield posixpath.relpath(full, root), link
        return
    for path in fs.find(root):
        yield posixpath.relpath(path, root), False


def _journal(fs: Any, root: str, name: str) -> set[str]:
    path = posixpath.join(root, TEMP_DIR, name)
    try:
        if not fs.exists(path):
            return set()
        with fs.open(path, "rb") as fh:
            value = json.load(fh)
    except (OSError, ValueError):
        return set()
    return {p for p in value.get("files", []) if isinstance(p, str)} if isinstance(value, dict) else set()


def unproven_entry(fs: Any, root: str, proven: set[str], overwrite_manifest: bool = False) -> str | None:
    """The first entry of the output (sorted) that tokenmill cannot prove it wrote, or None."""
    for rel, link in sorted(walk(fs, root)):
        if link:
            return rel + " (a symbolic link)"
        top = rel.split("/", 1)[0]
        if rel in _OURS_BY_NAME or rel in proven:
            continue
        if rel == MANIFEST_FILE and overwrite_manifest:
            continue
        if top == TEMP_DIR and "/" in rel and _TEMP_NAME.fullmatch(rel.split("/", 1)[1]):
            continue
        return rel
    return None


def claim_output(output: str, fingerprint: str, overwrite: bool, argv: list[str] | None = None) -> OutputLock:
    """Lock the output, refuse another job's result (unless ``overwrite``) and anything tokenmill did not write,
    check it is writable, and remove the earlier (partial) result; returns the lock (the caller releases it)."""
    try:
        fs, root = output_fs(output)
    except (ImportError, ValueError) as exc:
        raise OutputError(f"--output {output!r}: cannot open this location ({exc})") from exc
    if fs.exists(root) and not fs.isdir(root):
        raise OutputError(f"--output {output!r} is a file, not a directory")
    created = not fs.exists(root)
    try:
        fs.makedirs(root, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"--output {output!r} is not writable ({exc})") from exc
    try:
        lock = acquire_lock(output, argv)
    except PermissionError as exc:
        raise OutputError(f"--output {output!r} is not writable ({exc})") from exc
    try:
        _check_and_clear(fs, root, output, fingerprint, overwrite)
    except BaseException:
        lock.release()
        if created:
            try:
                fs.rmdir(root)
            except OSError:
                pass
        raise
    return lock


def _check_and_clear(fs: Any, root: str, output: str, fingerprint: str, overwrite: bool) -> None:
    manifest = None
    damaged = False
    if fs.exists(posixpath.join(root, MANIFEST_FILE)):
        try:
            manifest = read_manifest(output)
            if not isinstance(manifest, dict):
                raise ValueError(f"a JSON {type(manifest).__name__}, not an object")
        except ValueError as exc:  # includes JSONDecodeError and UnicodeDecodeError
            if not overwrite:
                raise OutputError(
                    f"--output {output!r}: its {MANIFEST_FILE} is damaged ({exc}); "
                    "pass --overwrite to replace this output, or choose another --output"
                ) from exc
            manifest, damaged = None, True
    if manifest is not None and not str(manifest.get(m.K_FORMAT, "")).startswith(m.FORMAT_PREFIX):
        raise OutputError(f"--output {output!r} holds a {MANIFEST_FILE} that tokenmill did not write (no "
                          f"{m.K_FORMAT!r} of tokenmill's); move it away or choose another --output")
    if manifest is not None and manifest.get(m.K_FINGERPRINT) != fingerprint and not overwrite:
        job = manifest.get(m.K_JOB, {}).get("argv")
        raise OutputError(
            f"--output {output!r} holds the result of another job ({' '.join(job) if job else 'unknown'}); "
            "pass --overwrite to replace it, or choose another --output"
        )
    proven = (manifest_files(manifest) if manifest is not None else set()) | _journal(fs, root, OWNED_JOURNAL) | \
        _journal(fs, root, COMMIT_JOURNAL)
    foreign = unproven_entry(fs, root, proven, overwrite_manifest=damaged)
    if foreign is not None:
        raise OutputError(
            f"--output {output!r} holds {foreign}, which tokenmill did not write (no manifest of this output lists "
            "it); tokenmill deletes only its own files, with --overwrite too: move it away or choose another "
            "--output"
        )
    try:
        probe = posixpath.join(root, WRITE_PROBE)
        with fs.open(probe, "wb") as fh:
            fh.write(b"ok")
        fs.rm(probe)
    except OSError as exc:
        raise OutputError(f"--output {output!r} is not writable ({exc})") from exc
    remove_result(fs, root, proven)


def remove_result(fs: Any, root: str, proven: set[str]) -> None:
    """Remove an earlier (partial) result: journal its files first, then the manifest (from then on the output is
    not a result), the listed files, the emptied folders, and the temp folder but for the journal."""
    temp = posixpath.join(root, TEMP_DIR)
    present = {rel for rel, _ in walk(fs, root)}
    fs.makedirs(temp, exist_ok=True)
    write_json(fs, posixpath.join(temp, OWNED_JOURNAL), {"files": sorted(proven & present)})
    for name in (MANIFEST_FILE, MANIFEST_FILE + ".tmp", m.REPORT_HTML + ".tmp"):
        path = posixpath.join(root, name)
        if fs.exists(path):
            fs.rm(path)
    for rel in sorted(proven & present):
        if rel.split("/", 1)[0] != TEMP_DIR and fs.exists(posixpath.join(root, rel)):
            fault_point("clear-file")
            fs.rm(posixpath.join(root, rel))
    remove_empty_dirs(fs, root, RESULT_DIRS)
    for rel in sorted(present):
        if rel.startswith(TEMP_DIR + "/") and rel != f"{TEMP_DIR}/{OWNED_JOURNAL}" and \
                fs.exists(posixpath.join(root, rel)):
            fs.rm(posixpath.join(root, rel))


def remove_empty_dirs(fs: Any, root: str, names: tuple[str, ...]) -> None:
    """Remove the folders ``names`` under ``root`` and their subfolders wherever no file is left in them."""
    for name in names:
        base = posixpath.join(root, name)
        if not fs.exists(base) or not fs.isdir(base):
            continue
        if is_local(fs):
            for top, _, _ in sorted(os.walk(base), key=lambda t: -len(t[0])):
                try:
                    os.rmdir(top)
                except OSError:
                    pass  # not empty: something is left in it
        elif not fs.find(base):
            fs.rm(base, recursive=True)


def remove_temp(output: str) -> None:
    """Remove the output's temp folder (only tokenmill writes there while it holds the lock)."""
    fs, root = output_fs(output)
    temp = posixpath.join(root, TEMP_DIR)
    if fs.exists(temp):
        fs.rm(temp, recursive=True)
