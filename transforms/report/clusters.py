"""The "largest duplicate clusters" table of report.html's deduplication section, from the manifest's
``dedup.clusters`` (each kept document with how many documents its cluster has and a sample of the members
rejected as its duplicates: what dedup removed, in the users' own words)."""

from __future__ import annotations

from html import escape
from typing import Any

from schemas import manifest as m
from transforms.report.charts import table


def clusters_table(dedup: dict[str, Any]) -> str:
    """The table, or "" when the run found no duplicates."""
    clusters = dedup.get(m.DEDUP_CLUSTERS) or []
    if not clusters:
        return ""
    rows = []
    for cluster in clusters:
        kept = str(cluster.get(m.CL_KEPT))
        if cluster.get(m.CL_EARLIER):
            kept += f" (in {cluster[m.CL_EARLIER]})"
        for i, member in enumerate(cluster.get(m.CL_MEMBERS) or [{}]):
            first = i == 0
            rows.append([kept if first else "", cluster.get(m.CL_DOCUMENTS) if first else "",
                         member.get(m.CL_ID), member.get(m.CL_REASON), member.get(m.CL_EXCERPT)])
    note = ("The largest clusters: the document kept, the documents in its cluster (itself included) and the first "
            "members rejected as its duplicates, in read order, with the start of their text.")
    return ("<h3>Largest duplicate clusters</h3>"
            + table(["kept document", "documents", "a rejected member", "reason", "its text begins"], rows)
            + f'<p class="note">{escape(note)}</p>')
