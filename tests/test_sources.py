"""Input discovery and split planning (transforms/read/sources.py), tested directly without Beam.

detect_format → expand_inputs (paths, globs, directories, file:// and memory:// URLs, saved HF datasets) →
plan_splits (line-aligned JSONL ranges, Parquet row-group runs) → group_into_streams. The plan must depend only on
the inputs and ``stream_bytes``.
"""

from __future__ import annotations

import bz2
import gzip
import random
import shutil

import fsspec
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from tests.conftest import write_jsonl
from transforms.read import sources
from transforms.read.sources import (
    ARROW,
    JSONL,
    PARQUET,
    TEXT,
    InputError,
    InputFile,
    Split,
    Stream,
    detect_format,
    expand_inputs,
    group_into_streams,
    plan_splits,
    plan_streams,
)

# ------------------------------------------------------------------------------------------------ helpers


def one_file(path) -> InputFile:
    files = expand_inputs([str(path)])
    assert len(files) == 1
    return files[0]


def urls(files) -> list[str]:
    return [f.url for f in files]


def jsonl_bytes(texts, with_ids=True) -> bytes:
    return b"".join(
        orjson.dumps({"id": f"d{i}", "text": t} if with_ids else {"text": t}) + b"\n" for i, t in enumerate(texts)
    )


def check_jsonl_splits(data: bytes, splits: list[Split], stream_bytes: int, file_index: int = 0) -> None:
    """Ranges are contiguous, cover the file, start at line starts, number their first line correctly."""
    assert splits, "a file always has at least one split"
    assert [s.split_index for s in splits] == list(range(len(splits)))
    assert {s.file_index for s in splits} == {file_index}
    assert all(s.format == JSONL and s.compression is None for s in splits)
    assert splits[0].start == 0
    assert splits[-1].end == len(data)
    for a, b in zip(splits, splits[1:]):
        assert a.end == b.start, "ranges must be contiguous"
    for s in splits:
        assert s.start < s.end, f"empty range {s}"
        assert s.size == s.end - s.start
        assert s.start == 0 or data[s.start - 1: s.start] == b"\n", f"{s} does not start at a line start"
        assert s.first_record == data[: s.start].count(b"\n") + 1, f"{s}: wrong first line number"
    for s in splits[:-1]:
        assert s.size >= stream_bytes, "only the last range may be smaller than stream_bytes"
    assert sum(s.size for s in splits) == len(data)


# --------------------------------------------------------------------------------------------- detect_format


@pytest.mark.parametrize(
    "name, expected",
    [
        ("a.jsonl", (JSONL, None)),
        ("a.json", (JSONL, None)),
        ("a.ndjson", (JSONL, None)),
        ("a.json.gz", (JSONL, "gzip")),
        ("a.jsonl.gz", (JSONL, "gzip")),
        ("a.ndjson.zst", (JSONL, "zstd")),
        ("a.jsonl.bz2", (JSONL, "bz2")),
        ("a.jsonl.xz", (JSONL, "xz")),
        ("a.parquet", (PARQUET, None)),
        ("a.pq", (PARQUET, None)),
        ("a.txt", (TEXT, None)),
        ("a.text", (TEXT, None)),
        ("a.txt.bz2", (TEXT, "bz2")),
        ("a.txt.gz", (TEXT, "gzip")),
        ("a.arrow", (ARROW, None)),
        ("data-00000-of-00001.arrow", (ARROW, None)),
        ("UPPER.JSONL.GZ", (JSONL, "gzip")),
        ("dots.in.name.v2.parquet", (PARQUET, None)),
        ("/abs/dir.with.dots/a.jsonl", (JSONL, None)),
        ("memory:///x/y.ndjson", (JSONL, None)),
        ("file:///x/y.txt", (TEXT, None)),
        ("s3://bucket/key/part-1.jsonl.zst", (JSONL, "zstd")),
        ("gs://bucket/dir/", None),  # a directory-like URL: no file name to go by
    ],
)
def test_detect_format_by_name(name, expected):
    if expected is None:
        with pytest.raises(InputError):
            detect_format(name)
    else:
        assert detect_format(name) == expected


@pytest.mark.parametrize("name", ["data.csv", "README", "archive.tar.gz", "data.gz", "x.jsonl.lz4", "notes.md"])
def test_detect_format_unknown_lists_supported_endings(name):
    with pytest.raises(InputError) as info:
        detect_format(f"/data/{name}")
    msg = str(info.value)
    assert name in msg
    for ending in (".jsonl", ".json", ".ndjson", ".parquet", ".pq", ".txt", ".text", ".arrow", ".gz", ".zst",
                   ".bz2", ".xz"):
        assert ending in msg, f"{ending} missing from {msg!r}"
    assert "--input-format" in msg


@pytest.mark.parametrize("name", ["a.parquet.gz", "a.pq.zst", "a.arrow.bz2", "a.arrow.xz"])
def test_detect_format_refuses_compressed_tables(name):
    with pytest.raises(InputError, match="compression"):
        detect_format(name)


@pytest.mark.parametrize(
    "name, forced, expected",
    [
        ("data.bin", JSONL, (JSONL, None)),
        ("README", TEXT, (TEXT, None)),
        ("a.parquet", JSONL, (JSONL, None)),  # forced wins over the name
        ("dump.weird.gz", JSONL, (JSONL, "gzip")),  # compression still comes from the name
        ("dump.zst", TEXT, (TEXT, "zstd")),
        ("x.table", PARQUET, (PARQUET, None)),
        ("x.ipc", ARROW, (ARROW, None)),
    ],
)
def test_detect_format_forced(name, forced, expected):
    assert detect_format(name, forced) == expected


# --------------------------------------------------------------------------------------------- expand_inputs


def test_expand_inputs_glob_is_sorted_with_formats_and_sizes(tmp_path):
    write_jsonl(tmp_path / "c.jsonl", [{"text": "c"}])
    write_jsonl(tmp_path / "a.jsonl", [{"text": "a"}, {"text": "aa"}])
    (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress(b'{"text": "b"}\n'))
    (tmp_path / "d.txt").write_text("not matched by the glob")
    files = expand_inputs([str(tmp_path / "*.jsonl*")])
    assert urls(files) == [str(tmp_path / n) for n in ("a.jsonl", "b.jsonl.gz", "c.jsonl")]
    assert [(f.format, f.compression) for f in files] == [(JSONL, None), (JSONL, "gzip"), (JSONL, None)]
    assert [f.size for f in files] == [(tmp_path / n).stat().st_size for n in ("a.jsonl", "b.jsonl.gz", "c.jsonl")]


def test_expand_inputs_deduplicates_across_patterns_keeping_first_order(tmp_path):
    for n in ("a", "b", "c"):
        write_jsonl(tmp_path / f"{n}.jsonl", [{"text": n}])
    (tmp_path / "sub").mkdir()
    write_jsonl(tmp_path / "sub" / "z.jsonl", [{"text": "z"}])
    patterns = [str(tmp_path / "b.jsonl"), str(tmp_path / "*.jsonl"), str(tmp_path),
                "file://" + str(tmp_path / "a.jsonl")]
    got = urls(expand_inputs(patterns))
    assert got == [str(tmp_path / "b.jsonl"), str(tmp_path / "a.jsonl"), str(tmp_path / "c.jsonl"),
                   str(tmp_path / "sub" / "z.jsonl")]
    assert len(got) == len(set(got))
    # the same patterns give the same list every time
    assert urls(expand_inputs(patterns)) == got


def test_expand_inputs_recursive_glob(tmp_path):
    (tmp_path / "x" / "y").mkdir(parents=True)
    write_jsonl(tmp_path / "top.jsonl", [{"text": "t"}])
    write_jsonl(tmp_path / "x" / "mid.jsonl", [{"text": "m"}])
    write_jsonl(tmp_path / "x" / "y" / "deep.jsonl", [{"text": "d"}])
    got = urls(expand_inputs([str(tmp_path / "**" / "*.jsonl")]))
    assert sorted(got) == sorted(str(p) for p in tmp_path.rglob("*.jsonl"))
    assert len(got) == 3


def test_expand_inputs_recurses_directories_skipping_hidden_underscore_and_unknown(tmp_path):
    d = tmp_path / "corpus"
    (d / "sub" / "deeper").mkdir(parents=True)
    write_jsonl(d / "b.jsonl", [{"text": "b"}])
    (d / "a.txt").write_text("a")
    pq.write_table(pa.table({"text": ["p"]}), d / "sub" / "p.parquet")
    (d / "sub" / "deeper" / "z.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(b'{"text":"z"}\n'))
    (d / "sub" / "t.txt.bz2").write_bytes(bz2.compress(b"bz"))
    # not inputs: hidden, underscore, unknown endings, HF metadata
    write_jsonl(d / ".hidden.jsonl", [{"text": "h"}])
    write_jsonl(d / "sub" / ".also-hidden.jsonl", [{"text": "h"}])
    write_jsonl(d / "_tmp.jsonl", [{"text": "u"}])
    (d / "_SUCCESS").write_bytes(b"")
    (d / "sub" / "_metadata").write_bytes(b"x")
    (d / "notes.md").write_text("# notes")
    (d / "sub" / "data.csv").write_text("a,b\n")
    (d / "sub" / "dataset_info.json").write_text("{}")
    (d / "sub" / "state.json").write_text("{}")
    files = expand_inputs([str(d)])
    assert urls(files) == [str(d / n) for n in ("a.txt", "b.jsonl", "sub/deeper/z.jsonl.zst", "sub/p.parquet",
                                                "sub/t.txt.bz2")]
    assert [(f.format, f.compression) for f in files] == [
        (TEXT, None), (JSONL, None), (JSONL, "zstd"), (PARQUET, None), (TEXT, "bz2")
    ]
    # a trailing slash and a file:// URL name the same directory
    assert expand_inputs([str(d) + "/"]) == files
    assert expand_inputs(["file://" + str(d)]) == files


def test_expand_inputs_skips_files_under_hidden_or_underscore_directories(tmp_path):
    d = tmp_path / "corpus"
    (d / ".ipynb_checkpoints").mkdir(parents=True)
    (d / "_temporary" / "0").mkdir(parents=True)
    write_jsonl(d / "good.jsonl", [{"text": "g"}])
    write_jsonl(d / ".ipynb_checkpoints" / "good-checkpoint.jsonl", [{"text": "stale copy"}])
    pq.write_table(pa.table({"text": ["half-written"]}), d / "_temporary" / "0" / "part-0.parquet")
    assert urls(expand_inputs([str(d)])) == [str(d / "good.jsonl")]


def test_expand_inputs_forced_format(tmp_path):
    (tmp_path / "data.bin").write_bytes(b'{"text":"x"}\n')
    (tmp_path / "dump.gz").write_bytes(gzip.compress(b'{"text":"x"}\n'))
    files = expand_inputs([str(tmp_path / "data.bin"), str(tmp_path / "dump.gz")], forced_format=JSONL)
    assert [(f.format, f.compression) for f in files] == [(JSONL, None), (JSONL, "gzip")]
    with pytest.raises(InputError, match="data.bin"):
        expand_inputs([str(tmp_path / "data.bin")])


def test_expand_inputs_relative_path_becomes_absolute(tmp_path, monkeypatch):
    write_jsonl(tmp_path / "rel.jsonl", [{"text": "r"}])
    monkeypatch.chdir(tmp_path)
    assert urls(expand_inputs(["rel.jsonl"])) == [str(tmp_path / "rel.jsonl")]
    assert urls(expand_inputs(["*.jsonl"])) == [str(tmp_path / "rel.jsonl")]


def test_expand_inputs_missing_path_names_the_pattern(tmp_path):
    missing = str(tmp_path / "nope.jsonl")
    with pytest.raises(InputError) as info:
        expand_inputs([missing])
    assert repr(missing) in str(info.value) and "does not exist" in str(info.value)


@pytest.mark.parametrize("pattern", ["*.jsonl", "nothing-*.parquet", "sub/**/*.txt"])
def test_expand_inputs_glob_matching_nothing_names_the_pattern(tmp_path, pattern):
    (tmp_path / "sub").mkdir()
    (tmp_path / "other.txt.gz").write_bytes(b"")
    full = str(tmp_path / pattern)
    with pytest.raises(InputError) as info:
        expand_inputs([full])
    assert repr(full) in str(info.value)


def test_expand_inputs_one_bad_pattern_fails_the_whole_list(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"text": "a"}])
    bad = str(tmp_path / "missing" / "*.jsonl")
    with pytest.raises(InputError, match="missing"):
        expand_inputs([str(tmp_path / "a.jsonl"), bad])


def test_expand_inputs_directory_without_inputs_and_empty_list(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.md").write_text("x")
    (tmp_path / "d" / ".hidden.jsonl").write_text('{"text":"x"}\n')
    with pytest.raises(InputError, match="no readable input file"):
        expand_inputs([str(tmp_path / "d")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError):
        expand_inputs([str(tmp_path / "empty")])
    with pytest.raises(InputError, match="--input"):
        expand_inputs([])


def test_expand_inputs_unknown_file_named_directly_is_an_error(tmp_path):
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(InputError, match="data.csv"):
        expand_inputs([str(tmp_path / "data.csv")])


def test_expand_inputs_file_urls(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"text": "a"}])
    pq.write_table(pa.table({"text": ["p"]}), tmp_path / "b.parquet")
    plain = expand_inputs([str(tmp_path / "a.jsonl"), str(tmp_path / "*.parquet")])
    via_url = expand_inputs(["file://" + str(tmp_path / "a.jsonl"), "file://" + str(tmp_path / "*.parquet")])
    assert via_url == plain
    assert urls(via_url) == [str(tmp_path / "a.jsonl"), str(tmp_path / "b.parquet")]
    with pytest.raises(InputError):
        expand_inputs(["file://" + str(tmp_path / "nope.jsonl")])


def test_expand_inputs_memory_urls(memfs):
    fs, root = memfs
    fs.pipe(f"{root}/b.jsonl", b'{"text":"b"}\n')
    fs.pipe(f"{root}/a.jsonl.gz", gzip.compress(b'{"text":"a"}\n'))
    fs.pipe(f"{root}/sub/c.txt", b"c")
    fs.pipe(f"{root}/sub/_skip.txt", b"skip")
    fs.pipe(f"{root}/sub/d.parquet", b"not really parquet, but named so")
    base = f"memory://{root}"

    by_glob = expand_inputs([f"{base}/*.jsonl*"])
    assert [(f.url, f.format, f.compression, f.size) for f in by_glob] == [
        (f"memory://{root}/a.jsonl.gz", JSONL, "gzip", fs.size(f"{root}/a.jsonl.gz")),
        (f"memory://{root}/b.jsonl", JSONL, None, 13),
    ]
    by_dir = expand_inputs([base])
    assert urls(by_dir) == [f"memory://{root}/{n}" for n in ("a.jsonl.gz", "b.jsonl", "sub/c.txt", "sub/d.parquet")]
    assert urls(expand_inputs([f"{base}/b.jsonl"])) == [f"memory://{root}/b.jsonl"]
    # the URLs are usable as they are, by any fsspec reader
    for f in by_dir:
        with fsspec.open(f.url, "rb") as fh:
            assert len(fh.read()) == f.size
    with pytest.raises(InputError, match="matches no file"):
        expand_inputs([f"{base}/*.parquet"])
    with pytest.raises(InputError, match="does not exist"):
        expand_inputs([f"{base}/missing.jsonl"])


def test_expand_inputs_unknown_protocol_is_an_input_error():
    with pytest.raises(InputError, match="no-such-protocol-xyz"):
        expand_inputs(["no-such-protocol-xyz://bucket/a.jsonl"])


def test_expand_inputs_saved_hf_dataset(tmp_path):
    import datasets

    ds = datasets.Dataset.from_dict({"text": [f"doc {i}" for i in range(30)], "id": [str(i) for i in range(30)]})
    ds.save_to_disk(str(tmp_path / "one"))
    files = expand_inputs([str(tmp_path / "one")])
    assert urls(files) == [str(tmp_path / "one" / "data-00000-of-00001.arrow")]
    assert files[0].format == ARROW and files[0].compression is None
    assert files[0].size == (tmp_path / "one" / "data-00000-of-00001.arrow").stat().st_size

    ds.save_to_disk(str(tmp_path / "sharded"), num_shards=3)
    assert urls(expand_inputs(["file://" + str(tmp_path / "sharded")])) == [
        str(tmp_path / "sharded" / f"data-0000{i}-of-00003.arrow") for i in range(3)
    ]


def test_expand_inputs_saved_hf_dataset_dict(tmp_path):
    import datasets

    dd = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"text": ["t1", "t2", "t3"]}),
        "test": datasets.Dataset.from_dict({"text": ["e1"]}),
    })
    dd.save_to_disk(str(tmp_path / "dd"))
    files = expand_inputs([str(tmp_path / "dd")])
    # the splits in the order dataset_dict.json lists them; no metadata file is an input
    assert urls(files) == [str(tmp_path / "dd" / "train" / "data-00000-of-00001.arrow"),
                           str(tmp_path / "dd" / "test" / "data-00000-of-00001.arrow")]
    assert {f.format for f in files} == {ARROW}


def test_expand_inputs_saved_hf_dataset_nested_in_a_directory(tmp_path):
    import datasets

    (tmp_path / "corpus").mkdir()
    write_jsonl(tmp_path / "corpus" / "a.jsonl", [{"text": "a"}])
    datasets.Dataset.from_dict({"text": ["x", "y"]}).save_to_disk(str(tmp_path / "corpus" / "hf"))
    got = urls(expand_inputs([str(tmp_path / "corpus")]))
    assert got == [str(tmp_path / "corpus" / "a.jsonl"), str(tmp_path / "corpus" / "hf" / "data-00000-of-00001.arrow")]


def test_expand_inputs_saved_hf_dataset_dict_nested_in_a_directory(tmp_path):
    import datasets

    (tmp_path / "corpus").mkdir()
    write_jsonl(tmp_path / "corpus" / "a.jsonl", [{"text": "a"}])
    datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"text": ["t"]}),
        "test": datasets.Dataset.from_dict({"text": ["e"]}),
    }).save_to_disk(str(tmp_path / "corpus" / "dd"))
    got = expand_inputs([str(tmp_path / "corpus")])
    assert [f.format for f in got] == [JSONL, ARROW, ARROW], urls(got)
    assert not any(u.endswith("dataset_dict.json") for u in urls(got))


# ----------------------------------------------------------------------------------------------- plan_splits


@pytest.fixture
def big_jsonl(tmp_path, ml_texts):
    """A plain JSONL file of real multilingual documents (multi-byte UTF-8), ~100x the stream size used."""
    data = jsonl_bytes(ml_texts[:400])
    path = tmp_path / "big.jsonl"
    path.write_bytes(data)
    return path, data


def test_plan_splits_big_jsonl_ranges(big_jsonl):
    path, data = big_jsonl
    f = one_file(path)
    splits = plan_splits(3, f, 1000)
    assert len(splits) > 20
    check_jsonl_splits(data, splits, 1000, file_index=3)
    assert all(s.url == f.url for s in splits)
    # each range is a run of complete JSON lines
    for s in splits:
        for line in data[s.start: s.end].splitlines():
            orjson.loads(line)


@pytest.mark.parametrize("stream_bytes", [1, 37, 1000, 4096])
@pytest.mark.parametrize("trailing_newline", [True, False])
def test_plan_splits_jsonl_with_and_without_trailing_newline(tmp_path, ml_texts, stream_bytes, trailing_newline):
    data = jsonl_bytes(ml_texts[:120], with_ids=False)
    if not trailing_newline:
        data = data[:-1]
    path = tmp_path / "f.jsonl"
    path.write_bytes(data)
    splits = plan_splits(0, one_file(path), stream_bytes)
    check_jsonl_splits(data, splits, stream_bytes)
    assert splits[-1].end == len(data)
    if stream_bytes == 1:  # every line is its own range
        assert len(splits) == data.count(b"\n") + (0 if trailing_newline else 1)


def test_plan_splits_lines_longer_than_stream_bytes(tmp_path, ml_texts):
    rng = random.Random(7)
    recs = []
    for i in range(60):
        n = rng.choice([1, 3, 50, 900, 5000])  # some lines are many times stream_bytes
        recs.append({"id": i, "text": ("x" * n) + ml_texts[i][:40]})
    data = b"".join(orjson.dumps(r) + b"\n" for r in recs)
    path = tmp_path / "long.jsonl"
    path.write_bytes(data)
    splits = plan_splits(0, one_file(path), 1000)
    check_jsonl_splits(data, splits, 1000)
    long_lines = [ln for ln in data.split(b"\n") if len(ln) > 1000]
    for ln in long_lines:  # a long line is never cut
        start = data.index(ln)
        assert any(s.start <= start and start + len(ln) < s.end for s in splits)


def test_plan_splits_blank_lines_crlf_and_multibyte(tmp_path):
    lines = []
    for i in range(300):
        lines.append(b"" if i % 7 == 3 else orjson.dumps({"text": "\u00e9\u4e2d\U0001f600 " * (i % 13 + 1)}))
    data = b"\r\n".join(lines) + b"\r\n"
    path = tmp_path / "crlf.jsonl"
    path.write_bytes(data)
    splits = plan_splits(0, one_file(path), 500)
    check_jsonl_splits(data, splits, 500)


@pytest.mark.parametrize("chunk", [1, 2, 7, 100, 999, 1000, 1001, 4096])
def test_plan_splits_do_not_depend_on_the_scan_chunk(big_jsonl, monkeypatch, chunk):
    path, data = big_jsonl
    f = one_file(path)
    reference = plan_splits(0, f, 1000)
    monkeypatch.setattr(sources, "_SCAN_CHUNK", chunk)
    got = plan_splits(0, f, 1000)
    check_jsonl_splits(data, got, 1000)
    assert got == reference


def test_plan_splits_randomized_jsonl(tmp_path, monkeypatch):
    rng = random.Random(1234)
    for trial in range(150):
        lines = [b"" if rng.random() < 0.1 else orjson.dumps({"text": "y" * rng.choice([0, 1, 5, 40, 300])})
                 for _ in range(rng.randint(1, 40))]
        data = b"\n".join(lines) + (b"\n" if rng.random() < 0.5 else b"")
        path = tmp_path / f"r{trial}.jsonl"
        path.write_bytes(data)
        stream_bytes = rng.randint(1, 400)
        monkeypatch.setattr(sources, "_SCAN_CHUNK", rng.randint(1, 200))
        splits = plan_splits(0, one_file(path), stream_bytes)
        if len(data) < 2 * stream_bytes:  # under two streams' worth: one whole split
            assert [(s.start, s.end, s.first_record) for s in splits] == [(0, -1, 1)]
        else:
            check_jsonl_splits(data, splits, stream_bytes)


def test_plan_splits_small_jsonl_is_one_whole_split(tmp_path):
    data = jsonl_bytes(["a", "b"])
    (tmp_path / "s.jsonl").write_bytes(data)
    f = one_file(tmp_path / "s.jsonl")
    assert plan_splits(5, f, len(data)) == [Split(5, 0, f.url, JSONL, None, 0, -1, 1, len(data))]
    # two streams' worth or more: n = size // stream_bytes line-aligned ranges, each cut at the first newline at
    # or after size / n bytes past the previous cut
    assert [(s.start, s.end, s.first_record) for s in plan_splits(5, f, 10)] == [(0, 23, 1), (23, 46, 2)]
    assert [(s.start, s.end, s.first_record) for s in plan_splits(5, f, 15)] == [(0, 23, 1), (23, 46, 2)]
    # n = 46 // 23 = 2: the target is 23 bytes, and the first newline at or past it ends the second line
    assert [(s.start, s.end, s.first_record) for s in plan_splits(5, f, 23)] == [(0, 46, 1)]
    assert plan_splits(5, f, 24) == [Split(5, 0, f.url, JSONL, None, 0, -1, 1, len(data))]  # under 2 x 24 bytes
    (tmp_path / "e.jsonl").write_bytes(b"")
    e = one_file(tmp_path / "e.jsonl")
    assert plan_splits(0, e, 1) == [Split(0, 0, e.url, JSONL, None, 0, -1, 1, 0)]


@pytest.mark.parametrize("suffix, compress", [
    (".gz", gzip.compress),
    (".zst", lambda b: zstandard.ZstdCompressor().compress(b)),
    (".bz2", bz2.compress),
])
def test_plan_splits_compressed_jsonl_is_never_split(tmp_path, ml_texts, suffix, compress):
    data = compress(jsonl_bytes(ml_texts[:300]))
    path = tmp_path / f"c.jsonl{suffix}"
    path.write_bytes(data)
    f = one_file(path)
    assert f.size == len(data) > 1000
    splits = plan_splits(2, f, 100)
    assert splits == [Split(2, 0, f.url, JSONL, f.compression, 0, -1, 1, len(data))]


def test_plan_splits_text_and_arrow_are_whole_files(tmp_path):
    (tmp_path / "t.txt").write_text("x" * 5000)
    t = pa.table({"text": ["a"] * 500})
    with pa.ipc.new_stream(str(tmp_path / "a.arrow"), t.schema) as w:
        w.write_table(t, max_chunksize=10)
    for name, fmt in (("t.txt", TEXT), ("a.arrow", ARROW)):
        f = one_file(tmp_path / name)
        assert f.size > 100
        splits = plan_splits(0, f, 100)
        assert len(splits) == 1
        s = splits[0]
        assert (s.format, s.start, s.end, s.size, s.split_index) == (fmt, 0, -1, f.size, 0)


def parquet_row_groups(path) -> list[int]:
    meta = pq.ParquetFile(path).metadata
    return [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]


def check_parquet_splits(path, splits, stream_bytes) -> None:
    rows = parquet_row_groups(path)
    assert splits[0].start == 0 and splits[-1].end == len(rows)
    assert [s.split_index for s in splits] == list(range(len(splits)))
    for a, b in zip(splits, splits[1:]):
        assert a.end == b.start
    meta = pq.ParquetFile(path).metadata
    for s in splits:
        assert s.format == PARQUET and s.start < s.end
        assert s.first_record == sum(rows[: s.start]), "first_record is the 0-based index of the first row"
        assert s.size == sum(meta.row_group(g).total_byte_size for g in range(s.start, s.end))
    for s in splits[:-1]:
        assert s.size >= stream_bytes


@pytest.mark.parametrize("stream_bytes", [1, 1000, 3000, 10**9])
def test_plan_splits_parquet_row_group_runs(tmp_path, ml_texts, stream_bytes):
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"text": ml_texts[:95], "n": list(range(95))}), path, row_group_size=10)
    assert parquet_row_groups(path) == [10] * 9 + [5]
    splits = plan_splits(1, one_file(path), stream_bytes)
    check_parquet_splits(path, splits, stream_bytes)
    assert {s.file_index for s in splits} == {1}
    if stream_bytes == 1:
        assert [(s.start, s.end, s.first_record) for s in splits] == [(g, g + 1, 10 * g) for g in range(10)]
    if stream_bytes == 10**9:
        assert [(s.start, s.end, s.first_record) for s in splits] == [(0, 10, 0)]


def test_plan_splits_parquet_uneven_row_groups(tmp_path, ml_texts):
    path = tmp_path / "u.parquet"
    sizes = [3, 17, 1, 40, 2, 25]
    schema = pa.schema([("text", pa.string())])
    with pq.ParquetWriter(path, schema) as w:
        at = 0
        for n in sizes:
            w.write_table(pa.table({"text": ml_texts[at: at + n]}, schema=schema))
            at += n
    assert parquet_row_groups(path) == sizes
    for stream_bytes in (1, 500, 2000, 10**9):
        splits = plan_splits(0, one_file(path), stream_bytes)
        check_parquet_splits(path, splits, stream_bytes)
    firsts = [s.first_record for s in plan_splits(0, one_file(path), 1)]
    assert firsts == [0, 3, 20, 21, 61, 63]


def test_plan_splits_parquet_empty_and_unreadable(tmp_path):
    pq.write_table(pa.table({"text": pa.array([], pa.string())}), tmp_path / "empty.parquet")
    splits = plan_splits(0, one_file(tmp_path / "empty.parquet"), 1)
    assert sum(s.end - s.start for s in splits) == len(parquet_row_groups(tmp_path / "empty.parquet"))
    assert [s.first_record for s in splits] == [0]
    (tmp_path / "bad.parquet").write_bytes(b"this is not parquet at all")
    f = one_file(tmp_path / "bad.parquet")
    # unreadable while planning: one whole split, so that the reader reports it as a rejected record
    assert plan_splits(0, f, 1) == [Split(0, 0, f.url, PARQUET, None, 0, -1, 0, f.size)]


def test_plan_splits_memory_jsonl_and_parquet(memfs, ml_texts):
    fs, root = memfs
    data = jsonl_bytes(ml_texts[:100])
    fs.pipe(f"{root}/m.jsonl", data)
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"text": ml_texts[:50]}), sink, row_group_size=10)
    fs.pipe(f"{root}/m.parquet", sink.getvalue().to_pybytes())
    jf, pf = expand_inputs([f"memory://{root}/m.jsonl", f"memory://{root}/m.parquet"])
    check_jsonl_splits(data, plan_splits(0, jf, 700), 700)
    psplits = plan_splits(1, pf, 1)
    assert [(s.start, s.end, s.first_record) for s in psplits] == [(g, g + 1, 10 * g) for g in range(5)]


# ---------------------------------------------------------------------------------------- group_into_streams


def fake_splits(sizes_per_file: list[list[int]]) -> list[Split]:
    return [
        Split(fi, si, f"/f{fi}.jsonl", JSONL, None, 0, size, 1, size)
        for fi, sizes in enumerate(sizes_per_file) for si, size in enumerate(sizes)
    ]


@pytest.mark.parametrize("stream_bytes", [1, 50, 100, 333, 10**6])
def test_group_into_streams_order_size_and_determinism(stream_bytes):
    rng = random.Random(stream_bytes)
    splits = fake_splits([[rng.randint(0, 120) for _ in range(rng.randint(1, 8))] for _ in range(12)])
    shuffled = splits[:]
    rng.shuffle(shuffled)
    streams = group_into_streams(shuffled, stream_bytes)
    assert [s.index for s in streams] == list(range(len(streams)))
    # order-preserving, every split exactly once
    assert [sp for st in streams for sp in st.splits] == sorted(splits, key=lambda s: (s.file_index, s.split_index))
    for st in streams[:-1]:
        assert st.size >= stream_bytes
        # and no bigger than needed: without its last split it would be too small
        assert st.size - st.splits[-1].size < stream_bytes
    assert streams[-1].splits
    assert all(isinstance(st, Stream) and st.size == sum(sp.size for sp in st.splits) for st in streams)
    # the input order does not matter
    assert group_into_streams(splits, stream_bytes) == streams
    assert group_into_streams(list(reversed(splits)), stream_bytes) == streams


def test_group_into_streams_edge_cases():
    assert group_into_streams([], 100) == []
    one = fake_splits([[5]])
    assert group_into_streams(one, 100) == [Stream(0, tuple(one))]
    assert len(group_into_streams(fake_splits([[10] * 10]), 10**9)) == 1
    assert len(group_into_streams(fake_splits([[10] * 10]), 1)) == 10


@pytest.fixture
def mixed_corpus(tmp_path, ml_texts):
    d = tmp_path / "mixed"
    d.mkdir()
    (d / "a.jsonl").write_bytes(jsonl_bytes(ml_texts[:300]))
    (d / "b.jsonl.gz").write_bytes(gzip.compress(jsonl_bytes(ml_texts[300:400])))
    pq.write_table(pa.table({"text": ml_texts[400:500]}), d / "c.parquet", row_group_size=7)
    for i in range(5):
        (d / f"t{i}.txt").write_text(ml_texts[500 + i], encoding="utf-8")
    (d / "z.jsonl").write_bytes(jsonl_bytes(ml_texts[600:900], with_ids=False))
    return d


def test_plan_streams_is_deterministic_and_covers_everything(mixed_corpus):
    files = expand_inputs([str(mixed_corpus)])
    plan = plan_streams(files, 2000)
    assert plan == plan_streams(files, 2000)
    assert plan == plan_streams(expand_inputs([str(mixed_corpus)]), 2000)
    assert len(plan) > 5
    flat = [sp for st in plan for sp in st.splits]
    assert [(s.file_index, s.split_index) for s in flat] == sorted((s.file_index, s.split_index) for s in flat)
    assert {s.url for s in flat} == {f.url for f in files}
    for st in plan[:-1]:
        assert st.size >= 2000
    # per file, the splits cover it exactly once
    for i, f in enumerate(files):
        mine = [s for s in flat if s.file_index == i]
        if f.format == JSONL and f.compression is None and f.size > 2000:
            check_jsonl_splits((mixed_corpus / f.url.rsplit("/", 1)[1]).read_bytes(), mine, 2000, i)
        elif f.format == PARQUET:
            check_parquet_splits(f.url, mine, 2000)
        else:
            assert len(mine) == 1 and mine[0].end == -1


def test_plan_depends_only_on_inputs_and_stream_bytes(mixed_corpus, tmp_path, monkeypatch):
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(mixed_corpus, copy)

    def shape(plan):
        return [[(s.file_index, s.split_index, s.format, s.compression, s.start, s.end, s.first_record, s.size,
                  s.url.rsplit("/", 1)[1]) for s in st.splits] for st in plan]

    for stream_bytes in (1, 700, 5000, 10**9):
        a = plan_streams(expand_inputs([str(mixed_corpus)]), stream_bytes)
        monkeypatch.setattr(sources, "_SCAN_CHUNK", 13)
        b = plan_streams(expand_inputs(["file://" + str(copy)]), stream_bytes)
        monkeypatch.undo()
        assert shape(a) == shape(b)
    assert shape(plan_streams(expand_inputs([str(mixed_corpus)]), 700)) != shape(
        plan_streams(expand_inputs([str(mixed_corpus)]), 5000))


def test_split_to_dict_round_trips():
    s = Split(1, 2, "memory:///x.jsonl", JSONL, None, 10, 20, 3, 10)
    assert Split(**s.to_dict()) == s
    assert orjson.loads(orjson.dumps(s.to_dict())) == s.to_dict()
