"""``report.html`` of eval-tokenizer: one self-contained page (inline CSS, inline SVG charts from transforms.report.charts, no JS)."""

from __future__ import annotations

from html import escape
from typing import Any, Sequence

from transforms.report.charts import bar_chart, legend, page, table


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
    out = [table(["tokenizer", "path", "vocab", "special tokens", "byte-level"],
                 [[t["name"], t["path"], t["vocab_size"], t["special_tokens"], str(t["byte_level"])]
                  for t in report["tokenizers"]])]
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
    return page("Tokenizer evaluation", out)
