"""The output directory's life cycle: check and clear it before a run; commit shards and the manifest after.

A directory is a result only once ``manifest.json`` exists; it is removed first and written last.
"""

from __future__ import annotations

import json
import posixpath
import time
from typing import Any

import fsspec
from fsspec.core import url_to_fs

from schemas import manifest as m
from schemas.documents import DOCUMENT_NAME, DOCUMENTS_DIR
from schemas.manifest import SOURCE_FIELDS, STAGE_DEDUP, STAGE_PACK, STAGE_SELECT, Counts
from schemas.shards import (
    BUCKET_DIR,
    LENGTH_DIR,
    MANIFEST_FILE,
    MODIFIED_DIR,
    REJECTED_DIR,
    REJECTED_NAME,
    SHARD_NAME,
    SHARDS_DIR,
    TEMP_DIR,
)
from transforms.scoring import MIN_SCORE

_RESULT_DIRS = (SHARDS_DIR, DOCUMENTS_DIR, REJECTED_DIR, MODIFIED_DIR)
_OURS = {MANIFEST_FILE, TEMP_DIR, MANIFEST_FILE + ".tmp", m.REPORT_HTML, m.REPORT_HTML + ".tmp", *_RESULT_DIRS}


class OutputError(ValueError):
    """A problem with --output found before any work starts."""


def _fs(output: str) -> tuple[fsspec.AbstractFileSystem, str]:
    fs, path = url_to_fs(output)
    return fs, path.rstrip("/")


def read_manifest(output: str) -> dict[str, Any] | None:
    """The manifest of an output directory, or None if it has none."""
    fs, root = _fs(output)
    path = posixpath.join(root, MANIFEST_FILE)
    if not fs.exists(path):
        return None
    with fs.open(path, "rb") as fh:
        return json.load(fh)


def prepare_output(output: str, fingerprint: str, overwrite: bool) -> None:
    """Refuse another job's output (unless overwrite), check writability, remove any earlier (partial) result."""
    try:
        fs, root = _fs(output)
    except (ImportError, ValueError) as exc:
        raise OutputError(f"--output {output!r}: cannot open this location ({exc})") from exc
    if fs.exists(root):
        if not fs.isdir(root):
            raise OutputError(f"--output {output!r} is a file, not a directory")
        entries = {posixpath.basename(p.rstrip("/")) for p in fs.ls(root, detail=False)}
        manifest = None
        if MANIFEST_FILE in entries:
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
                manifest = None
        if manifest is not None and manifest.get(m.K_FINGERPRINT) != fingerprint and not overwrite:
            job = manifest.get(m.K_JOB, {}).get("argv")
            raise OutputError(
                f"--output {output!r} holds the result of another job ({' '.join(job) if job else 'unknown'}); "
                "pass --overwrite to replace it, or choose another --output"
            )
        foreign = sorted(entries - _OURS)
        if foreign and not overwrite:
            raise OutputError(
                f"--output {output!r} is not empty and is not a tokenmill output (it holds {', '.join(foreign[:5])}); "
                "choose an empty or new directory, or pass --overwrite to write beside those files"
            )
    try:
        fs.makedirs(root, exist_ok=True)
        probe = posixpath.join(root, ".tokenmill-write-check")
        with fs.open(probe, "wb") as fh:
            fh.write(b"ok")
        fs.rm(probe)
    except OSError as exc:
        raise OutputError(f"--output {output!r} is not writable ({exc})") from exc
    # the manifest goes first: from here on the directory is not a result until the new manifest lands
    for name in (MANIFEST_FILE, MANIFEST_FILE + ".tmp", m.REPORT_HTML, m.REPORT_HTML + ".tmp", *_RESULT_DIRS,
                 TEMP_DIR):
        path = posixpath.join(root, name)
        if fs.exists(path):
            fs.rm(path, recursive=True)


def commit(results: list[dict[str, Any]], output: str, manifest_base: dict[str, Any], started: float,
           selection: dict[str, Any] | None = None, shuffled: list[dict[str, Any]] | None = None) -> dict:
    """Rename temp shards, document files and rejected files into place in stream order; write manifest.json last."""
    fs, root = _fs(output)
    results = sorted(results, key=lambda r: r["stream"])
    placed: dict[str, list[dict[str, Any]]] = {d: [] for d in _RESULT_DIRS}
    names = {SHARDS_DIR: SHARD_NAME, DOCUMENTS_DIR: DOCUMENT_NAME, REJECTED_DIR: REJECTED_NAME,
             MODIFIED_DIR: REJECTED_NAME}
    counts = Counts()
    backends: dict[str, int] = {}
    notes: list[str] = []

    in_dir: dict[str, int] = {}  # files placed so far per directory (a bucket partition numbers its own)

    def place(kind: str, item: dict[str, Any]) -> None:
        directory = kind if "bucket" not in item else posixpath.join(kind, f"{BUCKET_DIR}={item['bucket']:02d}")
        if kind == SHARDS_DIR and "seq_len" in item:  # decompose: a directory per row length
            directory = posixpath.join(directory, f"{LENGTH_DIR}={item['seq_len']:05d}")
        index = in_dir.get(directory, 0)
        in_dir[directory] = index + 1
        rel = posixpath.join(directory, names[kind].format(index=index))
        fs.makedirs(posixpath.join(root, directory), exist_ok=True)
        fs.mv(_path(fs, item["temp_url"]), posixpath.join(root, rel))
        placed[kind].append({"path": rel, **{k: v for k, v in item.items() if k != "temp_url"}})

    for r in results:
        counts.merge(Counts.from_dict(r["counts"]))
        if r["backend"]:
            backends[r["backend"]] = backends.get(r["backend"], 0) + 1
        if r["backend_note"]:
            notes.append(r["backend_note"])
        for kind, key in ((SHARDS_DIR, "shards"), (DOCUMENTS_DIR, "documents"), (REJECTED_DIR, "rejected"),
                          (MODIFIED_DIR, "modified")):
            if kind == SHARDS_DIR and shuffled is not None:
                continue  # the shuffled shards replace the streams' own
            for item in r.get(key, []):
                place(kind, item)
    for item in shuffled or []:
        place(SHARDS_DIR, item)
    _remove_stale(fs, root, {x["path"] for files in placed.values() for x in files})
    temp = posixpath.join(root, TEMP_DIR)
    if fs.exists(temp):
        fs.rm(temp, recursive=True)
    manifest = dict(manifest_base)
    manifest[m.K_COUNTS] = counts.totals()
    manifest[m.K_SOURCES] = source_counts(counts, manifest_base.get(m.K_INPUTS) or [])
    if selection is not None:
        manifest[m.K_SELECTION] = selection
    manifest[m.K_STREAMS] = len(results)
    if m.K_TOKENIZER in manifest:  # a packed result (prepare)
        manifest[m.K_TOKENIZER] = dict(manifest[m.K_TOKENIZER], backend=_backend_name(backends),
                                       backend_streams=backends)
        if notes:
            manifest[m.K_TOKENIZER]["backend_notes"] = notes[:20]
        manifest[m.K_SHARDS] = placed[SHARDS_DIR]
        manifest[m.K_PACKING_STATS] = packing_stats(counts, placed[SHARDS_DIR])
    if placed[DOCUMENTS_DIR] or manifest_base.get(m.K_FORMAT) == m.DOCUMENTS_FORMAT:
        manifest[m.K_DOCUMENTS] = placed[DOCUMENTS_DIR]
    manifest[m.K_REJECTED] = placed[REJECTED_DIR]
    if placed[MODIFIED_DIR]:
        manifest[m.K_MODIFIED] = placed[MODIFIED_DIR]
    recipe = manifest.get(m.K_RECIPE)
    if recipe and (recipe["dedup"]["exact"] or recipe["dedup"].get("minhash")):
        manifest[m.K_DEDUP] = dedup_summary(counts, recipe)
    manifest[m.K_WALL_TIME] = round(time.time() - started, 3)
    manifest[m.K_STAGE_SECONDS] = {k: round(v, 3) for k, v in counts.to_dict()["stage_seconds"].items()}
    if counts.records != counts.docs_written + counts.rejected_total() or not sources_add_up(counts):
        raise RuntimeError(f"tokenmill: internal error: counts do not add up: {counts.to_dict()}")
    tmp = posixpath.join(root, MANIFEST_FILE + ".tmp")
    with fs.open(tmp, "wb") as fh:
        fh.write(json.dumps(manifest, indent=2, sort_keys=False).encode() + b"\n")
    fs.mv(tmp, posixpath.join(root, MANIFEST_FILE))
    write_report(fs, root, manifest)
    return manifest


def write_report(fs: Any, root: str, manifest: dict[str, Any]) -> None:
    """report.html beside manifest.json (after it, by the same step, so every finished run has one on any runner),
    through a temporary name like the manifest."""
    from transforms.run_report import render_run_html

    path = posixpath.join(root, m.REPORT_HTML)
    with fs.open(path + ".tmp", "wb") as fh:
        fh.write(render_run_html(manifest).encode("utf-8"))
    fs.mv(path + ".tmp", path)


def packing_stats(counts: Counts, shards: list[dict[str, Any]]) -> dict[str, Any]:
    """Padding and cut documents; for decompose, sequences and tokens per length and the curriculum (batch
    multipliers keeping tokens per batch constant, and sampling odds proportional to each length's tokens, so
    that every length runs out at the same time)."""
    slots = counts.tokens + counts.pad_tokens
    stats: dict[str, Any] = {"padding_fraction": round(counts.pad_tokens / slots, 6) if slots else 0.0,
                             "documents_split": counts.docs_split}
    lengths: dict[int, list[int]] = {}
    for shard in shards:
        if "seq_len" in shard:
            row = lengths.setdefault(shard["seq_len"], [0, 0])
            row[0] += shard["rows"]
            row[1] += shard["tokens"]
    if lengths:
        longest = max(lengths)
        total = sum(t for _, t in lengths.values()) or 1
        stats["remainder_tokens_dropped"] = counts.tokens_dropped
        stats["lengths"] = {str(n): {"sequences": s, "tokens": t} for n, (s, t) in sorted(lengths.items())}
        stats["curriculum"] = {
            "batch_multipliers": {str(n): longest // n for n in sorted(lengths)},
            "sampling_odds": {str(n): round(t / total, 6) for n, (_, t) in sorted(lengths.items())},
        }
    return stats


def source_counts(counts: Counts, inputs: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """The manifest's ``sources`` section: every input file (in the order of ``inputs``) with its SOURCE_FIELDS."""
    sources = counts.to_dict()["sources"]
    out = {f["url"]: sources.pop(f["url"], dict.fromkeys(SOURCE_FIELDS, 0)) for f in inputs}
    out.update(sources)  # none expected: every record comes from a listed input; kept so that the sums still hold
    return out


def sources_add_up(counts: Counts) -> bool:
    """Whether the per-source counts add up to the totals, and each source's records to its written + rejected."""
    rows = counts.sources.values()
    totals = {"records": counts.records, "docs_written": counts.docs_written,
              "docs_rejected": counts.rejected_total(), "tokens": counts.tokens, "bytes_read": counts.bytes_read,
              "text_chars": counts.text_chars}
    return (all(sum(r[k] for r in rows) == n for k, n in totals.items())
            and all(r["records"] == r["docs_written"] + r["docs_rejected"] for r in rows))


def dedup_summary(counts: Counts, recipe: dict[str, Any] | None = None) -> dict[str, Any]:
    """Duplicates found, and their share of the documents that reached deduplication: those no earlier stage
    rejected (reading, the filters, and a ``min_score`` selection, which decides as each document is scored);
    ``recipe``: the manifest's recipe section. Selection by budget, fraction or bucket, and packing come after."""
    found = {k.split("/", 1)[1]: v for k, v in counts.docs_rejected.items() if k.startswith(f"{STAGE_DEDUP}/")}
    total = sum(found.values())
    later = {STAGE_DEDUP, STAGE_PACK}
    if MIN_SCORE not in ((recipe or {}).get("select") or {}):
        later.add(STAGE_SELECT)
    # "<stage>/<reason>" keys name their stage; bare keys are the reader's rejections (the first stage)
    earlier = sum(n for k, n in counts.docs_rejected.items() if "/" not in k or k.partition("/")[0] not in later)
    considered = counts.records - earlier
    return {
        m.EXACT_DUPLICATE: found.get(m.EXACT_DUPLICATE, 0),
        m.NEAR_DUPLICATE: found.get(m.NEAR_DUPLICATE, 0),
        m.DEDUP_CONSIDERED: considered,
        m.DEDUP_RATE: round(total / considered, 6) if considered else 0.0,
    }


def _backend_name(backends: dict[str, int]) -> str | None:
    if not backends:
        return None
    return next(iter(backends)) if len(backends) == 1 else "mixed"


def _path(fs: fsspec.AbstractFileSystem, url: str) -> str:
    return url_to_fs(url)[1]


def _remove_stale(fs: fsspec.AbstractFileSystem, root: str, keep: set[str]) -> None:
    for sub in _RESULT_DIRS:
        base = posixpath.join(root, sub)
        if not fs.exists(base):
            continue
        for path in fs.find(base):
            rel = posixpath.relpath(path, root)
            if rel not in keep:
                fs.rm(path)
