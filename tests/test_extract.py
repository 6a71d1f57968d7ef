"""The ``extract`` stage: HTML to text as datatrove's Trafilatura extractor gives it, document by document (with its
dedup cache emptied per document, so that a text depends on its page alone), resiliparse as DCLM called it; pages
without text, past the time limit or failing are rejected with their reason and the stream goes on.

The pages are made here from what every installation has: pydoc's HTML documentation of standard-library modules,
and articles (navigation, aside, footer around the prose) built from the standard library's docstrings.
"""

from __future__ import annotations

import html
import importlib
import itertools
import json
import os
import pydoc
import re
import signal
import time

import pytest

from pipelines import cli
from schemas import manifest as m
from schemas.documents import iter_documents
from tests.conftest import write_jsonl
from transforms.filter.chain import DatatroveEngine, FastEngine
from transforms.filter.registry import STAGES
from transforms.read.demo_corpus import demo_records
from transforms.recipe.errors import RecipeError
from transforms.recipe.recipes import parse_recipe

MODULES = ("json", "textwrap", "string", "heapq", "bisect", "shlex", "difflib", "fractions", "calendar", "base64",
           "csv", "queue")
NOTICE = ("This page belongs to a documentation set generated from the sources of the Python standard library; its "
          "text is the docstrings of one module, shown as they are written.")  # on every article: a repeated segment
TAG = re.compile(r"</?(?:html|body|p|a|pre|td|tr|table|font|div|h1|h2|ul|li|nav|footer|br|strong)\b[^>]*>", re.I)
EMPTY_PAGES = ["", " \n\t ", "<html><body></body></html>", "<!-- only a comment -->",
               "<html><head><title>t</title><script>var a = 1;</script><style>p {}</style></head><body> </body></html>"]


def _tags_left(page: str, text: str) -> set[str]:
    """Tags in the extracted text that are not text of the page (pydoc's difflib page shows a literal <P>)."""
    return set(TAG.findall(text)) - set(TAG.findall(html.unescape(TAG.sub("", page))))


def _pydoc_page(name: str) -> str:
    module = importlib.import_module(name)
    return pydoc.html.page(pydoc.describe(module), pydoc.html.document(module, name))


def _article(title: str, prose: str) -> str:
    blocks = [f"<pre>{html.escape(b)}</pre>" if b.startswith((" ", ">>>")) else f"<p>{html.escape(b)}</p>"
              for b in prose.split("\n\n")]
    blocks.insert(1, f"<p>{NOTICE}</p>")
    t = html.escape(title)
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{t}</title></head><body>"
            "<header><nav><ul><li><a href='/'>Home</a></li><li><a href='/modules'>Modules</a></li>"
            "<li><a href='/about'>About</a></li></ul></nav></header>"
            f"<main><article><h1>{t}</h1>{''.join(blocks)}</article><aside><h2>Related pages</h2><ul>"
            "<li><a href='/json'>json</a></li><li><a href='/csv'>csv</a></li></ul></aside></main>"
            "<footer><p>Copyright the authors. All rights reserved.</p>"
            "<p><a href='/privacy'>Privacy</a> <a href='/terms'>Terms</a></p></footer></body></html>")


@pytest.fixture(scope="module")
def articles() -> list[str]:
    docs = [r for r in itertools.islice(demo_records(), 400)
            if r["source"] == "stdlib-docstrings" and 1500 < len(r["text"]) < 20000][:12]
    assert len(docs) == 12
    return [_article(d["id"][4:], d["text"]) for d in docs]


@pytest.fixture(scope="module")
def pages(articles) -> list[str]:
    """24 real pages: pydoc's documentation of 12 modules, then 12 articles."""
    return [_pydoc_page(name) for name in MODULES] + articles


@pytest.fixture(scope="module")
def hostile_page() -> str:
    """Several MB of distinct paragraphs: trafilatura needs seconds on it (a pathological page)."""
    paragraphs = [p for r in itertools.islice(demo_records(), 3000) if r["source"] == "stdlib-docstrings"
                  for p in r["text"].split("\n\n") if len(p) > 80]
    body = "".join(f"<div><p>{n}. {html.escape(p)}</p></div>" for n in range(2) for p in paragraphs)
    assert len(body) > 3_000_000
    return f"<html><body><article>{body}</article></body></html>"


def _recipe(params: dict | None = None, engine: str = "fast"):
    return parse_recipe({"engine": engine, "filters": [{"name": "extract", "params": params or {}}]}, "t")


def _close(engine) -> None:
    for _, rule in engine.stages:
        rule.close()


@pytest.fixture(scope="module")
def trafilatura_engine():
    engine = FastEngine(_recipe())
    yield engine
    _close(engine)


@pytest.fixture(scope="module")
def resiliparse_engine():
    engine = FastEngine(_recipe({"engine": "resiliparse"}))
    yield engine
    _close(engine)


def _apply(engine, texts: list[str]):
    return engine.apply(texts, [str(i) for i in range(len(texts))])


def _datatrove_per_document(texts: list[str], clear: bool = True) -> list[str | None]:
    """datatrove's Trafilatura extractor (its defaults) on each text; ``clear``: trafilatura's dedup cache emptied
    before each, as the stage does."""
    from datatrove.pipeline.extractors import Trafilatura
    from trafilatura.deduplication import LRU_TEST

    extractor = Trafilatura()
    out = []
    LRU_TEST.clear()
    for text in texts:
        if clear:
            LRU_TEST.clear()
        out.append(extractor.extract(text))
    LRU_TEST.clear()
    return out


@pytest.mark.parametrize("recipe_engine", ["datatrove", "fast"])
def test_trafilatura_engine_equals_datatroves_extractor_document_by_document(pages, recipe_engine):
    engine = (DatatroveEngine if recipe_engine == "datatrove" else FastEngine)(_recipe(engine=recipe_engine))
    try:
        decisions = _apply(engine, pages + EMPTY_PAGES)
    finally:
        _close(engine)
    expected = _datatrove_per_document(pages + EMPTY_PAGES)
    assert [(d.keep, d.text if d.keep else None) for d in decisions] == [(bool(t), t or None) for t in expected]
    assert all(d.keep and d.modified_by == ("extract",) for d in decisions[:len(pages)])
    assert all(not _tags_left(p, d.text) for p, d in zip(pages, decisions))
    assert all(NOTICE in d.text for d in decisions[len(MODULES):len(pages)])
    assert [d.reason for d in decisions[len(pages):]] == ["empty"] * len(EMPTY_PAGES)


def test_the_text_depends_on_its_page_alone_unlike_datatroves_process(articles, trafilatura_engine):
    # datatrove's process counts segments across documents: the notice is dropped once three pages had it
    accumulated = _datatrove_per_document(articles, clear=False)
    assert [NOTICE in t for t in accumulated] == [True] * 3 + [False] * (len(articles) - 3)
    forward = [d.text for d in _apply(trafilatura_engine, articles)]
    backward = [d.text for d in _apply(trafilatura_engine, articles[::-1])][::-1]
    repeated = [d.text for d in _apply(trafilatura_engine, [articles[5]] * 5)]
    assert forward == backward == _datatrove_per_document(articles) and all(NOTICE in t for t in forward)
    assert repeated == [forward[5]] * 5


def test_resiliparse_engine_extracts_text_without_tags_as_dclm_called_it(pages, resiliparse_engine):
    from resiliparse.extract.html2text import extract_plain_text

    decisions = _apply(resiliparse_engine, pages + EMPTY_PAGES)
    assert all(TAG.search(p) for p in pages)
    for page, d in zip(pages, decisions):
        assert d.keep and d.text.strip() and not _tags_left(page, d.text)
        assert d.text == extract_plain_text(page, main_content=True)  # DCLM's call, every other option its default
    assert [d.reason for d in decisions[len(pages):]] == ["empty"] * len(EMPTY_PAGES)
    again = _apply(resiliparse_engine, (pages + [pages[0]] * 3)[::-1])[::-1]
    assert [d.text for d in again] == [d.text for d in decisions[:len(pages)]] + [decisions[0].text] * 3


def test_a_page_past_the_timeout_is_rejected_and_the_stream_goes_on(pages, hostile_page):
    engine = FastEngine(_recipe({"timeout": 0.5}))
    try:
        started = time.monotonic()
        decisions = _apply(engine, [pages[0], hostile_page, pages[1], hostile_page, pages[2]])
        elapsed = time.monotonic() - started
    finally:
        _close(engine)
    assert [(d.keep, d.stage, d.reason) for d in decisions] == [
        (True, None, None), (False, "extract", "timeout"), (True, None, None), (False, "extract", "timeout"),
        (True, None, None)]
    assert [d.text for d in decisions[::2]] == _datatrove_per_document(pages[:3])
    assert decisions[1].text == hostile_page  # a rejected document keeps its input text
    assert elapsed < 15  # each timeout: the limit, then a restart of the helper process


def test_extractor_errors_and_a_killed_helper_are_counted_not_fatal(pages, resiliparse_engine):
    (_, rule), = resiliparse_engine.stages
    lone_surrogate = "<p>half of a pair: \ud800</p>"  # resiliparse refuses it (a TypeError inside the extractor)
    decisions = _apply(resiliparse_engine, [lone_surrogate, pages[0]])
    assert [(d.keep, d.reason) for d in decisions] == [(False, "error"), (True, None)]
    os.kill(rule.extract._process.pid, signal.SIGKILL)  # as the kernel's OOM killer would
    rule.extract._process.join()
    decisions = _apply(resiliparse_engine, [pages[1], pages[2]])
    assert [(d.keep, d.reason) for d in decisions] == [(False, "error"), (True, None)]


@pytest.mark.parametrize("params, message", [
    ({"engine": "lxml"}, r"filter 1 \(extract.engine\): unknown engine 'lxml'; valid: trafilatura, resiliparse"),
    ({"timeout": 0}, r"\(extract.timeout\): must be a number of seconds above 0"),
    ({"timeout": "1s"}, r"\(extract.timeout\): expected a number"),
    ({"include_images": True}, r"\(extract.include_images\): not implemented"),
    ({"main_content": False}, r"\(extract\): 'main_content' only apply to engine resiliparse, not trafilatura"),
    ({"engine": "resiliparse", "deduplicate": False}, r"'deduplicate' only apply to engine trafilatura"),
    ({"engine": "resiliparse", "skip_elements": ["[["]}, r"\(extract.skip_elements\): not a list of CSS selectors"),
    ({"engine": None}, r"'engine' must have a value"),
    ({"favor_precision": True}, r"unknown parameter\(s\) 'favor_precision'"),
])
def test_bad_parameters_name_the_option(params, message):
    with pytest.raises(RecipeError, match=message):
        _recipe(params)


def test_parameters_build_datatroves_extractor():
    from datatrove.pipeline.extractors import Trafilatura

    stage = _recipe({"favour_precision": False, "timeout": 2}).filters[0]
    extractor = STAGES["extract"].datatrove_filter(stage)
    assert isinstance(extractor, Trafilatura) and extractor.timeout == 2.0 and extractor.favour_precision is False
    with pytest.raises(NotImplementedError, match="no resiliparse extractor"):
        STAGES["extract"].datatrove_filter(_recipe({"engine": "resiliparse"}).filters[0])
    from pipelines.stream_job import recipe_epilog

    assert f"  {'extract':<18} {STAGES['extract'].doc}" in recipe_epilog()  # listed in prepare/filter --help


def test_filter_command_extracts_html_and_accounts_for_every_document(pages, hostile_page, tmp_path):
    kept_pages = pages[:4] + pages[-4:]
    records = [{"id": f"page{i}", "text": p} for i, p in enumerate(kept_pages)]
    records += [{"id": "blank", "text": "<html><body><script>1</script></body></html>"},
                {"id": "hostile", "text": hostile_page}]
    data = write_jsonl(tmp_path / "in.jsonl", records)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("filters: [{name: extract}]\n")
    out = tmp_path / "out"
    assert cli.main(["filter", "-i", data, "-o", str(out), "--recipe", str(recipe), "--no-progress"]) == 0
    c = json.loads((out / "manifest.json").read_text())[m.K_COUNTS]
    assert c["records"] == len(records) == c["docs_written"] + sum(c["docs_rejected"].values())
    assert c["docs_rejected"] == {"extract/empty": 1, "extract/timeout": 1}
    assert c["docs_modified"] == {"extract": len(kept_pages)}
    docs = {d["id"]: d["text"] for d in iter_documents(str(out))}
    assert docs == {f"page{i}": t for i, t in enumerate(_datatrove_per_document(kept_pages))}
    rejected = [json.loads(line) for p in sorted((out / "rejected").glob("*.jsonl")) for line in p.open()]
    assert {r["id"]: (r["stage"], r["detail"]) for r in rejected} == {
        "blank": (m.STAGE_FILTER, "extract/empty"), "hostile": (m.STAGE_FILTER, "extract/timeout")}
