"""Claiming an output directory before a run: a lock, and the proof of what tokenmill may delete there.

tokenmill deletes only files it can prove it wrote: those an earlier manifest (or the journal a run leaves in its
temp folder while it replaces or commits a result) lists, and its own temp names under its own temp folder.
Anything else in the output makes the run refuse before any work, ``--overwrite`` or not, naming the first such
file. A run holds the output's lock from the check until its manifest lands (or it fails):

    lock ─► check every entry is provably ours ─► journal what will go ─► remove manifest, then the rest ─► run
    commit: journal the files it places ─► move them ─► manifest (last but the temp folder) ─► report ─► unlock

The lock itself is ``transforms.output.lock``'s.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
from typing import Any, Iterator

from schemas import manifest as m
from schemas.documents import DOCUMENTS_DIR
from schemas.shards import (
    LOCK_FILE,
    MANIFEST_FILE,
    MODIFIED_DIR,
    REJECTED_DIR,
    SHARDS_DIR,
    TEMP_DIR,
    DamagedManifestError,
    read_manifest,
)
from transforms.output.faults import fault_point
from transforms.output.location import OutputError, is_local, output_fs, write_json
from transforms.output.lock import OutputLock, acquire_lock

RESULT_DIRS = (SHARDS_DIR, DOCUMENTS_DIR, REJECTED_DIR, MODIFIED_DIR, m.DEDUP_INDEX_DIR)
OWNED_JOURNAL = "owned.json"  # in TEMP_DIR: every file of earlier results a run is about to remove
COMMIT_JOURNAL = "commit.json"  # in TEMP_DIR: every file a commit is about to place
WRITE_PROBE = ".tokenmill-write-check"
# top-level names that are tokenmill's by name alone (temporary names and the lock)
_OURS_BY_NAME = {MANIFEST_FILE + ".tmp", m.REPORT_HTML + ".tmp", LOCK_FILE, WRITE_PROBE}
# temp names: a stream attempt's files (see transforms.stream.attempts), the row shuffle's parts, the dedup index's
# files, decontam's n-gram index (transforms.filter.decontam_index.INDEX_FILE), the journals
_TEMP_NAME = re.compile(
    r"(s\d{5}-[a-z]-[0-9a-f]{12}-[^/]+|shuffle/(part|out)-[^/]+|" + re.escape(m.DEDUP_INDEX_DIR) + r"/[^/]+|"
    r"decontam-[0-9a-f]{64}\.npy|"
    + "|".join(re.escape(n) + r"(\.tmp)?" for n in (OWNED_JOURNAL, COMMIT_JOURNAL)) + r")"
)


def manifest_files(manifest: dict[str, Any]) -> set[str]:
    """Every file (relative path) a manifest lists, itself and its report."""
    files = {MANIFEST_FILE, m.REPORT_HTML}
    for key in (m.K_SHARDS, m.K_DOCUMENTS, m.K_REJECTED, m.K_MODIFIED):
        for entry in manifest.get(key) or []:
            if isinstance(entry, dict) and isinstance(entry.get(m.E_PATH), str):
                files.add(entry[m.E_PATH])
    index = manifest.get(m.K_DEDUP_INDEX)  # dedup.save_index
    entries = (index.get(m.DI_FILES) or []) if isinstance(index, dict) else []
    files.update(e[m.E_PATH] for e in entries if isinstance(e, dict) and isinstance(e.get(m.E_PATH), str))
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
        except ValueError as exc:  # includes DamagedManifestError: not JSON, or not UTF-8
            if not overwrite:
                problem = exc.reason if isinstance(exc, DamagedManifestError) else exc
                raise OutputError(
                    f"--output {output!r}: its {MANIFEST_FILE} is damaged ({problem}); "
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
