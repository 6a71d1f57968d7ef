"""A human summary of a finished prepare or filter output's manifest (``tokenmill inspect``)."""

from __future__ import annotations

import dataclasses
import posixpath
import shlex
from typing import Any

from schemas import manifest as m
from schemas.manifest import E_BYTES, E_PATH, E_RECORDS, E_ROWS, Counts
from transforms.report.summary import key_value_table, summary_table

DOC_MARK = "⟦doc {n}⟧"  # printed before each segment of a decoded row (here: ``inspect --help`` names it too)


def manifest_counts(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest's counts with every field present (older manifests lack some)."""
    known = Counts().totals()
    fields = {f.name for f in dataclasses.fields(Counts)} - {"sources", "stage_seconds"}  # with those left out
    return {**known, **{k: v for k, v in manifest.get(m.K_COUNTS, {}).items() if k in fields}}  # when empty


def _size(n: int | float) -> str:
    """Bytes as '12.3 MB' / '4.5 kB' / '17 B'."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n:,.0f} B"


def plural(n: int, word: str) -> str:
    """'1 file', '2 files', '1,024 rows'."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _file_groups(entries: list[dict[str, Any]], unit: str) -> list[tuple[str, str]]:
    """One line for a list of files (count, bytes, rows or records), and one per subdirectory when there are several."""
    def line(items: list[dict[str, Any]]) -> str:
        size = sum(e.get(E_BYTES) or 0 for e in items)
        n = sum(e.get(E_ROWS, e.get(E_RECORDS)) or 0 for e in items)
        return plural(len(items), "file") + (f", {_size(size)}" if size else "") + f", {plural(n, unit)}"

    rows = [("", line(entries))]
    by_dir: dict[str, list[dict[str, Any]]] = {}
    for e in entries:
        by_dir.setdefault(posixpath.dirname(str(e.get(E_PATH, ""))), []).append(e)
    if len(by_dir) > 1:
        rows += [(f"  {d}/", line(items)) for d, items in sorted(by_dir.items())]
    return rows


def summary_text(manifest: dict[str, Any], output: str, max_inputs: int = 5) -> str:
    """A human summary of a prepare or filter output's manifest: job, inputs, tokenizer, packing, counts, files,
    and the dedup and selection sections when present."""
    packed = isinstance(manifest.get(m.K_SHARDS), list)
    job = manifest.get(m.K_JOB) or {}
    argv = job.get("argv")
    head: list[tuple[str, str]] = [
        ("output", f"{output.rstrip('/')}  (tokenmill {'prepare: token shards' if packed else 'filter: documents'})"),
        ("format", f"{manifest.get(m.K_FORMAT)}, written by tokenmill {manifest.get(m.K_VERSION, '?')}"),
        ("job", shlex.join(argv) if isinstance(argv, list) else str(job.get("command", "?"))),
        ("fingerprint", str(manifest.get(m.K_FINGERPRINT))),
    ]
    inputs = manifest.get(m.K_INPUTS) or []
    total = sum(i.get("size") or 0 for i in inputs)
    head.append(("inputs", f"{plural(len(inputs), 'file')}, {_size(total)}"))
    for i in inputs[:max_inputs]:
        comp = f", {i['compression']}" if i.get("compression") else ""
        head.append(("", f"  {i.get('url')} ({i.get('format')}{comp}, {_size(i.get('size') or 0)})"))
    if len(inputs) > max_inputs:
        head.append(("", f"  ... and {len(inputs) - max_inputs:,} more"))
    runner = manifest.get(m.K_RUNNER) or {}
    if runner:
        head.append(("runner", f"{runner.get('runner')}, {runner.get('workers')} worker(s)"))
    recipe = manifest.get(m.K_RECIPE)
    if recipe:
        stages = [f.get(m.R_STAGE_NAME) for f in recipe.get(m.R_FILTERS, [])]
        head.append(("recipe", f"{recipe.get(m.R_NAME)} (engine {recipe.get(m.R_ENGINE)}; filters: "
                               f"{', '.join(map(str, stages)) or 'none'})"))
    if packed:
        tok = manifest.get(m.K_TOKENIZER) or {}
        sha = str(tok.get(m.T_SHA256) or "?")
        head.append(("tokenizer", f"{tok.get(m.T_PATH)} ({tok.get(m.T_FORMAT)}, sha256 {sha[:16]}...)"))
        head.append(("", f"  vocab {tok.get(m.T_VOCAB_SIZE)}, eos_id {tok.get(m.T_EOS_ID)}, "
                         f"pad_id {tok.get(m.T_PAD_ID)}, bos_id {tok.get(m.T_BOS_ID)}, backend {tok.get(m.T_BACKEND)}"))
        head.append(("seq_len", str(manifest.get(m.K_SEQ_LEN))))
        settings = {k: v for k, v in (manifest.get(m.K_PACKING_SETTINGS) or {}).items() if k != m.P_NAME}
        head.append(("packing", f"{manifest.get(m.K_PACKING, 'concat')}"
                                + (f" ({', '.join(f'{k} {v}' for k, v in settings.items())})" if settings else "")))
    manifest_full = dict(manifest, **{m.K_COUNTS: manifest_counts(manifest)})
    blocks = [key_value_table(head, rules=False), summary_table(manifest_full, output)]

    files: list[tuple[str, str]] = []
    for key, unit in ((m.K_SHARDS, "row"), (m.K_DOCUMENTS, "document"), (m.K_REJECTED, "record"),
                      (m.K_MODIFIED, "record")):
        entries = manifest.get(key)
        if isinstance(entries, list) and (entries or key in (m.K_SHARDS, m.K_DOCUMENTS)):
            groups = _file_groups(entries, unit)
            files.append((f"{key}/", groups[0][1]))
            files += groups[1:]
    if files:
        blocks.append("files\n" + _indent(key_value_table(files, rules=False)))

    stats = manifest.get(m.K_PACKING_STATS) or {}
    if isinstance(stats.get(m.K_LENGTHS), dict):
        curriculum = stats.get(m.K_CURRICULUM) or {}
        mult, odds = curriculum.get(m.K_BATCH_MULTIPLIERS, {}), curriculum.get(m.K_SAMPLING_ODDS, {})
        lines = [(f"len {n}", f"{v.get(m.L_SEQUENCES, 0):,} sequences, {v.get(m.L_TOKENS, 0):,} tokens; "
                              f"batch x{mult.get(n, '?')}, sampling odds {odds.get(n, '?')}")
                 for n, v in stats[m.K_LENGTHS].items()]
        blocks.append("decompose lengths\n" + _indent(key_value_table(lines, rules=False)))
    dedup = manifest.get(m.K_DEDUP)
    if isinstance(dedup, dict):
        rows = [(k, plain_value(v)) for k, v in dedup.items()]
        blocks.append("dedup\n" + _indent(key_value_table(rows, rules=False)))
    selection = manifest.get(m.K_SELECTION)
    if isinstance(selection, dict):
        blocks.append("selection\n" + _indent(key_value_table(_selection_lines(selection), rules=False)))
    return "\n\n".join(blocks)


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def plain_value(value: Any) -> str:
    """A manifest value on one line: numbers with separators, dicts as 'k v, k v'."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.6g}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {plain_value(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(plain_value(v) for v in value)
    return str(value)


def _selection_lines(selection: dict[str, Any]) -> list[tuple[str, str]]:
    """The selection section: what was selected, candidates, buckets, upsampling, score quantiles, cut-points."""
    rows: list[tuple[str, str]] = []
    for key in (m.S_RULE, m.S_CANDIDATES, m.S_SELECTED):
        if key in selection:
            rows.append((key, plain_value(selection[key])))
    for key, label in ((m.S_BUCKETS, "bucket"), (m.S_UPSAMPLED, "upsampled")):
        for bucket, value in (selection.get(key) or {}).items():
            rows.append((f"{label} {bucket}", plain_value(value)))
    for scorer, q in (selection.get(m.S_SCORES) or {}).items():
        rows.append((f"score {scorer}", plain_value(q)))
    for scorer, cuts in (selection.get(m.S_CUT_POINTS) or {}).items():
        rows.append((f"cut points {scorer}", plain_value(cuts)))
    known = {m.S_RULE, m.S_CANDIDATES, m.S_SELECTED, m.S_BUCKETS, m.S_UPSAMPLED, m.S_SCORES, m.S_CUT_POINTS}
    rows += [(k, plain_value(v)) for k, v in selection.items() if k not in known]
    return rows or [("", "(empty)")]
