"""The "Decontamination" section of report.html, drawn from the manifest: per evaluation set of the recipe's
``decontam`` stages, its index (items, distinct n-grams) and what it matched (``counts.stage_counts``:
``decontam/<set>/documents`` and ``decontam/<set>/ngrams``), beside the documents dropped and cut."""

from __future__ import annotations

from html import escape
from typing import Any

from schemas import manifest as m
from schemas.manifest import Counts
from transforms.report.charts import hbar_chart, percent, table

STAGE = "decontam"


def decontam_section(manifest: dict[str, Any]) -> str | None:
    """The section, or None when the recipe has no decontam stage."""
    stages = [f[m.R_STAGE_PARAMS] for f in (manifest.get(m.K_RECIPE) or {}).get(m.R_FILTERS, [])
              if f.get(m.R_STAGE_NAME) == STAGE]
    if not stages:
        return None
    c = Counts.from_dict(manifest[m.K_COUNTS])
    rows: list[list[Any]] = []
    for params in stages:
        for name, index in ((params.get("index") or {}).get("sets") or {}).items():
            documents = c.stage_counts.get(f"{STAGE}/{name}/documents", 0)
            rows.append([name, params.get("n"), params.get("mode"), index.get("items"), index.get("ngrams"),
                         documents, c.stage_counts.get(f"{STAGE}/{name}/ngrams", 0), percent(documents, c.records)])
    dropped = sum(n for key, n in c.docs_rejected.items() if key.partition("/")[0] == STAGE)
    cut = c.docs_modified.get(STAGE, 0)
    chart = hbar_chart([r[0] for r in rows], {"documents": [r[5] for r in rows]},
                       "documents sharing an n-gram with each evaluation set")
    body = table(["evaluation set", "n", "mode", "items", "index n-grams", "documents matched", "n-grams matched",
                  "of records read"], rows)
    totals = table(["", "documents"], [["dropped", dropped], ["kept with the shared spans cut out", cut]], "kv")
    note = ("A document is counted once for each evaluation set it shares an n-gram with (dropped or kept); its "
            "n-grams matched are word positions, repeats included. Texts are compared after datatrove's "
            "normalisation (lower-case, punctuation and diacritics removed, numbers as 0).")
    return (f'<section id="decontam"><h2>Decontamination</h2>{chart}{body}{totals}'
            f'<p class="note">{escape(note)}</p></section>')
