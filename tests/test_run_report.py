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
from transforms.report.charts import COLORS, funnel_chart, hbar_chart, histogram_chart, table
from transforms.read.demo_corpus import prose_and_code
from transforms.report.run_report import render_run_html

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
def corpus(tmp_path_factory, ml_texts) -> list[str]:
    """Two files: conversations (most fail C4's sentence count) and a broken line; prose pages (most kept; some
    planted twice)."""
    d = tmp_path_factory.mktemp("report-in")
    prose, _ = prose_and_code(120)
    pages = ["\n".join(prose[i:i + 3]) for i in range(0, 120, 3)]
    conversations = ["\n".join(ml_texts[i:i + 8]) for i in range(100, 500, 8)]
    records = [{"id": f"doc{i}", "text": t} for i, t in enumerate(conversations + pages + pages[:8])]
    return [write_jsonl(d / "chat.jsonl", records[:len(conversations)] + [b"{not json\n"]),
            write_jsonl(d / "pages.jsonl", records[len(conversations):])]


@pytest.fixture(scope="module")
def runs(corpus, tokenizer_path, tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    """A prepare run (filters, dedup, selection, decompose packing) and a filter run (filters, dedup)."""
    d = tmp_path_factory.mktemp("report-runs")
    (d / "prepare.yaml").write_text(PREPARE_RECIPE)
    (d / "filter.yaml").write_text(FILTER_RECIPE)
    prepared = prepare(corpus, d / "prepared", tokenizer_path, seq_len=64, recipe=str(d / "prepare.yaml"),
                       packing="decompose", decompose_range="4:6")
    filtered = run_filter(FilterConfig(inputs=corpus, output=str(d / "filtered"), recipe=str(d / "filter.yaml")))
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
    expected = {"prepare": {"funnel", "rejections", "sources", "packing", "dedup", "selection", "throughput"},
                "filter": {"funnel", "rejections", "sources", "dedup", "throughput"}}
    for kind, (out, manifest) in runs.items():
        sections = _sections((out / m.REPORT_HTML).read_text(encoding="utf-8"))
        assert expected[kind] | {"run"} == set(sections)
        for key in expected[kind]:
            assert "<svg" in sections[key], f"{kind}: section {key} has no chart"
    html = (runs["prepare"][0] / m.REPORT_HTML).read_text(encoding="utf-8")
    stats = runs["prepare"][1][m.K_PACKING_STATS]
    assert set(stats["lengths"]) == {"16", "32", "64"}
    for n, row in stats["lengths"].items():  # the per-length table shows the manifest's numbers
        assert f"<td>{n}</td><td>{row['sequences']:,}</td><td>{row['tokens']:,}</td>" in html
    wall = runs["prepare"][1][m.K_WALL_TIME]
    assert f"{wall:,.2f} s" in _sections(html)["throughput"]


class _Rows(HTMLParser):
    """The cell texts of every row of the tables with a given class."""

    def __init__(self, css_class: str) -> None:
        super().__init__()
        self.css_class = css_class
        self.inside = False
        self.rows: list[list[str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.inside = dict(attrs).get("class") == self.css_class
        elif tag == "tr" and self.inside:
            self.rows.append([])
        elif tag in ("td", "th") and self.inside:
            self.rows[-1].append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self.inside = False

    def handle_data(self, data: str) -> None:
        if self.inside and self.rows and self.rows[-1]:
            self.rows[-1][-1] += data


def _table(html: str, css_class: str) -> list[dict[str, str]]:
    parser = _Rows(css_class)
    parser.feed(html)
    header, *rows = parser.rows
    return [dict(zip(header, row)) for row in rows]


def _number(cell: str) -> int:
    return int(cell.replace(",", ""))


@pytest.mark.parametrize("kind", ["prepare", "filter"])
def test_per_source_numbers_are_the_manifests(runs, corpus, kind):
    out, manifest = runs[kind]
    sources = manifest[m.K_SOURCES]
    assert list(sources) == corpus  # keyed by the input URLs, in the order of the inputs
    html = (out / m.REPORT_HTML).read_text(encoding="utf-8")
    rows = _table(_sections(html)["sources"], "per-source")
    assert [r["source"] for r in rows] == ["chat.jsonl", "pages.jsonl"]  # relative to the inputs' directory
    columns = {"records": "records", "documents written": "docs_written", "documents rejected": "docs_rejected",
               "bytes read": "bytes_read", "characters written": "text_chars"}
    if kind == "prepare":
        columns["tokens"] = "tokens"
    else:
        assert "tokens" not in rows[0]
    for row, url in zip(rows, corpus):
        assert {key: _number(row[col]) for col, key in columns.items()} == \
            {key: sources[url][key] for key in columns.values()}
    c = manifest[m.K_COUNTS]
    assert sum(_number(r["records"]) for r in rows) == c["records"]
    assert sum(_number(r["documents written"]) for r in rows) == c["docs_written"] > 0
    assert all(_number(r["documents rejected"]) > 0 for r in rows)
    if kind == "prepare":
        assert sum(_number(r["tokens"]) for r in rows) == c["tokens"] > 0
        assert "tokens per source" in _sections(html)["sources"]


@pytest.mark.parametrize("kind, stages", [("prepare", ["read", "recipe", "tokenize", "pack", "write"]),
                                          ("filter", ["read", "recipe", "write"])])
def test_throughput_has_a_row_per_stage(runs, kind, stages):
    out, manifest = runs[kind]
    seconds = manifest[m.K_STAGE_SECONDS]
    assert list(seconds) == stages and all(v >= 0 for v in seconds.values())
    section = _sections((out / m.REPORT_HTML).read_text(encoding="utf-8"))["throughput"]
    rows = _table(section, "stage-seconds")
    assert [r["stage"] for r in rows] == stages
    for row in rows:
        assert row["seconds (summed)"] == f"{seconds[row['stage']]:,.3f} s"
        assert row["share"].endswith("%") or row["share"] == "–"
    assert "seconds per stage" in section and "<svg" in section
    assert f"{manifest[m.K_WALL_TIME]:,.2f} s" in section  # the whole run's line stays


def test_older_manifests_without_breakdowns_say_so(runs):
    manifest = {k: v for k, v in runs["prepare"][1].items() if k not in (m.K_SOURCES, m.K_STAGE_SECONDS)}
    sections = _sections(render_run_html(manifest))
    assert "not a breakdown per source" in sections["sources"] and "per-source" not in sections["sources"]
    assert "per-stage timings are not recorded" in sections["throughput"]
    assert "stage-seconds" not in sections["throughput"]


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
    rerun = run_filter(FilterConfig(inputs=corpus, output=str(again), recipe=str(recipe)))
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
