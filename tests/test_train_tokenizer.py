"""train-tokenizer: digit rules, exact vocabulary, special-token ids, a tokenizer prepare uses, and a deterministic
balanced sample."""

from __future__ import annotations

import json

import pytest
from tokenizers import Tokenizer

from pipelines import cli
from tests.conftest import write_jsonl
from transforms.tokenize.sampling import shares


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
    card = json.loads((tmp_path / "super.json.card.json").read_text())["superbpe"]
    assert card["spanning_tokens"] == len(spanning) and card["transition"] == 2000
    assert card["stage2_merges"] >= 1000 and card["chunk_occurrences"] >= card["distinct_chunks"] > 0
    # the chunks are counted in Beam: two worker processes give the same tokenizer, byte for byte
    again = tmp_path / "super2.json"
    assert cli.main([*base, "-o", str(again), "--superbpe-transition", "2000", "--workers", "2"]) == 0
    assert again.read_bytes() == superbpe.read_bytes()
    lines = tmp_path / "lines.json"
    assert cli.main([*base, "-o", str(lines), "--superbpe-transition", "2000",
                     "--superbpe-boundaries", "newlines"]) == 0
    lines_tok = Tokenizer.from_file(str(lines))
    assert lines_tok.get_vocab_size(with_added_tokens=True) == 3000
    def word_and_comma(t):
        return "," in t and any(c.isalpha() and c not in "ĠĊ" for c in t)

    def stage2_tokens(tok):
        return [t for t, i in tok.get_vocab().items() if i >= 2000]

    assert any(word_and_comma(t) for t in stage2_tokens(lines_tok))  # merged across punctuation
    assert not any(word_and_comma(t) for t in stage2_tokens(super_tok))  # punctuation still cuts

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


def _reference_merges(counts: dict[str, int], base: int, wanted: int, min_frequency: int) -> list[tuple[str, str]]:
    """Plain BPE over symbol words with counts, recounting every pair at every step: the most frequent pair, ties to
    the smallest pair of symbol ids (the alphabet's ids, then new symbols' in merge order)."""
    from collections import Counter

    from transforms.tokenize.superbpe import SYMBOL_BASE

    ids = {chr(SYMBOL_BASE + i): i for i in range(base)}
    words = [([ids[c] for c in w], n) for w, n in counts.items()]
    strings = {i: c for c, i in ids.items()}
    merges = []
    while len(strings) < base + wanted:
        pairs: Counter = Counter()
        for word, n in words:
            for pair in zip(word, word[1:]):
                pairs[pair] += n
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        if pairs[best] < min_frequency:
            break
        merged = strings[best[0]] + strings[best[1]]
        new = next((i for i, t in strings.items() if t == merged), len(strings))
        strings[new] = merged
        merges.append((strings[best[0]], strings[best[1]]))
        for k, (word, n) in enumerate(words):
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(new)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            words[k] = (out, n)
    return merges


def test_stage2_merges_are_plain_bpe_over_the_chunk_counts(ml_texts):
    """The stage-2 learner (tokenizers' trainer over stage-1 token symbols) learns exactly the merges of a naive BPE
    over the same chunk counts, and the tokenizer holds them after stage 1's."""
    from collections import Counter

    from transforms.tokenize.superbpe import SYMBOL_BASE, chunk_symbols, chunk_tokenizer, superbpe
    from transforms.tokenize.training import TokenizerRecipe, train_tokenizer

    texts = ml_texts[:600]
    stage1 = train_tokenizer(iter(texts), TokenizerRecipe(vocab_size=700, pretokenizer="gpt4", digits="r2l3"))
    counts = dict(Counter(chunk_symbols(chunk_tokenizer(stage1.to_str(), "r2l3"), texts)))
    base = stage1.get_vocab_size(with_added_tokens=True)
    tok = superbpe(stage1, counts, 760, "r2l3", min_frequency=2)
    spec = json.loads(tok.to_str())
    stage1_merges = len(json.loads(stage1.to_str())["model"]["merges"])
    learned = [tuple(m) for m in spec["model"]["merges"][stage1_merges:]]
    token_of = {i: t for t, i in stage1.get_vocab().items()}
    def spell(symbols):
        return "".join(token_of[ord(c) - SYMBOL_BASE] for c in symbols)

    reference = [(spell(a), spell(b)) for a, b in _reference_merges(counts, base, 80, 2)]
    assert learned == reference[:len(learned)] and len(learned) >= 60
    assert tok.get_vocab_size() == 760


@pytest.mark.parametrize("boundaries, expected", [
    ("punctuation", ["of the cat", " and then ", "234", "567", " more", "in the box", "next line"]),
    ("newlines", ["of the cat, and then ", "234", "567", " more", "in the box", "next line"]),
])
def test_chunks_are_cut_at_digits_punctuation_newlines_and_special_tokens_not_spaces(tokenizer_path, boundaries,
                                                                                     expected):
    from transforms.tokenize.superbpe import SYMBOL_BASE, chunk_symbols, chunk_tokenizer

    stage1 = Tokenizer.from_file(tokenizer_path)
    tok = chunk_tokenizer(stage1.to_str(), "r2l3", boundaries)
    token_of = {i: t for t, i in stage1.get_vocab().items()}
    text = "of the cat, and then 1234567 more<|endoftext|>in the box\nnext line"
    chunks = ["".join(token_of[ord(c) - SYMBOL_BASE] for c in s) for s in chunk_symbols(tok, [text])]
    spelled = [c.replace("Ġ", " ").replace("Ċ", "\n") for c in chunks]
    assert spelled == [c for c in expected if len(tok.encode(c, add_special_tokens=False).ids) > 1]


def test_progress_lines_name_each_stage(tmp_path, corpus, capsys):
    from pipelines.train_tokenizer import TrainTokenizerConfig, run

    _, a, _, _, _ = corpus
    run(TrainTokenizerConfig(inputs=[a], output=str(tmp_path / "t.json"), vocab_size=700, superbpe_transition=600,
                             progress=True))
    err = capsys.readouterr().err
    for stage in ("sampling up to", "sampled", "SuperBPE stage 1", "counting the stage-2 chunks", "SuperBPE stage 2"):
        assert stage in err, err
    run(TrainTokenizerConfig(inputs=[a], output=str(tmp_path / "t.json"), vocab_size=700, overwrite=True))
    assert "tokenmill: [" not in capsys.readouterr().err  # off unless asked (the CLI asks on a terminal)
