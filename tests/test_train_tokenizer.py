"""train-tokenizer: digit rules, exact vocabulary, special-token ids, a tokenizer prepare uses, and a deterministic
balanced sample."""

from __future__ import annotations

import json

import pytest
from tokenizers import Tokenizer

from pipelines import cli
from tests.conftest import write_jsonl
from transforms.sampling import shares


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, ml_texts, code_texts):
    d = tmp_path_factory.mktemp("tok-in")
    prose = ["\n".join(ml_texts[i:i + 8]) + f" Call 555{i:04d} or pay 1234567 on 2024-01-{i % 28 + 1:02d}."
             for i in range(0, 2400, 8)]
    code = [t for t in code_texts[:120] if t.strip()]
    a = write_jsonl(d / "prose.jsonl", [{"id": f"p{i}", "text": t} for i, t in enumerate(prose)])
    b = write_jsonl(d / "code.jsonl", [{"id": f"c{i}", "text": t} for i, t in enumerate(code)])
    return d, a, b, prose, code


def _train(corpus, out, *extra) -> int:
    d, a, b, _, _ = corpus
    return cli.main(["train-tokenizer", "-i", a, "-i", b, "-o", str(out), "--vocab-size", "1000", *extra])


@pytest.mark.parametrize("digits, pieces", [("r2l3", ["1", "234", "567"]), ("l2r3", ["123", "456", "7"]),
                                            ("single", list("1234567"))])
def test_digit_rules_and_exact_vocabulary_with_documented_special_ids(tmp_path, corpus, digits, pieces):
    out = tmp_path / "tok.json"
    assert _train(corpus, out, "--digits", digits, "--special-token", "<|im_start|>") == 0
    tok = Tokenizer.from_file(str(out))
    assert tok.get_vocab_size(with_added_tokens=True) == 1000
    assert [tok.token_to_id(t) for t in ("<|endoftext|>", "<|pad|>", "<|im_start|>")] == [0, 1, 2]
    enc = tok.encode("1234567", add_special_tokens=False)
    assert [tok.decode([i]) for i in enc.ids] == pieces
    text = "Prices: 1234567 and 89, ünïcödé ✓ 😀\nnew line"
    assert tok.decode(tok.encode(text, add_special_tokens=False).ids) == text  # byte-level: lossless
    card = json.loads((tmp_path / "tok.json.card.json").read_text())
    assert card["vocab_size"] == 1000 and card["recipe"]["digits"] == digits
    assert card["special_token_ids"] == {"<|endoftext|>": 0, "<|pad|>": 1, "<|im_start|>": 2}


def test_prepare_uses_the_trained_tokenizer_and_round_trips(tmp_path, corpus):
    from schemas.shards import iter_packed_rows

    out = tmp_path / "tok.json"
    assert _train(corpus, out, "--digits", "r2l3", "--normalization", "NFC") == 0
    _, a, _, prose, _ = corpus
    result = tmp_path / "prep"
    assert cli.main(["prepare", "-i", a, "-o", str(result), "--tokenizer", str(out), "--seq-len", "512",
                     "--no-progress"]) == 0
    manifest = json.loads((result / "manifest.json").read_text())
    assert manifest["tokenizer"]["eos_id"] == 0 and manifest["tokenizer"]["backend"] in ("gigatoken", "hf")
    tok = Tokenizer.from_file(str(out))
    stream = [t for row in iter_packed_rows(str(result)) for seg in row.documents() for t in seg.tolist()]
    docs, current = [], []
    for t in stream:
        if t == 0:
            docs.append(tok.decode(current))
            current = []
        else:
            current.append(t)
    import unicodedata

    assert docs == [unicodedata.normalize("NFC", t) for t in prose]  # decode(shards) == input (as normalised)


def test_the_sample_is_deterministic_bounded_and_balanced(tmp_path, corpus):
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    assert _train(corpus, first, "--sample-bytes", "200KB", "--balance", "source") == 0
    assert _train(corpus, second, "--sample-bytes", "200KB", "--balance", "source") == 0
    assert first.read_bytes() == second.read_bytes()
    sample = json.loads((tmp_path / "a.json.card.json").read_text())["sample"]
    per_group, share = sample["sampled_bytes_per_group"], sample["shares"]
    assert len(per_group) == 2 and sample["bytes"] <= 200_000  # never over the budget
    for group, size in per_group.items():  # each group's documents, in hash order, up to its share
        assert 0 < size <= share[group]
    assert set(per_group) == {"prose.jsonl", "code.jsonl"}  # sources named below the inputs' common directory
    other = tmp_path / "c.json"
    assert _train(corpus, other, "--sample-bytes", "200KB", "--balance", "source", "--seed", "1") == 0
    assert other.read_bytes() != first.read_bytes()  # another seed, another sample


def test_shares_split_the_budget_equally_and_pass_on_what_small_groups_leave():
    assert shares({"small": 100, "big": 10_000, "mid": 1_000}, 1_300) == {"small": 100, "mid": 600, "big": 600}
    assert shares({"a": 10}, 1_000) == {"a": 10}


@pytest.mark.parametrize("args, message", [
    (["--vocab-size", "100"], "--vocab-size must be at least 258"),
    (["--vocab-size", "500000"], "the sample supports only"),
    (["--vocab-size", "1000", "--sample-bytes", "0"], "expected a positive size"),
])
def test_bad_options_are_clear_errors(tmp_path, corpus, capsys, args, message):
    d, a, b, _, _ = corpus
    with pytest.raises(SystemExit) if "positive size" in message else _nothing():
        code = cli.main(["train-tokenizer", "-i", a, "-o", str(tmp_path / "t.json"), *args])
        assert code == 2
    assert message in capsys.readouterr().err
    (tmp_path / "t.json").write_text("{}")
    assert cli.main(["train-tokenizer", "-i", a, "-o", str(tmp_path / "t.json"), "--vocab-size", "1000"]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_superbpe_spans_words_and_compresses_held_out_text_better(tmp_path, ml_texts):
    """Same sample, same vocabulary size: SuperBPE's cross-word tokens make held-out multilingual text shorter."""
    docs = ["\n".join(ml_texts[i:i + 6]) for i in range(0, len(ml_texts) - 6, 6)]
    train, held = docs[::2], docs[1::2]
    path = write_jsonl(tmp_path / "train.jsonl", [{"id": f"t{i}", "text": t} for i, t in enumerate(train)])
    plain, superbpe = tmp_path / "plain.json", tmp_path / "super.json"
    base = ["train-tokenizer", "-i", path, "--vocab-size", "3000", "--digits", "r2l3"]
    assert cli.main([*base, "-o", str(plain)]) == 0
    assert cli.main([*base, "-o", str(superbpe), "--superbpe-transition", "2000"]) == 0
    plain_tok, super_tok = Tokenizer.from_file(str(plain)), Tokenizer.from_file(str(superbpe))
    assert super_tok.get_vocab_size(with_added_tokens=True) == 3000
    spanning = [t for t in super_tok.get_vocab() if "Ġ" in t.lstrip("Ġ") and t.replace("Ġ", "")]
    assert spanning  # tokens holding a space inside: merges across words

    def bytes_per_token(tok):
        return sum(len(t.encode()) for t in held) / sum(
            len(e.ids) for e in tok.encode_batch(held, add_special_tokens=False))

    assert bytes_per_token(super_tok) > bytes_per_token(plain_tok)
    text = "Prices 1234567, ünïcödé ✓\nof the cat"
    assert super_tok.decode(super_tok.encode(text, add_special_tokens=False).ids) == text
    pieces = [super_tok.decode([i]) for i in super_tok.encode("1234567", add_special_tokens=False).ids]
    assert "".join(pieces) == "1234567" and all(len(p) <= 3 for p in pieces)  # the digit rule still cuts
    with pytest.raises(SystemExit):
        cli.main([*base, "-o", str(tmp_path / "bad.json"), "--superbpe-transition", "0"])
    assert cli.main([*base, "-o", str(tmp_path / "bad.json"), "--superbpe-transition", "3000"]) == 2
