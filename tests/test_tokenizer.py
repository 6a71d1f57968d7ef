"""Tokenizer loading, special tokens, backend choice (auto verification and fallback), tiktoken rank files."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from schemas import manifest as m
from tests.conftest import documents_from_shards, prepare, shard_bytes, write_jsonl
from transforms.tokenize import tokenizer as tk
from transforms.tokenize.encoders import Encoders


def test_eos_is_found_and_options_resolve(tokenizer_path, hf_tokenizer):
    spec = tk.resolve_tokenizer(tokenizer_path)
    eos = hf_tokenizer.token_to_id("<|endoftext|>")
    assert (spec.eos_id, spec.pad_id, spec.bos_id) == (eos, eos, None)
    assert spec.vocab_size == hf_tokenizer.get_vocab_size(with_added_tokens=True)
    assert len(spec.sha256) == 64
    spec = tk.resolve_tokenizer(tokenizer_path, eos_token="id:5", bos_token="<|endoftext|>", pad_token="7")
    assert (spec.eos_id, spec.bos_id, spec.pad_id) == (5, eos, hf_tokenizer.token_to_id("7"))
    with pytest.raises(tk.TokenizerError, match="has only"):
        tk.resolve_tokenizer(tokenizer_path, eos_token="id:999999")


def test_unknown_special_token_is_a_clear_error(tokenizer_path):
    with pytest.raises(tk.TokenizerError, match="--eos-token '<nope>' is not a token"):
        tk.resolve_tokenizer(tokenizer_path, eos_token="<nope>")
    with pytest.raises(tk.TokenizerError, match="--tokenizer-backend"):
        tk.resolve_tokenizer(tokenizer_path, backend="fastest")


def test_add_specials_appends_eos_and_prepends_bos():
    flat = np.array([10, 11, 12, 13, 14], np.uint32)
    lens = np.array([2, 0, 3])
    out, new = tk.add_specials(flat, lens, eos_id=1, bos_id=None)
    assert out.tolist() == [10, 11, 1, 1, 12, 13, 14, 1] and new.tolist() == [3, 1, 4]
    out, new = tk.add_specials(flat, lens, eos_id=1, bos_id=2)
    assert out.tolist() == [2, 10, 11, 1, 2, 1, 2, 12, 13, 14, 1] and new.tolist() == [4, 2, 5]


def test_gigatoken_and_hf_agree_on_real_text(tokenizer_path, ml_texts, code_texts):
    spec = tk.resolve_tokenizer(tokenizer_path)
    enc = Encoders(spec)
    texts = ml_texts[:500] + code_texts[:20]
    f_flat, f_lens = enc.fast.encode_batch(texts)
    r_flat, r_lens = enc.reference.encode_batch(texts)
    assert np.array_equal(f_lens, r_lens) and np.array_equal(f_flat, r_flat)
    assert tk.first_mismatch(enc.fast, enc.reference, texts) is None


class _OffByOne:
    """A fast encoder that is wrong: auto must notice and fall back."""

    name = "gigatoken"

    def __init__(self, inner):
        self.inner = inner

    def encode_batch(self, texts):
        flat, lens = self.inner.encode_batch(texts)
        return (flat + 1).astype(np.uint32), lens


def test_auto_falls_back_when_gigatoken_differs(tokenizer_path, ml_texts):
    enc = Encoders(tk.resolve_tokenizer(tokenizer_path))
    enc.fast = _OffByOne(enc.fast)
    chosen, note = enc.choose(ml_texts[:50], "stream 0")
    assert chosen is enc.reference and "differs" in note


def test_pipeline_fallback_is_recorded_and_output_identical(tmp_path, tokenizer_path, ml_texts, monkeypatch):
    path = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in ml_texts[:300]] + [b"{broken\n"]
                       + [{"text": t} for t in ml_texts[300:600]])
    reference = prepare(path, tmp_path / "ref", tokenizer_path, tokenizer_backend="hf", stream_bytes=10_000)
    original = tk.GigatokenEncoder.encode_batch
    monkeypatch.setattr(tk.GigatokenEncoder, "encode_batch", lambda self, texts: _OffByOne(
        type("E", (), {"encode_batch": lambda _, t: original(self, t)})()).encode_batch(texts))
    manifest = prepare(path, tmp_path / "auto", tokenizer_path, stream_bytes=10_000)
    assert manifest[m.K_TOKENIZER]["backend"] == "hf" and manifest[m.K_STREAMS] >= 3
    assert "differs" in manifest[m.K_TOKENIZER]["backend_notes"][0]
    # every stream was redone with the reference: same bytes, same counts, nothing of the discarded attempts left
    assert shard_bytes(tmp_path / "auto") == shard_bytes(tmp_path / "ref")
    assert manifest[m.K_COUNTS] == reference[m.K_COUNTS]
    assert manifest[m.K_REJECTED] == reference[m.K_REJECTED]
    assert sorted(p.name for p in (tmp_path / "auto").iterdir()) == ["manifest.json", "rejected", m.REPORT_HTML,
                                                                    "shards"]
    assert reference[m.K_TOKENIZER]["backend"] == "hf"


def _to_tiktoken_file(hf_tokenizer, path) -> dict[bytes, int]:
    """Export the byte-level BPE fixture as a tiktoken rank file (rank = id; ids follow merge order)."""
    from transforms.tokenize.evaluation import bytes_to_unicode

    unmap = {c: b for b, c in bytes_to_unicode().items()}
    ranks = {}
    for token, i in hf_tokenizer.get_vocab(with_added_tokens=False).items():
        ranks[bytes(unmap[ch] for ch in token)] = i
    # tiktoken wants ranks 0..n-1 with no gaps: renumber in id order
    ordered = sorted(ranks, key=ranks.get)
    ranks = {tok: r for r, tok in enumerate(ordered)}
    with open(path, "wb") as fh:
        for tok, r in ranks.items():
            fh.write(base64.b64encode(tok) + b" " + str(r).encode() + b"\n")
    return ranks


def test_tiktoken_rank_file_end_to_end(tmp_path, hf_tokenizer, ml_texts, code_texts):
    import tiktoken

    path = tmp_path / "custom.tiktoken"
    ranks = _to_tiktoken_file(hf_tokenizer, path)
    with pytest.raises(tk.TokenizerError, match="--tiktoken-scheme"):
        tk.resolve_tokenizer(str(path))
    spec = tk.resolve_tokenizer(str(path), tiktoken_scheme="cl100k_base")
    assert spec.kind == "tiktoken" and spec.eos_id == len(ranks)
    texts = ml_texts[:400] + code_texts[:5]
    data = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in texts])
    manifest = prepare(data, tmp_path / "out", str(path), tiktoken_scheme="cl100k_base")
    enc = tiktoken.Encoding(name="t", pat_str=tk.tiktoken_definition(str(path), path.read_bytes(), "cl100k_base")[
        "pat_str"], mergeable_ranks=ranks, special_tokens={"<|endoftext|>": len(ranks)})
    got = sorted(map(tuple, documents_from_shards(tmp_path / "out", spec.eos_id)))
    assert got == sorted(tuple(enc.encode_ordinary(t)) for t in texts)
    assert manifest[m.K_TOKENIZER]["format"] == "tiktoken"
    assert manifest[m.K_TOKENIZER]["backend"] in ("gigatoken", "tiktoken")
