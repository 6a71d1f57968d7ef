"""``report.html`` of eval-tokenizer: one self-contained page (inline CSS, inline SVG charts drawn here, no JS)."""

from __future__ import annotations

from html import escape
from typing import Any, Sequence

COLORS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f")
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:24px;color:#222;max-width:1150px}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}h3{font-size:15px}
table{border-collapse:collapse;margin:8px 0 16px;font-size:13px}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}th{background:#f4f4f4}
td:first-child,th:first-child{text-align:left}
.legend span{display:inline-block;margin-right:14px;font-size:13px}
.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px}
code{font-size:12px;background:#f6f6f6;padding:0 3px}
"""


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3f}"
    if isinstance(v, int):
        return f"{v:,}"
    return escape(str(v))


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """An HTML table (numbers formatted, text escaped)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def legend(names: Sequence[str]) -> str:
    """Colour legend of the series."""
    items = "".join(f'<span><i style="background:{COLORS[k % len(COLORS)]}"></i>{escape(n)}</span>'
                    for k, n in enumerate(names))
    return f'<div class="legend">{items}</div>'


def bar_chart(categories: Sequence[str], series: dict[str, Sequence[float | None]], title: str,
              reference: float | None = None, width: int = 1100, height: int = 260) -> str:
    """Grouped vertical bars as inline SVG: one group per category, one bar per series (None: no bar)."""
    values = [v for vs in series.values() for v in vs if v is not None]
    top = max(values + ([reference] if reference else []) + [1e-9]) * 1.1
    left, bottom, pad_top = 48, 60, 24
    plot_w, plot_h = width - left - 10, height - bottom - pad_top
    n_cat, n_ser = max(1, len(categories)), max(1, len(series))
    group_w = plot_w / n_cat
    bar_w = max(1.0, group_w * 0.8 / n_ser)
    parts = [f'<svg width="{width}" height="{height}" role="img" '
             f'aria-label="{escape(title)}">',
             f'<text x="{left}" y="16" font-size="13" font-weight="bold">{escape(title)}</text>']
    for k in range(5):  # grid and y labels
        v = top * k / 4
        y = pad_top + plot_h - plot_h * k / 4
        parts.append(f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e5e5"/>'
                     f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{v:.3g}</text>')
    for c, cat in enumerate(categories):
        x0 = left + c * group_w + group_w * 0.1
        for s, (name, vs) in enumerate(series.items()):
            v = vs[c] if c < len(vs) else None
            if v is None:
                continue
            h = plot_h * v / top
            parts.append(f'<rect x="{x0 + s * bar_w:.1f}" y="{pad_top + plot_h - h:.1f}" width="{bar_w:.1f}" '
                         f'height="{h:.1f}" fill="{COLORS[s % len(COLORS)]}"><title>{escape(name)} · '
                         f'{escape(cat)}: {v:.4g}</title></rect>')
        label = cat if len(cat) <= 14 else cat[:13] + "…"
        cx = left + c * group_w + group_w / 2
        parts.append(f'<text x="{cx:.1f}" y="{pad_top + plot_h + 14}" font-size="10" text-anchor="end" '
                     f'transform="rotate(-35 {cx:.1f} {pad_top + plot_h + 14})">{escape(label)}</text>')
    if reference:
        y = pad_top + plot_h - plot_h * reference / top
        parts.append(f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#333" '
                     f'stroke-dasharray="4 3"/>')
    parts.append(f'<line x1="{left}" x2="{left}" y1="{pad_top}" y2="{pad_top + plot_h}" stroke="#999"/></svg>')
    return "".join(parts)


def _stats_rows(groups: dict[str, Any], names: Sequence[str]) -> list[list[Any]]:
    rows = []
    for g, per in groups.items():
        for n in names:
            s = per.get(n)
            if s:
                rows.append([g, n, s["documents"], s["bytes"], s["tokens"], s["bytes_per_token"],
                             s["chars_per_token"], s["fertility"], s["nsl"]])
    return rows


def render_html(report: dict[str, Any]) -> str:
    """The whole report page from report.json's content."""
    names = [t["name"] for t in report["tokenizers"]]
    groups = report["corpus"]["groups"]
    out = [f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Tokenizer evaluation</title>"
           f"<style>{CSS}</style></head><body><h1>Tokenizer evaluation</h1>"]
    out.append(table(["tokenizer", "path", "vocab", "special tokens", "byte-level"],
                     [[t["name"], t["path"], t["vocab_size"], t["special_tokens"], str(t["byte_level"])]
                      for t in report["tokenizers"]]))
    out.append("<p>NSL is relative to the first tokenizer. Inputs: "
               + ", ".join(f"<code>{escape(i)}</code>" for i in report["options"]["inputs"]) + "</p>")
    out.append("<h2>Compression</h2>" + legend(names))
    langs = [g for g in groups if g.startswith("lang:")]
    if langs:
        out.append(bar_chart([g[5:] for g in langs],
                             {n: [groups[g].get(n, {}).get("bytes_per_token") for g in langs] for n in names},
                             "bytes per token by language"))
    header = ["group", "tokenizer", "documents", "bytes", "tokens", "bytes/token", "chars/token", "fertility", "NSL"]
    out.append(table(header, _stats_rows(groups, names)))
    par = report.get("parity")
    if par:
        out.append(f"<h2>Parity premium (reference: {escape(par['reference'])})</h2>" + legend(names))
        pl = list(par["languages"])
        if pl:
            out.append(bar_chart(pl, {n: [par["languages"][lang][n]["premium"] for lang in pl] for n in names},
                                 f"tokens(L) / tokens({par['reference']}) on aligned records", reference=1.0))
        out.append(table(["language", "tokenizer", "records", "tokens", "reference tokens", "premium", "mean ratio"],
                         [[lang, n, v["records"], v["tokens"], v["reference_tokens"], v["premium"], v["mean_ratio"]]
                          for lang, per in par["languages"].items() for n, v in per.items()]))
    out.append("<h2>Vocabulary use on the corpus</h2>")
    voc = report["vocabulary"]
    out.append(table(["tokenizer", "non-special", "produced", "utilisation", "never produced", "sample"],
                     [[n, v["non_special"], v["produced"], v["utilisation"], v["never_produced"],
                       " ".join(repr(t) for _, t in v["never_produced_sample"][:10])] for n, v in voc.items()]))
    if voc:
        bins = next(iter(voc.values()))["length_histogram"]["bins"]
        shares = {}
        for n, v in voc.items():
            total = sum(v["length_histogram"]["corpus"]) or 1
            shares[n] = [x / total for x in v["length_histogram"]["corpus"]]
        out.append(legend(names) + bar_chart(bins, shares, "token length in bytes, share of corpus tokens"))
    out.append("<h2>Magikarp checks (tokenizer only)</h2>")
    mk = report["magikarp"]
    out.append(table(["tokenizer", "checked", "round-trip failures", "partial UTF-8", "unreachable", "samples"],
                     [[n, m["checked"], m["round_trip_failures"], m["partial_utf8"], m["unreachable"],
                       " ".join(repr(t) for _, t in (m["samples"]["round_trip_failures"]
                                                     + m["samples"]["unreachable"])[:10])]
                      for n, m in mk.items()]))
    out.append("<h2>Vocabulary classes (Qtok)</h2>")
    q = report["qtok"]
    if q:
        classes = list(next(iter(q.values()))["classes"])
        positions = list(next(iter(q.values()))["position"])
        out.append(table(["tokenizer", *classes, "single char"],
                         [[n, *[v["classes"][c] for c in classes], v["single_character"]] for n, v in q.items()]))
        out.append(table(["tokenizer", *positions], [[n, *[v["position"][p] for p in positions]] for n, v in q.items()]))
        scripts = sorted({s for v in q.values() for s in v["scripts"]})
        out.append("<h3>Scripts of alphabetic tokens</h3>"
                   + table(["tokenizer", *scripts], [[n, *[v["scripts"].get(s, 0) for s in scripts]]
                                                    for n, v in q.items()]))
    out.append("</body></html>\n")
    return "".join(out)
