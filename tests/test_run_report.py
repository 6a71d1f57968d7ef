"""report.html of prepare and filter runs: written beside the manifest, self-contained, and its funnel is the
manifest's counts; the chart building blocks draw what they are given and escape every text."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from pipelines.filter import FilterConfig
from pipelines.filter import run as run_filter
from schemas import manifest as m
from tests.conftest import prepare, write_jsonl
from transforms.charts import COLORS, funnel_chart, hbar_chart, histogram_chart, table
from transforms.demo_corpus import prose_and_code
from transforms.run_report import render_run_html

FILTERS = """\
filters:
  - {name: c4_quality, params: {filter_no_terminal_punct: false}}
  - {name: gopher_repetition}
"""
PREPARE_RECIPE = FILTERS + """\
scorers: [length]
ensemble: {buckets: 4, weight: tokens}
select: {min_bucket: 1}
dedup: {exact: true}
"""
FILTER_RECIPE = FILTERS + "dedup: {exact: true}\n"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, ml_texts) -> str:
    """Conversations (most fail C4's sentence count), prose pages (most kept; some planted twice), a broken line."""
    d = tmp_path_factory.mktemp("report-in")
    prose, _ = prose_and_code(120)
    pages = ["\n".join(prose[i:i + 3]) for i in range(0, 120, 3)]
    docs = ["\n".join(ml_texts[i:i + 8]) for i in range(100, 500, 8)] + pages + pages[:8]
    records = [{"id": f"doc{i}", "text": t} for i, t in enumerate(docs)]
    return write_jsonl(d / "in.jsonl", records + [b"{not json\n"])


@pytest.fixture(scope="module")
def runs(corpus, tokenizer_path, tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    """A prepare run (filters, dedup, selection, decompose packing) and a filter run (filters, dedup)."""
    d = tmp_path_factory.mktemp("report-runs")
    (d / "prepare.yaml").write_text(PREPARE_RECIPE)
    (d / "filter.yaml").write_text(FILTER_RECIPE)
    prepared = prepare(corpus, d / "prepared", tokenizer_path, seq_len=64, recipe=str(d / "prepare.yaml"),
                       packing="decompose", decompose_range="4:6")
    filtered = run_filter(FilterConfig(inputs=[corpus], output=str(d / "filtered"), recipe=str(d / "filter.yaml")))
    return {"prepare": (d / "prepared", prepared), "filter": (d / "filtered", filtered)}


class _Funnel(HTMLParser):
    """The (data-stage, data-count) pairs of a page's funnel stages, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.stages: list[tuple[str, int]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "g" and a.get("class") == "funnel-stage":
            self.stages.append((a["data-stage"], int(a["data-count"])))


def _funnel(html: str) -> list[tuple[str, int]]:
    parser = _Funnel()
    parser.feed(html)
    return parser.stages


def _expected_funnel(manifest: dict, filters: list[str], selects: bool) -> list[tuple[str, int]]:
    """The funnel computed here from the manifest's counts."""
    c = manifest[m.K_COUNTS]
    rejected = c["docs_rejected"]

    def dropped(stage: str) -> int:
        return sum(n for k, n in rejected.items() if k.startswith(stage + "/"))

    left = c["records"] - sum(n for k, n in rejected.items() if "/" not in k)
    out = [("read", c["records"]), ("parsed", left)]
    for stage in filters:
        left -= dropped(stage)
        out.append((f"after {stage}", left))
    left -= dropped(m.STAGE_DEDUP)
    out.append(("after dedup", left))
    if selects:
        left -= dropped(m.STAGE_SELECT)
        out.append(("after selection", left))
    left -= dropped(m.STAGE_PACK)
    out.append(("packed" if m.K_SHARDS in manifest else "written", left))
    return out


def _sections(html: str) -> dict[str, str]:
    return {s.split('"', 1)[0]: s for s in html.split('<section id="')[1:]}


@pytest.mark.parametrize("kind", ["prepare", "filter"])
def test_report_is_written_beside_the_manifest_and_is_self_contained(runs, kind):
    out, manifest = runs[kind]
    report = out / m.REPORT_HTML
    assert report.exists() and (out / "manifest.json").exists()
    assert report.stat().st_mtime_ns >= (out / "manifest.json").stat().st_mtime_ns  # the manifest first
    html = report.read_text(encoding="utf-8")
    assert html == render_run_html(manifest)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert "<script" not in html.lower() and "<link" not in html.lower() and "url(" not in html
    assert not (out / (m.REPORT_HTML + ".tmp")).exists()


@pytest.mark.parametrize("kind", ["prepare", "filter"])
def test_funnel_numbers_are_the_manifests_counts(runs, kind):
    out, manifest = runs[kind]
    c = manifest[m.K_COUNTS]
    for stage in ("c4_quality/", "dedup/") + (("select/",) if kind == "prepare" else ()):
        assert any(k.startswith(stage) for k in c["docs_rejected"]), f"the corpus must make {stage} drop something"
    assert c["docs_rejected"][m.MALFORMED_JSON] == 1
    got = _funnel((out / m.REPORT_HTML).read_text(encoding="utf-8"))
    assert got == _expected_funnel(manifest, ["c4_quality", "gopher_repetition"], selects=kind == "prepare")
    assert got[0][1] == c["records"] and got[-1][1] == c["docs_written"]


def test_every_section_with_numbers_has_a_chart(runs):
    expected = {"prepare": {"funnel", "rejections", "sources", "packing", "dedup", "selection"},
                "filter": {"funnel", "rejections", "sources", "dedup"}}
    for kind, (out, manifest) in runs.items():
        sections = _sections((out / m.REPORT_HTML).read_text(encoding="utf-8"))
        assert expected[kind] | {"run", "throughput"} == set(sections)
        for key in expected[kind]:
            assert "<svg" in sections[key], f"{kind}: section {key} has no chart"
    html = (runs["prepare"][0] / m.REPORT_HTML).read_text(encoding="utf-8")
    stats = runs["prepare"][1][m.K_PACKING_STATS]
    assert set(stats["lengths"]) == {"16", "32", "64"}
    for n, row in stats["lengths"].items():  # the per-length table shows the manifest's numbers
        assert f"<td>{n}</td><td>{row['sequences']:,}</td><td>{row['tokens']:,}</td>" in html
    wall = runs["prepare"][1][m.K_WALL_TIME]
    assert f"{wall:,.2f} s" in _sections(html)["throughput"]


def test_report_goes_through_fsspec(memfs, corpus, tokenizer_path):
    fs, root = memfs
    manifest = prepare(corpus, f"memory://{root}/out", tokenizer_path, seq_len=64)
    html = fs.cat_file(f"{root}/out/{m.REPORT_HTML}").decode("utf-8")
    assert _funnel(html) == [("read", manifest[m.K_COUNTS]["records"]),
                             ("parsed", manifest[m.K_COUNTS]["records"] - 1),
                             ("packed", manifest[m.K_COUNTS]["docs_written"])]


def test_rerun_into_the_same_output_replaces_the_report(runs, corpus, tmp_path):
    out, manifest = runs["filter"]
    again = tmp_path / "again"
    shutil.copytree(out, again)
    (again / m.REPORT_HTML).write_text("stale")
    recipe = tmp_path / "filter.yaml"
    recipe.write_text(FILTER_RECIPE)
    rerun = run_filter(FilterConfig(inputs=[corpus], output=str(again), recipe=str(recipe)))
    assert (again / m.REPORT_HTML).read_text(encoding="utf-8") == render_run_html(rerun)


def test_every_text_from_the_manifest_is_escaped(runs):
    manifest = dict(runs["filter"][1])
    evil = "<script>alert(1)</script>&"
    manifest[m.K_INPUTS] = [dict(manifest[m.K_INPUTS][0], url=f"/data/{evil}.jsonl")]
    counts = dict(manifest[m.K_COUNTS])
    counts["docs_rejected"] = dict(counts["docs_rejected"], **{f"c4_quality/{evil}": 0})
    manifest[m.K_COUNTS] = counts
    html = render_run_html(manifest)
    assert "<script" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;&amp;" in html


def test_funnel_chart_carries_each_stage_and_its_share():
    svg = funnel_chart([("read", 200), ("a <b>", 150), ("written", 150)], "t")
    assert _funnel(svg) == [("read", 200), ("a <b>", 150), ("written", 150)]
    assert "kept 75.0% of previous" in svg and "kept 100.0% of previous" in svg and "a &lt;b&gt;" in svg


def test_histogram_chart_draws_a_bar_per_bin_on_a_log_axis():
    svg = histogram_chart([1, 10, 100, 1000, 10_000], [5, 0, 7, 1], "lengths", x_label="bytes")
    assert svg.count("<rect") == 4
    assert [t for t in re.findall(r">([^<>]+)</text>", svg) if t in ("1", "10", "100", "1k", "10k")] == \
        ["1", "10", "100", "1k", "10k"]
    xs = [float(x) for x in re.findall(r'<rect x="([\d.]+)"', svg)]
    widths = [float(w) for w in re.findall(r'<rect x="[\d.]+" y="[\d.]+" width="([\d.]+)"', svg)]
    assert max(widths) - min(widths) < 1 and xs == sorted(xs)  # equal widths: decades are equal on a log axis
    many = histogram_chart([2 ** k for k in range(25)], list(range(24)), "many")
    assert ">1k</text>" in many and ">1M</text>" in many  # labels at the powers of ten when edges are many
    for edges in ([0, 1, 2], [1, 3, 2], [1, 2]):
        with pytest.raises(ValueError, match="edges"):
            histogram_chart(edges, [1, 1], "bad")


def test_tables_and_bars_escape_and_format():
    assert table(["a&b"], [[1234567], ["<i>"], [None], [0.5]]) == (
        "<table><tr><th>a&amp;b</th></tr><tr><td>1,234,567</td></tr><tr><td>&lt;i&gt;</td></tr>"
        "<tr><td>–</td></tr><tr><td>0.500</td></tr></table>")
    svg = hbar_chart(["<x>", "y"], {"s": [3, -1]}, "t&t")
    assert "&lt;x&gt;" in svg and "t&amp;t" in svg and svg.count("<rect") == 2


def test_report_renders_in_headless_chromium(runs, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no chromium, chromium-browser or google-chrome on PATH")
    image = pytest.importorskip("PIL.Image")
    png = tmp_path / "report.png"
    html = runs["prepare"][0] / m.REPORT_HTML
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={png}",
                    "--window-size=1200,1600", html.resolve().as_uri()], check=True, capture_output=True, timeout=60)
    pixels = image.open(png).convert("RGB")
    colours = pixels.getcolors(maxcolors=1 << 24)
    total = pixels.width * pixels.height
    white = sum(n for n, c in colours if c == (255, 255, 255))
    bars = sum(n for n, c in colours if c == tuple(int(COLORS[0][i:i + 2], 16) for i in (1, 3, 5)))
    assert total - white > total // 50, "the page rendered (nearly) blank"
    assert bars > 2000, "the charts' bars were not drawn"
