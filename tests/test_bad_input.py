"""Bad input never crashes the job: every bad record is repaired and counted or rejected with its reason.

Also: --strict stops at the first bad record naming file and line; a missing input, an unusable tokenizer or an
unwritable output is one clear error line before any work starts; another job's output is not overwritten
unless --overwrite.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import io
import json
import lzma
import math
import re
import subprocess
import sys
import zlib
from collections import Counter
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import cli
from schemas import manifest as m
from tests.conftest import documents_from_shards, eos_of, hf_ids, write_jsonl

SEQ = 64
ROOT = Path(__file__).resolve().parent.parent
TOKENMILL = Path(sys.executable).parent / "tokenmill"  # the console script of the running environment
BIG_BYTES = 10 * 1024 * 1024


# --------------------------------------------------------------------------------------------------- helpers


def cli_args(inputs, out, tokenizer, *extra, seq_len=SEQ) -> list[str]:
    args = ["prepare"]
    for p in inputs if isinstance(inputs, (list, tuple)) else [inputs]:
        args += ["--input", str(p)]
    return args + ["--tokenizer", str(tokenizer), "--seq-len", str(seq_len), "--output", str(out),
                   "--no-progress", *extra]


def run_main(inputs, out, tokenizer, *extra, seq_len=SEQ) -> tuple[int, str]:
    """cli.main with stderr captured (works in module fixtures, where capsys does not)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli.main(cli_args(inputs, out, tokenizer, *extra, seq_len=seq_len))
    return code, err.getvalue()


def manifest_of(out) -> dict:
    return json.loads((Path(out) / "manifest.json").read_text())


def rejected_of(out) -> list[dict]:
    """Every rejected/ record of an output directory (all files, in file order)."""
    recs = []
    for p in sorted((Path(out) / "rejected").glob("*.jsonl")):
        recs += [json.loads(line) for line in p.read_bytes().splitlines()]
    return recs


def assert_counts_add_up(manifest: dict, rejected: list[dict]) -> dict:
    c = manifest[m.K_COUNTS]
    assert c["records"] == c["docs_written"] + sum(c["docs_rejected"].values())
    assert Counter(r["reason"] for r in rejected) == Counter(c["docs_rejected"])
    assert sum(f["records"] for f in manifest[m.K_REJECTED]) == len(rejected)
    return c


def assert_documents(out, tokenizer_path, hf_tokenizer, texts, big_ids=None) -> None:
    """The shards hold exactly ``texts`` (plus an optional precomputed big document) as HF tokenizes them."""
    got = Counter(map(tuple, documents_from_shards(out, eos_of(tokenizer_path))))
    expected = Counter(map(tuple, hf_ids(hf_tokenizer, texts)))
    if big_ids is not None:
        expected[tuple(big_ids)] += 1
    assert got == expected


def good_jsonl(path, texts) -> str:
    return write_jsonl(path, [{"text": t} for t in texts])


# ------------------------------------------------------------------------------------------ the mixed file

GOOD, BAD, REPAIR, BLANK, BIG = "good", "bad", "repair", "blank", "big"


@pytest.fixture(scope="module")
def big_doc(ml_texts, hf_tokenizer):
    """A ~10 MB document and its HF ids, computed from a repeated unit (HF on 10 MB in one piece takes ~10 s).

    The unit ends in a single newline after a non-space and starts with a non-space, so byte-level
    pre-tokenization splits at every unit boundary and ids(unit * k) == ids(unit) * k (checked on k=3).
    """
    unit = "\n".join(t.strip() for t in ml_texts[:300] if t.strip()) + "\n"
    assert not unit[0].isspace() and not unit[-2].isspace()
    unit_ids = hf_ids(hf_tokenizer, [unit])[0]
    assert hf_ids(hf_tokenizer, [unit * 3])[0] == unit_ids * 3
    k = math.ceil(BIG_BYTES / len(unit.encode()))
    return unit * k, unit_ids * k


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, ml_texts, big_doc):
    """One JSONL file mixing good records with every kind of bad one; returns (path, entries by line number).

    Each entry: (kind, raw line, reason or repair kind, expected kept text).
    """
    big_text, _ = big_doc
    long_x = "x" * 3000
    goods = iter(ml_texts[100:])
    spec: list[tuple[str, bytes, str | None, str | None]] = []

    def good(obj_id=None):
        t = next(goods)
        rec = {"text": t} if obj_id is None else {"id": obj_id, "text": t}
        spec.append((GOOD, orjson.dumps(rec), None, t))

    good("g0")
    good()
    spec.append((BLANK, b"", None, None))
    spec += [
        (BAD, b'{"id": "m1", "text": "' + long_x.encode() + b'" oops}', m.MALFORMED_JSON, None),
        (BAD, b"[1, 2, 3]", m.NOT_AN_OBJECT, None),
        (BAD, b'"just a string"', m.NOT_AN_OBJECT, None),
        (BAD, b"42", m.NOT_AN_OBJECT, None),
        (BAD, b'{"id": "t7", "title": "no text here"}', m.MISSING_TEXT, None),
        (BAD, b'{"id": 7, "text": null}', m.NULL_TEXT, None),
        (BAD, b'{"text": 42}', m.NON_STRING_TEXT, None),
        (BAD, b'{"text": ["a", "b"]}', m.NON_STRING_TEXT, None),
        (BAD, b'{"text": {"nested": "x"}}', m.NON_STRING_TEXT, None),
        (BAD, b'{"text": ""}', m.EMPTY_TEXT, None),
        (BLANK, b"   \t", None, None),
    ]
    for _ in range(20):
        good()
    spec += [
        (REPAIR, b'{"id": "u8", "text": "caf\xc3 na\xefve \xff end"}', m.INVALID_UTF8,
         "caf\ufffd na\ufffdve \ufffd end"),
        (REPAIR, b'{"text": "lone \\ud800 surrogate and \\udc00 low"}', m.LONE_SURROGATE,
         "lone \ufffd surrogate and \ufffd low"),
        (REPAIR, b'{"text": "nul\\u0000 in\\u0000side"}', m.NUL_REMOVED, "nul inside"),
        (GOOD, b'{"text": "emoji \\ud83d\\ude00 is a valid pair"}', None, "emoji \U0001F600 is a valid pair"),
        (GOOD, b'{"text": "crlf line ending"}\r', None, "crlf line ending"),
    ]
    good()
    spec.append((BIG, orjson.dumps({"id": "big", "text": big_text}), None, None))
    good()
    spec += [
        (BAD, b'{"text": "after the big one"', m.MALFORMED_JSON, None),  # not the last line: malformed
        (BAD, b'{"id": "after", "text": null}', m.NULL_TEXT, None),
        (BLANK, b"", None, None),
    ]
    for _ in range(5):
        good()
    spec.append((BAD, b'{"id": "last", "text": "cut off in the mid', m.TRUNCATED_LINE, None))

    path = tmp_path_factory.mktemp("mixed") / "mixed.jsonl"
    path.write_bytes(b"\n".join(raw for _, raw, _, _ in spec))  # the last line has no newline
    return str(path), {i: e for i, e in enumerate(spec, 1)}


def _expected_texts(entries) -> list[str]:
    return [e[3] for e in entries.values() if e[0] in (GOOD, REPAIR)]


def _expected_rejections(entries) -> dict[int, str]:
    return {line: e[2] for line, e in entries.items() if e[0] == BAD}


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory, mixed, tokenizer_path):
    """The mixed file through cli.main, cut into two streams (--stream-mb 1: the big line ends the first one)."""
    path, _ = mixed
    out = tmp_path_factory.mktemp("mixed_out") / "out"
    code, err = run_main(path, out, tokenizer_path, "--stream-mb", "1")
    return code, err, out


def test_mixed_file_exits_zero_with_summary(mixed_run, mixed):
    code, err, out = mixed_run
    _, entries = mixed
    assert code == 0
    expected = Counter(_expected_rejections(entries).values())
    assert re.search(rf"documents written\s+{len(_expected_texts(entries)) + 1}\b", err)
    assert re.search(rf"documents rejected\s+{sum(expected.values())}\b", err)
    for reason, n in expected.items():
        assert re.search(rf"^\s+{reason}\s+{n}$", err, re.M), reason
    assert (out / "manifest.json").exists()
    assert manifest_of(out)[m.K_STREAMS] == 2  # the plan really cut the file: line numbers cross a split


def test_mixed_file_counts_are_exact(mixed_run, mixed):
    _, _, out = mixed_run
    _, entries = mixed
    manifest = manifest_of(out)
    c = assert_counts_add_up(manifest, rejected_of(out))
    non_blank = [e for e in entries.values() if e[0] != BLANK]
    assert c["records"] == len(non_blank)
    assert c["docs_written"] == len(_expected_texts(entries)) + 1
    assert c["docs_rejected"] == dict(Counter(_expected_rejections(entries).values()))
    assert c["docs_repaired"] == {m.INVALID_UTF8: 1, m.LONE_SURROGATE: 1, m.NUL_REMOVED: 1}


def test_mixed_file_rejected_records_name_source_line_and_reason(mixed_run, mixed):
    _, _, out = mixed_run
    path, entries = mixed
    rejected = rejected_of(out)
    expected = _expected_rejections(entries)
    assert {r["line"]: r["reason"] for r in rejected} == expected
    assert len(rejected) == len(expected)  # one line per rejected record
    for r in rejected:
        raw = entries[r["line"]][1]
        assert r["source"] == path
        assert r["stage"] == "read"
        assert r["detail"]
        assert r["record"] == raw.decode("utf-8", "replace")[: m.REJECTED_RECORD_CHARS]
        assert "row" not in r
    by_line = {r["line"]: r for r in rejected}
    malformed = next(r for r in rejected if r["reason"] == m.MALFORMED_JSON)
    assert len(malformed["record"]) == m.REJECTED_RECORD_CHARS  # the first KB of a 3 KB line
    assert malformed["id"] == f"{path}:{malformed['line']}"  # unparsable: the fallback id
    null_line = next(ln for ln, e in entries.items() if e[1] == b'{"id": 7, "text": null}')
    assert by_line[null_line]["id"] == "7"
    last = max(entries)
    assert by_line[last]["reason"] == m.TRUNCATED_LINE and by_line[last]["id"] == f"{path}:{last}"


def test_mixed_file_good_documents_are_all_present(mixed_run, mixed, big_doc, tokenizer_path, hf_tokenizer):
    _, _, out = mixed_run
    _, entries = mixed
    _, big_ids = big_doc
    assert len(big_ids) > 1_000_000
    assert_documents(out, tokenizer_path, hf_tokenizer, _expected_texts(entries), big_ids)


def test_mixed_file_through_the_installed_command(mixed, tmp_path, tokenizer_path):
    """The real console script (one stream this time): exit 0 and the summary table on stderr."""
    path, entries = mixed
    out = tmp_path / "out"
    proc = subprocess.run([str(TOKENMILL), *cli_args(path, out, tokenizer_path)], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected = Counter(_expected_rejections(entries).values())
    assert re.search(rf"records read\s+{sum(e[0] != BLANK for e in entries.values())}\b", proc.stderr)
    assert re.search(rf"documents rejected\s+{sum(expected.values())}\b", proc.stderr)
    for reason, n in expected.items():
        assert re.search(rf"^\s+{reason}\s+{n}$", proc.stderr, re.M), reason
    for kind in (m.INVALID_UTF8, m.LONE_SURROGATE, m.NUL_REMOVED):
        assert re.search(rf"^\s+{kind}\s+1$", proc.stderr, re.M), kind
    assert "Traceback" not in proc.stderr
    manifest = manifest_of(out)
    assert manifest[m.K_STREAMS] == 1
    assert manifest[m.K_COUNTS]["docs_rejected"] == dict(expected)
    assert {r["line"]: r["reason"] for r in rejected_of(out)} == _expected_rejections(entries)


# -------------------------------------------------------------------------------------------------- --strict


def test_strict_stops_at_first_bad_record_naming_file_and_line(mixed, tokenizer_path, tmp_path, capsys):
    path, entries = mixed
    first_bad = min(ln for ln, e in entries.items() if e[0] in (BAD, REPAIR))
    out = tmp_path / "out"
    code = cli.main(cli_args(path, out, tokenizer_path, "--strict"))
    assert code == 2
    err = capsys.readouterr().err
    line = next(ln for ln in err.splitlines() if ln.startswith("tokenmill: error:"))
    assert f"{path}:{first_bad}:" in line
    assert not (out / "manifest.json").exists()


def _strict_cases():
    return [
        pytest.param([b'{"text": "ok"}', b'{"text": oops}', b'{"text": "ok"}', b""], 2, m.MALFORMED_JSON,
                     id="malformed-line"),
        pytest.param([b'{"text": "ok"}', b'{"text": null}', b""], 2, m.NULL_TEXT, id="null-text"),
        pytest.param([b'{"text": "ok"}', b"", b'{"text": "a\\u0000b"}', b""], 3, m.NUL_REMOVED,
                     id="repaired-record"),
        pytest.param([b'{"text": "ok"}', b'{"text": "ok"}', b'{"text": "cut'], 3, m.TRUNCATED_LINE,
                     id="truncated-last-line"),
    ]


@pytest.mark.parametrize("lines, bad_line, reason", _strict_cases())
def test_strict_error_names_the_real_reason(lines, bad_line, reason, tokenizer_path, tmp_path, capsys):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(lines))
    out = tmp_path / "out"
    assert cli.main(cli_args(path, out, tokenizer_path, "--strict")) == 2
    err = capsys.readouterr().err
    line = next(ln for ln in err.splitlines() if ln.startswith("tokenmill: error:"))
    assert f"{path}:{bad_line}: {reason}" in line
    assert m.UNREADABLE_FILE not in line
    assert not (out / "manifest.json").exists()


def test_strict_error_is_one_clear_line_from_the_command(tmp_path, tokenizer_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"text": "ok"}\n{"text": oops}\n')
    proc = subprocess.run([str(TOKENMILL), *cli_args(path, tmp_path / "out", tokenizer_path, "--strict")],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 2
    assert f"{path}:2" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


# --------------------------------------------------------------------------------------------- empty files


def test_empty_files_next_to_a_good_file_give_no_records(tmp_path, ml_texts, tokenizer_path, hf_tokenizer):
    d = tmp_path / "in"
    d.mkdir()
    texts = ml_texts[:40]
    good_jsonl(d / "b_good.jsonl", texts)
    (d / "a_empty.jsonl").write_bytes(b"")
    (d / "c_blank_lines.jsonl").write_bytes(b"\n\n   \n\t\r\n")
    (d / "d_zero_bytes.jsonl.gz").write_bytes(b"")
    (d / "e_empty_member.jsonl.gz").write_bytes(gzip.compress(b""))
    pq.write_table(pa.table({"text": pa.array([], pa.string())}), d / "f_no_rows.parquet")
    out = tmp_path / "out"
    code, _ = run_main(d, out, tokenizer_path)
    assert code == 0
    manifest = manifest_of(out)
    assert len(manifest[m.K_INPUTS]) == 6
    c = assert_counts_add_up(manifest, rejected_of(out))
    assert c["records"] == c["docs_written"] == len(texts)
    assert c["docs_rejected"] == {} and not (out / "rejected").exists()
    assert_documents(out, tokenizer_path, hf_tokenizer, texts)


def test_only_an_empty_file_is_a_valid_empty_result(tmp_path, tokenizer_path):
    (tmp_path / "empty.jsonl").write_bytes(b"")
    out = tmp_path / "out"
    code, err = run_main(tmp_path / "empty.jsonl", out, tokenizer_path)
    assert code == 0
    c = manifest_of(out)[m.K_COUNTS]
    assert c["records"] == c["docs_written"] == c["tokens"] == c["sequences"] == 0
    assert re.search(r"records read\s+0\b", err)


def test_empty_text_file_gives_no_records(tmp_path, tokenizer_path):
    (tmp_path / "good.txt").write_text("a document")
    (tmp_path / "empty.txt").write_bytes(b"")
    out = tmp_path / "out"
    assert run_main(tmp_path, out, tokenizer_path)[0] == 0
    c = manifest_of(out)[m.K_COUNTS]
    assert c["records"] == c["docs_written"] == 1


# --------------------------------------------------------------------------------------------- unreadable


def _cut(data: bytes) -> bytes:
    """The first 60% of a compressed file (as if a copy or download stopped)."""
    return data[: len(data) * 6 // 10]


def _zstd(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor().compress(data)


# hex digests keep the data from compressing to almost nothing
_LINES = b"".join(
    orjson.dumps({"text": f"document {i} of the damaged file: {hashlib.sha256(str(i).encode()).hexdigest()}"}) + b"\n"
    for i in range(3000)
)


def _unreadable_cases():
    return [
        pytest.param("bad.jsonl.gz", b"this is not gzip at all\n", 1, "line", id="not-gzip"),
        pytest.param("bad.jsonl.gz", _cut(gzip.compress(_LINES)), None, "line", id="truncated-gzip"),
        pytest.param("bad.jsonl.bz2", b"this is not bzip2\n", 1, "line", id="not-bz2"),
        pytest.param("bad.jsonl.bz2", _cut(bz2.compress(_LINES)), None, "line", id="truncated-bz2"),
        pytest.param("bad.jsonl.xz", _cut(lzma.compress(_LINES)), None, "line", id="truncated-xz"),
        pytest.param("bad.parquet", b"PAR1 garbage that is not parquet", 0, "row", id="not-parquet"),
        pytest.param("bad.jsonl.xz", b"this is not xz\n", 1, "line", id="not-xz"),
        pytest.param("bad.jsonl.zst", b"this is not zstd\n", 1, "line", id="not-zstd"),
        pytest.param("bad.jsonl.zst", _cut(_zstd(_LINES)), None, "line", id="truncated-zstd"),
    ]


@pytest.mark.parametrize("name, data, where, key", _unreadable_cases())
def test_unreadable_file_is_rejected_once_and_the_run_goes_on(name, data, where, key, tmp_path, ml_texts,
                                                              tokenizer_path, hf_tokenizer):
    d = tmp_path / "in"
    d.mkdir()
    texts = ml_texts[:30]
    good_jsonl(d / "good.jsonl", texts)
    bad = d / name
    bad.write_bytes(data)
    out = tmp_path / "out"
    code, err = run_main(d, out, tokenizer_path)
    assert code == 0
    rejected = rejected_of(out)
    c = assert_counts_add_up(manifest_of(out), rejected)
    assert c["docs_rejected"].get(m.UNREADABLE_FILE) == 1
    assert re.search(rf"^\s+{m.UNREADABLE_FILE}\s+1$", err, re.M)
    (rej,) = [r for r in rejected if r["reason"] == m.UNREADABLE_FILE]
    assert rej["source"] == str(bad) and rej["detail"]
    assert key in rej and (where is None or rej[key] == where)
    # nothing from the good file is lost
    got = Counter(map(tuple, documents_from_shards(out, eos_of(tokenizer_path))))
    assert not Counter(map(tuple, hf_ids(hf_tokenizer, texts))) - got


@pytest.mark.parametrize("name, compress", [("t.jsonl.gz", gzip.compress), ("t.jsonl.xz", lzma.compress)])
def test_records_before_the_damage_are_kept(name, compress, tmp_path, tokenizer_path):
    damaged = _cut(compress(_LINES))
    if name.endswith(".gz"):
        prefix = zlib.decompressobj(31).decompress(damaged)
    else:
        prefix = lzma.LZMADecompressor().decompress(damaged)
    complete = prefix.count(b"\n")
    assert 0 < complete < 3000
    (tmp_path / name).write_bytes(damaged)
    out = tmp_path / "out"
    assert run_main(tmp_path / name, out, tokenizer_path)[0] == 0
    c = manifest_of(out)[m.K_COUNTS]
    assert c["docs_rejected"].get(m.UNREADABLE_FILE) == 1
    assert c["docs_written"] == complete


# ------------------------------------------------------------------------------------------------- Parquet


def test_parquet_bad_rows_are_rejected_with_reason_and_row(tmp_path, tokenizer_path, hf_tokenizer):
    d = tmp_path / "in"
    d.mkdir()
    pq.write_table(
        pa.table({
            "id": pa.array(["a0", None, "a2", "a3", "a4", "a5", "a6"]),
            "text": pa.array(["first good row", None, "", "nul\x00 here", "another good row", None, "last good"]),
        }),
        d / "a.parquet", row_group_size=2,  # row numbers continue across row groups
    )
    pq.write_table(pa.table({"text": pa.array([1, 2, 3], pa.int64())}), d / "b.parquet")
    pq.write_table(pa.table({"body": pa.array(["x", "y"]), "id": pa.array([10, 11])}), d / "c.parquet")
    pq.write_table(pa.table({"text": pa.array([["a", "b"], None, []], pa.list_(pa.string()))}), d / "d.parquet")
    out = tmp_path / "out"
    code, _ = run_main(d, out, tokenizer_path)
    assert code == 0
    rejected = rejected_of(out)
    c = assert_counts_add_up(manifest_of(out), rejected)
    a, b, cc, dd = (str(d / f"{x}.parquet") for x in "abcd")
    got = {(r["source"], r["row"], r["reason"], r["id"]) for r in rejected}
    assert got == {
        (a, 1, m.NULL_TEXT, f"{a}#1"),
        (a, 2, m.EMPTY_TEXT, "a2"),
        (a, 5, m.NULL_TEXT, "a5"),
        (b, 0, m.NON_STRING_TEXT, f"{b}#0"),
        (b, 1, m.NON_STRING_TEXT, f"{b}#1"),
        (b, 2, m.NON_STRING_TEXT, f"{b}#2"),
        (cc, 0, m.MISSING_TEXT, "10"),
        (cc, 1, m.MISSING_TEXT, "11"),
        (dd, 0, m.NON_STRING_TEXT, f"{dd}#0"),
        (dd, 1, m.NULL_TEXT, f"{dd}#1"),
        (dd, 2, m.NON_STRING_TEXT, f"{dd}#2"),
    }
    assert len(rejected) == 11 and all("line" not in r and r["detail"] for r in rejected)
    assert json.loads(next(r["record"] for r in rejected if r["source"] == cc and r["row"] == 1)) == \
        {"body": "y", "id": 11}
    assert c["records"] == 7 + 3 + 2 + 3
    assert c["docs_written"] == 4
    assert c["docs_repaired"] == {m.NUL_REMOVED: 1}
    assert_documents(out, tokenizer_path, hf_tokenizer,
                     ["first good row", "nul here", "another good row", "last good"])


def test_parquet_binary_text_with_invalid_utf8_is_counted_as_repaired(tmp_path, tokenizer_path, hf_tokenizer):
    pq.write_table(pa.table({"text": pa.array([b"ok \xff bytes", b"fine"], pa.binary())}), tmp_path / "b.parquet")
    out = tmp_path / "out"
    assert run_main(tmp_path / "b.parquet", out, tokenizer_path)[0] == 0
    manifest = manifest_of(out)
    assert_documents(out, tokenizer_path, hf_tokenizer, ["ok \ufffd bytes", "fine"])
    assert manifest[m.K_COUNTS]["docs_repaired"] == {m.INVALID_UTF8: 1}


# ---------------------------------------------------------------------------- other bad records (bugs)


@pytest.mark.parametrize("line", [b'{"id": "\\ud800", "text": null}', b'{"\\udfff": 1}'], ids=["id", "key"])
def test_lone_surrogate_outside_text_of_a_rejected_record(line, tmp_path, tokenizer_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"text": "good"}\n' + line + b'\n{"text": "also good"}\n')
    out = tmp_path / "out"
    assert run_main(path, out, tokenizer_path)[0] == 0
    (rej,) = rejected_of(out)
    assert rej["line"] == 2
    assert manifest_of(out)[m.K_COUNTS]["docs_written"] == 2


def test_repairs_are_counted_only_for_kept_documents(tmp_path, tokenizer_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"text": "good"}\n{"text": "\\u0000\\u0000"}\n{"text": null, "other": "\xff"}\n')
    out = tmp_path / "out"
    code, err = run_main(path, out, tokenizer_path)
    assert code == 0
    c = manifest_of(out)[m.K_COUNTS]
    assert c["docs_rejected"] == {m.EMPTY_TEXT: 1, m.NULL_TEXT: 1}
    assert c["docs_written"] == 1
    assert c["docs_repaired"] == {}
    assert "documents repaired (kept)" not in err


# ------------------------------------------------------------------------------- errors before any work


def _bpe_without_specials(path) -> str:
    from transforms.tokenize.training import train_byte_level_bpe

    train_byte_level_bpe(["hello world, a tokenizer without specials"] * 10, 300, special_tokens=()).save(str(path))
    return str(path)


def _setup_errors():
    """(id, builder(tmp_path, tokenizer_path) -> (inputs, tokenizer, output, extra args), words in the message)."""

    def base(tmp, tok):
        good = good_jsonl(tmp / "good.jsonl", ["one", "two"])
        return good, tok, str(tmp / "out"), []

    def missing_glob(tmp, tok):
        _, tok, out, extra = base(tmp, tok)
        return str(tmp / "nonexistent" / "*.jsonl"), tok, out, extra

    def missing_file(tmp, tok):
        _, tok, out, extra = base(tmp, tok)
        return str(tmp / "missing.jsonl"), tok, out, extra

    def unknown_protocol_input(tmp, tok):
        _, tok, out, extra = base(tmp, tok)
        return "nosuchproto://bucket/x.jsonl", tok, out, extra

    def unknown_format(tmp, tok):
        _, tok, out, extra = base(tmp, tok)
        (tmp / "data.csv").write_text("text\nhello\n")
        return str(tmp / "data.csv"), tok, out, extra

    def missing_tokenizer(tmp, tok):
        good, _, out, extra = base(tmp, tok)
        return good, str(tmp / "no-such-tokenizer.json"), out, extra

    def garbage_tokenizer(tmp, tok):
        good, _, out, extra = base(tmp, tok)
        (tmp / "garbage.json").write_bytes(b"\x00\xff\xfe this is no tokenizer {")
        return good, str(tmp / "garbage.json"), out, extra

    def json_not_tokenizer(tmp, tok):
        good, _, out, extra = base(tmp, tok)
        (tmp / "tok.json").write_text('{"not": "a tokenizer"}')
        return good, str(tmp / "tok.json"), out, extra

    def no_eos(tmp, tok):
        good, _, out, extra = base(tmp, tok)
        return good, _bpe_without_specials(tmp / "noeos.json"), out, extra

    def unknown_eos(tmp, tok):
        good, tok, out, _ = base(tmp, tok)
        return good, tok, out, ["--eos-token", "<|no-such-token|>"]

    def eos_id_out_of_range(tmp, tok):
        good, tok, out, _ = base(tmp, tok)
        return good, tok, out, ["--eos-token", "id:999999"]

    def output_under_a_file(tmp, tok):
        good, tok, _, extra = base(tmp, tok)
        (tmp / "somefile").write_text("x")
        return good, tok, str(tmp / "somefile" / "out"), extra

    def output_is_a_file(tmp, tok):
        good, tok, _, extra = base(tmp, tok)
        (tmp / "out").write_text("x")
        return good, tok, str(tmp / "out"), extra

    return [
        pytest.param(missing_glob, ["--input", "nonexistent"], id="missing-input-glob"),
        pytest.param(missing_file, ["--input", "missing.jsonl"], id="missing-input-file"),
        pytest.param(unknown_protocol_input, ["--input", "nosuchproto://"], id="unknown-input-protocol"),
        pytest.param(unknown_format, ["data.csv", "--input-format"], id="unknown-input-format"),
        pytest.param(missing_tokenizer, ["--tokenizer", "no-such-tokenizer.json"], id="missing-tokenizer"),
        pytest.param(garbage_tokenizer, ["--tokenizer", "garbage.json"], id="garbage-tokenizer"),
        pytest.param(json_not_tokenizer, ["--tokenizer", "tok.json"], id="json-not-a-tokenizer"),
        pytest.param(no_eos, ["noeos.json", "--eos-token"], id="no-eos-token"),
        pytest.param(unknown_eos, ["--eos-token", "<|no-such-token|>"], id="unknown-eos-token"),
        pytest.param(eos_id_out_of_range, ["--eos-token", "id:999999"], id="eos-id-out-of-range"),
        pytest.param(output_under_a_file, ["--output", "somefile/out"], id="output-under-a-file"),
        pytest.param(output_is_a_file, ["--output", "is a file"], id="output-is-a-file"),
    ]


@pytest.mark.parametrize("build, words", _setup_errors())
def test_setup_error_is_one_clear_line_before_any_work(build, words, tmp_path, tokenizer_path, capsys, monkeypatch):
    import apache_beam

    def no_pipeline(*args, **kwargs):
        raise AssertionError("a pipeline was built although the setup is unusable")

    monkeypatch.setattr(apache_beam, "Pipeline", no_pipeline)
    inputs, tok, out, extra = build(tmp_path, tokenizer_path)
    code = cli.main(cli_args(inputs, out, tok, *extra))
    captured = capsys.readouterr()
    assert code == 2
    err = captured.err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith("tokenmill: error: ")
    for w in words:
        assert w in err, (w, err)
    assert captured.out == ""
    out_path = Path(out)
    assert not (out_path.is_dir() and any(out_path.iterdir())), "something was written to --output"
    assert not (tmp_path / "out" / "manifest.json").exists()


# ------------------------------------------------------------------------------ another job's output


def test_another_jobs_output_needs_overwrite(tmp_path, ml_texts, tokenizer_path, hf_tokenizer):
    texts = ml_texts[:50]
    data = good_jsonl(tmp_path / "in.jsonl", texts)
    out = tmp_path / "out"
    assert run_main(data, out, tokenizer_path, seq_len=64)[0] == 0
    first = (out / "manifest.json").read_bytes()
    shards = {p.name: p.read_bytes() for p in (out / "shards").iterdir()}

    code, err = run_main(data, out, tokenizer_path, seq_len=32)
    assert code == 2
    msg = err.strip()
    assert "\n" not in msg and "--overwrite" in msg and str(out) in msg and "another job" in msg
    # refused: the earlier result is untouched
    assert (out / "manifest.json").read_bytes() == first
    assert {p.name: p.read_bytes() for p in (out / "shards").iterdir()} == shards

    code, _ = run_main(data, out, tokenizer_path, "--overwrite", seq_len=32)
    assert code == 0
    assert manifest_of(out)[m.K_SEQ_LEN] == 32
    assert_documents(out, tokenizer_path, hf_tokenizer, texts)

    # the same job again: its own output, no --overwrite needed
    code, _ = run_main(data, out, tokenizer_path, seq_len=32)
    assert code == 0
    assert manifest_of(out)[m.K_SEQ_LEN] == 32
    assert_documents(out, tokenizer_path, hf_tokenizer, texts)


def test_directory_with_unrelated_files_is_refused(tmp_path, tokenizer_path):
    data = good_jsonl(tmp_path / "in.jsonl", ["one document", "two documents"])
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    for extra in ((), ("--overwrite",)):  # tokenmill deletes only its own files: --overwrite does not change that
        code, err = run_main(data, out, tokenizer_path, *extra)
        assert code == 2
        assert "notes.txt" in err and "did not write" in err and "\n" not in err.strip()
        assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
        assert (out / "notes.txt").read_text() == "precious"


def test_corrupt_manifest_is_a_clear_error_and_replaced_with_overwrite(tmp_path, tokenizer_path):
    data = good_jsonl(tmp_path / "in.jsonl", ["one document"])
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text("{not json")
    code, err = run_main(data, out, tokenizer_path)
    assert code == 2
    assert "manifest.json is damaged" in err and "--overwrite" in err and "Traceback" not in err
    assert (out / "manifest.json").read_text() == "{not json"  # nothing touched
    code, _ = run_main(data, out, tokenizer_path, "--overwrite")
    assert code == 0
    assert manifest_of(out)[m.K_COUNTS]["docs_written"] == 1


def test_mid_file_damage_keeps_the_records_before_it(tmp_path, tokenizer_path):
    blob = bytearray(gzip.compress(_LINES))
    blob[len(blob) // 2: len(blob) // 2 + 64] = b"\xff" * 64
    (tmp_path / "d.jsonl.gz").write_bytes(bytes(blob))
    out = tmp_path / "out"
    assert run_main(tmp_path / "d.jsonl.gz", out, tokenizer_path)[0] == 0
    rejected = rejected_of(out)
    c = assert_counts_add_up(manifest_of(out), rejected)
    (rej,) = [r for r in rejected if r["reason"] == m.UNREADABLE_FILE]  # garbled lines may be rejected too
    assert "damaged gzip" in rej["detail"]
    assert c["docs_written"] > 1000  # the intact first half of the file (~1400 lines) was read


# ------------------------------------------------------------------------------------ non-UTF-8 file names


def test_non_utf8_file_name_is_read_and_written_escaped(tmp_path, ml_texts, tokenizer_path, hf_tokenizer):
    raw = bytes(tmp_path / "n") + b"/caf\xe9\xff.jsonl"  # a Latin-1 name: not valid UTF-8
    (tmp_path / "n").mkdir()
    with open(raw, "wb") as fh:
        fh.write(orjson.dumps({"text": ml_texts[0]}) + b"\n" + b'{"text": null}\n')
    good_jsonl(tmp_path / "n" / "good.jsonl", ml_texts[1:3])
    shown = str(tmp_path / "n") + "/caf\\xe9\\xff.jsonl"
    out = tmp_path / "out"
    code, err = run_main(tmp_path / "n", out, tokenizer_path)
    assert code == 0, err
    manifest = manifest_of(out)
    rejected = rejected_of(out)
    c = assert_counts_add_up(manifest, rejected)
    assert c["docs_written"] == 3 and c["docs_rejected"] == {m.NULL_TEXT: 1}
    assert [f["url"] for f in manifest[m.K_INPUTS]] == [shown, str(tmp_path / "n" / "good.jsonl")]
    assert list(manifest["sources"]) == [f["url"] for f in manifest[m.K_INPUTS]]
    assert manifest["sources"][shown]["records"] == 2 and manifest["sources"][shown]["docs_written"] == 1
    assert [(r["source"], r["line"]) for r in rejected] == [(shown, 2)]
    assert shown in (out / "report.html").read_text(encoding="utf-8")
    assert_documents(out, tokenizer_path, hf_tokenizer, ml_texts[:3])
    assert cli.main(["inspect", "--verify", str(out)]) == 0
    # the name as written (copied from the manifest) and the real name both name the file
    for given in (shown, raw.decode("utf-8", "surrogateescape")):
        again = tmp_path / f"again{len(given)}"
        code, err = run_main(given, again, tokenizer_path)
        assert code == 0, err
        assert manifest_of(again)[m.K_INPUTS][0]["url"] == shown
        assert json.dumps(manifest_of(again)).count("\\udc") == 0
    stats = tmp_path / "stats"
    assert cli.main(["stats", "--input", str(tmp_path / "n"), "--output", str(stats), "--no-progress"]) == 0
    assert shown in json.loads((stats / "stats.json").read_text())["inputs"]
    kept = tmp_path / "kept"
    assert cli.main(["filter", "--input", str(tmp_path / "n"), "--recipe", "fineweb", "--output", str(kept),
                     "--no-progress"]) == 0
    assert list(manifest_of(kept)["sources"]) == [shown, str(tmp_path / "n" / "good.jsonl")]


# ------------------------------------------------------------------------------- damaged Parquet row groups


def _parquet_with_damage(path: Path, texts: list[str], group: int | None) -> None:
    """``texts`` in 500-row groups; with ``group``, that group's first data page header overwritten (None: the
    footer's end)."""
    pq.write_table(pa.table({"text": texts}), path, row_group_size=500, compression="none")
    data = bytearray(path.read_bytes())
    if group is None:
        data[-12:-8] = b"\xff\xff\xff\xff"  # the footer's metadata, just before its length and magic
    else:
        offset = pq.ParquetFile(path).metadata.row_group(group).column(0).data_page_offset
        data[offset:offset + 40] = b"\xff" * 40
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("group", [0, 3, 5])
def test_damaged_parquet_row_group_is_rejected_once_and_the_other_groups_kept(group, tmp_path, ml_texts,
                                                                              tokenizer_path, hf_tokenizer):
    texts = [ml_texts[i % len(ml_texts)] for i in range(3000)]  # batches of 1,024 rows cross the 500-row groups
    _parquet_with_damage(tmp_path / "t.parquet", texts, group)
    out = tmp_path / "out"
    code, err = run_main(tmp_path / "t.parquet", out, tokenizer_path)
    assert code == 0, err
    rejected = rejected_of(out)
    c = assert_counts_add_up(manifest_of(out), rejected)
    first, last = group * 500, group * 500 + 499
    assert c["records"] == 2501 and c["docs_written"] == 2500 and c["docs_rejected"] == {m.UNREADABLE_FILE: 1}
    assert [(r["row"], r["reason"]) for r in rejected] == [(first, m.UNREADABLE_FILE)]
    assert f"rows {first}-{last} (row group {group}, 500 rows)" in rejected[0]["detail"]
    assert_documents(out, tokenizer_path, hf_tokenizer, texts[:first] + texts[last + 1:])


def test_damaged_parquet_footer_makes_the_whole_file_unreadable(tmp_path, ml_texts, tokenizer_path):
    _parquet_with_damage(tmp_path / "t.parquet", ml_texts[:3000], None)
    good_jsonl(tmp_path / "good.jsonl", ml_texts[:2])
    out = tmp_path / "out"
    code, err = run_main([tmp_path / "t.parquet", tmp_path / "good.jsonl"], out, tokenizer_path)
    assert code == 0, err
    rejected = rejected_of(out)
    c = assert_counts_add_up(manifest_of(out), rejected)
    assert c["docs_written"] == 2 and [(r["source"], r["reason"]) for r in rejected] == [
        (str(tmp_path / "t.parquet"), m.UNREADABLE_FILE)]


# ----------------------------------------------------------------------- rejected/ records hold the raw record


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_filter_rejections_hold_the_raw_input_record(fmt, tmp_path, ml_texts):
    long_text = " ".join(["the cat sat on the mat and looked at the dog."] * 30)
    short = [t for t in ml_texts if len(t.split()) < 20][:3]
    records = [{"id": f"d{i}", "text": t, "url": f"https://example.org/{i}"}
               for i, t in enumerate([long_text, *short, "x" * 3000])]
    if fmt == "jsonl":
        path = write_jsonl(tmp_path / "in.jsonl", records)
        raws = {r["id"]: orjson.dumps(r).decode() for r in records}
    else:
        path = str(tmp_path / "in.parquet")
        pq.write_table(pa.Table.from_pylist(records), path)
        raws = {r["id"]: orjson.dumps(r).decode() for r in records}  # a row as JSON, like the read stage's
    (tmp_path / "r.yaml").write_text("filters:\n  - {name: gopher_quality, params: {min_doc_words: 50}}\n")
    out = tmp_path / "out"
    assert cli.main(["filter", "--input", path, "--recipe", str(tmp_path / "r.yaml"), "--output", str(out),
                     "--no-progress"]) == 0
    rejected = [r for r in rejected_of(out) if r["stage"] == "filter"]
    assert sorted(r["id"] for r in rejected) == sorted(["d1", "d2", "d3", "d4"])
    for r in rejected:
        assert r["record"] == raws[r["id"]][: m.REJECTED_RECORD_CHARS]
    assert any(len(r["record"]) == m.REJECTED_RECORD_CHARS for r in rejected)  # the long one, cut as before
