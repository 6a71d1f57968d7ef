"""``tokenmill inspect``: the summary shows the manifest's counts, decoded rows give back the documents' text and
tokens, and --verify passes on intact outputs and names the file or field of every mismatch."""

from __future__ import annotations

import argparse
import json
import re
import shutil

import pytest

from pipelines import cli
from pipelines.inspect_output import add_arguments as add_inspect_arguments, run_inspect
from schemas import manifest as m
from tests.conftest import write_jsonl
from transforms.inspection.output import open_output
from transforms.inspection.rows import DOC_MARK, decoded_rows, load_decoder, pick_rows, row_segments, shorten
from transforms.inspection.verify import rejection_key

SEQ_LEN = 128


def inspect(argv: list[str], capsys) -> tuple[int, str, str]:
    """Run the command as the CLI will: its own parser, then run_inspect; (exit code, stdout, stderr)."""
    parser = argparse.ArgumentParser(prog="tokenmill inspect")
    add_inspect_arguments(parser)
    code = run_inspect(parser.parse_args(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, ml_texts, hf_tokenizer):
    """About 150 real documents that each fit in one row (with EOS), and a malformed line."""
    texts = [t for t in ml_texts[:400] if len(hf_tokenizer.encode(t, add_special_tokens=False).ids) < SEQ_LEN][:150]
    path = tmp_path_factory.mktemp("inspect-in") / "in.jsonl"
    write_jsonl(path, [{"id": f"d{i}", "text": t} for i, t in enumerate(texts)] + [b"{not json\n"])
    return str(path), texts


def _prepare(tmp_path_factory, corpus, tokenizer_path, name, *extra) -> tuple[str, dict]:
    out = tmp_path_factory.mktemp("inspect-out") / name
    assert cli.main(["prepare", "-i", corpus[0], "-o", str(out), "-t", tokenizer_path, "--seq-len", str(SEQ_LEN),
                     "--shard-rows", "8", "--no-progress", *extra]) == 0
    return str(out), json.loads((out / "manifest.json").read_text())


@pytest.fixture(scope="module")
def best_fit(tmp_path_factory, corpus, tokenizer_path):
    """A prepare output whose rows hold whole documents (best-fit, every document shorter than a row)."""
    return _prepare(tmp_path_factory, corpus, tokenizer_path, "bf", "--packing", "best-fit")


@pytest.fixture(scope="module")
def concat(tmp_path_factory, corpus, tokenizer_path):
    """A prepare output packed with concat (documents cut across rows)."""
    return _prepare(tmp_path_factory, corpus, tokenizer_path, "concat")


@pytest.fixture
def damaged(best_fit, tmp_path):
    """A copy of the best-fit output to break."""
    out = tmp_path / "copy"
    shutil.copytree(best_fit[0], out)
    return out, best_fit[1]


# -- summary ----------------------------------------------------------------------------------------------------------

def test_summary_shows_the_manifests_job_and_counts(best_fit, corpus, tokenizer_path, capsys):
    out, manifest = best_fit
    code, text, _ = inspect([out], capsys)
    assert code == 0
    c = manifest[m.K_COUNTS]
    assert c["docs_written"] == len(corpus[1]) and c["docs_rejected"] == {m.MALFORMED_JSON: 1}
    assert re.search(rf"records read\s+{len(corpus[1]) + 1}\n", text)
    assert re.search(rf"documents written\s+{len(corpus[1])}\n", text)
    assert re.search(r"malformed_json\s+1\n", text)
    assert re.search(rf"tokens \(incl. EOS\)\s+{c['tokens']:,}\n", text)
    assert re.search(rf"sequences of {SEQ_LEN}\s+{c['sequences']:,}\n", text)
    slots = c["tokens"] + c["pad_tokens"]
    assert f"{c['pad_tokens']:,} tokens ({100 * c['pad_tokens'] / slots:.3f}%)" in text
    shards = manifest[m.K_SHARDS]
    assert len(shards) > 2
    assert re.search(rf"shards/\s+{len(shards)} files, .* {c['sequences']:,} rows\n", text)
    assert re.search(r"rejected/\s+1 file, 1 record\n", text)
    assert tokenizer_path in text and corpus[0] in text
    assert re.search(rf"seq_len\s+{SEQ_LEN}\n", text) and re.search(r"packing\s+best-fit \(.*buffer 100000", text)
    assert "tokenmill prepare -i" in text and manifest[m.K_FINGERPRINT] in text


def test_summary_of_a_partitioned_run_shows_selection_dedup_and_bucket_directories(tmp_path, corpus,
                                                                                   tokenizer_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("dedup: {exact: true}\nscorers: [length]\n"
                      "ensemble: {buckets: 3, weight: tokens, partition: true}\nselect: {min_bucket: 1}\n")
    path = write_jsonl(tmp_path / "in.jsonl", [{"id": f"d{i}", "text": t}
                                               for i, t in enumerate(corpus[1] + corpus[1][:10])])
    out = str(tmp_path / "out")
    assert cli.main(["prepare", "-i", path, "-o", out, "-t", tokenizer_path, "--seq-len", "64", "--recipe",
                     str(recipe), "--no-progress"]) == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    code, text, _ = inspect([out, "--rows", "3", "--seed", "1", "--verify"], capsys)
    assert code == 0, text
    assert "shards/bucket=01/" in text and "shards/bucket=02/" in text
    assert re.search(r"dedup\n\s+exact_duplicate\s+10\n", text)
    selected = manifest[m.K_SELECTION]["selected"]["documents"]
    assert re.search(rf"selected\s+documents {selected:,},", text)
    assert re.search(r"bucket 0\s+documents", text)
    assert len(re.findall(r"^── row \d+: shards/bucket=0[12]/part-\d+\.parquet row \d+", text, re.M)) == 3
    assert text.rstrip().endswith("OK: every file and total matches the manifest")


# -- rows -------------------------------------------------------------------------------------------------------------

def test_rows_decode_to_the_original_documents(best_fit, corpus, capsys):
    out, _ = best_fit
    texts = corpus[1]
    code, text, _ = inspect([out, "--rows", "2", "--max-chars", "0"], capsys)
    assert code == 0
    output = open_output(out)
    decode, warning = load_decoder(output)
    assert warning is None
    rows = list(decoded_rows(output, [0, 1], decode))
    assert [r.index for r in rows] == [0, 1]
    seen = []
    for row in rows:
        assert row.seq_len == SEQ_LEN and row.num_pad == SEQ_LEN - sum(len(s.ids) for s in row.segments)
        for seg in row.segments:
            assert seg.ends_document and seg.text in texts  # a whole document, exactly as written
            seen.append(seg.text)
        # the printed row: its header, then each segment's text after its marker, and the padding note
        body = "\n".join(f"{DOC_MARK.format(n=n)} {len(s.ids)} tokens, ends with EOS\n{s.text}"
                         for n, s in enumerate(row.segments, 1))
        assert body in text
        assert (f"⟦padding⟧ {row.num_pad} pad tokens end the row" in text) == (row.num_pad > 0)
    assert len(seen) == len(set(seen)) >= 2  # distinct documents
    assert f"2 of {sum(s['rows'] for s in output.manifest[m.K_SHARDS])} rows, the first ones" in text


def test_concat_rows_joined_give_back_the_token_stream_in_order(concat, corpus, hf_tokenizer, capsys):
    out, manifest = concat
    eos = manifest[m.K_TOKENIZER]["eos_id"]
    output = open_output(out)
    decode, _ = load_decoder(output)
    rows = list(decoded_rows(output, list(range(6)), decode))
    ids = [i for row in rows for seg in row.segments for i in seg.ids]
    expected = [i for e in hf_tokenizer.encode_batch(corpus[1], add_special_tokens=False) for i in e.ids + [eos]]
    assert ids == expected[:len(ids)] and len(ids) == 6 * SEQ_LEN  # no padding before the end of the stream
    # a segment after another one and ending with EOS is a whole document: exactly its text, in input order
    whole = [seg.text for row in rows for k, seg in enumerate(row.segments)
             if seg.ends_document and (k > 0 or row.index == 0)]
    remaining = iter(corpus[1])
    assert all(any(text == t for t in remaining) for text in whole)
    assert len(whole) >= 6 and whole[0] == corpus[1][0]
    code, text, _ = inspect([out, "--rows", "2", "--max-chars", "10"], capsys)
    assert code == 0
    assert "no EOS: the document continues in another row or was cut" in text
    assert shorten(corpus[1][0], 10) in text and re.search(r"… \[\+[\d,]+ chars\]", text)


def test_random_rows_are_reproducible_and_distinct(best_fit, capsys):
    out, manifest = best_fit
    total = sum(s["rows"] for s in manifest[m.K_SHARDS])
    picks = pick_rows(total, 5, seed=7)
    assert picks == pick_rows(total, 5, seed=7) != pick_rows(total, 5, seed=8)
    assert len(set(picks)) == 5 and picks == sorted(picks) and all(0 <= i < total for i in picks)
    assert pick_rows(3, 10, None) == [0, 1, 2]
    code, text, _ = inspect([out, "--rows", "5", "--seed", "7"], capsys)
    assert code == 0
    assert [int(x) for x in re.findall(r"^── row (\d+):", text, re.M)] == picks
    assert "drawn with seed 7" in text
    code, text, err = inspect([out, "--seed", "7"], capsys)
    assert code == 2 and not text and "--seed" in err and "--rows" in err


def test_decompose_rows_are_pieces_of_documents(tmp_path_factory, corpus, tokenizer_path, hf_tokenizer, capsys):
    out, manifest = _prepare(tmp_path_factory, corpus, tokenizer_path, "dec", "--packing", "decompose",
                             "--decompose-range", "4:7")
    eos = manifest[m.K_TOKENIZER]["eos_id"]
    docs = [tuple(e.ids + [eos]) for e in hf_tokenizer.encode_batch(corpus[1], add_special_tokens=False)]
    output = open_output(out)
    decode, _ = load_decoder(output)
    total = sum(s["rows"] for s in manifest[m.K_SHARDS])
    rows = list(decoded_rows(output, pick_rows(total, 6, seed=3), decode))
    assert {r.seq_len for r in rows} <= {16, 32, 64, 128} and len({r.shard.split("/")[1] for r in rows}) > 1
    for row in rows:
        for seg in row.segments:
            n = len(seg.ids)
            assert any(seg.ids == list(d[s:s + n]) for d in docs for s in range(len(d) - n + 1))
    code, text, _ = inspect([out, "--rows", "6", "--seed", "3", "--verify"], capsys)
    assert code == 0, text
    assert re.search(r"^── row \d+: shards/len=000(16|32|64)/part-\d+\.parquet", text, re.M)
    assert re.search(r"len 16\s+[\d,]+ sequences", text)


def test_row_segments_split_at_cu_seqlens_and_leave_out_eos_and_bos():
    def decode(ids):
        return "".join(chr(96 + i) for i in ids)

    segs = row_segments([9, 1, 2, 0, 9, 3, 4, 5, 0, 0], [0, 4, 8], 2, decode, eos_id=0, bos_id=9)
    assert [(s.ids, s.text, s.ends_document) for s in segs] == [([9, 1, 2, 0], "ab", True),
                                                                 ([9, 3, 4, 5], "cde", False)]
    with pytest.raises(ValueError, match="cu_seqlens"):
        row_segments([1, 2, 3], [0, 2], 0, decode, eos_id=0)
    assert shorten("abcdef", 4) == "abcd… [+2 chars]" and shorten("abc", 0) == "abc"


def test_a_tokenizer_that_cannot_be_loaded_is_named(best_fit, tmp_path, capsys):
    out, manifest = best_fit
    bad = tmp_path / "not-a-tokenizer.json"
    bad.write_text("{}")
    code, _, err = inspect([out, "--rows", "1", "--tokenizer", str(bad)], capsys)
    assert code == 2 and str(bad) in err and "--tokenizer" in err
    moved = tmp_path / "copy"
    shutil.copytree(out, moved)
    data = json.loads((moved / "manifest.json").read_text())
    data[m.K_TOKENIZER]["path"] = str(tmp_path / "gone.json")
    (moved / "manifest.json").write_text(json.dumps(data))
    code, _, err = inspect([str(moved), "--rows", "1"], capsys)
    assert code == 2 and "gone.json" in err and "pass --tokenizer PATH" in err
    code, text, _ = inspect([str(moved), "--rows", "1", "--tokenizer", manifest[m.K_TOKENIZER]["path"]], capsys)
    assert code == 0 and DOC_MARK.format(n=1) in text


def test_a_directory_without_manifest_is_an_error(tmp_path, capsys):
    code, out, err = inspect([str(tmp_path)], capsys)
    assert code == 2 and not out and "has no manifest.json" in err and str(tmp_path) in err


# -- verify -----------------------------------------------------------------------------------------------------------

def test_verify_passes_on_an_intact_output(best_fit, capsys):
    code, text, _ = inspect([best_fit[0], "--verify"], capsys)
    assert code == 0
    n = len(best_fit[1][m.K_SHARDS])
    assert f"verify: {n} shards, 1 rejected file and the manifest's totals" in text
    assert "MISMATCH" not in text and text.rstrip().endswith("OK: every file and total matches the manifest")


def test_verify_reads_any_fsspec_url(best_fit, memfs, capsys):
    fs, root = memfs
    fs.put(best_fit[0], root, recursive=True)
    code, text, _ = inspect([f"memory://{root}", "--verify", "--rows", "1"], capsys)
    assert code == 0 and "OK: every file and total matches the manifest" in text
    fs.pipe(f"{root}/shards/part-00001.parquet", b"PAR1 nothing here")
    code, text, _ = inspect([f"memory://{root}", "--verify"], capsys)
    assert code == 1 and "MISMATCH shards/part-00001.parquet: sha256" in text


def test_verify_names_a_shard_with_flipped_bytes(damaged, capsys):
    out, manifest = damaged
    shard = manifest[m.K_SHARDS][1]
    path = out / shard["path"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    code, text, _ = inspect([str(out), "--verify"], capsys)
    assert code == 1
    assert f"MISMATCH {shard['path']}: sha256: expected {shard['sha256']}, found " in text
    assert all(s["path"] not in text for s in manifest[m.K_SHARDS] if s is not shard)


def test_verify_names_a_truncated_shard_and_keeps_checking(damaged, capsys):
    out, manifest = damaged
    shard = manifest[m.K_SHARDS][-1]
    path = out / shard["path"]
    path.write_bytes(path.read_bytes()[:-200])
    code, text, _ = inspect([str(out), "--verify"], capsys)
    assert code == 1
    assert f"MISMATCH {shard['path']}: bytes: expected {shard['bytes']}, found {shard['bytes'] - 200}" in text
    assert f"MISMATCH {shard['path']}: Parquet contents" in text
    assert "counts." not in text  # the totals go on with the manifest's entry for the unreadable shard


def test_verify_names_a_missing_shard_and_an_unlisted_file(damaged, capsys):
    out, manifest = damaged
    first = manifest[m.K_SHARDS][0]["path"]
    (out / first).unlink()
    (out / "shards" / "part-09999.parquet").write_bytes(b"stray")
    code, text, _ = inspect([str(out), "--verify"], capsys)
    assert code == 1
    assert f"MISMATCH {first}: file: expected present (listed in the manifest), found missing" in text
    assert "MISMATCH shards/part-09999.parquet: file the manifest does not list" in text


@pytest.mark.parametrize("field", ["sequences", "tokens", "pad_tokens"])
def test_verify_names_a_wrong_manifest_count(damaged, field, capsys):
    out, manifest = damaged
    data = json.loads((out / "manifest.json").read_text())
    right = data[m.K_COUNTS][field]
    data[m.K_COUNTS][field] = right + 3
    (out / "manifest.json").write_text(json.dumps(data, indent=2))
    code, text, _ = inspect([str(out), "--verify"], capsys)
    assert code == 1
    assert re.search(rf"MISMATCH manifest\.json: counts\.{field} \(.*\): expected {right + 3}, found {right}\n", text)


def test_verify_names_a_wrong_shard_entry_and_rejected_count(damaged, capsys):
    out, manifest = damaged
    data = json.loads((out / "manifest.json").read_text())
    shard = data[m.K_SHARDS][2]
    shard["rows"] += 1
    data[m.K_COUNTS]["docs_rejected"][m.MALFORMED_JSON] = 2
    data[m.K_COUNTS]["records"] += 1
    source = next(iter(data[m.K_SOURCES].values()))  # the per-source breakdown edited alike: still adds up
    source["records"] += 1
    source["docs_rejected"] += 1
    (out / "manifest.json").write_text(json.dumps(data, indent=2))
    code, text, _ = inspect([str(out), "--verify"], capsys)
    assert code == 1
    assert f"MISMATCH {shard['path']}: rows: expected {shard['rows']}, found {shard['rows'] - 1}" in text
    assert "MISMATCH manifest.json: counts.docs_rejected['malformed_json'] (records in rejected/): expected 2, " \
           "found 1" in text
    assert "counts.records" not in text  # records still equals written + rejected


def test_verify_names_a_rejected_file_that_lost_a_record(damaged, capsys):
    out, manifest = damaged
    rejected = manifest[m.K_REJECTED][0]["path"]
    (out / rejected).write_bytes(b"")
    code, text, _ = inspect([str(out), "--verify"], capsys)
    assert code == 1
    assert f"MISMATCH {rejected}: records: expected 1, found 0" in text


def test_verify_checks_every_row_of_a_shard(damaged, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from schemas.shards import CU_SEQLENS

    out, manifest = damaged
    entry = manifest[m.K_SHARDS][0]
    table = pq.read_table(out / entry["path"])
    cus = table[CU_SEQLENS].to_pylist()
    cus[3] = cus[3][:-1] + [cus[3][-1] - 1]  # a row whose segments end before its real tokens do
    table = table.set_column(table.schema.get_field_index(CU_SEQLENS), CU_SEQLENS,
                             pa.array(cus, table.schema.field(CU_SEQLENS).type))
    pq.write_table(table, out / entry["path"])
    code, text, _ = inspect([str(out), "--verify"], capsys)
    assert code == 1
    assert f"MISMATCH {entry['path']}: row 3: cu_seqlens end (row length - num_pad): expected" in text
    assert f"MISMATCH {entry['path']}: sha256" in text


# -- filter outputs ---------------------------------------------------------------------------------------------------

def test_filter_output_summary_documents_and_verify(tmp_path, corpus, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("filters:\n  - {name: language, params: {languages: null, min_score: 0.0}}\n")
    out = tmp_path / "filtered"
    assert cli.main(["filter", "-i", corpus[0], "-o", str(out), "--recipe", str(recipe), "--no-progress"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest[m.K_FORMAT] == m.DOCUMENTS_FORMAT
    c = manifest[m.K_COUNTS]
    assert c["docs_written"] == len(corpus[1]) and c["docs_rejected"] == {m.MALFORMED_JSON: 1}
    code, text, _ = inspect([str(out), "--rows", "1", "--verify", "--max-chars", "0"], capsys)
    assert code == 0, text
    assert "tokenmill filter: documents" in text
    assert re.search(rf"documents written\s+{c['docs_written']}\n", text)
    assert re.search(rf"documents/\s+1 file, .*, {c['docs_written']} documents?\n", text)
    assert "⟦doc" not in text and re.search(r"^── document 0: documents/part-00000\.parquet row 0 · id 'd\d+'",
                                            text, re.M)
    first = int(re.search(r"id 'd(\d+)'", text).group(1))
    assert corpus[1][first] in text
    assert text.rstrip().endswith("OK: every file and total matches the manifest")

    doc = manifest[m.K_DOCUMENTS][0]
    path = out / doc["path"]
    path.write_bytes(path.read_bytes()[:-10])
    code, text, _ = inspect([str(out), "--verify"], capsys)
    assert code == 1
    assert f"MISMATCH {doc['path']}: bytes: expected {doc['bytes']}, found {doc['bytes'] - 10}" in text
    assert f"MISMATCH {doc['path']}: sha256" in text


def test_rejection_keys_match_the_manifests_counting():
    assert rejection_key({"reason": m.MALFORMED_JSON, "stage": m.STAGE_READ}) == m.MALFORMED_JSON
    assert rejection_key({"reason": "gopher_short_doc", "stage": m.STAGE_FILTER,
                          "detail": "gopher_quality/gopher_short_doc"}) == "gopher_quality/gopher_short_doc"
    assert rejection_key({"reason": m.EXACT_DUPLICATE, "stage": m.STAGE_DEDUP, "detail": "same as d1"}) == \
        f"{m.STAGE_DEDUP}/{m.EXACT_DUPLICATE}"


# -- help -------------------------------------------------------------------------------------------------------------

def test_every_option_has_help_with_its_default():
    parser = argparse.ArgumentParser(prog="tokenmill inspect")
    add_inspect_arguments(parser)
    options = [a for a in parser._actions if a.option_strings and "--help" not in a.option_strings]
    assert {s for a in options for s in a.option_strings} == {"--rows", "--seed", "--tokenizer", "--max-chars",
                                                              "--verify"}
    for action in options:
        assert action.help and "default" in action.help, action.option_strings
    assert parser.description and "--verify" in parser.description
    args = parser.parse_args(["out"])
    assert (args.rows, args.seed, args.tokenizer, args.max_chars, args.verify) == (0, None, None, 400, False)
    with pytest.raises(SystemExit):
        parser.parse_args(["out", "--rows", "-1"])
