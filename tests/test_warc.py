"""WARC/WET input: the documents datatrove's WarcReader makes of the same files, every other record counted by kind,
damage (a cut or damaged gzip member, garbage, a bad Content-Length, a file cut short) rejected with its byte offset
while the records around it are kept, and a .warc.gz read in splits giving the same documents as read whole.

Fixtures are written here: HTML pages pydoc renders from the standard library, conversations in several languages
from the chatterbot-corpus package, framed as WARC records by a small writer.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import json
import pydoc
import uuid
import zlib
from functools import lru_cache
from pathlib import Path

import pytest

from pipelines import cli
from schemas import manifest as m
from schemas.documents import iter_documents
from transforms.read.gzip_members import WarcCutError, next_warc_member
from transforms.read.readers import BadRecordError, read_split
from transforms.read.sources import WARC, InputError, Split, detect_format, expand_inputs, plan_splits, plan_streams

MODULES = ("json", "textwrap", "colorsys", "bisect", "heapq", "shlex", "fnmatch", "glob", "getopt", "base64",
           "html", "keyword", "difflib", "string", "random", "statistics", "fractions", "calendar", "csv", "gettext")
DATE = "2024-05-06T07:08:09Z"


@lru_cache(maxsize=None)
def pages() -> tuple[tuple[str, str], ...]:
    """(url, html) of pydoc's pages of some standard library modules."""
    out = []
    for name in MODULES:
        mod = importlib.import_module(name)
        html = pydoc.html.page(pydoc.describe(mod), pydoc.html.docmodule(mod))
        out.append((f"https://docs.example/{name}.html", html))
    return tuple(out)


@lru_cache(maxsize=None)
def conversations(language: str) -> tuple[str, ...]:
    """The chatterbot-corpus conversations of one language, one text each."""
    import chatterbot_corpus
    import yaml

    out = []
    for path in sorted((Path(chatterbot_corpus.__file__).parent / "data" / language).glob("*.yml")):
        for conv in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("conversations", []) or []:
            out.append("\n".join(str(x) for x in conv if x is not None))
    return tuple(out)


def rec_id(n: int) -> str:
    return f"<urn:uuid:{uuid.UUID(int=n)}>"


def record(rtype: str, uri: str, block: bytes, n: int, *fields: tuple[str, str], length: int | None = None) -> bytes:
    """One WARC/1.0 record (``length``: a wrong Content-Length to write instead of the block's)."""
    head = [("WARC-Type", rtype), ("WARC-Record-ID", rec_id(n)), ("WARC-Date", DATE)]
    head += [("WARC-Target-URI", uri)] if uri else []
    head += [*fields, ("Content-Length", str(len(block) if length is None else length))]
    return ("WARC/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head) + "\r\n").encode() + block + b"\r\n\r\n"


def http(body: bytes, content_type: str, *headers: str) -> bytes:
    return ("HTTP/1.1 200 OK\r\n" + f"Content-Type: {content_type}\r\n" + "".join(h + "\r\n" for h in headers)
            + f"Content-Length: {len(body)}\r\n\r\n").encode() + body


RESPONSE = ("Content-Type", "application/http; msgtype=response")


def html_response(n: int, url: str, body: bytes, identified: str | None = "text/html",
                  content_type: str = "text/html; charset=UTF-8", *headers: str) -> bytes:
    fields = [RESPONSE] + ([("WARC-Identified-Payload-Type", identified)] if identified else [])
    return record("response", url, http(body, content_type, *headers), n, *fields)


def crawl() -> tuple[list[bytes], list[tuple[str, str, str]], dict[str, int]]:
    """A crawl's records, the documents they hold (id, url, text) in order, and the skipped records by kind."""
    recs = [record("warcinfo", "", b"software: tokenmill-test\r\nformat: WARC File Format 1.0\r\n", 1,
                   ("Content-Type", "application/warc-fields"))]
    docs = []
    skipped = {"warcinfo": 1, "request": 0, "metadata": 0, "response/image/png": 0, "response/application/pdf": 0,
               "revisit": 0}
    for i, (url, page) in enumerate(pages()):
        n = 100 + 10 * i
        recs.append(record("request", url, f"GET / HTTP/1.1\r\nHost: docs.example\r\n\r\n".encode(), n,
                           ("Content-Type", "application/http; msgtype=request")))
        if i % 7 == 3:  # no WARC-Identified-Payload-Type: the HTTP Content-Type decides (datatrove: libmagic)
            recs.append(html_response(n + 1, url, page.encode(), None))
        else:
            recs.append(html_response(n + 1, url, page.encode()))
        docs.append((rec_id(n + 1), url, page))
        recs.append(record("metadata", url, b"fetchTimeMs: 42\r\n", n + 2, ("Content-Type", "application/warc-fields")))
        skipped["request"] += 1
        skipped["metadata"] += 1
        if i % 5 == 0:
            recs.append(html_response(n + 3, url + ".png", b"\x89PNG\r\n\x1a\n" + bytes(200), "image/png", "image/png"))
            skipped["response/image/png"] += 1
        if i % 6 == 1:  # no payload type either: the HTTP Content-Type
            recs.append(html_response(n + 4, url + ".pdf", b"%PDF-1.4 " + bytes(100), None, "application/pdf"))
            skipped["response/application/pdf"] += 1
        if i % 9 == 2:
            recs.append(record("revisit", url, b"HTTP/1.1 304 Not Modified\r\n\r\n", n + 5, RESPONSE))
            skipped["revisit"] += 1
    wget = b"<html><body><p>" + conversations("english")[0].encode() + b"</p></body></html>"
    recs.append(html_response(800, "<http://wget.example/a page>", wget))  # as Wget 1.19 wrote it; warcio fixes it
    docs.append((rec_id(800), "http://wget.example/a%20page", wget.decode()))
    russian = "\n".join(conversations("russian")[:30])
    page = f"<html><head><title>Разговор</title></head><body><pre>{russian}</pre></body></html>"
    recs.append(html_response(900, "http://ru.example.org/", page.encode("windows-1251"), "text/html", "text/html"))
    docs.append((rec_id(900), "http://ru.example.org/", page))
    recs.append(html_response(901, "http://bad.example/", bytes(range(128, 256)) * 4))  # no charset decodes it
    return recs, docs, skipped


PAGE_ID = rec_id(131)  # a page without WARC-Identified-Payload-Type


def index_of(recs: list[bytes], rid: str) -> int:
    return next(i for i, r in enumerate(recs) if rid.encode() in r)


def write(path: Path, records: list[bytes], gz: bool = True) -> list[int]:
    """Write the records (one gzip member each); returns each record's byte offset."""
    offsets, pos = [], 0
    with open(path, "wb") as fh:
        for rec in records:
            data = gzip.compress(rec, mtime=0) if gz else rec
            offsets.append(pos)
            fh.write(data)
            pos += len(data)
    return offsets


def read_all(path: Path, stream_bytes: int = 1 << 30, **kw) -> tuple[list[tuple[str, str, str]], dict, list]:
    """(id, url, text) of every document, the skipped kinds and the rejections, through the planner and readers."""
    docs, skipped, rejected = [], {}, []
    for stream in plan_streams(expand_inputs([str(path)]), stream_bytes):
        for split in stream.splits:
            for b in read_split(split, **kw):
                docs += [(i, meta.get("url"), t) for i, meta, t in zip(b.ids, b.metas, b.texts)]
                for k, v in b.skipped.items():
                    skipped[k] = skipped.get(k, 0) + v
                rejected += b.rejections
    return docs, skipped, rejected


def test_formats_by_name():
    assert [detect_format(n) for n in ("a.warc", "a.warc.gz", "a.warc.wet.gz", "b.wet", "b.wet.gz")] == [
        (WARC, None), (WARC, "gzip"), (WARC, "gzip"), (WARC, None), (WARC, "gzip")]
    with pytest.raises(InputError, match="plain or gzip-compressed"):
        detect_format("a.warc.zst")


@pytest.mark.parametrize("gz", [True, False])
def test_documents_and_skipped_records_by_kind(tmp_path, gz):
    recs, docs, skipped = crawl()
    path = tmp_path / ("crawl.warc.gz" if gz else "crawl.warc")
    write(path, recs, gz)
    got, kinds, rejected = read_all(path)
    assert got == docs  # the windows-1251 page decoded to the same text
    assert kinds == skipped
    assert [(r.reason, r.id) for r in rejected] == [(m.UNDECODABLE_PAYLOAD, rec_id(901))]
    assert len(got) + sum(kinds.values()) + len(rejected) == len(recs)


def _datatrove(path: Path) -> list[tuple[str, str, str, str]]:
    from datatrove.pipeline.readers import WarcReader

    reader = WarcReader(str(path.parent))
    return [(d.id, d.metadata["url"], d.metadata["date"], d.text) for d in reader.read_file(path.name)]


def _wet() -> list[bytes]:
    recs = [record("warcinfo", "", b"software: tokenmill-test\r\n", 1, ("Content-Type", "application/warc-fields"))]
    for i, text in enumerate(conversations("english")[:40]):
        recs.append(record("conversion", f"https://chat.example/{i}", text.encode(), 10 + i,
                           ("WARC-Refers-To", rec_id(5000 + i)), ("Content-Type", "text/plain")))
    return recs


def test_same_documents_as_datatroves_warc_reader(tmp_path):
    pytest.importorskip("warcio")
    recs, _, _ = crawl()
    for name, records, gz in (("a.warc.gz", recs, True), ("a.warc", recs, False), ("b.warc.wet.gz", _wet(), True)):
        write(tmp_path / name, records, gz)
        expected = _datatrove(tmp_path / name)
        docs = []
        for split in plan_splits(0, expand_inputs([str(tmp_path / name)])[0]):
            for b in read_split(split):
                docs += [(i, meta["url"], meta["date"], t) for i, meta, t in zip(b.ids, b.metas, b.texts)]
        assert docs == expected and len(docs) > 20, name


def test_wet_conversions_are_documents(tmp_path):
    write(tmp_path / "c.warc.wet.gz", _wet())
    docs, kinds, rejected = read_all(tmp_path / "c.warc.wet.gz")
    assert [t for _, _, t in docs] == list(conversations("english")[:40])
    assert kinds == {"warcinfo": 1} and not rejected


def test_gzip_member_cut_in_the_middle(tmp_path):
    recs, docs, _ = crawl()
    members = [gzip.compress(r, mtime=0) for r in recs]
    k = index_of(recs, PAGE_ID)
    members[k] = members[k][: len(members[k]) // 2]
    (tmp_path / "cut.warc.gz").write_bytes(b"".join(members))
    got, _, rejected = read_all(tmp_path / "cut.warc.gz")
    assert got == [d for d in docs if d[0] != PAGE_ID]
    bad = [r for r in rejected if r.reason == m.DAMAGED_GZIP_MEMBER]
    assert len(bad) == 1 and bad[0].offset == sum(map(len, members[:k]))
    assert bad[0].to_dict()[m.REJ_OFFSET] == bad[0].offset and "resumes at byte" in bad[0].detail


def test_garbage_between_members(tmp_path):
    recs, docs, skipped = crawl()
    members = [gzip.compress(r, mtime=0) for r in recs]
    junk = b"this is not gzip\n" * 5 + b"\x1f\x8b\x08 nor this"
    (tmp_path / "junk.warc.gz").write_bytes(b"".join(members[:5]) + junk + b"".join(members[5:]))
    got, kinds, rejected = read_all(tmp_path / "junk.warc.gz")
    assert got == docs and kinds == skipped
    bad = [r for r in rejected if r.reason == m.DAMAGED_GZIP_MEMBER]
    assert len(bad) == 1 and bad[0].offset == sum(map(len, members[:5]))
    assert f"resumes at byte {sum(map(len, members[:5])) + len(junk)}" in bad[0].detail


@pytest.mark.parametrize("gz", [True, False])
def test_file_cut_short_at_the_end(tmp_path, gz):
    recs, docs, _ = crawl()
    last = html_response(990, "http://last.example/", b"<html><body>" + b"last page " * 500 + b"</body></html>")
    recs = recs[:-2] + [last]
    path = tmp_path / ("short.warc.gz" if gz else "short.warc")
    offsets = write(path, recs, gz)
    path.write_bytes(path.read_bytes()[:-300])
    got, _, rejected = read_all(path)
    assert got == docs[:-1]  # the last page is the one cut
    assert [(r.reason, r.offset) for r in rejected] == [(m.TRUNCATED_RECORD, offsets[-1])]
    assert gz or rejected[0].id == rec_id(990)


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("delta", [-40, 40])
def test_wrong_content_length(tmp_path, gz, delta):
    recs, docs, _ = crawl()
    k = index_of(recs, PAGE_ID)
    url, page = pages()[3]
    block = http(page.encode(), "text/html")
    bad = record("response", url, block, 131, RESPONSE, ("WARC-Identified-Payload-Type", "text/html"),
                 length=len(block) + delta)
    path = tmp_path / ("len.warc.gz" if gz else "len.warc")
    offsets = write(path, recs[:k] + [bad] + recs[k + 1:], gz)
    got, _, rejected = read_all(path)
    assert got == [d for d in docs if d[0] != PAGE_ID]
    malformed = [r for r in rejected if r.reason == m.MALFORMED_WARC_RECORD]
    assert [(r.offset, r.id) for r in malformed] == [(offsets[k], PAGE_ID)]


def test_damaged_http_encoding_and_strict(tmp_path):
    body = gzip.compress(b"<html><body>compressed page</body></html>", mtime=0)
    recs = [html_response(1, "http://z.example/", body, "text/html", "text/html", "Content-Encoding: gzip"),
            html_response(2, "http://z.example/b", body[:20] + body[40:], "text/html", "text/html",
                          "Content-Encoding: gzip")]
    offsets = write(tmp_path / "enc.warc.gz", recs)
    got, _, rejected = read_all(tmp_path / "enc.warc.gz")
    assert [t for _, _, t in got] == ["<html><body>compressed page</body></html>"]
    assert [(r.reason, r.offset) for r in rejected] == [(m.UNDECODABLE_PAYLOAD, offsets[1])]
    with pytest.raises(BadRecordError, match=f"enc.warc.gz at byte {offsets[1]}: undecodable_payload"):
        read_all(tmp_path / "enc.warc.gz", strict=True)


def test_big_skipped_record_is_read_past(tmp_path):
    recs, docs, skipped = crawl()
    video = html_response(7, "http://v.example/v.mp4", bytes(5 << 20), "video/mp4", "video/mp4")
    write(tmp_path / "big.warc", recs[:4] + [video] + recs[4:], gz=False)
    got, kinds, rejected = read_all(tmp_path / "big.warc")
    assert got == docs and kinds == {**skipped, "response/video/mp4": 1}


def test_splits_give_the_same_documents_in_the_same_order(tmp_path):
    recs, docs, skipped = crawl()
    members = [gzip.compress(r, mtime=0) for r in recs]
    members[20] = members[20][:100]  # damage near a cut as well
    (tmp_path / "big.warc.gz").write_bytes(b"".join(members))
    f = expand_inputs([str(tmp_path / "big.warc.gz")])[0]
    whole = read_all(tmp_path / "big.warc.gz")
    for stream_bytes in (4096, 9000, 20000):
        splits = plan_splits(0, f, stream_bytes)
        assert len(splits) > 2 and splits[0].start == 0 and splits[-1].end == f.size
        assert all(a.end == b.start for a, b in zip(splits, splits[1:]))
        docs_k, kinds_k, rejected_k = read_all(tmp_path / "big.warc.gz", stream_bytes)
        assert docs_k == whole[0] and kinds_k == whole[1]
        assert [r.to_dict() for r in rejected_k] == [r.to_dict() for r in whole[2]]
    # through the pipeline: many streams, the commit's proof that the splits cover the file, the same documents
    from pipelines.filter import FilterConfig, run

    (tmp_path / "r.yaml").write_text("filters: []\n")
    counts = []
    for name, stream_bytes in (("many", 6000), ("one", 1 << 30)):
        manifest = run(FilterConfig(inputs=[str(tmp_path / "big.warc.gz")], output=str(tmp_path / name),
                                    recipe=str(tmp_path / "r.yaml"), stream_bytes=stream_bytes))
        counts.append((manifest[m.K_STREAMS], manifest[m.K_COUNTS]))
        assert [(d["id"], d["text"]) for d in iter_documents(str(tmp_path / name))] == [
            (i, t) for i, _, t in whole[0]]
    assert counts[0][0] > 2 and counts[1][0] == 1 and counts[0][1] == counts[1][1]


def test_a_cut_inside_a_member_is_refused(tmp_path):
    # a record whose payload is a .warc.gz, stored (level 0): a gzip member beginning WARC/ inside another member
    inner = gzip.compress(record("resource", "http://i.example/", b"inner", 3), mtime=0)
    outer = record("response", "http://o.example/x.warc.gz", http(b"x" * 100 + inner, "application/gzip"), 2,
                   RESPONSE, ("WARC-Identified-Payload-Type", "application/gzip"))
    stored = zlib.compressobj(0, zlib.DEFLATED, 31)
    first = gzip.compress(record("warcinfo", "", b"a: b\r\n", 1), mtime=0)
    last = gzip.compress(record("metadata", "http://o.example/", b"c: d\r\n", 4), mtime=0)
    data = first + stored.compress(outer) + stored.flush() + last
    path = tmp_path / "nested.warc.gz"
    path.write_bytes(data)
    false_start = data.index(inner)
    with open(path, "rb") as fh:
        assert next_warc_member(fh, len(first) + 1, len(data)) == false_start  # the rule cannot tell
    split = Split(0, 0, str(path), WARC, "gzip", 0, false_start, 1, false_start)
    with pytest.raises(WarcCutError, match=f"runs past the planned cut at byte {false_start}"):
        list(read_split(split))
    assert read_all(path)[1] == {"warcinfo": 1, "response/application/gzip": 1, "metadata": 1}


def _sha(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file() and p.name not in (m.REPORT_HTML, "manifest.json")}


def test_filter_end_to_end_counts_add_up_and_runs_are_identical(tmp_path, capsys):
    recs, docs, skipped = crawl()
    members = [gzip.compress(r, mtime=0) for r in recs]
    k = index_of(recs, PAGE_ID)
    cut_at = sum(map(len, members[:k]))
    members[k] = members[k][:50]
    (tmp_path / "crawl").mkdir()
    (tmp_path / "crawl" / "a.warc.gz").write_bytes(b"".join(members))
    write(tmp_path / "crawl" / "b.warc.wet.gz", _wet())
    recipe = tmp_path / "r.yaml"
    recipe.write_text("filters: [{name: url_filter, params: {use_integrated_lists: false, "
                      "extra_domains: [example.org]}}]\n")
    outs = []
    for run in ("one", "two"):
        out = tmp_path / run
        code = cli.main(["filter", "--input", str(tmp_path / "crawl" / "*.warc*.gz"), "-o", str(out),
                         "--recipe", str(recipe), "--no-progress", "--stream-mb", "1"])
        assert code == 0
        outs.append(out)
    assert "records skipped (not documents)" in capsys.readouterr().err  # the summary table
    manifest = json.loads((outs[0] / "manifest.json").read_text())
    c = manifest[m.K_COUNTS]
    assert c["skipped_records"] == {**{k: v for k, v in skipped.items()}, "warcinfo": 2}
    assert c["records"] == c["docs_written"] + sum(c["docs_rejected"].values())
    assert c["records"] + sum(c["skipped_records"].values()) == len(recs) + len(_wet())
    assert c["docs_rejected"] == {m.DAMAGED_GZIP_MEMBER: 1, m.UNDECODABLE_PAYLOAD: 1, "url_filter/domain": 1}
    rejected = [json.loads(x) for f in sorted((outs[0] / "rejected").glob("*.jsonl")) for x in f.open()]
    read = {r[m.REJ_REASON]: r for r in rejected if r[m.REJ_STAGE] == m.STAGE_READ}
    assert read[m.DAMAGED_GZIP_MEMBER][m.REJ_OFFSET] == cut_at and m.REJ_OFFSET in read[m.UNDECODABLE_PAYLOAD]
    kept = list(iter_documents(str(outs[0])))
    assert [d["id"] for d in kept] == [i for i, _, _ in docs if i not in (PAGE_ID, rec_id(900))] + [
        rec_id(10 + i) for i in range(40)]
    assert kept[0]["meta"] == {"url": docs[0][1], "date": DATE}
    assert _sha(outs[0]) == _sha(outs[1])
    second = json.loads((outs[1] / "manifest.json").read_text())
    assert second[m.K_COUNTS] == c and second[m.K_DOCUMENTS] == manifest[m.K_DOCUMENTS]


def test_prepare_and_stats_read_warc(tmp_path, tokenizer_path):
    from schemas import stats as s

    recs, docs, skipped = crawl()
    write(tmp_path / "a.warc.gz", recs)
    out = tmp_path / "packed"
    assert cli.main(["prepare", "-i", str(tmp_path / "*.warc.gz"), "-t", tokenizer_path, "--seq-len", "256",
                     "-o", str(out), "--no-progress"]) == 0
    c = json.loads((out / "manifest.json").read_text())[m.K_COUNTS]
    assert (c["docs_written"], c["skipped_records"], c["docs_rejected"]) == (len(docs), skipped,
                                                                            {m.UNDECODABLE_PAYLOAD: 1})
    assert c["tokens"] > sum(len(t) for _, _, t in docs) // 10
    assert cli.main(["stats", "-i", str(tmp_path / "*.warc.gz"), "-o", str(tmp_path / "stats"), "--no-progress"]) == 0
    totals = json.loads((tmp_path / "stats" / s.STATS_JSON).read_text())[s.K_TOTALS]
    assert totals[s.DOCUMENTS] == len(docs) and totals[s.RECORDS] == len(docs) + 1


@pytest.mark.parametrize("command,option", [("filter", "--text-field"), ("filter", "--id-field"),
                                            ("prepare", "--id-field"), ("stats", "--text-field")])
def test_field_options_are_refused_for_warc(tmp_path, tokenizer_path, capsys, command, option):
    """A WARC record has no fields: --text-field/--id-field other than the default is a one-line error, no output."""
    recs, _, _ = crawl()
    write(tmp_path / "a.warc.gz", recs)
    (tmp_path / "b.jsonl").write_text('{"body": "x"}\n')
    out = tmp_path / "out"
    extra = {"filter": ["--recipe", "fineweb"], "prepare": ["-t", tokenizer_path, "--seq-len", "64"], "stats": []}[command]
    code = cli.main([command, "-i", str(tmp_path / "b.jsonl"), "-i", str(tmp_path / "a.warc.gz"), option, "body",
                     "-o", str(out), "--no-progress", *extra])
    err = capsys.readouterr().err
    assert code == 2 and f"{option} 'body' does not apply to WARC input" in err and "a.warc.gz" in err
    assert "Traceback" not in err and not out.exists()


@pytest.mark.parametrize("gz", [True, False])
def test_random_damage_loses_only_the_damaged_record(tmp_path, gz):
    """A flipped bit, a cut, inserted bytes (or, gzipped, a bad CRC) in one record: every other record's document is
    read as written, the damaged one is kept only as written (gzip) or not at all, counts stay within one of the
    records written, and a read in splits gives what the whole file gives."""
    import random

    recs, docs, _ = crawl()
    written = {i: t for i, _, t in docs}
    owner = {i: index_of(recs, i) for i in written}
    rng = random.Random(7)
    path = tmp_path / ("fuzz.warc.gz" if gz else "fuzz.warc")
    for _ in range(25):
        k = rng.randrange(len(recs))
        data = bytearray(gzip.compress(recs[k], mtime=0) if gz else recs[k])
        damage = rng.choice(["flip", "cut", "insert", "crc"] if gz else ["flip", "cut", "insert", "header"])
        at = rng.randrange(min(len(data), 400) if damage == "header" else len(data))
        if damage in ("flip", "header"):
            data[at] ^= 1 << rng.randrange(8)
        elif damage == "cut":
            del data[at:]
        elif damage == "insert":
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
        else:
            data[-6] ^= 0xFF
        members = [gzip.compress(r, mtime=0) if gz else r for r in recs]
        path.write_bytes(b"".join(members[:k]) + bytes(data) + b"".join(members[k + 1:]))
        got, kinds, rejected = read_all(path)
        found = {i: t for i, _, t in got}
        assert all(found.get(i) == t for i, t in written.items() if owner[i] != k), (damage, k)
        assert all(written.get(i) == t for i, t in found.items() if gz or owner.get(i) != k), (damage, k)
        assert abs(len(got) + sum(kinds.values()) + len(rejected) - len(recs)) <= 1, (damage, k)
        if gz:
            assert read_all(path, 6000)[:2] == (got, kinds)


@pytest.mark.parametrize("gz", [True, False])
def test_a_read_error_midway_is_one_rejection(tmp_path, monkeypatch, gz):
    import io

    import transforms.read.warc as warc

    recs, docs, _ = crawl()
    path = tmp_path / ("io.warc.gz" if gz else "io.warc")
    write(path, recs, gz)
    fail_at = path.stat().st_size // 2

    class Failing(io.BytesIO):
        def read(self, n=-1):
            if self.tell() >= fail_at:
                raise OSError("connection reset")
            return super().read(n if n >= 0 and self.tell() + n <= fail_at else fail_at - self.tell())

    class Opener:
        def __init__(self, *args, **kw):
            pass

        def open(self):
            return Failing(path.read_bytes())

    monkeypatch.setattr(warc.fsspec, "open", Opener)
    got, _, rejected = read_all(path)
    assert 0 < len(got) < len(docs) and got == docs[:len(got)]
    assert [r.reason for r in rejected] == [m.UNREADABLE_FILE] and "connection reset" in rejected[0].detail
    assert rejected[0].offset <= fail_at
