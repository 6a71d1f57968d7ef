"""Building blocks of offline HTML reports: one self-contained page (inline CSS, inline SVG, no JavaScript).

Pure string functions; every text that reaches the page is HTML-escaped here.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any, Iterable, Sequence

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


def page(title: str, body: Iterable[str], css: str = "") -> str:
    """A whole HTML page: ``title`` as its title and heading, then the ``body`` parts; ``css`` adds to the style."""
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{CSS}{css}</style></head><body><h1>{escape(title)}</h1>" + "".join(body) + "</body></html>\n")


def format_cell(v: Any) -> str:
    """A table cell's text: ints with thousands separators, floats to 3 decimals, None as a dash, text escaped."""
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3f}"
    if isinstance(v, int):
        return f"{v:,}"
    return escape(str(v))


def compact(v: float) -> str:
    """A number for an axis or a bar label: 1.23M, 45.6k, 789, 0.125."""
    a = abs(v)
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if a >= scale * 0.9995:  # what rounds to 1000 of the smaller unit is 1 of this one
            return f"{v / scale:.3g}{suffix}"
    return f"{v:.3g}"


def clip(text: str, n: int) -> str:
    """``text`` cut to ``n`` characters in the middle (both ends of a path or a reason stay readable)."""
    if len(text) <= n:
        return text
    head = (n - 1) // 2
    return text[:head] + "…" + text[len(text) - (n - 1 - head):]


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], css_class: str = "") -> str:
    """An HTML table (numbers formatted, text escaped); ``css_class`` names a class of the page's style."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{format_cell(c)}</td>" for c in r) + "</tr>" for r in rows)
    attr = f' class="{escape(css_class)}"' if css_class else ""
    return f"<table{attr}><tr>{head}</tr>{body}</table>"


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


def hbar_chart(categories: Sequence[str], series: dict[str, Sequence[float | None]], title: str,
               width: int = 900, label_width: int = 260, unit: str = "") -> str:
    """Grouped horizontal bars as inline SVG: one row group per category, one bar per series (None: no bar).

    Negative values extend left of the zero line; each bar ends with its value (``unit`` appended)."""
    values = [v for vs in series.values() for v in vs if v is not None]
    lo, hi = min(values + [0.0]), max(values + [0.0])
    span = (hi - lo) or 1.0
    n_ser = max(1, len(series))
    bar_h, gap, pad_top, value_w = 14, 8, 24, 70
    group_h = n_ser * bar_h + gap
    plot_x, plot_w = label_width, width - label_width - value_w
    height = pad_top + max(1, len(categories)) * group_h + 4
    zero = plot_x + plot_w * (-lo) / span
    parts = [f'<svg width="{width}" height="{height}" role="img" aria-label="{escape(title)}">',
             f'<text x="4" y="16" font-size="13" font-weight="bold">{escape(title)}</text>']
    for c, cat in enumerate(categories):
        y0 = pad_top + c * group_h
        parts.append(f'<text x="{plot_x - 6}" y="{y0 + n_ser * bar_h / 2 + 4:.1f}" font-size="11" '
                     f'text-anchor="end">{escape(clip(cat, label_width // 7))}<title>{escape(cat)}</title></text>')
        for s, (name, vs) in enumerate(series.items()):
            v = vs[c] if c < len(vs) else None
            if v is None:
                continue
            w = plot_w * abs(v) / span
            x = zero if v >= 0 else zero - w
            y = y0 + s * bar_h
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0.5):.1f}" height="{bar_h - 2}" '
                         f'fill="{COLORS[s % len(COLORS)]}"><title>{escape(name)} · {escape(cat)}: '
                         f'{v:,.6g}{escape(unit)}</title></rect>'
                         f'<text x="{max(zero, x + w) + 4:.1f}" y="{y + bar_h - 4:.1f}" font-size="10">'
                         f'{escape(compact(v) + unit)}</text>')
    parts.append(f'<line x1="{zero:.1f}" x2="{zero:.1f}" y1="{pad_top - 2}" y2="{height - 4}" stroke="#999"/></svg>')
    return "".join(parts)


def histogram_chart(edges: Sequence[float], counts: Sequence[float], title: str, x_label: str = "",
                    width: int = 900, height: int = 240) -> str:
    """A log-binned histogram as inline SVG: bin i spans ``edges[i]..edges[i+1]`` on a logarithmic x axis.

    ``edges`` are positive and increasing, one more than ``counts``; the axis is labelled at every edge when there
    are few, else at the powers of ten."""
    if len(edges) != len(counts) + 1 or len(counts) == 0:
        raise ValueError(f"a histogram needs one more edge than counts, got {len(edges)} edges, {len(counts)} counts")
    if edges[0] <= 0 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"log-binned histogram edges must be positive and increasing, got {list(edges)}")
    left, bottom, pad_top, right = 56, 40, 24, 16
    plot_w, plot_h = width - left - right, height - bottom - pad_top
    lmin, lmax = math.log10(edges[0]), math.log10(edges[-1])

    def x_of(v: float) -> float:
        return left + plot_w * (math.log10(v) - lmin) / (lmax - lmin)

    top = max(max(counts), 1e-9) * 1.1
    base = pad_top + plot_h
    parts = [f'<svg width="{width}" height="{height}" role="img" aria-label="{escape(title)}">',
             f'<text x="{left}" y="16" font-size="13" font-weight="bold">{escape(title)}</text>']
    for k in range(5):
        y = base - plot_h * k / 4
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e5e5"/>'
                     f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end">'
                     f'{compact(top * k / 4)}</text>')
    for a, b, n in zip(edges, edges[1:], counts):
        h = plot_h * n / top
        parts.append(f'<rect x="{x_of(a) + 0.5:.1f}" y="{base - h:.1f}" width="{max(x_of(b) - x_of(a) - 1, 0.5):.1f}" '
                     f'height="{h:.1f}" fill="{COLORS[0]}"><title>{compact(a)}–{compact(b)}: {n:,.6g}</title></rect>')
    if len(edges) <= 17:
        ticks = list(edges)
    else:
        ticks = [10.0 ** e for e in range(math.ceil(lmin), math.floor(lmax) + 1)]
    for t in ticks:
        parts.append(f'<line x1="{x_of(t):.1f}" x2="{x_of(t):.1f}" y1="{base}" y2="{base + 4}" stroke="#999"/>'
                     f'<text x="{x_of(t):.1f}" y="{base + 15}" font-size="10" text-anchor="middle">'
                     f'{compact(t)}</text>')
    if x_label:
        parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 4}" font-size="11" text-anchor="middle">'
                     f'{escape(x_label)} (log scale)</text>')
    parts.append(f'<line x1="{left}" x2="{width - right}" y1="{base}" y2="{base}" stroke="#999"/></svg>')
    return "".join(parts)


def funnel_chart(stages: Sequence[tuple[str, int]], title: str, width: int = 900, label_width: int = 220) -> str:
    """Stages of a funnel as inline SVG: a centred bar per stage sized by its count, with the share of the previous
    stage it kept; each stage is a ``<g class="funnel-stage">`` carrying ``data-stage`` and ``data-count``."""
    first = max(stages[0][1], 1) if stages else 1
    row_h, pad_top, value_w = 26, 24, 240
    plot_x, plot_w = label_width, width - label_width - value_w
    height = pad_top + max(1, len(stages)) * row_h + 4
    parts = [f'<svg width="{width}" height="{height}" role="img" aria-label="{escape(title)}">',
             f'<text x="4" y="16" font-size="13" font-weight="bold">{escape(title)}</text>']
    previous = None
    for i, (name, count) in enumerate(stages):
        y = pad_top + i * row_h
        w = max(plot_w * count / first, 1.0)
        kept = "" if previous is None else f" · kept {percent(count, previous)} of previous"
        parts.append(f'<g class="funnel-stage" data-stage="{escape(name)}" data-count="{count}">'
                     f'<text x="{plot_x - 6}" y="{y + row_h / 2 + 3:.1f}" font-size="11" text-anchor="end">'
                     f'{escape(clip(name, label_width // 7))}</text>'
                     f'<rect x="{plot_x + (plot_w - w) / 2:.1f}" y="{y + 2}" width="{w:.1f}" height="{row_h - 6}" '
                     f'fill="{COLORS[0]}">'
                     f'<title>{escape(name)}: {count:,}{kept}</title></rect>'
                     f'<text x="{plot_x + plot_w + 6}" y="{y + row_h / 2 + 3:.1f}" font-size="11">'
                     f'{count:,}{kept}</text></g>')
        previous = count
    parts.append("</svg>")
    return "".join(parts)


def percent(part: float, whole: float) -> str:
    """``part`` as a percentage of ``whole`` ('–' when ``whole`` is 0)."""
    if not whole:
        return "–"
    share = 100 * part / whole
    if 0 < share < 0.001:
        return "<0.001%"
    return f"{share:.1f}%" if share >= 10 or share == 0 else f"{share:.3g}%"
