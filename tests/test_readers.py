"""Streaming readers (transforms/read/readers.py): one split → DocBatch objects, for every input format.

Pure-core tests call ``read_split`` directly (no Beam); the last ones run the whole prepare pipeline on a mixed
corpus and on memory:// input.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
from collections import Counter

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from schemas import manifest as m
from tests.conftest import documents_from_shards, eos_of, hf_ids, prepare, write_jsonl
from transforms.read import readers
from transforms.read.readers import DocBatch, read_split
from transforms.read.sources import ARROW, JSONL, PARQUET, TEXT, Split, expand_inputs, plan_splits

BIG = 10**12  # stream_bytes that never cuts a file

# ------------------------------------------------------------------------------------------------ helpers


def whole_split(url_or_path, file_index: int = 0) -> Split:
    """The one split of a file when nothing is cut."""
    files = expand_inputs([str(url_or_path)])
    assert len(files) == 1
    splits = plan_splits(file_index, files[0], BIG)
    assert len(splits) == 1
    return splits[0]


def read_docs(splits, **kw) -> list[tuple[str, str]]:
    """(id, text) of every document of the splits, in order; fails on any rejection."""
    if isinstance(splits, Split):
        splits = [splits]
    out = []
    for s in splits:
        for b in read_split(s, **kw):
            assert isinstance(b, DocBatch)
            assert not b.rejections, [r.to_dict() for r in b.rejections]
            assert len(b.ids) == len(b.texts) == b.records
            out += list(zip(b.ids, b.texts))
    return out


def read_path(path, **kw) -> list[tuple[str, str]]:
    return read_docs(whole_split(path), **kw)


def jsonl_bytes(records) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in records)


# ------------------------------------------------------------------------------------------------------ JSONL


def test_jsonl_with_ids(tmp_path, ml_texts):
    texts = ml_texts[:50]
    path = write_jsonl(tmp_path / "a.jsonl", [{"id": f"doc-{i}", "text": t, "meta": {"i": i}}
                                              for i, t in enumerate(texts)])
    assert read_path(path) == [(f"doc-{i}", t) for i, t in enumerate(texts)]


def test_jsonl_without_ids_gets_url_and_line(tmp_path, ml_texts):
    texts = ml_texts[:30]
    lines = []
    for i, t in enumerate(texts):
        lines.append(orjson.dumps({"text": t}) + b"\n")
        if i % 4 == 1:
            lines.append(b"\n")  # blank lines are not records, but they are lines
        if i % 9 == 2:
            lines.append(b"   \n")
    path = tmp_path / "noid.jsonl"
    path.write_bytes(b"".join(lines))
    got = read_path(path)
    expected_line = {}
    for n, line in enumerate(path.read_bytes().split(b"\n"), start=1):
        if line.strip():
            expected_line[orjson.loads(line)["text"]] = n
    assert [t for _, t in got] == texts
    assert [i for i, _ in got] == [f"{path}:{expected_line[t]}" for t in texts]


def test_jsonl_id_values_and_fallbacks(tmp_path):
    recs = [
        {"id": 7, "text": "int id"},
        {"id": "s", "text": "str id"},
        {"id": None, "text": "null id"},
        {"id": {"a": 1}, "text": "object id"},
        {"id": [1], "text": "list id"},
        {"id": 1.5, "text": "float id"},
        {"text": "no id"},
    ]
    path = write_jsonl(tmp_path / "ids.jsonl", recs)
    assert [i for i, _ in read_path(path)] == ["7", "s", f"{path}:3", f"{path}:4", f"{path}:5", "1.5", f"{path}:7"]


def test_jsonl_custom_text_and_id_fields(tmp_path, ml_texts):
    texts = ml_texts[:20]
    recs = [{"content": t, "doc_id": f"k{i}", "text": "not this", "id": "nor this"} for i, t in enumerate(texts)]
    path = write_jsonl(tmp_path / "custom.jsonl", recs)
    assert read_path(path, text_field="content", id_field="doc_id") == [(f"k{i}", t) for i, t in enumerate(texts)]
    # custom text field, default id field
    assert read_path(path, text_field="content") == [("nor this", t) for t in texts]
    # an id field no record has: fallback ids
    assert read_path(path, text_field="content", id_field="uid") == [(f"{path}:{n}", t)
                                                                     for n, t in enumerate(texts, start=1)]


def test_jsonl_missing_text_field_is_rejected_not_read(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"body": "a"}, {"text": "b"}])
    batches = list(read_split(whole_split(path)))
    assert [t for b in batches for t in b.texts] == ["b"]
    rej = [r for b in batches for r in b.rejections]
    assert [(r.reason, r.line, r.id) for r in rej] == [(m.MISSING_TEXT, 1, f"{path}:1")]
    assert sum(b.records for b in batches) == 2


def test_jsonl_last_line_without_newline(tmp_path):
    path = tmp_path / "nonl.jsonl"
    path.write_bytes(b'{"text":"one"}\n{"text":"two"}')
    assert read_path(path) == [(f"{path}:1", "one"), (f"{path}:2", "two")]


def test_jsonl_crlf_and_unicode(tmp_path):
    texts = ["caf\u00e9", "\u4e2d\u6587", "emoji \U0001f600", "line\nbreak\ttab", "quote \" back\\slash"]
    path = tmp_path / "crlf.jsonl"
    path.write_bytes(b"".join(orjson.dumps({"text": t}) + b"\r\n" for t in texts))
    assert read_path(path) == [(f"{path}:{n}", t) for n, t in enumerate(texts, start=1)]


@pytest.mark.parametrize("suffix, opener", [
    (".gz", gzip.open),
    (".zst", zstandard.open),
    (".bz2", bz2.open),
    (".xz", lzma.open),
])
def test_compressed_jsonl(tmp_path, ml_texts, suffix, opener):
    texts = ml_texts[:200]
    path = tmp_path / f"c.jsonl{suffix}"
    with opener(path, "wb") as fh:
        for i, t in enumerate(texts):
            fh.write(orjson.dumps({"text": t} if i % 2 else {"id": f"x{i}", "text": t}) + b"\n")
    split = whole_split(path)
    assert split.compression is not None
    got = read_docs(split)
    assert [t for _, t in got] == texts
    assert [i for i, _ in got] == [f"{path}:{n + 1}" if n % 2 else f"x{n}" for n in range(len(texts))]


def test_gzip_jsonl_with_several_members(tmp_path):
    path = tmp_path / "multi.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"text":"a"}\n') + gzip.compress(b'{"text":"b"}\n{"text":"c"}\n'))
    assert read_path(path) == [(f"{path}:1", "a"), (f"{path}:2", "b"), (f"{path}:3", "c")]


def test_memory_jsonl(memfs, ml_texts):
    fs, root = memfs
    texts = ml_texts[:40]
    fs.pipe(f"{root}/m.jsonl", jsonl_bytes({"text": t} for t in texts))
    fs.pipe(f"{root}/m.jsonl.gz", gzip.compress(jsonl_bytes({"id": i, "text": t} for i, t in enumerate(texts))))
    url = f"memory://{root}/m.jsonl"
    assert read_path(url) == [(f"{url}:{n}", t) for n, t in enumerate(texts, start=1)]
    assert read_path(url + ".gz") == [(str(i), t) for i, t in enumerate(texts)]
    # ranges of a memory file too
    splits = plan_splits(0, expand_inputs([url])[0], 500)
    assert len(splits) > 3
    assert read_docs(splits) == read_path(url)


def test_file_url_split_reads_like_a_path(tmp_path):
    path = write_jsonl(tmp_path / "u.jsonl", [{"text": "a"}, {"text": "b"}])
    split = Split(0, 0, "file://" + path, JSONL, None, 0, -1, 1, 0)
    assert [t for _, t in read_docs(split)] == ["a", "b"]
    assert read_path("file://" + path) == read_path(path)


# ------------------------------------------------------------------------------- ranges == whole-file reading


@pytest.fixture
def mixed_jsonl(tmp_path, ml_texts):
    """Plain JSONL with real multilingual text: some ids, blank lines, one very long line, no final newline."""
    lines = []
    for i, t in enumerate(ml_texts[:500]):
        rec = {"id": f"id{i}", "text": t} if i % 3 == 0 else {"text": t}
        if i == 250:
            rec = {"text": t + " " + "long " * 2000}
        lines.append(orjson.dumps(rec))
        if i % 17 == 5:
            lines.append(b"")
    data = b"\n".join(lines)  # no trailing newline
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(data)
    return path, data


@pytest.mark.parametrize("stream_bytes", [1, 300, 1000, 7777])
def test_ranges_read_the_same_documents_as_the_whole_file(mixed_jsonl, stream_bytes):
    path, data = mixed_jsonl
    f = expand_inputs([str(path)])[0]
    whole = read_docs(Split(0, 0, f.url, JSONL, None, 0, -1, 1, f.size))
    splits = plan_splits(0, f, stream_bytes)
    assert len(splits) > 1
    parts = read_docs(splits)
    assert parts == whole
    # fallback ids carry the true line number, whatever range the line was read in
    lines = data.split(b"\n")
    for doc_id, text in parts:
        if doc_id.startswith(str(path) + ":"):
            n = int(doc_id.rsplit(":", 1)[1])
            assert orjson.loads(lines[n - 1])["text"] == text
    assert len(parts) == 500


def test_ranges_with_small_read_chunks(mixed_jsonl, monkeypatch):
    path, _ = mixed_jsonl
    f = expand_inputs([str(path)])[0]
    whole = read_path(path)
    monkeypatch.setattr(readers, "_READ_CHUNK", 97)
    assert read_path(path) == whole
    assert read_docs(plan_splits(0, f, 2000)) == whole


def test_range_bytes_read_is_the_range_size(mixed_jsonl):
    path, data = mixed_jsonl
    splits = plan_splits(0, expand_inputs([str(path)])[0], 1000)
    for s in splits:
        assert sum(b.bytes_read for b in read_split(s)) == s.end - s.start
    assert sum(b.bytes_read for s in splits for b in read_split(s)) == len(data)


def test_parquet_ranges_read_the_same_rows_as_the_whole_file(tmp_path, ml_texts):
    path = tmp_path / "r.parquet"
    texts = ml_texts[:95]
    ids = [f"p{i}" if i % 2 else None for i in range(95)]
    pq.write_table(pa.table({"text": texts, "id": pa.array(ids, pa.string())}), path, row_group_size=10)
    f = expand_inputs([str(path)])[0]
    whole = read_docs(Split(0, 0, f.url, PARQUET, None, 0, -1, 0, f.size))
    assert whole == [(ids[i] or f"{path}#{i}", t) for i, t in enumerate(texts)]
    for stream_bytes in (1, 1500, 4000, BIG):
        assert read_docs(plan_splits(0, f, stream_bytes)) == whole


# ------------------------------------------------------------------------------------------------ Parquet


def test_parquet_rows_across_row_groups_fallback_ids(tmp_path, ml_texts):
    texts = ml_texts[:95]
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"text": texts, "n": list(range(95))}), path, row_group_size=10)
    assert pq.ParquetFile(path).metadata.num_row_groups == 10
    assert read_path(path) == [(f"{path}#{i}", t) for i, t in enumerate(texts)]


def test_parquet_more_rows_than_a_record_batch(tmp_path):
    n = 2 * 1024 + 77
    texts = [f"row {i}" for i in range(n)]
    path = tmp_path / "big.parquet"
    pq.write_table(pa.table({"text": texts}), path, row_group_size=700)
    got = read_path(path)
    assert got == [(f"{path}#{i}", t) for i, t in enumerate(texts)]


def test_parquet_id_column_and_custom_fields(tmp_path, ml_texts):
    texts = ml_texts[:25]
    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"body": texts, "key": list(range(100, 125)), "id": [f"i{i}" for i in range(25)]}),
                   path, row_group_size=4)
    assert read_path(path, text_field="body", id_field="key") == [(str(100 + i), t) for i, t in enumerate(texts)]
    assert read_path(path, text_field="body") == [(f"i{i}", t) for i, t in enumerate(texts)]
    # a large_string / dictionary-encoded text column reads the same
    path2 = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": pa.array(texts, pa.large_string())}), path2, use_dictionary=True)
    assert [t for _, t in read_path(path2)] == texts


def test_memory_parquet(memfs, ml_texts):
    fs, root = memfs
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"text": ml_texts[:33]}), sink, row_group_size=5)
    fs.pipe(f"{root}/m.parquet", sink.getvalue().to_pybytes())
    url = f"memory://{root}/m.parquet"
    assert read_path(url) == [(f"{url}#{i}", t) for i, t in enumerate(ml_texts[:33])]
    assert read_docs(plan_splits(0, expand_inputs([url])[0], 1)) == read_path(url)


# ---------------------------------------------------------------------------------------------------- text


def test_text_files_one_document_each(tmp_path, ml_texts):
    d = tmp_path / "txt"
    d.mkdir()
    texts = ml_texts[:6] + ["no newline at end", "many\n\nparagraphs\n\n\nhere\n", "caf\u00e9 \U0001f600\r\n"]
    for i, t in enumerate(texts):
        (d / f"{i:02d}.txt").write_bytes(t.encode("utf-8"))
    files = expand_inputs([str(d)])
    assert [f.format for f in files] == [TEXT] * len(texts)
    got = read_docs([s for i, f in enumerate(files) for s in plan_splits(i, f, 10)])
    assert got == [(str(d / f"{i:02d}.txt"), t) for i, t in enumerate(texts)]


def test_compressed_and_memory_text_files(tmp_path, memfs):
    (tmp_path / "a.txt.gz").write_bytes(gzip.compress("gzip \u00e9".encode()))
    (tmp_path / "b.text.zst").write_bytes(zstandard.ZstdCompressor().compress(b"zstd text"))
    assert read_path(tmp_path / "a.txt.gz") == [(str(tmp_path / "a.txt.gz"), "gzip \u00e9")]
    assert read_path(tmp_path / "b.text.zst") == [(str(tmp_path / "b.text.zst"), "zstd text")]
    fs, root = memfs
    fs.pipe(f"{root}/doc.txt", "memory \u4e2d".encode())
    url = f"memory://{root}/doc.txt"
    assert read_path(url) == [(url, "memory \u4e2d")]


def test_text_bytes_read_is_the_file_size(tmp_path):
    (tmp_path / "t.txt").write_bytes(b"12345")
    batches = list(read_split(whole_split(tmp_path / "t.txt")))
    assert sum(b.bytes_read for b in batches) == 5 and sum(b.records for b in batches) == 1


# --------------------------------------------------------------------------------------------------- Arrow


def write_ipc(path, table, stream: bool, chunk: int) -> None:
    opener = pa.ipc.new_stream if stream else pa.ipc.new_file
    with opener(str(path), table.schema) as w:
        w.write_table(table, max_chunksize=chunk)


@pytest.mark.parametrize("stream", [True, False], ids=["ipc-stream", "ipc-file"])
def test_arrow_ipc_with_ids(tmp_path, ml_texts, stream):
    texts = ml_texts[:57]
    path = tmp_path / "a.arrow"
    write_ipc(path, pa.table({"id": [f"a{i}" for i in range(57)], "text": texts}), stream, chunk=10)
    split = whole_split(path)
    assert split.format == ARROW
    assert read_docs(split) == [(f"a{i}", t) for i, t in enumerate(texts)]
    assert read_docs(split, text_field="id", id_field="text") == [(t, f"a{i}") for i, t in enumerate(texts)]


@pytest.mark.parametrize("stream", [True, False], ids=["ipc-stream", "ipc-file"])
def test_arrow_fallback_ids_are_zero_based_rows_like_parquet(tmp_path, stream):
    texts = ["r0", "r1", None, "r3", "r4"]
    write_ipc(tmp_path / "a.arrow", pa.table({"text": pa.array(texts, pa.string())}), stream, chunk=2)
    pq.write_table(pa.table({"text": pa.array(texts, pa.string())}), tmp_path / "a.parquet", row_group_size=2)
    for name in ("a.parquet", "a.arrow"):
        path = tmp_path / name
        batches = list(read_split(whole_split(path)))
        ids = [i for b in batches for i in b.ids]
        rows = [r.row for b in batches for r in b.rejections]
        assert ids == [f"{path}#{i}" for i in (0, 1, 3, 4)], name
        assert rows == [2], name


def test_hf_save_to_disk_dataset(tmp_path, ml_texts):
    import datasets

    n = 2500  # several record batches per shard (datasets writes 1000 rows per batch)
    texts = [ml_texts[i % len(ml_texts)] + f" #{i}" for i in range(n)]
    ds = datasets.Dataset.from_dict({"text": texts, "id": [f"hf{i}" for i in range(n)], "n": list(range(n))})
    ds.save_to_disk(str(tmp_path / "hf"), num_shards=2)
    files = expand_inputs([str(tmp_path / "hf")])
    assert len(files) == 2 and {f.format for f in files} == {ARROW}
    got = read_docs([s for i, f in enumerate(files) for s in plan_splits(i, f, 1)])
    assert got == [(f"hf{i}", t) for i, t in enumerate(texts)]


def test_hf_dataset_dict_reads_every_split(tmp_path):
    import datasets

    datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"content": ["t0", "t1", "t2"], "uid": [10, 11, 12]}),
        "test": datasets.Dataset.from_dict({"content": ["e0"], "uid": [20]}),
    }).save_to_disk(str(tmp_path / "dd"))
    files = expand_inputs([str(tmp_path / "dd")])
    got = read_docs([s for i, f in enumerate(files) for s in plan_splits(i, f)], text_field="content",
                    id_field="uid")
    assert got == [("10", "t0"), ("11", "t1"), ("12", "t2"), ("20", "e0")]


# ------------------------------------------------------------------------------------------------ batching


def test_batching_small_batch_bytes(tmp_path, ml_texts, monkeypatch):
    monkeypatch.setattr(readers, "_READ_CHUNK", 4096)
    texts = ml_texts[:800]
    path = write_jsonl(tmp_path / "b.jsonl", [{"text": t} for t in texts])
    size = (tmp_path / "b.jsonl").stat().st_size
    assert size > 20 * 4096
    batches = list(read_split(whole_split(path), batch_bytes=500))
    assert len(batches) > 20
    assert all(isinstance(b, DocBatch) for b in batches)
    assert sum(b.records for b in batches) == len(texts)
    assert sum(len(b.texts) for b in batches) == len(texts)
    assert sum(b.bytes_read for b in batches) == size
    assert [t for b in batches for t in b.texts] == texts
    # batches are about batch_bytes (at most one read chunk more)
    for b in batches[:-1]:
        assert sum(map(len, b.texts)) >= 500
        assert sum(map(len, b.texts)) < 500 + 2 * 4096


def test_reading_is_streamed(tmp_path, ml_texts, monkeypatch):
    """The first batch comes out before the file has been read to its end."""
    monkeypatch.setattr(readers, "_READ_CHUNK", 4096)
    path = write_jsonl(tmp_path / "s.jsonl", [{"text": t} for t in ml_texts[:1000]])
    size = (tmp_path / "s.jsonl").stat().st_size
    it = read_split(whole_split(path), batch_bytes=1000)
    first = next(it)
    assert first.texts and first.bytes_read < size // 10
    it.close()


def test_batching_counts_add_up_with_rejections(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "_READ_CHUNK", 64)
    lines = []
    for i in range(300):
        lines.append(orjson.dumps({"text": f"document {i}"} if i % 5 else {"nope": i}))
    path = tmp_path / "r.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    batches = list(read_split(whole_split(path), batch_bytes=50))
    assert len(batches) > 10
    assert sum(b.records for b in batches) == 300
    assert sum(len(b.texts) for b in batches) == 240
    assert sum(len(b.rejections) for b in batches) == 60
    assert sum(b.bytes_read for b in batches) == path.stat().st_size
    assert [r.line for b in batches for r in b.rejections] == list(range(1, 301, 5))


def test_batching_tables(tmp_path):
    texts = [f"row number {i} " * 3 for i in range(5000)]
    pq.write_table(pa.table({"text": texts}), tmp_path / "t.parquet", row_group_size=1000)
    batches = list(read_split(whole_split(tmp_path / "t.parquet"), batch_bytes=1000))
    assert len(batches) >= 5
    assert sum(b.records for b in batches) == 5000
    assert [t for b in batches for t in b.texts] == texts


def test_batch_bytes_is_honoured_without_tuning_the_read_chunk(tmp_path, ml_texts):
    texts = ml_texts[:2000]
    path = write_jsonl(tmp_path / "b.jsonl", [{"text": t} for t in texts])
    batches = list(read_split(whole_split(path), batch_bytes=10_000))
    longest = max(map(len, texts))
    assert sum(b.records for b in batches) == len(texts)
    for b in batches:
        assert sum(map(len, b.texts)) < 10_000 + longest, "a batch is about batch_bytes of text"


# ------------------------------------------------------------------------------------------------ end to end


@pytest.fixture
def mixed_corpus(tmp_path, ml_texts):
    """JSONL + .jsonl.gz + .jsonl.zst + Parquet + .txt files + a save_to_disk dataset; returns (inputs, texts)."""
    import datasets

    d = tmp_path / "corpus"
    d.mkdir()
    t = ml_texts
    parts = {"plain": t[0:600], "gz": t[600:800], "zst": t[800:1000], "pq": t[1000:1300], "txt": t[1300:1315],
             "hf": t[1315:1500]}
    write_jsonl(d / "a.jsonl", [{"id": f"a{i}", "text": x} if i % 2 else {"text": x}
                                for i, x in enumerate(parts["plain"])])
    with gzip.open(d / "b.jsonl.gz", "wb") as fh:
        fh.write(jsonl_bytes({"text": x} for x in parts["gz"]))
    with zstandard.open(d / "c.jsonl.zst", "wb") as fh:
        fh.write(jsonl_bytes({"text": x} for x in parts["zst"]))
    pq.write_table(pa.table({"text": parts["pq"]}), d / "d.parquet", row_group_size=25)
    (d / "docs").mkdir()
    for i, x in enumerate(parts["txt"]):
        (d / "docs" / f"{i:03d}.txt").write_text(x, encoding="utf-8")
    hf_dir = tmp_path / "hf"
    datasets.Dataset.from_dict({"text": parts["hf"]}).save_to_disk(str(hf_dir), num_shards=2)
    texts = [x for p in parts.values() for x in p]
    return [str(d), str(hf_dir)], texts


def test_mixed_format_corpus_round_trips(tmp_path, mixed_corpus, tokenizer_path, hf_tokenizer):
    inputs, texts = mixed_corpus
    out = tmp_path / "out"
    manifest = prepare(inputs, out, tokenizer_path, seq_len=64, stream_bytes=40_000, shard_rows=400)
    got = Counter(map(tuple, documents_from_shards(out, eos_of(tokenizer_path))))
    assert got == Counter(map(tuple, hf_ids(hf_tokenizer, texts)))
    c = manifest[m.K_COUNTS]
    assert c["docs_written"] == c["records"] == len(texts)
    assert not c["docs_rejected"]
    formats = Counter(f["format"] for f in manifest[m.K_INPUTS])
    assert formats == Counter({JSONL: 3, PARQUET: 1, TEXT: 15, ARROW: 2})
    assert len(manifest[m.K_SHARDS]) > 1


def test_memory_input_end_to_end(tmp_path, memfs, ml_texts, tokenizer_path, hf_tokenizer):
    fs, root = memfs
    texts = ml_texts[:400]
    fs.pipe(f"{root}/in/a.jsonl", jsonl_bytes({"text": x} for x in texts[:250]))
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"text": texts[250:390]}), sink, row_group_size=30)
    fs.pipe(f"{root}/in/b.parquet", sink.getvalue().to_pybytes())
    for i, x in enumerate(texts[390:]):
        fs.pipe(f"{root}/in/t/{i}.txt", x.encode("utf-8"))
    out = tmp_path / "out"
    manifest = prepare([f"memory://{root}/in"], out, tokenizer_path, seq_len=64, stream_bytes=10_000)
    got = Counter(map(tuple, documents_from_shards(out, eos_of(tokenizer_path))))
    assert got == Counter(map(tuple, hf_ids(hf_tokenizer, texts)))
    assert manifest[m.K_COUNTS]["docs_written"] == len(texts)
    assert all(f["url"].startswith("memory://") for f in manifest[m.K_INPUTS])
