"""Committing a run: check that every planned stream reported exactly once, move the files into place, write the
manifest last (claiming and clearing the output before a run is ``transforms.output.guard``'s).

A directory is a result only once ``manifest.json`` exists; it is removed first and written last.
"""

from __future__ import annotations

import json
import posixpath
import time
from typing import Any

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
from schemas.stream_result import StreamResult
from transforms.dedup.clusters import Sizes, merge_cluster_samples
from transforms.output.faults import fault_point
from transforms.output.guard import COMMIT_JOURNAL, RESULT_DIRS, remove_temp
from transforms.output.location import output_fs, write_json
from transforms.select.scoring import MIN_SCORE
from transforms.read.sources import Stream
from transforms.errors import TokenmillError

_NAMES = {SHARDS_DIR: SHARD_NAME, DOCUMENTS_DIR: DOCUMENT_NAME, REJECTED_DIR: REJECTED_NAME,
          MODIFIED_DIR: REJECTED_NAME}


class IncompleteResultError(TokenmillError, RuntimeError):
    """The streams' results do not prove that every planned input range was read exactly once."""

    PREFIX = "tokenmill: incomplete run: "
    exit_code = 1  # a failed run, not a setting to fix


def stream_plan(stream: Stream) -> tuple[int, list[list[Any]]]:
    """What the commit checks of one planned stream: (index, [[file index, split index, start, end], ...])."""
    return stream.index, [[s.file_index, s.split_index, s.start, s.end] for s in stream.splits]


def check_complete(results: list[StreamResult], planned: list[tuple[int, list[list[Any]]]],
                   inputs: list[dict[str, Any]]) -> None:
    """Raise IncompleteResultError unless every planned stream reported exactly once (and no other did), naming
    the streams missing or repeated, and the plan covers every input file from its start to its end."""
    plan = dict(planned)
    if len(plan) != len(planned):
        raise IncompleteResultError(f"{IncompleteResultError.PREFIX}the plan lists a stream twice")
    seen: dict[int, int] = {}
    for r in results:
        seen[r.stream] = seen.get(r.stream, 0) + 1
    missing = sorted(set(plan) - set(seen))
    repeated = sorted(i for i, n in seen.items() if n > 1)
    unplanned = sorted(set(seen) - set(plan))
    if missing or repeated or unplanned:
        parts = [f"{what} {_streams(ids)}" for what, ids in
                 (("no result from", missing), ("more than one result from", repeated),
                  ("results from unplanned", unplanned)) if ids]
        raise IncompleteResultError(
            f"{IncompleteResultError.PREFIX}the run cannot prove it read all its input: {'; '.join(parts)} of {len(plan)} planned "
            "(the runner lost or repeated work); no manifest was written, rerun to finish")
    by_file: dict[int, list[list[Any]]] = {}
    for splits in plan.values():
        for split in splits:
            by_file.setdefault(split[0], []).append(split)
    for index, f in enumerate(inputs):
        splits = sorted(by_file.get(index, []), key=lambda s: s[1])
        whole = len(splits) == 1 and splits[0][2:] == [0, -1]
        contiguous = bool(splits) and splits[0][2] == 0 and all(
            a[3] == b[2] and a[1] + 1 == b[1] for a, b in zip(splits, splits[1:]))
        ends = whole or f.get("format") == "parquet" or (splits and splits[-1][3] == f.get("size"))
        if not (whole or (contiguous and ends)):
            raise IncompleteResultError(f"{IncompleteResultError.PREFIX}the plan does not cover input {f.get('url')!r} from start to "
                                        f"end ({splits}); no manifest was written")


def _streams(ids: list[int]) -> str:
    shown = ", ".join(map(str, ids[:10])) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
    return f"stream{'s' if len(ids) > 1 else ''} {shown}"


def commit(results: list[StreamResult], output: str, manifest_base: dict[str, Any], started: float,
           planned: list[tuple[int, list[list[Any]]]], selection: dict[str, Any] | None = None,
           shuffled: list[dict[str, Any]] | None = None, index: dict[str, Any] | None = None,
           clusters: Sizes | None = None) -> dict:
    """Check that every planned stream reported exactly once, journal and rename the temp shards, document files and
    rejected files into place in stream order (and the files of the dedup ``index``, dedup.save_index), write
    manifest.json last (then report.html; then the temp folder goes). ``clusters``: the largest duplicate
    clusters, listed with the members pass 2 sampled."""
    check_complete(results, planned, manifest_base.get(m.K_INPUTS) or [])
    fs, root = output_fs(output)
    results = sorted(results, key=lambda r: r.stream)
    placed: dict[str, list[dict[str, Any]]] = {d: [] for d in RESULT_DIRS}
    counts = Counts()
    backends: dict[str, int] = {}
    notes: list[str] = []
    moves: list[tuple[str, str]] = []  # (temp url, relative destination), in order

    in_dir: dict[str, int] = {}  # files placed so far per directory (a bucket partition numbers its own)

    def place(kind: str, item: dict[str, Any]) -> None:
        directory = kind if m.E_BUCKET not in item else posixpath.join(kind, f"{BUCKET_DIR}={item[m.E_BUCKET]:02d}")
        if kind == SHARDS_DIR and m.E_SEQ_LEN in item:  # decompose: a directory per row length
            directory = posixpath.join(directory, f"{LENGTH_DIR}={item[m.E_SEQ_LEN]:05d}")
        index = in_dir.get(directory, 0)
        in_dir[directory] = index + 1
        rel = posixpath.join(directory, _NAMES[kind].format(index=index))
        moves.append((item[m.E_TEMP_URL], rel))
        placed[kind].append({m.E_PATH: rel, **{k: v for k, v in item.items() if k != m.E_TEMP_URL}})

    for r in results:
        counts.merge(r.counts)
        if r.backend:
            backends[r.backend] = backends.get(r.backend, 0) + 1
        if r.backend_note:
            notes.append(r.backend_note)
        for kind, items in ((SHARDS_DIR, r.shards), (DOCUMENTS_DIR, r.documents), (REJECTED_DIR, r.rejected),
                            (MODIFIED_DIR, r.modified)):
            if kind == SHARDS_DIR and shuffled is not None:
                continue  # the shuffled shards replace the streams' own
            for item in items:
                place(kind, item)
    for item in shuffled or []:
        place(SHARDS_DIR, item)
    manifest = dict(manifest_base)
    manifest[m.K_COUNTS] = counts.totals()
    manifest[m.K_SOURCES] = source_counts(counts, manifest_base.get(m.K_INPUTS) or [])
    if selection is not None:
        manifest[m.K_SELECTION] = selection
    manifest[m.K_STREAMS] = len(results)
    if m.K_TOKENIZER in manifest:  # a packed result (prepare)
        manifest[m.K_TOKENIZER] = {**manifest[m.K_TOKENIZER], m.T_BACKEND: _backend_name(backends),
                                   m.T_BACKEND_STREAMS: backends}
        if notes:
            manifest[m.K_TOKENIZER][m.T_BACKEND_NOTES] = notes[:20]
        manifest[m.K_SHARDS] = placed[SHARDS_DIR]
        manifest[m.K_PACKING_STATS] = packing_stats(counts, placed[SHARDS_DIR])
    if placed[DOCUMENTS_DIR] or manifest_base.get(m.K_FORMAT) == m.DOCUMENTS_FORMAT:
        manifest[m.K_DOCUMENTS] = placed[DOCUMENTS_DIR]
    manifest[m.K_REJECTED] = placed[REJECTED_DIR]
    if placed[MODIFIED_DIR]:
        manifest[m.K_MODIFIED] = placed[MODIFIED_DIR]
    recipe = manifest.get(m.K_RECIPE)
    if recipe and (recipe[m.R_DEDUP][m.R_EXACT] or recipe[m.R_DEDUP].get(m.R_MINHASH)):
        manifest[m.K_DEDUP] = dedup_summary(counts, recipe)
        if clusters:
            manifest[m.K_DEDUP][m.DEDUP_CLUSTERS] = merge_cluster_samples(clusters,
                                                                           (r.cluster_samples for r in results))
    if index is not None:
        for item in index[m.DI_FILES]:
            moves.append((item[m.E_TEMP_URL], item[m.E_PATH]))
        manifest[m.K_DEDUP_INDEX] = {**index, m.DI_FILES: [{k: v for k, v in item.items() if k != m.E_TEMP_URL}
                                                           for item in index[m.DI_FILES]]}
    manifest[m.K_WALL_TIME] = round(time.time() - started, 3)
    manifest[m.K_STAGE_SECONDS] = {k: round(v, 3) for k, v in counts.to_dict()["stage_seconds"].items()}
    if counts.records != counts.docs_written + counts.rejected_total() or not sources_add_up(counts):
        raise IncompleteResultError(f"{IncompleteResultError.PREFIX}counts do not add up: {counts.to_dict()}")
    # journalled before the first move: a commit killed half-way leaves files a rerun can prove are its own
    fs.makedirs(posixpath.join(root, TEMP_DIR), exist_ok=True)
    write_json(fs, posixpath.join(root, TEMP_DIR, COMMIT_JOURNAL), {"files": [rel for _, rel in moves]})
    for temp_url, rel in moves:
        fault_point("commit-move")
        fs.makedirs(posixpath.dirname(posixpath.join(root, rel)), exist_ok=True)
        fs.mv(url_to_fs(temp_url)[1], posixpath.join(root, rel))
    fault_point("commit-manifest")
    tmp = posixpath.join(root, MANIFEST_FILE + ".tmp")
    with fs.open(tmp, "wb") as fh:
        fh.write(json.dumps(manifest, indent=2, sort_keys=False).encode() + b"\n")
    fs.mv(tmp, posixpath.join(root, MANIFEST_FILE))
    write_report(fs, root, manifest)
    fault_point("commit-cleanup")
    remove_temp(output)
    return manifest


def write_report(fs: Any, root: str, manifest: dict[str, Any]) -> None:
    """report.html beside manifest.json (after it, by the same step, so every finished run has one on any runner),
    through a temporary name like the manifest."""
    from transforms.report.run_report import render_run_html

    path = posixpath.join(root, m.REPORT_HTML)
    with fs.open(path + ".tmp", "wb") as fh:
        fh.write(render_run_html(manifest).encode("utf-8"))
    fs.mv(path + ".tmp", path)


def packing_stats(counts: Counts, shards: list[dict[str, Any]]) -> dict[str, Any]:
    """Padding and cut documents; for decompose, sequences and tokens per length and the curriculum (batch
    multipliers keeping tokens per batch constant, and sampling odds proportional to each length's tokens, so
    that every length runs out at the same time)."""
    slots = counts.tokens + counts.pad_tokens
    stats: dict[str, Any] = {m.K_PADDING_FRACTION: round(counts.pad_tokens / slots, 6) if slots else 0.0,
                             m.K_DOCUMENTS_SPLIT: counts.docs_split}
    lengths: dict[int, list[int]] = {}
    for shard in shards:
        if m.E_SEQ_LEN in shard:
            row = lengths.setdefault(shard[m.E_SEQ_LEN], [0, 0])
            row[0] += shard[m.E_ROWS]
            row[1] += shard[m.E_TOKENS]
    if lengths:
        longest = max(lengths)
        total = sum(t for _, t in lengths.values()) or 1
        stats[m.K_REMAINDER_DROPPED] = counts.tokens_dropped
        stats[m.K_LENGTHS] = {str(n): {m.L_SEQUENCES: s, m.L_TOKENS: t} for n, (s, t) in sorted(lengths.items())}
        stats[m.K_CURRICULUM] = {
            m.K_BATCH_MULTIPLIERS: {str(n): longest // n for n in sorted(lengths)},
            m.K_SAMPLING_ODDS: {str(n): round(t / total, 6) for n, (_, t) in sorted(lengths.items())},
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
    later = {STAGE_DEDUP, STAGE_PACK}
    if MIN_SCORE not in ((recipe or {}).get(m.R_SELECT) or {}):
        later.add(STAGE_SELECT)
    # "<stage>/<reason>" keys name their stage; bare keys are the reader's rejections (the first stage)
    earlier = sum(n for k, n in counts.docs_rejected.items() if "/" not in k or k.partition("/")[0] not in later)
    considered = counts.records - earlier
    summary = {m.EXACT_DUPLICATE: found.get(m.EXACT_DUPLICATE, 0), m.NEAR_DUPLICATE: found.get(m.NEAR_DUPLICATE, 0)}
    if ((recipe or {}).get(m.R_DEDUP) or {}).get(m.R_AGAINST):  # duplicates of the earlier outputs' documents
        summary[m.EARLIER_EXACT_DUPLICATE] = found.get(m.EARLIER_EXACT_DUPLICATE, 0)
        summary[m.EARLIER_NEAR_DUPLICATE] = found.get(m.EARLIER_NEAR_DUPLICATE, 0)
    total = sum(summary.values())  # documents, not those left empty by line dedup (dedup/lines_empty)
    return {
        **summary,
        m.DEDUP_CONSIDERED: considered,
        m.DEDUP_RATE: round(total / considered, 6) if considered else 0.0,
    }


def _backend_name(backends: dict[str, int]) -> str | None:
    if not backends:
        return None
    return next(iter(backends)) if len(backends) == 1 else "mixed"
