"""tokenmill stats: numbers equal an independent computation (counts exact, quantiles within the sketch's error),
the sketches merge exactly, the report renders, and bad input is a clear error."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines import cli
from schemas import stats as s
from tests.conftest import write_jsonl
from transforms.report.charts import COLORS
from transforms.stats.measures import TERMINAL_PUNCTUATION, Dist, HeavyHitters, HyperLogLog, measure, merge_all, Partial
from transforms.stats.measures import measure_python, measure_texts, word_counts, word_counts_python


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, ml_texts, code_texts):
    """Two JSONL files: multilingual conversations and Python code, with planted exact duplicates, a boilerplate
    line, an empty text and a malformed line."""
    d = tmp_path_factory.mktemp("stats-in")
    prose = ["\n".join(ml_texts[i:i + 5]) for i in range(0, 1500, 5)]
    prose = [t + "\nSubscribe to our newsletter!" if i % 3 == 0 else t for i, t in enumerate(prose)]
    prose += prose[:12]  # exact duplicates
    code = [t for t in code_texts if t.strip()][:50]
    recs_a = [{"id": f"p{i}", "text": t, "source": "chat", "lang": None} for i, t in enumerate(prose)]
    recs_b = [{"id": f"c{i}", "text": t, "source": "code"} for i, t in enumerate(code)]
    a = write_jsonl(d / "a.jsonl", recs_a + [b'{"id": "broken", "text": \n'])
    b = write_jsonl(d / "b.jsonl", recs_b + [{"id": "empty", "text": "", "source": "code"}])
    texts = [r["text"] for r in recs_a + recs_b]  # the empty text is rejected by the reader (empty_text)
    return d, [a, b], texts, recs_a + recs_b


def _stats(tmp_path, inputs, *extra) -> dict:
    out = tmp_path / "stats"
    args = ["stats", "--no-progress", "-o", str(out), *extra]
    for path in inputs:
        args += ["-i", path]
    assert cli.main(args) == 0
    return json.loads((out / s.STATS_JSON).read_text())


@pytest.fixture(scope="module")
def measured(tmp_path_factory, corpus, tokenizer_path):
    _, inputs, _, _ = corpus
    tmp = tmp_path_factory.mktemp("stats-out")
    return _stats(tmp, inputs, "--by", "source,lang", "--tokenizer", tokenizer_path, "--top-lines", "10"), tmp


def _inverted_cdf(values, q):
    return float(np.quantile(np.asarray(values, np.float64), q, method="inverted_cdf"))


def _close_rel(est, exact, rel):
    return abs(est - exact) <= rel * abs(exact) + 1e-9


def test_totals_and_rejections_are_exact(corpus, measured, hf_tokenizer):
    _, _, texts, _ = corpus
    st, _ = measured
    t = st[s.K_TOTALS]
    assert t[s.DOCUMENTS] == len(texts)
    assert t[s.BYTES] == sum(len(x.encode()) for x in texts)
    assert t[s.CHARACTERS] == sum(len(x) for x in texts)
    assert t[s.WORDS] == sum(len(x.split()) for x in texts)
    assert t[s.LINES] == sum(sum(1 for line in x.splitlines() if line.strip()) for x in texts)
    assert t[s.TOKENS] == sum(len(e.ids) for e in hf_tokenizer.encode_batch(texts, add_special_tokens=False))
    assert t[s.RECORDS] == len(texts) + 2 and sum(t[s.REJECTED].values()) == 2  # the broken line and the empty text


def test_length_quantiles_are_within_the_documented_error(corpus, measured, hf_tokenizer):
    _, _, texts, _ = corpus
    st, _ = measured
    values = {
        s.DOC_BYTES: [len(x.encode()) for x in texts],
        s.DOC_WORDS: [len(x.split()) for x in texts],
        s.DOC_TOKENS: [len(e.ids) for e in hf_tokenizer.encode_batch(texts, add_special_tokens=False)],
    }
    for name, vals in values.items():
        dist = st[s.K_DISTRIBUTIONS][name]
        assert dist[s.D_COUNT] == len(vals) and dist[s.D_MIN] == min(vals) and dist[s.D_MAX] == max(vals)
        assert math.isclose(dist[s.D_MEAN], sum(vals) / len(vals), rel_tol=1e-6)
        for key, q in s.QUANTILES.items():
            assert _close_rel(dist[s.D_QUANTILES][key], _inverted_cdf(vals, q), dist[s.D_ERROR]), (name, key)
        hist = dist[s.D_HISTOGRAM]
        assert sum(hist["counts"]) == len(vals) and len(hist["edges"]) == len(hist["counts"]) + 1


def test_quality_signals_match_a_direct_computation(corpus, measured):
    _, _, texts, _ = corpus
    st, _ = measured
    end_punct, dup = [], []
    for text in texts:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if lines:
            end_punct.append(sum(line.endswith(TERMINAL_PUNCTUATION) for line in lines) / len(lines))
            dup.append(1 - len(set(lines)) / len(lines))
    for name, vals in ((s.FRAC_LINES_END_PUNCT, end_punct), (s.FRAC_DUP_LINES, dup)):
        dist = st[s.K_DISTRIBUTIONS][name]
        assert dist[s.D_COUNT] == len(vals) and math.isclose(dist[s.D_MEAN], np.mean(vals), abs_tol=1e-6)
        for key, q in s.QUANTILES.items():
            assert abs(dist[s.D_QUANTILES][key] - _inverted_cdf(vals, q)) <= dist[s.D_ERROR] + 1e-12, (name, key)


def test_groups_duplicates_and_frequent_lines(corpus, measured):
    _, _, texts, recs = corpus
    st, _ = measured
    by_source = st[s.K_GROUPS]["source"]
    for source in ("chat", "code"):
        mine = [r["text"] for r in recs if r["source"] == source]
        assert by_source[source][s.DOCUMENTS] == len(mine)
        assert by_source[source][s.BYTES] == sum(len(x.encode()) for x in mine)
    langs = st[s.K_GROUPS]["lang"]  # no lang values in the records: the language identifier decides
    assert sum(g[s.DOCUMENTS] for g in langs.values()) == len(texts) and len(langs) > 3
    dup = st[s.K_DUPLICATES]
    assert dup[s.DISTINCT] == len(set(texts)) and dup[s.EXACT_DUPLICATES] == len(texts) - len(set(texts)) >= 12
    assert abs(dup[s.DISTINCT_APPROX] - len(set(texts))) <= 5 * dup[s.APPROX_ERROR] * len(set(texts)) + 2
    truth = Counter(line.strip() for x in texts for line in x.splitlines() if line.strip())
    top = st[s.K_TOP_LINES]
    assert top["lines_counted"] == sum(truth.values())
    for item in top["lines"]:
        assert truth[item["line"]] - top["max_undercount"] <= item["count"] <= truth[item["line"]]
    best = max(truth.values())
    assert top["lines"][0]["count"] >= best - top["max_undercount"]
    assert any(item["line"] == "Subscribe to our newsletter!" for item in top["lines"])


def test_workers_and_split_order_do_not_change_the_numbers(tmp_path, corpus, measured, tokenizer_path):
    """Everything but the frequent-lines summary is exact and identical; that summary depends on the merge order
    (Misra-Gries) but keeps its bound on any split. Local processes (--workers 2) merge in the order of the splits,
    as one worker does: the summary is the same too."""
    _, inputs, texts, _ = corpus
    st, _ = measured
    again = _stats(tmp_path, inputs, "--by", "source,lang", "--tokenizer", tokenizer_path, "--top-lines", "10",
                   "--workers", "2")
    for key in (s.K_TOTALS, s.K_DISTRIBUTIONS, s.K_GROUPS, s.K_DUPLICATES):
        assert again[key] == st[key], key
    truth = Counter(line.strip() for x in texts for line in x.splitlines() if line.strip())
    top = again[s.K_TOP_LINES]
    assert top["lines_counted"] == st[s.K_TOP_LINES]["lines_counted"]
    for item in top["lines"]:
        assert truth[item["line"]] - top["max_undercount"] <= item["count"] <= truth[item["line"]]
    assert top["lines"] == st[s.K_TOP_LINES]["lines"][:10]
    assert top["max_undercount"] == st[s.K_TOP_LINES]["max_undercount"]


def test_sketches_merge_exactly_whatever_the_split():
    rng = np.random.default_rng(3)
    texts = [" ".join(rng.choice(["a", "bb", "ccc!", "#", "dd."], size=int(n)))
             + ("\nsame line" if n % 2 else "") for n in rng.integers(1, 60, 400)]
    whole = Partial()
    m = measure(texts)
    whole.add(m, None, m.hashes, {"k": [str(len(t) % 3) for t in texts]})
    parts = []
    for a, b in ((0, 7), (7, 150), (150, 151), (151, 400)):
        p = Partial()
        mm = measure(texts[a:b])
        p.add(mm, None, mm.hashes, {"k": [str(len(t) % 3) for t in texts[a:b]]})
        parts.append(p)
    merged = merge_all(reversed(parts), False, 1000)
    for name, dist in whole.dists.items():
        assert np.array_equal(dist.bins, merged.dists[name].bins) and dist.count == merged.dists[name].count
    assert np.array_equal(whole.hll.registers, merged.hll.registers)
    assert whole.counts == merged.counts and whole.lines.counts == merged.lines.counts
    assert {k: g.counts for k, g in whole.groups["k"].items()} == {k: g.counts for k, g in merged.groups["k"].items()}


def test_misra_gries_bound_holds_under_pruning():
    rng = np.random.default_rng(0)
    lines = [f"line {int(x)}" for x in rng.zipf(1.3, 20000)]
    truth = Counter(lines)
    parts = []
    for i in range(0, len(lines), 1000):
        h = HeavyHitters(k=20)
        h.update(dict(Counter(lines[i:i + 1000])), 1000)
        parts.append(h)
    total = HeavyHitters(k=20)
    for h in parts:
        total.merge(h)
    assert total.undercount <= len(lines) / 21 * 2 and len(total.counts) <= 20
    for line, n in total.counts.items():
        assert truth[line] - total.undercount <= n <= truth[line]
    assert total.top(1)[0][0] == truth.most_common(1)[0][0]


def test_hyperloglog_and_dist_edges():
    h = HyperLogLog()
    h.add(np.frombuffer(np.random.default_rng(0).bytes(8 * 200_000), np.uint64))
    assert abs(h.estimate() - 200_000) < 0.04 * 200_000
    assert HyperLogLog().estimate() == 0
    d = Dist("log")
    d.add(np.array([0, 0, 1, 5, 1000]))
    assert d.quantile(0.4) == 0 and d.quantile(1.0) == 1000 and _close_rel(d.quantile(0.8), 5, 0.01)


def test_report_is_self_contained_with_charts(measured):
    _, tmp = measured
    html = (tmp / "stats" / s.REPORT_HTML).read_text()
    assert "http://" not in html and "https://" not in html and "<script" not in html
    for section in ("overview", "lengths", "signals", "groups", "duplicates", "top-lines"):
        assert f'data-section="{section}"' in html
    assert html.count("<svg") >= 8


def test_report_renders_in_headless_chromium(measured, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no chromium, chromium-browser or google-chrome on PATH")
    image = pytest.importorskip("PIL.Image")
    _, tmp = measured
    png = tmp_path / "stats.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={png}",
                    "--window-size=1200,2400", (tmp / "stats" / s.REPORT_HTML).resolve().as_uri()],
                   check=True, capture_output=True, timeout=60)
    pixels = image.open(png).convert("RGB")
    colours = pixels.getcolors(maxcolors=1 << 24)
    total = pixels.width * pixels.height
    white = sum(n for n, c in colours if c == (255, 255, 255))
    bars = sum(n for n, c in colours if c == tuple(int(COLORS[0][i:i + 2], 16) for i in (1, 3, 5)))
    assert total - white > total // 50 and bars > 2000


def test_a_filter_output_is_measured_with_its_funnel(tmp_path, corpus):
    _, inputs, _, _ = corpus
    out = tmp_path / "filtered"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("dedup: {exact: true}\n")
    assert cli.main(["filter", "-i", inputs[0], "-o", str(out), "--recipe", str(recipe), "--no-progress"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    st = _stats(tmp_path, [str(out)])
    assert st[s.K_TOTALS][s.DOCUMENTS] == manifest["counts"]["docs_written"]
    assert st[s.K_DUPLICATES][s.EXACT_DUPLICATES] == 0  # dedup removed them
    assert st[s.K_FUNNEL][0]["documents"] == manifest["counts"]["records"]


def test_a_prepare_output_is_measured_from_its_inputs_with_its_funnel(tmp_path, corpus, tokenizer_path):
    from tests.conftest import prepare

    _, inputs, texts, _ = corpus
    manifest = prepare(inputs, tmp_path / "prepared", tokenizer_path)
    st = _stats(tmp_path, [str(tmp_path / "prepared")])
    assert st[s.K_TOTALS][s.DOCUMENTS] == len(texts) and st[s.K_TOTALS][s.RECORDS] == manifest["counts"]["records"]
    stages = [x["documents"] for x in st[s.K_FUNNEL]]
    assert stages[0] == manifest["counts"]["records"] and stages[-1] == manifest["counts"]["docs_written"]
    assert 'data-section="funnel"' in (tmp_path / "stats" / s.REPORT_HTML).read_text()


def test_parquet_and_text_inputs_with_a_metadata_field(tmp_path, corpus):
    import pyarrow as pa
    import pyarrow.parquet as pq

    _, _, texts, recs = corpus
    table = pa.table({"text": [r["text"] for r in recs[:120]], "domain": [f"d{i % 4}" for i in range(120)]})
    pq.write_table(table, tmp_path / "docs.parquet", row_group_size=25)
    (tmp_path / "plain.txt").write_text("first line\nsecond line\n", encoding="utf-8")
    st = _stats(tmp_path, [str(tmp_path / "docs.parquet"), str(tmp_path / "plain.txt")], "--by", "domain")
    assert st[s.K_TOTALS][s.DOCUMENTS] == 120 + 1
    text_bytes = sum(len(r["text"].encode()) for r in recs[:120])
    assert st[s.K_TOTALS][s.BYTES] == text_bytes + len(b"first line\nsecond line\n")
    domains = st[s.K_GROUPS]["domain"]
    assert {k: v[s.DOCUMENTS] for k, v in domains.items()} == {"d0": 30, "d1": 30, "d2": 30, "d3": 30,
                                                                s.MISSING_VALUE: 1}


def test_bad_inputs_are_clear_errors(tmp_path, corpus, capsys):
    _, inputs, _, _ = corpus
    assert cli.main(["stats", "-i", str(tmp_path / "nothing-*.jsonl"), "-o", str(tmp_path / "o")]) == 2
    assert "nothing-" in capsys.readouterr().err
    _stats(tmp_path, inputs[1:])
    assert cli.main(["stats", "-i", inputs[1], "-o", str(tmp_path / "stats")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert cli.main(["stats", "-i", inputs[1], "-o", str(tmp_path / "t"), "--tokenizer",
                     str(tmp_path / "missing.json")]) == 2
    assert "missing.json" in capsys.readouterr().err


# word counts: the C version (transforms/stats/_words.c) and the Python definition agree on any text
_WORD_CHARS = (" \t\n\x0b\x0c\r\x1c\x1f\x85\xa0\u1680\u2028\u3000_#.…" "aZ09²½Ⅻ١٣٫" "éßДжЖ中文かカ한"
               "\u0301\u200b\ufeff\U0001f600\U00010400")


@pytest.mark.skipif(word_counts is None, reason="transforms.stats._words was not built here")
@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from(_WORD_CHARS), max_size=60) | st.text(max_size=60))
def test_word_counts_in_c_equal_the_python_definition(text: str) -> None:
    assert word_counts(text) == word_counts_python(text)


def test_word_counts_python_is_split_and_the_letter_regex() -> None:
    assert word_counts_python("") == (0, 0, 0)
    assert word_counts_python("  \n ") == (0, 0, 0)
    # "12" and "__" hold no letter; "x1" and "²" do ([^\W\d_]: word characters but digits and "_"); "Дом" is all letters
    assert word_counts_python("12 __ x1 ² Дом 中文") == (6, 12, 4)
    assert word_counts_python("a\u3000b\x85c") == (3, 3, 3)  # Unicode whitespace splits words as str.split does


# the batch measures: the C pass (_words.measure_texts) and the Python definition agree on any batch of texts
_LINE_CHARS = _WORD_CHARS + "\u2029\x1d\x1e!?”。)•-*–…" + "\ud800"  # line breaks, terminal punctuation, bullets


def _same_measures(texts: list[str]) -> None:
    a, b = measure(texts), measure_python(texts)
    for name in ("bytes", "chars", "words", "lines", "hashes"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.signals.keys() == b.signals.keys()
    for name in a.signals:
        assert np.array_equal(a.signals[name], b.signals[name]), name  # bit for bit, not approximately
    assert list(a.line_counts.items()) == list(b.line_counts.items())  # counts and first-occurrence order
    assert a.nonempty_lines == b.nonempty_lines


@pytest.mark.skipif(measure_texts is None, reason="transforms.stats._words was not built here")
@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet=st.sampled_from(_LINE_CHARS), max_size=80) | st.text(max_size=40), max_size=8))
def test_measures_in_c_equal_the_python_definition(texts: list[str]) -> None:
    _same_measures(texts)


@pytest.mark.skipif(measure_texts is None, reason="transforms.stats._words was not built here")
def test_measures_in_c_on_real_text(ml_texts, code_texts) -> None:
    texts = ["\n".join(ml_texts[i:i + 7]) for i in range(0, 700, 7)] + list(code_texts[:100])
    texts += ["...a....\n. . .\n…end…", "  ## x\r\n\r\n- item\n* item\n- item", "\ud83d lone", "", " \n\t "]
    _same_measures(texts)
    with pytest.raises(TypeError, match="expected str"):
        measure(["ok", b"bytes"])
