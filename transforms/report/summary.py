"""The end-of-run summary tables (pure formatting): the one key/value layout every command prints, and a prepare or
filter run's summary from its manifest."""

from __future__ import annotations

from typing import Any

from schemas import manifest as m


def _per_second(rate: float) -> str:
    """A rate as '12.34M' or '5.6k' or '42'."""
    if rate >= 1e6:
        return f"{rate / 1e6:,.2f}M"
    return f"{rate / 1e3:,.1f}k" if rate >= 1e3 else f"{rate:,.0f}"


def key_value_table(rows: list[tuple[str, str]], max_rule: int | None = None, rules: bool = True) -> str:
    """Rows of (key, value) with the values aligned, between two rules of dashes as wide as the widest row (at most
    ``max_rule``); ``rules=False``: the aligned lines alone, without trailing spaces (a block inside a longer text)."""
    width = max(len(k) for k, _ in rows)
    if not rules:
        return "\n".join(f"{k.ljust(width)}  {v}".rstrip() for k, v in rows)
    rule_width = width + 2 + max(len(v) for _, v in rows)
    rule = "-" * (rule_width if max_rule is None else min(max_rule, rule_width))
    return "\n".join([rule, *(f"{k.ljust(width)}  {v}" for k, v in rows), rule])


def summary_table(manifest: dict[str, Any], output: str) -> str:
    """A compact human summary of a prepare or filter run."""
    c = manifest[m.K_COUNTS]
    out = output.rstrip("/")
    wall = max(manifest.get(m.K_WALL_TIME) or 0.0, 1e-9)
    packed = m.K_SHARDS in manifest
    rows: list[tuple[str, str]] = [
        ("records read", f"{c['records']:,}"),
        ("documents written", f"{c['docs_written']:,}"),
        ("documents rejected", f"{sum(c['docs_rejected'].values()):,}"),
    ]
    rows += [(f"  {reason}", f"{n:,}") for reason, n in c["docs_rejected"].items()]
    if c.get("skipped_records"):  # WARC records that are no documents (not among the records read)
        kinds = sorted(c["skipped_records"].items(), key=lambda kv: (-kv[1], kv[0]))
        rows.append(("records skipped (not documents)", f"{sum(n for _, n in kinds):,}"))
        rows += [(f"  {kind}", f"{n:,}") for kind, n in kinds[:8]]
        if kinds[8:]:
            rows.append((f"  {len(kinds) - 8} other kinds", f"{sum(n for _, n in kinds[8:]):,}"))
    if c.get("docs_modified"):
        rows.append(("documents modified (kept)", f"{sum(c['docs_modified'].values()):,}"))
        rows += [(f"  {stage}", f"{n:,}") for stage, n in c["docs_modified"].items()]
    if c.get("lines_removed"):
        unit = (((manifest.get(m.K_RECIPE) or {}).get(m.R_DEDUP) or {}).get(m.R_LINES) or {}).get(m.LD_UNIT, "line")
        rows.append((f"{unit}s removed (dedup.lines)",
                     f"{c['lines_removed']:,} ({c['line_bytes_removed'] / 1e6:,.2f} MB)"))
    if c.get("stage_counts"):
        rows.append(("found by stages", f"{sum(c['stage_counts'].values()):,}"))
        rows += [(f"  {key}", f"{n:,}") for key, n in c["stage_counts"].items()]
    if c["docs_repaired"]:
        rows.append(("documents repaired (kept)", f"{sum(c['docs_repaired'].values()):,}"))
        rows += [(f"  {kind}", f"{n:,}") for kind, n in c["docs_repaired"].items()]
    dedup = manifest.get(m.K_DEDUP)
    if dedup:
        rows.append(("duplicate rate", f"{100 * dedup[m.DEDUP_RATE]:.2f}% of {dedup[m.DEDUP_CONSIDERED]:,} "
                                       "documents after filtering"))
        if m.EARLIER_EXACT_DUPLICATE in dedup:  # dedup.against: within the rate, counted apart
            exact, near = dedup[m.EARLIER_EXACT_DUPLICATE], dedup[m.EARLIER_NEAR_DUPLICATE]
            rows.append(("  of earlier outputs", f"{exact + near:,} ({exact:,} exact, {near:,} near)"))
    if packed:
        seq_len = manifest[m.K_SEQ_LEN]
        slots = c["tokens"] + c["pad_tokens"]
        settings = manifest.get(m.K_PACKING_SETTINGS) or {}
        lengths = settings.get(m.K_LENGTHS)
        rows += [
            ("tokens (incl. EOS)", f"{c['tokens']:,}"),
            (f"sequences of {lengths[0]}..{lengths[-1]}" if lengths else f"sequences of {seq_len}",
             f"{c['sequences']:,}"),
            ("padding", f"{c['pad_tokens']:,} tokens ({100 * c['pad_tokens'] / slots if slots else 0:.3f}%)"),
            (f"packing ({manifest.get(m.K_PACKING, 'concat')})",
             f"{c.get('docs_split', 0):,} documents cut" + (f", {c['tokens_dropped']:,} remainder tokens dropped"
                                                             if c.get("tokens_dropped") else "")),
        ]
    rows.append(("input read", f"{c['bytes_read'] / 1e6:,.1f} MB"))
    speed = f"{c['bytes_read'] / 1e6 / wall:,.1f} MB/s"
    rows.append(("throughput", speed + (f", {_per_second(c['tokens'] / wall)} tokens/s" if packed else
                                        f", {c['docs_written'] / wall:,.0f} kept documents/s")))
    rows.append(("wall time", f"{wall:,.1f} s"))
    if packed:
        rows.append(("tokenizer backend", f"{manifest[m.K_TOKENIZER].get(m.T_BACKEND)}"))
        rows.append(("shards", f"{len(manifest[m.K_SHARDS])} in {out}/shards/"))
    if m.K_DOCUMENTS in manifest:
        rows.append(("documents", f"{len(manifest[m.K_DOCUMENTS])} files in {out}/documents/"))
    if manifest.get(m.K_REJECTED):
        rows.append(("rejected records", f"{out}/rejected/"))
    if m.K_DEDUP_INDEX in manifest:
        rows.append(("dedup index", f"{manifest[m.K_DEDUP_INDEX][m.DI_DOCUMENTS]:,} documents in "
                                    f"{out}/{m.DEDUP_INDEX_DIR}/"))
    rows.append(("manifest", f"{out}/manifest.json"))
    rows.append(("report", f"{out}/{m.REPORT_HTML}"))
    return key_value_table(rows)
