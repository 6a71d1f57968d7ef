"""prepare with --packing best-fit and decompose: every document's tokens are in the shards (as whole segments or
pieces), the manifest reports padding, cut documents and the decompose curriculum, and reruns give the same bytes."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from pipelines import cli
from schemas import manifest as m
from schemas.shards import CU_SEQLENS, INPUT_IDS, NUM_PAD
from tests.conftest import write_jsonl


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, ml_texts, code_texts):
    d = tmp_path_factory.mktemp("packing-in")
    texts = ["\n".join(ml_texts[i:i + 1 + (i * 7) % 23]) for i in range(0, 1800, 5)] + list(code_texts[:40])
    texts = [t for t in texts if t.strip()]
    return write_jsonl(d / "in.jsonl", [{"id": f"d{i}", "text": t} for i, t in enumerate(texts)]), texts


def _run(tmp_path, corpus, tokenizer_path, name, *extra):
    path, _ = corpus
    out = tmp_path / name
    assert cli.main(["prepare", "-i", path, "-o", str(out), "--tokenizer", tokenizer_path, "--no-progress",
                     *extra]) == 0
    return out, json.loads((out / "manifest.json").read_text())


def _segments(out, manifest):
    segs = []
    for shard in manifest[m.K_SHARDS]:
        table = pq.read_table(out / shard["path"])
        for ids, cu, pad in zip(table[INPUT_IDS].to_pylist(), table[CU_SEQLENS].to_pylist(),
                                table[NUM_PAD].to_pylist()):
            assert cu[0] == 0 and cu[-1] == len(ids) - pad
            segs += [tuple(ids[a:b]) for a, b in zip(cu[:-1], cu[1:])]
    return segs


def _encoded(hf_tokenizer, texts):
    eos = hf_tokenizer.token_to_id("<|endoftext|>")
    return [e.ids + [eos] for e in hf_tokenizer.encode_batch(texts, add_special_tokens=False)]


def test_best_fit_cuts_only_documents_longer_than_a_row(tmp_path, corpus, tokenizer_path, hf_tokenizer):
    out, manifest = _run(tmp_path, corpus, tokenizer_path, "bf", "--seq-len", "256", "--packing", "best-fit",
                         "--best-fit-buffer", "500")
    docs = _encoded(hf_tokenizer, corpus[1])
    expected = sorted(tuple(d[s:s + 256]) for d in docs for s in range(0, len(d), 256))
    assert sorted(_segments(out, manifest)) == expected
    stats = manifest[m.K_PACKING_STATS]
    assert stats["documents_split"] == sum(len(d) > 256 for d in docs) > 0
    assert manifest[m.K_PACKING] == "best-fit" and manifest[m.K_PACKING_SETTINGS] == {"name": "best-fit", "buffer": 500,
                                                                                       "loss_mask": "none"}
    counts = manifest[m.K_COUNTS]
    assert stats["padding_fraction"] == round(counts["pad_tokens"] / (counts["tokens"] + counts["pad_tokens"]), 6)
    concat, concat_manifest = _run(tmp_path, corpus, tokenizer_path, "concat", "--seq-len", "256")
    assert concat_manifest[m.K_PACKING_STATS]["documents_split"] > stats["documents_split"]  # concat cuts more
    again, _ = _run(tmp_path, corpus, tokenizer_path, "bf2", "--seq-len", "256", "--packing", "best-fit",
                    "--best-fit-buffer", "500", "--workers", "2")
    assert [(again / s["path"]).read_bytes() for s in manifest[m.K_SHARDS]] == \
        [(out / s["path"]).read_bytes() for s in manifest[m.K_SHARDS]]


def test_decompose_writes_power_of_two_rows_per_length_with_a_curriculum(tmp_path, corpus, tokenizer_path,
                                                                        hf_tokenizer):
    out, manifest = _run(tmp_path, corpus, tokenizer_path, "dd", "--seq-len", "512", "--packing", "decompose",
                         "--decompose-range", "4:9")
    docs = _encoded(hf_tokenizer, corpus[1])
    expected, dropped, short = [], 0, 0
    for d in docs:
        at = 0
        while len(d) - at >= 16:
            size = min(512, 1 << ((len(d) - at).bit_length() - 1))
            expected.append(tuple(d[at:at + size]))
            at += size
        dropped += (len(d) - at) if at else 0
        short += at == 0
    assert sorted(_segments(out, manifest)) == sorted(expected)
    for shard in manifest[m.K_SHARDS]:
        assert shard["path"].startswith(f"shards/len={shard['seq_len']:05d}/")
        assert shard["pad_tokens"] == 0 and shard["tokens"] == shard["rows"] * shard["seq_len"]
    stats, counts = manifest[m.K_PACKING_STATS], manifest[m.K_COUNTS]
    assert stats["remainder_tokens_dropped"] == counts["tokens_dropped"] == dropped
    assert counts["tokens"] == sum(map(len, expected))
    assert counts["docs_rejected"] == ({f"pack/{m.SHORTER_THAN_PIECE}": short} if short else {})
    assert counts["records"] == counts["docs_written"] + sum(counts["docs_rejected"].values())
    curriculum = stats["curriculum"]
    assert curriculum["batch_multipliers"]["16"] == 32 and curriculum["batch_multipliers"]["512"] == 1
    assert abs(sum(curriculum["sampling_odds"].values()) - 1) < 1e-5
    assert {int(k): v["sequences"] for k, v in stats["lengths"].items()} == {
        n: sum(len(e) == n for e in expected) for n in {len(e) for e in expected}}


def test_packing_options_are_checked(tmp_path, corpus, tokenizer_path, capsys):
    path, _ = corpus
    base = ["prepare", "-i", path, "-o", str(tmp_path / "x"), "--tokenizer", tokenizer_path, "--no-progress"]
    assert cli.main(base + ["--seq-len", "300", "--packing", "decompose"]) == 2
    assert "--seq-len must be the longest, 8192" in capsys.readouterr().err
    assert cli.main(base + ["--seq-len", "512", "--packing", "decompose", "--decompose-range", "9-4"]) == 2
    assert "--decompose-range must be LOW:HIGH" in capsys.readouterr().err
    assert cli.main(base + ["--seq-len", "512", "--packing", "decompose", "--decompose-range", "10:9"]) == 2
    assert "decompose range must be" in capsys.readouterr().err


def _rows(out, manifest):
    rows = []
    for shard in manifest[m.K_SHARDS]:
        table = pq.read_table(out / shard["path"])
        rows += list(zip(map(tuple, table[INPUT_IDS].to_pylist()), map(tuple, table[CU_SEQLENS].to_pylist()),
                         table[NUM_PAD].to_pylist()))
    return rows


@pytest.mark.parametrize("packing", [["--seq-len", "128"], ["--seq-len", "256", "--packing", "decompose",
                                                              "--decompose-range", "5:8"]])
def test_shuffle_is_a_permutation_identical_across_runs_and_workers(tmp_path, corpus, tokenizer_path, packing):
    base = [*packing, "--shard-rows", "50"]
    plain, plain_manifest = _run(tmp_path, corpus, tokenizer_path, "plain", *base)
    one, manifest = _run(tmp_path, corpus, tokenizer_path, "one", *base, "--shuffle-seed", "7")
    two, manifest2 = _run(tmp_path, corpus, tokenizer_path, "two", *base, "--shuffle-seed", "7", "--workers", "2")
    other, other_manifest = _run(tmp_path, corpus, tokenizer_path, "other", *base, "--shuffle-seed", "8")
    rows = _rows(one, manifest)
    assert sorted(rows) == sorted(_rows(plain, plain_manifest)) and rows != _rows(plain, plain_manifest)
    assert _rows(other, other_manifest) != rows
    assert manifest[m.K_SHARDS] == manifest2[m.K_SHARDS]  # same paths, rows, sha256: the same bytes
    assert [(one / s["path"]).read_bytes() for s in manifest[m.K_SHARDS]] == \
        [(two / s["path"]).read_bytes() for s in manifest2[m.K_SHARDS]]
    assert all(s["rows"] <= 50 for s in manifest[m.K_SHARDS])
    assert manifest[m.K_COUNTS]["sequences"] == plain_manifest[m.K_COUNTS]["sequences"] == len(rows)
    if "decompose" in packing:  # rows stay under their length's directory
        assert all(s["path"].startswith(f"shards/len={s['seq_len']:05d}/") for s in manifest[m.K_SHARDS])
        assert all(len(r[0]) == s["seq_len"] for s in manifest[m.K_SHARDS]
                   for r in _rows(one, {m.K_SHARDS: [s]}))


def test_shuffle_through_the_runner_writes_the_same_bytes_as_through_part_files(tmp_path, corpus, tokenizer_path,
                                                                                 monkeypatch):
    """Remote runners send the shuffle's parts through the runner's shuffle (no part files): same shards."""
    import pipelines.stream_graph as prepare_module
    from transforms.pack.shuffle_steps import ShuffleRows

    base = ["--seq-len", "128", "--shard-rows", "50", "--shuffle-seed", "7", "--loss-mask", "boundaries"]
    files, files_manifest = _run(tmp_path, corpus, tokenizer_path, "files", *base)
    made = []

    def recording(*args):
        made.append(ShuffleRows(*args))
        return made[-1]

    monkeypatch.setattr(prepare_module, "is_local", lambda args: False)  # as on a remote runner
    monkeypatch.setattr(prepare_module, "shares_files", lambda args, input_bytes: False)
    monkeypatch.setattr(prepare_module, "ShuffleRows", recording)
    through, through_manifest = _run(tmp_path, corpus, tokenizer_path, "through", *base)
    assert [s.inline for s in made] == [True]
    assert through_manifest[m.K_SHARDS] == files_manifest[m.K_SHARDS]
    assert [(through / s["path"]).read_bytes() for s in through_manifest[m.K_SHARDS]] == \
        [(files / s["path"]).read_bytes() for s in files_manifest[m.K_SHARDS]]


@pytest.mark.parametrize("packing", [[], ["--packing", "best-fit"], ["--packing", "decompose", "--decompose-range",
                                                                      "4:7", "--decompose-pad"]])
def test_loss_mask_zeroes_padding_and_document_starts(tmp_path, corpus, tokenizer_path, hf_tokenizer, packing):
    from schemas.shards import LOSS_MASK

    out, manifest = _run(tmp_path, corpus, tokenizer_path, "mask", "--seq-len", "128", "--loss-mask", "boundaries",
                         "--bos-token", "<|endoftext|>", *packing)
    bos = hf_tokenizer.token_to_id("<|endoftext|>")
    starts = padded = 0
    for shard in manifest[m.K_SHARDS]:
        table = pq.read_table(out / shard["path"])
        for ids, cu, pad, mask in zip(table[INPUT_IDS].to_pylist(), table[CU_SEQLENS].to_pylist(),
                                      table[NUM_PAD].to_pylist(), table[LOSS_MASK].to_pylist()):
            assert len(mask) == len(ids) and all(v == 0 for v in mask[len(ids) - pad:])
            padded += pad
            real = len(ids) - pad
            for i in range(real):
                doc_start = mask[i] == 0
                starts += doc_start
                assert not doc_start or (ids[i] == bos and (i in cu or i == 0))  # a masked token is a BOS at a start
    docs = len(corpus[1]) - sum(manifest[m.K_COUNTS]["docs_rejected"].values())
    assert starts == docs  # exactly one masked token per document: its first
    assert manifest[m.K_PACKING_SETTINGS]["loss_mask"] == "boundaries"
    plain, plain_manifest = _run(tmp_path, corpus, tokenizer_path, "nomask", "--seq-len", "128",
                                 "--bos-token", "<|endoftext|>", *packing)
    assert LOSS_MASK not in pq.read_schema(plain / plain_manifest[m.K_SHARDS][0]["path"]).names
    assert sorted(_rows(plain, plain_manifest)) == sorted(
        (r[0], r[1], r[2]) for r in _rows(out, manifest))  # the same rows, with a mask beside them
