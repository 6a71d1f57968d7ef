"""export-megatron: prepare output → Megatron-LM indexed dataset (.bin + .idx), byte-exact format, round trips."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import cli
from schemas import manifest as m
from schemas.shards import SHARD_SCHEMA
from tests.conftest import eos_of, hf_ids, prepare, write_jsonl
from transforms.export.megatron import DTYPE_CODES, ExportError, choose_dtype, read_megatron, read_megatron_index
from transforms.export.packed_source import document_ends

SEQ = 64
LITERAL_EOS_TEXT = "a text that quotes <|endoftext|> in the middle, and goes on after it"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, ml_texts, code_texts) -> tuple[str, list[str]]:
    """One JSONL file: short multilingual documents, long code documents (spanning rows), a literal EOS text."""
    texts = ml_texts[:400] + code_texts[:4] + [LITERAL_EOS_TEXT] + ml_texts[400:600]
    path = write_jsonl(tmp_path_factory.mktemp("corpus") / "in.jsonl", [{"text": t} for t in texts])
    return path, texts


@pytest.fixture(scope="module")
def packed(tmp_path_factory, corpus, tokenizer_path) -> Path:
    """A prepare output of several streams and shards."""
    out = tmp_path_factory.mktemp("prep") / "out"
    manifest = prepare(corpus[0], out, tokenizer_path, SEQ, shard_rows=40, stream_bytes=30_000)
    assert manifest[m.K_STREAMS] > 1 and len(manifest[m.K_SHARDS]) > 3
    return out


def export(out_dir, prefix, *extra: str) -> int:
    """Run the export command."""
    return cli.main(["export-megatron", str(out_dir), "--output", str(prefix), *extra])


def summary_value(err: str, key: str) -> str:
    """A value of the summary table printed on stderr."""
    found = re.search(rf"^{re.escape(key)}\s{{2,}}(.+)$", err, re.M)
    assert found, err
    return found.group(1)


def test_round_trip_is_the_hf_encodings_plus_eos_in_input_order(packed, corpus, tokenizer_path, hf_tokenizer,
                                                               tmp_path, capsys):
    _, texts = corpus
    eos = eos_of(tokenizer_path)
    prefix = tmp_path / "megatron" / "corpus_text_document"
    assert export(packed, prefix) == 0
    err = capsys.readouterr().err
    got = [s.tolist() for s in read_megatron(str(prefix))]
    assert got == [ids + [eos] for ids in hf_ids(hf_tokenizer, texts)]
    # a text holding the EOS token's text stays one document (its inner EOS id is not a document end)
    literal = hf_ids(hf_tokenizer, [LITERAL_EOS_TEXT])[0]
    assert eos in literal and got.count(literal + [eos]) == 1
    assert all(s.dtype == np.uint16 for s in read_megatron(str(prefix)))
    assert summary_value(err, "documents").startswith(f"{len(texts):,} ")
    assert summary_value(err, "incomplete documents") == "0"
    assert summary_value(err, "tokens (incl. EOS)") == f"{sum(map(len, got)):,}"
    assert summary_value(err, "dtype").startswith("uint16 (auto, vocab 2,000)")
    assert f"{prefix}.bin" in err and f"{prefix}.idx" in err
    assert sorted(p.name for p in prefix.parent.iterdir()) == ["corpus_text_document.bin", "corpus_text_document.idx"]


def test_index_bytes_follow_megatrons_layout(packed, tmp_path):
    prefix = tmp_path / "ds"
    assert export(packed, prefix) == 0
    seqs = list(read_megatron(str(prefix)))
    data = (tmp_path / "ds.idx").read_bytes()
    assert data[:9] == b"MMIDIDX\x00\x00"
    assert struct.unpack_from("<Q", data, 9) == (1,)
    assert struct.unpack_from("<B", data, 17) == (8,)  # uint16
    n_seq, n_doc = struct.unpack_from("<QQ", data, 18)
    assert n_seq == len(seqs) and n_doc == n_seq + 1
    assert len(data) == 34 + 4 * n_seq + 8 * n_seq + 8 * n_doc
    lengths = struct.unpack_from(f"<{n_seq}i", data, 34)
    pointers = struct.unpack_from(f"<{n_seq}q", data, 34 + 4 * n_seq)
    docs = struct.unpack_from(f"<{n_doc}q", data, 34 + 12 * n_seq)
    assert list(lengths) == [len(s) for s in seqs]
    assert list(pointers) == [2 * sum(lengths[:i]) for i in range(n_seq)]
    assert list(docs) == list(range(n_seq + 1))
    body = (tmp_path / "ds.bin").read_bytes()
    assert len(body) == 2 * sum(lengths)
    assert body == b"".join(struct.pack(f"<{len(s)}H", *s.tolist()) for s in seqs)


def test_int32_forced_holds_the_same_sequences(packed, tmp_path):
    assert export(packed, tmp_path / "a") == 0
    assert export(packed, tmp_path / "b", "--dtype", "int32") == 0
    assert (tmp_path / "b.idx").read_bytes()[17] == DTYPE_CODES["int32"] == 4
    a, b = list(read_megatron(str(tmp_path / "a"))), list(read_megatron(str(tmp_path / "b")))
    assert len(a) == len(b) and all(x.tolist() == y.tolist() and y.dtype == np.int32 for x, y in zip(a, b))
    assert (tmp_path / "b.bin").stat().st_size == 2 * (tmp_path / "a.bin").stat().st_size
    index = read_megatron_index(str(tmp_path / "b"))
    assert index.sequence_pointers.tolist() == (4 * np.cumsum(index.sequence_lengths, dtype=np.int64)
                                                - 4 * index.sequence_lengths).tolist()


def test_bos_configured_run_round_trips(corpus, tokenizer_path, hf_tokenizer, tmp_path, capsys):
    _, texts = corpus
    texts = texts[:150]
    data = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in texts])
    out = tmp_path / "out"
    bos = 1999
    assert cli.main(["prepare", "-i", data, "-t", tokenizer_path, "--seq-len", "96", "-o", str(out),
                     "--bos-token", f"id:{bos}", "--no-progress"]) == 0
    assert json.loads((out / "manifest.json").read_text())[m.K_TOKENIZER]["bos_id"] == bos
    capsys.readouterr()
    assert export(out, tmp_path / "bos") == 0
    eos = eos_of(tokenizer_path)
    got = [s.tolist() for s in read_megatron(str(tmp_path / "bos"))]
    assert got == [[bos] + ids + [eos] for ids in hf_ids(hf_tokenizer, texts)]


# --- hand-made outputs: large ids, bucket subdirectories, a truncated last document --------------------------------


def make_output(root: Path, shards: dict[str, list[list[int]]], eos: int, vocab: int, seq_len: int = 8,
                pad: int = 0, packing: str = "concat", counts: dict | None = None) -> Path:
    """A prepare-like output: each shard's rows (real tokens, padded to seq_len), cu_seqlens cut after each EOS."""
    entries = []
    for rel, rows in shards.items():
        ids, cus, pads = [], [], []
        for real in rows:
            ends = [i + 1 for i, t in enumerate(real) if t == eos and i + 1 < len(real)]
            ids.append(real + [pad] * (seq_len - len(real)))
            cus.append([0, *ends, len(real)])
            pads.append(seq_len - len(real))
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table([pa.array(ids, pa.list_(pa.uint32())), pa.array(cus, pa.list_(pa.int32())),
                                 pa.array(pads, pa.int32())], schema=SHARD_SCHEMA), path)
        entries.append({"path": rel, "rows": len(rows), "tokens": sum(map(len, rows))})
    manifest = {m.K_FORMAT: m.MANIFEST_FORMAT, m.K_SEQ_LEN: seq_len, m.K_PACKING: packing, m.K_SHARDS: entries,
                m.K_COUNTS: counts or {},
                m.K_TOKENIZER: {"vocab_size": vocab, "eos_id": eos, "pad_id": pad, "bos_id": None}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


BIG_EOS = 99_999
BIG_SHARDS = {  # manifest order is not name order; documents continue across rows and shards
    "shards/bucket=03/part-00000.parquet": [[70_000, 5, BIG_EOS, 7, 8, 9, 10, 11], [12, BIG_EOS, 65_536, BIG_EOS]],
    "shards/bucket=01/part-00000.parquet": [[1, 2, 3, 4, 5, 6, 7, 8], [9, BIG_EOS]],
    "shards/len=00256/part-00000.parquet": [[BIG_EOS], [42, 43]],  # the stream ends inside a document
}
BIG_DOCS = [[70_000, 5, BIG_EOS], [7, 8, 9, 10, 11, 12, BIG_EOS], [65_536, BIG_EOS],
            [1, 2, 3, 4, 5, 6, 7, 8, 9, BIG_EOS], [BIG_EOS], [42, 43]]


def test_large_ids_subdirectories_and_an_incomplete_document(tmp_path, capsys):
    out = make_output(tmp_path / "big", BIG_SHARDS, BIG_EOS, 100_000)
    assert export(out, tmp_path / "x" / "big") == 0
    err = capsys.readouterr().err
    assert [s.tolist() for s in read_megatron(str(tmp_path / "x" / "big"))] == BIG_DOCS
    assert read_megatron_index(str(tmp_path / "x" / "big")).dtype == np.int32
    assert summary_value(err, "documents").startswith("6 ")
    assert summary_value(err, "incomplete documents").startswith("1 ")
    assert summary_value(err, "dtype").startswith("int32 (auto, vocab 100,000)")


def test_uint16_refuses_ids_that_do_not_fit(tmp_path, capsys):
    out = make_output(tmp_path / "big", BIG_SHARDS, BIG_EOS, 100_000)
    assert export(out, tmp_path / "u", "--dtype", "uint16") == 2
    err = capsys.readouterr().err
    assert err.startswith("tokenmill: error: --dtype uint16: token id ") and "--dtype int32" in err
    assert "bucket=03/part-00000.parquet" in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.glob("u*")) == [] and list(tmp_path.glob(".u*")) == []  # nothing left behind


ROWS_OF_WHOLE_DOCUMENTS = {"shards/part-00000.parquet": [[5, 6, 0, 7, 0], [1, 2, 3, 4, 5, 6, 0], [8, 0]]}


def test_best_fit_or_decompose_export_only_when_no_document_was_cut(tmp_path, capsys):
    out = make_output(tmp_path / "bf", ROWS_OF_WHOLE_DOCUMENTS, 0, 10, packing="best-fit",
                      counts={"docs_split": 0, "tokens_dropped": 0})
    assert export(out, tmp_path / "bf-ds") == 0
    assert [s.tolist() for s in read_megatron(str(tmp_path / "bf-ds"))] == [[5, 6, 0], [7, 0], [1, 2, 3, 4, 5, 6, 0],
                                                                         [8, 0]]
    capsys.readouterr()
    for packing, counts, why in [("best-fit", {"docs_split": 2}, "2 documents were cut into pieces"),
                                 ("decompose", {"docs_split": 0, "tokens_dropped": 40}, "40 remainder tokens dropped"),
                                 ("decompose", {}, "does not say whether")]:
        out = make_output(tmp_path / packing, ROWS_OF_WHOLE_DOCUMENTS, 0, 10, packing=packing, counts=counts)
        assert export(out, tmp_path / "x") == 2
        err = capsys.readouterr().err
        assert f"packed with --packing {packing}: " in err and why in err and "--packing concat" in err
    assert not list(tmp_path.glob("x*"))


def test_dtype_rule_is_megatrons():
    assert choose_dtype("auto", 65_499) == np.uint16
    assert choose_dtype("auto", 65_500) == np.int32
    assert choose_dtype("auto", None) == np.int32
    assert choose_dtype("int32", 100) == np.int32 and choose_dtype("uint16", 10**6) == np.uint16


def test_document_ends_use_segments_and_a_final_eos():
    # rows: [a b EOS | c EOS(literal) d], [e EOS | pad pad], [f g h i]; EOS = 9
    ids_offsets = np.array([0, 6, 10, 14])
    num_pad = np.array([0, 2, 0])
    cu_values = np.array([0, 3, 6, 0, 2, 0, 4])
    cu_offsets = np.array([0, 3, 5, 7])
    last = np.array([4, 9, 8])
    ends = document_ends(ids_offsets, num_pad, cu_values, cu_offsets, last, 9)
    assert ends.tolist() == [3, 8]  # not after the literal EOS inside the second segment; not after row 3
    with pytest.raises(ValueError, match="row 1"):
        document_ends(ids_offsets, num_pad, np.array([0, 3, 6, 0, 3, 0, 4]), cu_offsets, last, 9)


# --- errors ----------------------------------------------------------------------------------------------------------


def test_directory_without_manifest_is_refused(tmp_path, capsys):
    (tmp_path / "job" / "_tokenmill_tmp").mkdir(parents=True)
    assert export(tmp_path / "job", tmp_path / "x") == 2
    assert "has no manifest.json: an unfinished tokenmill job" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert export(tmp_path / "empty", tmp_path / "x") == 2
    assert "not a finished tokenmill output" in capsys.readouterr().err
    assert export(tmp_path / "missing", tmp_path / "x") == 2
    assert "does not exist" in capsys.readouterr().err
    assert not list(tmp_path.glob("x*"))


def test_filter_output_is_refused(tmp_path, capsys):
    out = tmp_path / "filtered"
    (out / "documents").mkdir(parents=True)
    (out / "manifest.json").write_text(json.dumps({m.K_FORMAT: m.DOCUMENTS_FORMAT, m.K_DOCUMENTS: [
        {"path": "documents/part-00000.parquet", "rows": 3}], m.K_COUNTS: {}}))
    assert export(out, tmp_path / "x") == 2
    err = capsys.readouterr().err
    assert "tokenmill filter output (documents, no token shards)" in err and "tokenmill prepare" in err


def test_existing_output_needs_overwrite(tmp_path, capsys):
    out = make_output(tmp_path / "small", {"shards/part-00000.parquet": [[1, 2, 0], [3, 0]]}, 0, 10)
    prefix = tmp_path / "ds"
    (tmp_path / "ds.idx").write_bytes(b"old")
    assert export(out, prefix) == 2
    err = capsys.readouterr().err
    assert "ds.idx already exists; pass --overwrite" in err and "--output" in err
    assert (tmp_path / "ds.idx").read_bytes() == b"old" and not (tmp_path / "ds.bin").exists()
    assert export(out, prefix, "--overwrite") == 0
    assert [s.tolist() for s in read_megatron(str(prefix))] == [[1, 2, 0], [3, 0]]
    assert export(out, tmp_path / "ds.bin") == 2
    assert "without .bin/.idx" in capsys.readouterr().err


def test_damaged_shard_is_named(tmp_path, capsys):
    out = make_output(tmp_path / "small", {"shards/part-00000.parquet": [[1, 2, 0]]}, 0, 10)
    (out / "shards" / "part-00000.parquet").write_bytes(b"not parquet")
    assert export(out, tmp_path / "ds") == 2
    err = capsys.readouterr().err
    assert "part-00000.parquet cannot be read" in err and not list(tmp_path.glob("*ds*"))
    with pytest.raises(ExportError, match="cannot read"):
        read_megatron_index(str(tmp_path / "ds"))


def test_batches_of_any_size_give_the_same_bytes(packed, tmp_path):
    from transforms.export.megatron import IndexedDatasetWriter
    from transforms.export.packed_source import iter_token_blocks, load_packed_source

    assert export(packed, tmp_path / "whole") == 0
    source = load_packed_source(str(packed))
    for rows in (1, 3):
        with IndexedDatasetWriter(str(tmp_path / f"by{rows}"), np.dtype(np.uint16)) as writer:
            blocks = 0
            for shard, tokens, ends in iter_token_blocks(source, batch_rows=rows):
                writer.add(tokens, ends, where=shard)
                blocks += 1
            assert writer.commit() == (len(list(read_megatron(str(tmp_path / "whole")))), 0)
        assert blocks > len(source.shards)
        for ext in (".bin", ".idx"):
            assert (tmp_path / f"by{rows}{ext}").read_bytes() == (tmp_path / f"whole{ext}").read_bytes()
