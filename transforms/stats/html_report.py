"""The self-contained ``report.html`` of ``tokenmill stats`` (inline SVG charts, no network, no JavaScript)."""

from __future__ import annotations

from html import escape
from typing import Any

from schemas import stats as s
from transforms.report.charts import bar_chart, compact, funnel_chart, hbar_chart, histogram_chart, page, percent, table

_LENGTH_TITLES = {s.DOC_BYTES: "bytes per document", s.DOC_WORDS: "words per document",
                  s.DOC_LINES: "lines per document", s.DOC_TOKENS: "tokens per document",
                  s.MEAN_WORD_LENGTH: "mean word length (characters)"}
_SIGNAL_TITLES = {
    s.FRAC_LINES_END_PUNCT: "lines ending in terminal punctuation",
    s.FRAC_SHORT_LINES: "lines of at most 30 characters",
    s.FRAC_DUP_LINES: "lines repeating an earlier line",
    s.FRAC_BULLET_LINES: "lines starting with a bullet",
    s.FRAC_ELLIPSIS_LINES: "lines ending in an ellipsis",
    s.FRAC_ALPHA_WORDS: "words with a letter",
    s.SYMBOL_WORD_RATIO: "# and ellipses per word",
    s.FRAC_UPPERCASE: "uppercase letters per character",
    s.FRAC_DIGITS: "digits per character",
}


def _section(key: str, title: str, *parts: str) -> str:
    return f'<section data-section="{escape(key)}"><h2>{escape(title)}</h2>{"".join(parts)}</section>'


def _note(text: str) -> str:
    return f'<p style="font-size:13px;color:#555">{escape(text)}</p>'


_QUANTILE_HEADER = ["documents", "mean", "min", "p10", "p50", "p90", "p99", "max"]


def _measured(stats: dict[str, Any], titles: dict[str, str]) -> list[tuple[str, str, dict[str, Any], list[Any]]]:
    """(name, title, distribution, quantile table row) of each titled distribution with values."""
    out = []
    for name, title in titles.items():
        dist = stats[s.K_DISTRIBUTIONS].get(name)
        if dist and dist[s.D_COUNT]:
            q = dist[s.D_QUANTILES]
            out.append((name, title, dist, [title, dist[s.D_COUNT], dist[s.D_MEAN], dist[s.D_MIN], q["p10"],
                                            q["p50"], q["p90"], q["p99"], dist[s.D_MAX]]))
    return out


def _overview(stats: dict[str, Any]) -> str:
    t = stats[s.K_TOTALS]
    rows = [["inputs", f"{len(stats[s.K_INPUTS]):,} files"], ["records", t[s.RECORDS]],
            ["documents", t[s.DOCUMENTS]], ["bytes", t[s.BYTES]], ["characters", t[s.CHARACTERS]],
            ["words", t[s.WORDS]], ["lines", t[s.LINES]]]
    if s.TOKENS in t:
        rows.append(["tokens", t[s.TOKENS]])
    for reason, n in t[s.REJECTED].items():
        rows.append([f"unreadable: {reason}", n])
    rows.append(["time", f"{stats[s.K_SECONDS]:.1f} s ({stats[s.K_MB_PER_SECOND] or 0:,.1f} MB/s)"])
    return _section("overview", "Overview", table(["", ""], rows))


def _lengths(stats: dict[str, Any]) -> str:
    measured = _measured(stats, _LENGTH_TITLES)
    parts = []
    for _, title, dist, _ in measured:
        hist = dist[s.D_HISTOGRAM]
        edges, counts = hist["edges"], hist["counts"]
        zeros = 0
        if edges and edges[0] == 0:
            zeros, edges, counts = counts[0], edges[1:], counts[1:]
        if counts:
            parts.append(histogram_chart(edges, counts, f"{title} (documents per bin, log scale)", title))
        if zeros:
            parts.append(_note(f"{zeros:,} documents have 0 {title.split(' ')[0]}."))
    error = 100 * measured[0][2][s.D_ERROR] if measured else 0
    return _section("lengths", "Document lengths", table(["measure", *_QUANTILE_HEADER], [m[3] for m in measured]),
                    _note(f"Quantiles from logarithmic bins: within {error:.2f}% of the exact value; counts, means, "
                          "minima and maxima are exact."), *parts)


def _signals(stats: dict[str, Any]) -> str:
    measured = _measured(stats, _SIGNAL_TITLES)
    charts = []
    for name, title, dist, _ in measured:
        hist = dist[s.D_HISTOGRAM]
        cats = [f"{a:.2f}" for a in hist["edges"][:-1]]
        charts.append(f'<div data-chart="{escape(name)}">' + bar_chart(
            cats, {"documents": hist["counts"]}, f"{title} (documents per 0.05)", width=540, height=200) + "</div>")
    grid = '<div style="display:flex;flex-wrap:wrap;gap:8px">' + "".join(charts) + "</div>"
    return _section("signals", "Quality signals (per document)",
                    table(["signal", *_QUANTILE_HEADER], [m[3] for m in measured]),
                    _note("Ratios in bins of 0.001: quantiles within 0.0005 of the exact value."), grid)


def _groups(stats: dict[str, Any]) -> str:
    parts = []
    with_tokens = s.TOKENS in stats[s.K_TOTALS]
    for by, table_ in stats[s.K_GROUPS].items():
        values = list(table_)
        total = sum(g[s.BYTES] for g in table_.values())
        parts.append(f'<h3>by {escape(by)}</h3><div data-chart="group-{escape(by)}">'
                     + hbar_chart(values[:40], {"MB": [table_[v][s.BYTES] / 1e6 for v in values[:40]]},
                                  f"MB of text per {by}", unit=" MB") + "</div>")
        header = ["value", "documents", "bytes", "share", "words", "median bytes/doc"]
        header += ["tokens", "median tokens/doc"] if with_tokens else []
        rows = []
        for v, g in table_.items():
            row = [v, g[s.DOCUMENTS], g[s.BYTES], percent(g[s.BYTES], total), g[s.WORDS],
                   g[s.DOC_BYTES][s.D_QUANTILES]["p50"]]
            if with_tokens:
                row += [g[s.TOKENS], g[s.DOC_TOKENS][s.D_QUANTILES]["p50"]]
            rows.append(row)
        parts.append(table(header, rows))
    return _section("groups", "Breakdown", *parts) if parts else ""


def _duplicates(stats: dict[str, Any]) -> str:
    d = stats[s.K_DUPLICATES]
    rows = [["exact duplicate documents", d[s.EXACT_DUPLICATES]],
            ["exact duplicate rate", percent(d[s.EXACT_DUPLICATES], stats[s.K_TOTALS][s.DOCUMENTS])],
            ["distinct documents (exact)", d[s.DISTINCT]],
            ["distinct documents (HyperLogLog)", f"{d[s.DISTINCT_APPROX]:,} (±{100 * d[s.APPROX_ERROR]:.2f}%)"]]
    return _section("duplicates", "Duplicates", table(["", ""], rows),
                    _note("A duplicate is a document whose text is byte-identical to an earlier one."))


def _top_lines(stats: dict[str, Any]) -> str:
    top = stats[s.K_TOP_LINES]
    if not top["lines"]:
        return ""
    rows = [[x["line"][:160], x["count"], percent(x["count"], top["lines_counted"])] for x in top["lines"]]
    return _section("top-lines", "Most frequent lines (boilerplate candidates)",
                    table(["line (stripped)", "count (at least)", "share of lines"], rows),
                    _note(f"Misra-Gries summary of {top['lines_counted']:,} non-empty lines: each count is short "
                          f"of the true count by at most {top['max_undercount']:,}."))


def _funnel(stats: dict[str, Any]) -> str:
    stages = stats.get(s.K_FUNNEL)
    if not stages:
        return ""
    return _section("funnel", "Funnel of the run that wrote this directory",
                    funnel_chart([(x["stage"], x["documents"]) for x in stages], "documents at each stage"))


def render_stats_html(stats: dict[str, Any]) -> str:
    """The whole report page of a stats.json document."""
    t = stats[s.K_TOTALS]
    title = f"tokenmill stats: {t[s.DOCUMENTS]:,} documents, {compact(t[s.BYTES])}B of text"
    return page(title, [_overview(stats), _funnel(stats), _lengths(stats), _signals(stats), _groups(stats),
                        _duplicates(stats), _top_lines(stats)])
