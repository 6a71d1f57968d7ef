"""``report.html`` of a prepare or filter run: one self-contained page drawn from its manifest (pure formatting).

Sections: the run, the documents' funnel (read → parsed → each filter stage → dedup → selection → written), the
rejections by reason, the sources (per input file, from the manifest's ``sources``), packing (prepare),
deduplication, selection and decontamination (``transforms.report.decontam``; when the recipe has them) and
throughput (per stage, from ``stage_seconds``). Every number comes from the manifest; what it does not record
(older manifests lack the per-source and per-stage sections) is said, not estimated.
"""

from __future__ import annotations

import posixpath
from html import escape
from typing import Any

from schemas import manifest as m
from schemas.manifest import Counts
from transforms.report.charts import (
    bar_chart,
    compact,
    funnel_chart,
    hbar_chart,
    histogram_chart,
    legend,
    page,
    percent,
    table,
)
from transforms.report.clusters import clusters_table
from transforms.report.decontam import decontam_section

EXTRA_CSS = """
section{margin-bottom:12px}.note{font-size:13px;color:#555}.kv td{text-align:left}
"""


def funnel(manifest: dict[str, Any]) -> list[tuple[str, int]]:
    """Documents left after each step of the run: read, parsed, each filter stage of the recipe (in its order),
    dedup, selection, and written (packed); the last count is ``docs_written``."""
    c = Counts.from_dict(manifest[m.K_COUNTS])
    dropped = stage_drops(c)
    read_drops = dropped.pop(m.STAGE_READ, 0)
    recipe = manifest.get(m.K_RECIPE) or {}
    filters = list(dict.fromkeys(f[m.R_STAGE_NAME] for f in recipe.get(m.R_FILTERS, [])))
    later = (m.STAGE_DEDUP, m.STAGE_SELECT, m.STAGE_PACK)
    # a stage the recipe does not list (none today) still has its step, so that the funnel adds up
    steps = filters + sorted(s for s in dropped if s not in filters and s not in later)
    if m.K_DEDUP in manifest or m.STAGE_DEDUP in dropped:
        steps.append(m.STAGE_DEDUP)
    if m.K_SELECTION in manifest or m.STAGE_SELECT in dropped:
        steps.append(m.STAGE_SELECT)
    left = c.records - read_drops
    out = [("read", c.records), ("parsed", left)]
    for stage in steps:
        left -= dropped.get(stage, 0)
        label = {m.STAGE_DEDUP: "after dedup", m.STAGE_SELECT: "after selection"}.get(stage, f"after {stage}")
        out.append((label, left))
    left -= dropped.get(m.STAGE_PACK, 0)
    out.append(("packed" if m.K_SHARDS in manifest else "written", left))
    return out


def stage_drops(counts: Counts) -> dict[str, int]:
    """Rejected documents per stage: ``<stage>/<reason>`` keys by their stage, bare reasons under the read stage."""
    out: dict[str, int] = {}
    for key, n in counts.docs_rejected.items():
        stage, sep, _ = key.partition("/")
        stage = stage if sep else m.STAGE_READ
        out[stage] = out.get(stage, 0) + n
    return out


def render_run_html(manifest: dict[str, Any]) -> str:
    """The whole report page of a prepare or filter run from its manifest."""
    job = manifest.get(m.K_JOB) or {}
    command = job.get("command") or ("prepare" if m.K_SHARDS in manifest else "filter")
    body = [_run_section(manifest), _funnel_section(manifest), _rejections_section(manifest),
            _sources_section(manifest)]
    if m.K_SHARDS in manifest:
        body.append(_packing_section(manifest))
    if manifest.get(m.K_DEDUP):
        body.append(_dedup_section(manifest))
    if manifest.get(m.K_SELECTION):
        body.append(_selection_section(manifest))
    decontamination = decontam_section(manifest)  # None without a decontam stage
    if decontamination is not None:
        body.append(decontamination)
    body.append(_throughput_section(manifest))
    return page(f"tokenmill {command} run", body, EXTRA_CSS)


def _section(key: str, title: str, *parts: str) -> str:
    return f'<section id="{key}"><h2>{escape(title)}</h2>' + "".join(parts) + "</section>"


def _note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def _run_section(manifest: dict[str, Any]) -> str:
    c = Counts.from_dict(manifest[m.K_COUNTS])
    recipe = manifest.get(m.K_RECIPE)
    runner = manifest.get(m.K_RUNNER) or {}
    rows: list[list[Any]] = [
        ["format", manifest.get(m.K_FORMAT)],
        ["tokenmill version", manifest.get(m.K_VERSION)],
        ["fingerprint", manifest.get(m.K_FINGERPRINT)],
        ["command line", " ".join(str(a) for a in (manifest.get(m.K_JOB) or {}).get("argv") or [])],
        ["recipe", f"{recipe.get(m.R_NAME)} (engine {recipe.get(m.R_ENGINE)})" if recipe else "none"],
        ["runner", f"{runner.get('runner')}, {runner.get('workers')} worker(s)" if runner else None],
        ["inputs", f"{len(manifest.get(m.K_INPUTS) or []):,} files, {c.bytes_read / 1e6:,.1f} MB read"],
        ["records read", c.records],
        ["documents written", c.docs_written],
        ["documents rejected", c.rejected_total()],
        ["documents modified (kept)", sum(c.docs_modified.values())],
        ["documents repaired (kept)", sum(c.docs_repaired.values())],
    ]
    if c.skipped_records:  # WARC records that are no documents, apart from the records read
        kinds = sorted(c.skipped_records.items(), key=lambda kv: (-kv[1], kv[0]))
        rows.append(["records skipped (not documents)",
                     f"{sum(c.skipped_records.values()):,}: " + ", ".join(f"{k} {n:,}" for k, n in kinds[:8])
                     + (", ..." if len(kinds) > 8 else "")])
    if c.lines_removed:
        rows.append(["lines or paragraphs removed (dedup.lines)",
                     f"{c.lines_removed:,} ({c.line_bytes_removed / 1e6:,.2f} MB)"])
    tok = manifest.get(m.K_TOKENIZER)
    if tok is not None:
        rows += [["tokenizer", f"{tok.get(m.T_PATH)} (vocabulary {tok.get(m.T_VOCAB_SIZE)}, "
                               f"backend {tok.get(m.T_BACKEND)})"],
                 ["sequence length", manifest.get(m.K_SEQ_LEN)], ["tokens (incl. EOS)", c.tokens]]
    if manifest.get(m.K_WALL_TIME) is not None:
        rows.append(["wall time", f"{manifest[m.K_WALL_TIME]:,.1f} s"])
    return _section("run", "Run", table(["", "value"], rows, "kv"))


def _funnel_section(manifest: dict[str, Any]) -> str:
    stages = funnel(manifest)
    first = stages[0][1]
    rows = [[name, n, None if i == 0 else stages[i - 1][1] - n,
             None if i == 0 else percent(n, stages[i - 1][1]), percent(n, first)]
            for i, (name, n) in enumerate(stages)]
    return _section("funnel", "Documents through the run",
                    funnel_chart(stages, "documents left after each step"),
                    table(["step", "documents", "dropped here", "kept of previous", "kept of read"], rows))


def _rejections_section(manifest: dict[str, Any]) -> str:
    c = Counts.from_dict(manifest[m.K_COUNTS])
    if not c.docs_rejected:
        parts = [_note("No document was rejected.")]
    else:
        reasons = sorted(c.docs_rejected.items(), key=lambda kv: -kv[1])
        chart = hbar_chart([k for k, _ in reasons], {"documents": [n for _, n in reasons]},
                           "rejected documents by reason")
        rows = [[k, k.partition("/")[0] if "/" in k else m.STAGE_READ, n, percent(n, c.records)] for k, n in reasons]
        parts = [chart, table(["reason", "stage", "documents", "of records read"], rows)]
    if c.docs_modified or c.docs_repaired:
        parts.append("<h3>Kept, but changed</h3>" + table(
            ["change", "documents"],
            [[f"modified by {k}", n] for k, n in c.docs_modified.items()]
            + [[f"repaired: {k}", n] for k, n in c.docs_repaired.items()]))
    if c.stage_counts:
        parts.append("<h3>Found by stages</h3>" + table(
            ["stage/kind", "found"], [[k, n] for k, n in c.stage_counts.items()]))
    return _section("rejections", "Rejections by reason", *parts)


def source_names(urls: list[str]) -> list[str]:
    """Short names of input files: relative to their common directory (a lone file: its base name)."""
    if len(urls) == 1:
        return [posixpath.basename(urls[0].rstrip("/")) or urls[0]]
    cut = posixpath.commonprefix(urls).rfind("/") + 1
    return [u[cut:] or u for u in urls]


def _sources_section(manifest: dict[str, Any]) -> str:
    c = Counts.from_dict(manifest[m.K_COUNTS])
    inputs = manifest.get(m.K_INPUTS) or []
    packed = m.K_SHARDS in manifest
    per_source = manifest.get(m.K_SOURCES)
    streams = manifest.get(m.K_STREAMS)
    if per_source:
        parts = _per_source(per_source, packed)
        parts.append("<h3>Input files</h3>")
    else:
        names = [str(f.get("url")) for f in inputs]
        parts = [hbar_chart(names, {"MB": [(f.get("size") or 0) / 1e6 for f in inputs]}, "input size per source",
                            unit=" MB")]
    parts.append(table(["source", "format", "compression", "bytes"],
                       [[str(f.get("url")), f.get("format"), f.get("compression"), f.get("size")] for f in inputs]))
    if per_source:
        parts.append(_note(f"The inputs were read as {streams} stream(s). Per source: records read, documents "
                           "written and rejected (every stage), " + ("tokens in the shards, " if packed else "")
                           + "input bytes read and characters of the written documents; they add up to the run's "
                           "totals."))
    else:
        what = f"{c.tokens:,} tokens" if packed else f"{c.docs_written:,} documents"
        parts.append(_note(f"The inputs were read as {streams} stream(s). The manifest records the run's totals "
                           f"({what}, {c.bytes_read:,} bytes read, {c.text_chars:,} characters), not a breakdown "
                           "per source or per stream."))
    documents = manifest.get(m.K_DOCUMENTS)
    if documents:
        parts.append("<h3>Document files</h3>" + table(
            ["file", "rows", "bytes"], [[d.get(m.E_PATH), d.get(m.E_ROWS), d.get(m.E_BYTES)] for d in documents]))
    return _section("sources", "Sources", *parts)


def _per_source(sources: dict[str, dict[str, int]], packed: bool) -> list[str]:
    """Charts and a table of the manifest's per-source counts (tokens only for a packed result)."""
    urls = list(sources)
    names = source_names(urls)
    rows = [sources[u] for u in urls]

    def column(key: str) -> list[int]:
        return [int(r.get(key) or 0) for r in rows]

    share_of = "tokens" if packed else "docs_written"  # what the share column divides
    whole = sum(column(share_of))
    parts = []
    if packed:
        parts.append(hbar_chart(names, {"tokens": column("tokens")}, "tokens per source"))
    parts.append(hbar_chart(names, {"written": column("docs_written"), "rejected": column("docs_rejected")},
                            "documents per source: written, rejected") + legend(["written", "rejected"]))
    parts.append(hbar_chart(names, {"MB": [n / 1e6 for n in column("bytes_read")]}, "input read per source",
                            unit=" MB"))
    fields = [f for f in m.SOURCE_FIELDS if packed or f != "tokens"]
    labels = {"records": "records", "docs_written": "documents written", "docs_rejected": "documents rejected",
              "tokens": "tokens", "bytes_read": "bytes read", "text_chars": "characters written"}
    header = ["source", *(labels[f] for f in fields), f"share of {labels[share_of]}"]
    body = [[name, *(r.get(f) for f in fields), percent(r.get(share_of) or 0, whole)]
            for name, r in zip(names, rows)]
    parts.append(table(header, body, "per-source"))
    return parts


def _packing_section(manifest: dict[str, Any]) -> str:
    c = Counts.from_dict(manifest[m.K_COUNTS])
    stats = manifest.get(m.K_PACKING_STATS) or {}
    settings = manifest.get(m.K_PACKING_SETTINGS) or {}
    strategy = manifest.get(m.K_PACKING, "concat")
    slots = c.tokens + c.pad_tokens
    shards = manifest.get(m.K_SHARDS) or []
    rows: list[list[Any]] = [
        ["strategy", strategy],
        ["settings", ", ".join(f"{k}={v}" for k, v in settings.items()) or None],
        ["sequence length", manifest.get(m.K_SEQ_LEN)],
        ["sequences", c.sequences],
        ["tokens (incl. EOS)", c.tokens],
        ["padding tokens", c.pad_tokens],
        ["padding", percent(c.pad_tokens, slots) if slots else "0%"],
        ["documents cut across rows", c.docs_split],
        ["shards", f"{len(shards):,} files, {sum(s.get(m.E_BYTES) or 0 for s in shards) / 1e6:,.2f} MB"],
    ]
    if c.tokens_dropped:
        rows.append(["remainder tokens dropped", c.tokens_dropped])
    categories = ["tokens", "padding"] + (["dropped remainders"] if c.tokens_dropped else [])
    values = [c.tokens, c.pad_tokens] + ([c.tokens_dropped] if c.tokens_dropped else [])
    parts = [hbar_chart(categories, {"tokens": values}, "row slots: tokens and padding"),
             table(["", "value"], rows, "kv")]
    lengths = stats.get(m.K_LENGTHS)
    if lengths:  # decompose: rows of lengths 2^low..2^high, each length a log bin of its own
        ns = sorted(int(n) for n in lengths)
        curriculum = stats.get(m.K_CURRICULUM) or {}
        multipliers = curriculum.get(m.K_BATCH_MULTIPLIERS) or {}
        odds = curriculum.get(m.K_SAMPLING_ODDS) or {}
        tokens = [lengths[str(n)][m.L_TOKENS] for n in ns]
        parts.append("<h3>Per row length</h3>" + histogram_chart(
            ns + [ns[-1] * 2], tokens, "tokens per row length", x_label="row length (tokens)"))
        parts.append(table(["row length", "sequences", "tokens", "share of tokens", "batch multiplier",
                            "sampling odds"],
                           [[n, lengths[str(n)][m.L_SEQUENCES], lengths[str(n)][m.L_TOKENS],
                             percent(lengths[str(n)][m.L_TOKENS], sum(tokens)), multipliers.get(str(n)),
                             odds.get(str(n))] for n in ns]))
    elif stats.get(m.K_PADDING_FRACTION) is not None:
        parts.append(_note(f"Padding fraction recorded in the manifest: {stats[m.K_PADDING_FRACTION]:.6f}."))
    return _section("packing", "Packing", *parts)


def _dedup_section(manifest: dict[str, Any]) -> str:
    d = manifest[m.K_DEDUP]
    considered = d.get(m.DEDUP_CONSIDERED, 0)
    exact, near = d.get(m.EXACT_DUPLICATE, 0), d.get(m.NEAR_DUPLICATE, 0)
    earlier = [d[k] for k in (m.EARLIER_EXACT_DUPLICATE, m.EARLIER_NEAR_DUPLICATE) if k in d]  # dedup.against
    unique = considered - exact - near - sum(earlier)
    labels = ["documents considered", "kept (unique)", m.EXACT_DUPLICATE, m.NEAR_DUPLICATE]
    chart = hbar_chart(labels + ([m.EARLIER_EXACT_DUPLICATE, m.EARLIER_NEAR_DUPLICATE] if earlier else []),
                       {"documents": [considered, unique, exact, near, *earlier]}, "deduplication")
    recipe_dedup = (manifest.get(m.K_RECIPE) or {}).get(m.R_DEDUP) or {}
    rows = [["documents considered (reached dedup)", considered], ["exact duplicates", exact],
            ["near duplicates", near],
            *([["exact duplicates of earlier outputs", earlier[0]], ["near duplicates of earlier outputs", earlier[1]]]
              if earlier else []),
            ["duplicate rate", percent(exact + near + sum(earlier), considered)],
            ["settings", ", ".join(f"{k}={v}" for k, v in recipe_dedup.items()) or None]]
    return _section("dedup", "Deduplication", chart, table(["", "value"], rows, "kv"), clusters_table(d))


def _selection_section(manifest: dict[str, Any]) -> str:
    s = manifest[m.K_SELECTION]
    parts: list[str] = []
    candidates, selected = s.get(m.S_CANDIDATES) or {}, s.get(m.S_SELECTED) or {}
    units = [u for u in candidates if u in selected]
    if units:
        parts.append(hbar_chart(units, {"selected": [100 * selected[u] / candidates[u] if candidates[u] else 0.0
                                                      for u in units]},
                                "share of the candidates selected", unit="%"))
        parts.append(table(["", *units], [["candidates", *[candidates[u] for u in units]],
                                          ["selected", *[selected[u] for u in units]],
                                          ["share selected", *[percent(selected[u], candidates[u]) for u in units]]]))
    rule = s.get(m.S_RULE)
    if rule:
        parts.append("<h3>Rule</h3>" + table(["", "value"], [[k, _plain(v)] for k, v in rule.items()], "kv"))
    scores = s.get(m.S_SCORES) or {}
    if scores:
        columns = list(dict.fromkeys(k for q in scores.values() for k in q))
        parts.append("<h3>Scores</h3>" + table(["scorer", *columns],
                                               [[key, *[q.get(col) for col in columns]] for key, q in scores.items()]))
    buckets = s.get(m.S_BUCKETS) or {}
    if buckets:
        names = list(dict.fromkeys(k for row in buckets.values() for k in row))
        parts.append("<h3>Buckets</h3>" + bar_chart(
            list(buckets), {names[0]: [row.get(names[0]) for row in buckets.values()]},
            f"{names[0]} per bucket", width=900))
        parts.append(table(["bucket", *names], [[b, *[row.get(n) for n in names]] for b, row in buckets.items()]))
    upsampled = s.get(m.S_UPSAMPLED) or {}
    if upsampled:
        names = list(dict.fromkeys(k for row in upsampled.values() for k in row))
        parts.append("<h3>Upsampled (extra copies)</h3>" + table(
            ["bucket", *names], [[b, *[row.get(n) for n in names]] for b, row in upsampled.items()]))
    if not parts:
        parts.append(_note("The manifest's selection section is empty."))
    return _section("selection", "Selection", *parts)


def _throughput_section(manifest: dict[str, Any]) -> str:
    wall = manifest.get(m.K_WALL_TIME)
    stages = manifest.get(m.K_STAGE_SECONDS) or {}
    if not wall and not stages:
        return _section("throughput", "Throughput", _note("The manifest records no timing."))
    c = Counts.from_dict(manifest[m.K_COUNTS])
    parts = []
    if wall:
        packed = m.K_SHARDS in manifest
        row = ["whole run (launch to manifest)", f"{wall:,.2f} s", f"{c.bytes_read / 1e6 / wall:,.2f}",
               f"{compact(c.records / wall)} read, {compact(c.docs_written / wall)} written",
               compact(c.tokens / wall) if packed else None]
        parts.append(table(["stage", "wall time", "MB/s (input)", "documents/s", "tokens/s"], [row]))
    if stages:
        parts += _stage_throughput(stages, c)
    else:
        parts.append(_note("The manifest records the run's wall time only (from launch to the manifest); "
                           "per-stage timings are not recorded, so no per-stage throughput is shown."))
    return _section("throughput", "Throughput", *parts)


def _stage_throughput(stages: dict[str, float], c: Counts) -> list[str]:
    """A chart and a table of the seconds spent per stage (summed over the workers) and each stage's rate."""
    names = list(stages)
    seconds = [float(stages[s]) for s in names]
    total = sum(seconds)
    chart = hbar_chart(names, {"seconds": seconds}, "seconds per stage, summed over the workers", unit=" s")
    rows = [[stage, f"{s:,.3f} s", percent(s, total), f"{c.bytes_read / 1e6 / s:,.2f}" if s > 0 else None,
             f"{c.text_chars / 1e6 / s:,.2f}" if s > 0 else None]
            for stage, s in zip(names, seconds)]
    return [chart, table(["stage", "seconds (summed)", "share", "MB/s (input)", "M chars/s (written text)"], rows,
                         "stage-seconds"),
            _note("Seconds each stage took in the threads and processes doing it, summed over all workers (not wall "
                  "clock: stages overlap, reading beside tokenizing and writing beside packing). A stage's rate is "
                  "the run's input bytes, or the characters of its written documents, divided by that stage's "
                  "seconds: how fast that stage alone went through the corpus on one thread.")]


def _plain(v: Any) -> Any:
    """A nested value as one short line for a table cell."""
    if isinstance(v, dict):
        return ", ".join(f"{k}={_plain(x)}" for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return ", ".join(str(_plain(x)) for x in v)
    return v
