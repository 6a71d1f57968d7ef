"""The end-of-run summary table, from a manifest (pure formatting)."""

from __future__ import annotations

from typing import Any

from schemas import manifest as m


def summary_table(manifest: dict[str, Any], output: str) -> str:
    """A compact human summary of a prepare run."""
    c = manifest[m.K_COUNTS]
    seq_len = manifest[m.K_SEQ_LEN]
    wall = max(manifest.get(m.K_WALL_TIME) or 0.0, 1e-9)
    slots = c["sequences"] * seq_len
    rows: list[tuple[str, str]] = [
        ("records read", f"{c['records']:,}"),
        ("documents written", f"{c['docs_written']:,}"),
        ("documents rejected", f"{sum(c['docs_rejected'].values()):,}"),
    ]
    rows += [(f"  {reason}", f"{n:,}") for reason, n in c["docs_rejected"].items()]
    if c["docs_repaired"]:
        rows.append(("documents repaired (kept)", f"{sum(c['docs_repaired'].values()):,}"))
        rows += [(f"  {kind}", f"{n:,}") for kind, n in c["docs_repaired"].items()]
    rows += [
        ("tokens (incl. EOS)", f"{c['tokens']:,}"),
        (f"sequences of {seq_len}", f"{c['sequences']:,}"),
        ("padding", f"{c['pad_tokens']:,} tokens ({100 * c['pad_tokens'] / slots if slots else 0:.3f}%)"),
        ("input read", f"{c['bytes_read'] / 1e6:,.1f} MB"),
        ("throughput", f"{c['bytes_read'] / 1e6 / wall:,.1f} MB/s, {c['tokens'] / wall / 1e6:,.2f}M tokens/s"),
        ("wall time", f"{wall:,.1f} s"),
        ("tokenizer backend", f"{manifest[m.K_TOKENIZER].get('backend')}"),
        ("shards", f"{len(manifest[m.K_SHARDS])} in {output.rstrip('/')}/shards/"),
    ]
    if manifest.get(m.K_REJECTED):
        rows.append(("rejected records", f"{output.rstrip('/')}/rejected/"))
    rows.append(("manifest", f"{output.rstrip('/')}/manifest.json"))
    width = max(len(k) for k, _ in rows)
    rule = "-" * (width + 2 + max(len(v) for _, v in rows))
    return "\n".join([rule, *(f"{k.ljust(width)}  {v}" for k, v in rows), rule])
