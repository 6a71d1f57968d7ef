"""The Airflow DAG's check of a finished ``tokenmill prepare``: is its manifest there, and are its counts sane?

A quick look at manifest.json alone (no shard is opened), for a task right after the job; ``tokenmill inspect OUTPUT
--verify`` is the thorough check that re-reads every file. Pure functions: testable without Airflow.
"""

from __future__ import annotations

from typing import Any

from schemas import manifest as m
from schemas.manifest import E_PATH, E_ROWS  # keys of a shard entry, as the commit step writes them
from schemas.shards import MANIFEST_FILE, read_manifest


def check_manifest(manifest: dict[str, Any]) -> list[str]:
    """The problems of a prepare manifest, one sentence each; empty when it looks like a good result.

    Checked: it is a prepare manifest; records == docs_written + Σ docs_rejected; docs_written > 0; tokens > 0;
    shards are listed, each with a path, and their rows add up to counts.sequences.
    """
    if not isinstance(manifest, dict):
        return [f"{MANIFEST_FILE} is a JSON {type(manifest).__name__}, not an object"]
    problems = []
    fmt = manifest.get(m.K_FORMAT)
    if fmt != m.MANIFEST_FORMAT:
        problems.append(f"format is {fmt!r}, not {m.MANIFEST_FORMAT!r} (a tokenmill prepare output)")
    raw = manifest.get(m.K_COUNTS)
    if not isinstance(raw, dict):
        return [*problems, f"no {m.K_COUNTS!r} section"]
    counts = _counts(raw)
    if not isinstance(counts.docs_rejected, dict):
        return [*problems, "counts.docs_rejected is not an object of counts per reason"]
    numbers = {f"counts.{name}": getattr(counts, name) for name in ("records", "docs_written", "tokens", "sequences")}
    numbers |= {f"counts.docs_rejected[{reason!r}]": n for reason, n in counts.docs_rejected.items()}
    not_numbers = [name for name, value in numbers.items() if not _is_count(value)]
    if not_numbers:
        return [*problems, f"not a whole number: {', '.join(not_numbers)}"]
    rejected = counts.rejected_total()
    if counts.records != counts.docs_written + rejected:
        problems.append(f"counts.records is {counts.records}, but docs_written + Σ docs_rejected is "
                        f"{counts.docs_written} + {rejected} = {counts.docs_written + rejected}")
    if not counts.docs_written > 0:
        problems.append(f"counts.docs_written is {counts.docs_written}: no document was written")
    if not counts.tokens > 0:
        problems.append(f"counts.tokens is {counts.tokens}: no token was written")
    shards = manifest.get(m.K_SHARDS)
    if not isinstance(shards, list) or not shards:
        problems.append(f"no shards listed under {m.K_SHARDS!r}")
        return problems
    if any(not isinstance(s, dict) or not s.get(E_PATH) for s in shards):
        problems.append(f"a {m.K_SHARDS!r} entry has no {E_PATH!r}")
        return problems
    if any(not _is_count(s.get(E_ROWS)) for s in shards):
        return [*problems, f"a {m.K_SHARDS!r} entry's {E_ROWS!r} is not a whole number"]
    rows = sum(s[E_ROWS] for s in shards)
    if rows != counts.sequences:
        problems.append(f"the shards list {rows} rows, but counts.sequences is {counts.sequences}")
    return problems


def _is_count(value: Any) -> bool:
    """Whether ``value`` is a whole number (JSON integer), not a bool, string or float."""
    return isinstance(value, int) and not isinstance(value, bool)


def _counts(raw: dict[str, Any]) -> m.Counts:
    """The manifest's counts section as Counts (keys it does not know are ignored)."""
    known = m.Counts().totals()
    return m.Counts.from_dict({k: v for k, v in raw.items() if k in known})


def check_output(output: str) -> dict[str, int]:
    """Fail (ValueError listing every problem) unless ``output`` holds a sane prepare result; else its totals.

    ``output``'s manifest.json is read through fsspec (any URL: gs://, s3://, local); FileNotFoundError names it."""
    manifest = read_manifest(output)
    problems = check_manifest(manifest)
    if problems:
        raise ValueError(f"{output}: " + "; ".join(problems))
    counts = _counts(manifest[m.K_COUNTS])
    return {"records": counts.records, "docs_written": counts.docs_written, "tokens": counts.tokens,
            "shards": len(manifest[m.K_SHARDS])}
