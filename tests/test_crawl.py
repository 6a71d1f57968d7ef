"""From a raw crawl to shards: the ``fineweb-full`` preset on a WARC file (URL filter, extraction, language, the
quality chain, MinHash on the text before PII, PII), byte-identical on FnApiRunner and the portable runner, with
every record accounted for; ``dedup.after``; the ``dolma`` preset (exact and paragraph dedup)."""

from __future__ import annotations

import copy
import functools
import gzip
import html
import itertools
import json
import uuid
from pathlib import Path

import pytest

from pipelines import cli
from schemas import manifest as m
from schemas.documents import iter_documents
from tests.conftest import prepare, write_jsonl
from transforms.read.demo_corpus import demo_records
from transforms.recipe.errors import RecipeError
from transforms.recipe.recipes import PRESETS, load_recipe, parse_recipe

PORTABLE = ["--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=LOOPBACK"]
DATE = "2024-05-06T07:08:09Z"


def _record(rtype: str, uri: str, block: bytes, n: int, content_type: str, *extra: tuple[str, str]) -> bytes:
    head = [("WARC-Type", rtype), ("WARC-Record-ID", f"<urn:uuid:{uuid.UUID(int=n)}>"), ("WARC-Date", DATE),
            ("WARC-Target-URI", uri), ("Content-Type", content_type), *extra, ("Content-Length", str(len(block)))]
    return ("WARC/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head) + "\r\n").encode() + block + b"\r\n\r\n"


@functools.lru_cache(maxsize=1)
def PROSE() -> list[str]:
    """Prose paragraphs of the standard library's docstrings (sentences of words, as on a web page)."""
    paragraphs = []
    for r in itertools.islice(demo_records(), 6000):
        if r["source"] != "stdlib-docstrings":
            continue
        for p in r["text"].split("\n\n"):
            p = " ".join(p.split())
            words = p.split()
            if len(words) >= 20 and p.endswith(".") and sum(w.strip(".,;:()").isalpha() for w in words) > 0.9 * len(
                    words):
                paragraphs.append(p)
    return list(dict.fromkeys(paragraphs))


def _page(title: str, prose: str, email: str | None) -> str:
    paragraphs = [f"<p>{html.escape(p)}</p>" for p in prose.split("\n\n") if p.strip()]
    if email:
        paragraphs.insert(1, f"<p>Questions about this page go to {email}, who answers them every week.</p>")
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
            "<body><nav><a href='/'>Home</a> <a href='/about'>About</a></nav><main><article>"
            f"<h1>{html.escape(title)}</h1>{''.join(paragraphs)}</article></main>"
            "<footer><p>Copyright the authors.</p></footer></body></html>")


@pytest.fixture(scope="module")
def crawl(tmp_path_factory):
    """A WARC of 40 article pages with request and metadata records, one page copied under 4 more URLs and one
    under 2, e-mail addresses on some pages, an image response, and a gzip member cut short in the middle."""
    pages = [(f"https://docs.example.org/page{i}.html",
              _page(f"Notes {i}", "\n\n".join(PROSE()[i * 6:(i + 1) * 6]),
                    f"editor{i}@docs-example.org" if i % 3 == 0 else None)) for i in range(40)]
    pages += [(f"https://mirror{k}.example.net/a.html", pages[0][1]) for k in range(4)]
    pages += [(f"https://copy{k}.example.com/b.html", pages[1][1]) for k in range(2)]
    members = [_record("warcinfo", "", b"software: test\r\n", 1, "application/warc-fields")]
    for i, (url, page) in enumerate(pages):
        n = 100 + 10 * i
        members.append(_record("request", url, b"GET / HTTP/1.1\r\n\r\n", n, "application/http; msgtype=request"))
        body = page.encode()
        http = (f"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=UTF-8\r\nContent-Length: {len(body)}\r\n\r\n"
                ).encode() + body
        members.append(_record("response", url, http, n + 1, "application/http; msgtype=response",
                               ("WARC-Identified-Payload-Type", "text/html")))
        members.append(_record("metadata", url, b"fetchTimeMs: 7\r\n", n + 2, "application/warc-fields"))
    members.insert(9, _record("response", "https://docs.example.org/logo.png", b"HTTP/1.1 200 OK\r\nContent-Type: "
                              b"image/png\r\n\r\n\x89PNG" + bytes(64), 99, "application/http; msgtype=response",
                              ("WARC-Identified-Payload-Type", "image/png")))
    data = [gzip.compress(r, mtime=0) for r in members]
    cut = 21  # the response of page 6
    data[cut] = data[cut][: len(data[cut]) // 2]  # a member cut short: its record is rejected, the next are read
    path = tmp_path_factory.mktemp("crawl") / "crawl.warc.gz"
    path.write_bytes(b"".join(data))
    return str(path), pages, sum(len(d) for d in data[:cut])


def _response_id(page: int) -> str:
    """The WARC-Record-ID of the ``page``-th page's response record (as the crawl fixture numbers them)."""
    return f"<urn:uuid:{uuid.UUID(int=100 + 10 * page + 1)}>"


def iter_documents_of(out: Path) -> list[dict]:
    """The kept documents of an output (prepare with --emit-documents, or filter)."""
    return list(iter_documents(str(out)))


def _rejected(out: Path) -> list[dict]:
    return [json.loads(line) for f in sorted((out / "rejected").glob("*.jsonl")) for line in f.open()]


def _tree(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for sub in ("shards", "documents", "rejected", "modified")
            for p in sorted((out / sub).rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def full_recipe(tmp_path_factory) -> str:
    """The fineweb-full preset with a per-page extraction limit of 30 s instead of 1 (a wall-clock limit: on a
    loaded test machine a page may take a second, and the outputs of two runs are compared byte for byte)."""
    recipe = copy.deepcopy(PRESETS["fineweb-full"])
    (extract,) = [s for s in recipe["filters"] if s["name"] == "extract"]
    extract["params"]["timeout"] = 30
    path = tmp_path_factory.mktemp("recipe") / "fineweb-full.json"
    path.write_text(json.dumps(recipe))
    return str(path)


@pytest.fixture(scope="module")
def fineweb(crawl, full_recipe, tokenizer_path, tmp_path_factory):
    path, _, _ = crawl
    out = tmp_path_factory.mktemp("fineweb") / "out"
    manifest = prepare([path], out, tokenizer_path, seq_len=256, recipe=full_recipe, stream_bytes=200_000,
                       emit_modified=True, emit_documents=True)
    return out, manifest


def test_fineweb_full_from_warc_accounts_for_every_record(crawl, fineweb):
    _, pages, cut_offset = crawl
    out, manifest = fineweb
    c = manifest[m.K_COUNTS]
    assert c["records"] == c["docs_written"] + sum(c["docs_rejected"].values())
    assert c["skipped_records"] == {"metadata": len(pages), "request": len(pages), "warcinfo": 1,
                                    "response/image/png": 1}
    rejected = _rejected(out)
    damaged = [r for r in rejected if r["stage"] == m.STAGE_READ]
    assert len(damaged) == 1 and damaged[0]["offset"] == cut_offset, damaged
    # one page's response was in the cut member; every other page is a document that is written or rejected
    assert c["records"] == len(pages) - 1 + 1
    by_id = {r["id"]: r for r in rejected}
    written = {d["id"] for d in iter_documents_of(out)}
    assert len(written) + len(by_id) == c["records"]  # the damaged stretch has no id
    # the copies of page 0 (4) and page 1 (2): dropped with the original by the same stage, or its duplicates
    sizes = []
    for original, copies in ((0, range(40, 44)), (1, range(44, 46))):
        page_id = _response_id(original)
        if page_id in written:
            assert {by_id[_response_id(k)][m.REJ_DUPLICATE_OF] for k in copies} == {page_id}
            assert {by_id[_response_id(k)]["reason"] for k in copies} <= {m.NEAR_DUPLICATE, m.EXACT_DUPLICATE}
            sizes.append(len(copies) + 1)
        else:
            assert {(by_id[_response_id(k)]["stage"], by_id[_response_id(k)]["reason"]) for k in copies} == {
                (by_id[page_id]["stage"], by_id[page_id]["reason"])}
    assert sizes, "both duplicated pages were filtered out: the test corpus no longer tests dedup"
    clusters = manifest[m.K_DEDUP][m.DEDUP_CLUSTERS]
    assert [cl[m.CL_DOCUMENTS] for cl in clusters] == sorted(sizes, reverse=True)
    assert [len(cl[m.CL_MEMBERS]) for cl in clusters] == [min(3, n - 1) for n in sorted(sizes, reverse=True)]
    # pii ran after MinHash's keys were taken, on every kept page with an address
    texts = [d["text"] for d in iter_documents_of(out)]
    with_address = sum("@docs-example.org" in p for _, p in pages)
    assert 0 < c["stage_counts"]["pii/email"] <= with_address and c["docs_modified"]["pii"] > 0
    assert not any("@docs-example.org" in t for t in texts) and any("email@example.com" in t for t in texts)
    assert c["docs_modified"]["extract"] >= c["docs_written"]
    assert manifest[m.K_RECIPE][m.R_DEDUP][m.R_KEYS_AFTER] == "fineweb_quality"
    assert manifest[m.K_RECIPE][m.R_FILTERS][1][m.R_STAGE_PARAMS]["engine"] == "trafilatura"
    assert [f[m.R_STAGE_NAME] for f in manifest[m.K_RECIPE][m.R_FILTERS]] == [
        "url_filter", "extract", "language", "gopher_repetition", "gopher_quality", "c4_quality",
        "fineweb_quality", "pii"]
    page = (out / "report.html").read_text()
    assert "Largest duplicate clusters" in page and "records skipped" in page and "pii/email" in page
    assert cli.main(["inspect", str(out), "--verify"]) == 0


def test_fineweb_full_is_byte_identical_on_the_portable_runner(crawl, fineweb, full_recipe, tokenizer_path,
                                                               tmp_path):
    path, _, _ = crawl
    out, manifest = fineweb
    other = prepare([path], tmp_path / "portable", tokenizer_path, seq_len=256, recipe=full_recipe,
                    stream_bytes=200_000, emit_modified=True, emit_documents=True, beam_args=PORTABLE)
    assert _tree(tmp_path / "portable") == _tree(out)
    assert other[m.K_COUNTS] == manifest[m.K_COUNTS] and other[m.K_DEDUP] == manifest[m.K_DEDUP]


def test_dedup_after_takes_keys_before_the_later_stages(tmp_path):
    body = ("The committee meets on the first Monday of each month to review the proposals that were sent in. "
            "Members read every proposal before the meeting and write a short note on each one.")
    docs = [{"id": "a", "text": f"{body} Write to ann@example.org for the agenda."},
            {"id": "b", "text": f"{body} Write to bob@example.org for the agenda."}]
    data = write_jsonl(tmp_path / "d.jsonl", docs)
    kept = {}
    for after in (None, "language"):
        recipe = {"filters": [{"name": "language", "params": {"languages": None, "min_score": 0.0}},
                              {"name": "pii"}], "dedup": {"exact": True, **({"after": after} if after else {})}}
        (tmp_path / "r.json").write_text(json.dumps(recipe))
        out = tmp_path / f"out-{after}"
        assert cli.main(["filter", "-i", data, "-o", str(out), "--recipe", str(tmp_path / "r.json"),
                         "--no-progress"]) == 0
        kept[after] = [d["id"] for d in iter_documents(str(out))]
    assert kept == {None: ["a"], "language": ["a", "b"]}  # after redaction both texts are the same


@pytest.mark.parametrize("after, message", [("pii", "must name one filter stage"), ("nope", "must name one"),
                                            (3, "must name one")])
def test_dedup_after_must_name_a_stage(after, message):
    with pytest.raises(RecipeError, match=message):
        parse_recipe({"filters": [{"name": "pii"}, {"name": "pii"}], "dedup": {"exact": True, "after": after}}, "r")
    with pytest.raises(RecipeError, match="needs dedup keys"):
        parse_recipe({"filters": [{"name": "gopher_quality"}, {"name": "pii"}], "dedup": {"after": "gopher_quality"}},
                     "r")


def test_presets_load_and_record_their_whole_recipe():
    full = load_recipe("fineweb-full")
    assert full.dedup.minhash is not None and full.dedup.after == "fineweb_quality" and not full.dedup.exact
    dolma = load_recipe("dolma")
    assert dolma.dedup.exact and dolma.dedup.lines is not None and dolma.dedup.lines.keep_first
    assert parse_recipe(json.loads(json.dumps(dolma.to_dict())), "again").identity() == dolma.identity()


def test_dolma_removes_repeated_lines_and_exact_duplicates(tmp_path):
    footer = "Share this page with your friends and family, and tell us what you think of it."
    prose = ["\n".join(PROSE()[300 + i * 6:300 + (i + 1) * 6]) for i in range(8)]
    docs = [{"id": f"d{i}", "text": f"{text}\n{footer}"} for i, text in enumerate(prose)]
    docs.append({"id": "copy", "text": docs[2]["text"]})
    data = write_jsonl(tmp_path / "d.jsonl", docs)
    out = tmp_path / "out"
    assert cli.main(["filter", "-i", data, "-o", str(out), "--recipe", "dolma", "--no-progress"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    c = manifest[m.K_COUNTS]
    assert c["records"] == c["docs_written"] + sum(c["docs_rejected"].values())
    written = {d["id"]: d["text"] for d in iter_documents(str(out))}
    rejected = {r["id"]: r for r in _rejected(out)}
    assert len(written) >= 3 and "copy" not in written
    if "d2" in written:
        assert rejected["copy"]["reason"] == m.EXACT_DUPLICATE and rejected["copy"][m.REJ_DUPLICATE_OF] == "d2"
    first = next(d["id"] for d in docs if d["id"] in written)
    assert written[first].endswith(footer)  # the first-read document keeps its copy of the line
    assert all(footer not in t for i, t in written.items() if i != first)
    assert c["lines_removed"] >= len(written) - 1 and c["docs_modified"]["dedup"] >= len(written) - 1
