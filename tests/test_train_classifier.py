"""train-classifier: held-out quality on real text, counts that add up, deterministic models, errors, the cores."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import cli
from tests.conftest import write_jsonl
from transforms.select.classifier import (
    binary_metrics,
    normalize_for_fasttext,
    positive_probability,
    read_class,
    resolve_inputs,
    roc_auc,
    training_lines,
)
from transforms.read.demo_corpus import prose_and_code

N_PER_CLASS = 800
SMALL = ["--bucket", "20000"]  # fastText's 2M buckets make an 800 MB model; the tests need no more than this


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, object]:
    """Positives: stdlib docstring paragraphs (English prose, JSONL, one bad line); negatives: stdlib code (Parquet)."""
    prose, code = prose_and_code(N_PER_CLASS)
    assert len(prose) == len(code) == N_PER_CLASS
    d = tmp_path_factory.mktemp("classifier-corpus")
    positive = write_jsonl(d / "prose.jsonl", [{"id": f"doc-{i}", "text": t} for i, t in enumerate(prose)]
                           + [b'{"id": "broken", "text": "no end\n'])
    negative = str(d / "code.parquet")
    pq.write_table(pa.table({"id": [f"code-{i}" for i in range(len(code))], "text": code}), negative)
    return {"positive": positive, "negative": negative, "prose": prose, "code": code}


def _train(corpus, output, *extra: str) -> int:
    return cli.main(["train-classifier", "--positive", corpus["positive"], "--negative", corpus["negative"],
                     "--output", str(output), *SMALL, *extra])


def _card(output) -> dict:
    return json.loads(Path(str(output) + ".json").read_text())


def test_held_out_auc_and_counts_add_up(corpus, tmp_path, capsys):
    out = tmp_path / "models" / "quality.bin"
    assert _train(corpus, out, "--holdout", "0.25") == 0
    card = _card(out)
    mt = card["metrics"]
    with capsys.disabled():
        print(f"held-out ROC AUC {mt['roc_auc']:.4f}, F1 {mt['f1']:.4f}")
    assert mt["roc_auc"] >= 0.9 and mt["f1"] >= 0.8
    assert mt["held_out_positive"] == mt["held_out_negative"] == N_PER_CLASS // 4
    pos, neg = card["counts"]["positive"], card["counts"]["negative"]
    assert pos["rejected"] == {"malformed_json": 1} and neg["rejected_total"] == 0
    for c in (pos, neg):
        assert c["records"] == c["read"] + c["rejected_total"]
        assert c["read"] == N_PER_CLASS == c["train"] + c["held_out"] + c["dropped"]
        assert c["dropped"] == 0 and c["held_out"] == N_PER_CLASS // 4
    assert card["inputs"]["negative"]["files"] == [corpus["negative"]]
    assert card["hyperparameters"] == {"epoch": 5, "lr": 0.1, "dim": 100, "wordNgrams": 2, "minCount": 1,
                                       "bucket": 20000, "thread": 1, "seed": 0, "loss": "softmax"}
    assert card["model"]["bytes"] == out.stat().st_size and card["model"]["fasttext"].split()[-1]
    assert card["argv"][:2] == ["tokenmill", "train-classifier"] and card["wall_time"] > 0
    err = capsys.readouterr().err
    assert re.search(r"held-out ROC AUC\s+0\.9\d+", err) and re.search(r"rejected records\s+1 \(malformed_json", err)
    assert str(out) in err and str(out) + ".json" in err


def test_cap_and_balance_are_seeded_samples_and_counted(corpus, tmp_path):
    out = tmp_path / "capped.bin"
    assert _train(corpus, out, "--max-per-class", "500", "--holdout", "0.2") == 0
    for c in _card(out)["counts"].values():
        assert (c["read"], c["dropped"], c["train"], c["held_out"]) == (N_PER_CLASS, 300, 400, 100)

    few = write_jsonl(tmp_path / "few.jsonl", [{"id": f"f{i}", "text": t} for i, t in enumerate(corpus["prose"][:90])])
    out = tmp_path / "balanced.bin"
    assert cli.main(["train-classifier", "--positive", few, "--negative", corpus["negative"], "-o", str(out),
                     "--balance", *SMALL]) == 0
    counts = _card(out)["counts"]
    assert counts["negative"]["dropped"] == N_PER_CLASS - 90
    assert counts["positive"]["train"] == counts["negative"]["train"] == 81
    assert counts["positive"]["held_out"] == counts["negative"]["held_out"] == 9

    def capped(paths, seed=0):
        cls = resolve_inputs("positive", "__label__hq", paths, None)
        read_class(cls, "text", "id", seed, 100)
        return [doc_id for _, doc_id, _ in cls.docs]

    half = write_jsonl(tmp_path / "half.jsonl", [{"id": f"h{i}", "text": t} for i, t in enumerate(corpus["code"])])
    chosen = capped([corpus["positive"], half])
    assert len(chosen) == 100 and chosen == capped([half, corpus["positive"]])  # not the first N, nor file order
    assert {i.split("-")[0][0] for i in chosen} == {"d", "h"}
    assert chosen != capped([corpus["positive"], half], seed=1)


def test_same_seed_same_model_bytes(corpus, tmp_path):
    paths = [tmp_path / f"{name}.bin" for name in ("a", "b", "c")]
    for i, (path, seed) in enumerate(zip(paths, ("7", "7", "8"))):
        # freed blocks of earlier allocations: what fastText's unzeroed matrix would be made of without the fix
        junk = [np.full(n, np.nan) for n in (1 << 16, 1 << 19, 1 << 21)[: i + 1]]
        del junk
        assert _train(corpus, path, "--seed", seed, "--max-per-class", "300", "--threads", "1") == 0
    a, b, c = (p.read_bytes() for p in paths)
    assert a == b and a != c
    assert _card(paths[0])["model"]["sha256"] == _card(paths[1])["model"]["sha256"]
    assert _card(paths[0])["reproducible"] is True


def test_training_and_scoring_share_one_normalisation(corpus, tmp_path):
    raw = "  Return the\tvalue.\n\nSee  ALSO\u2003:func:`x`\r\n__label__hq  "
    assert normalize_for_fasttext(raw) == "Return the value. See ALSO :func:`x` _label__hq"
    assert normalize_for_fasttext(normalize_for_fasttext(raw)) == normalize_for_fasttext(raw)

    cls = resolve_inputs("positive", "__label__hq", [corpus["positive"]], None)
    read_class(cls, "text", "id", 0, None)
    by_id = {doc_id: text for _, doc_id, text in cls.docs}
    assert by_id["doc-3"] == normalize_for_fasttext(corpus["prose"][3]) != corpus["prose"][3]
    lines = training_lines([("__label__hq", i, t) for i, t in by_id.items()], 0)
    assert sorted(lines) == sorted(f"__label__hq {t}\n" for t in by_id.values())
    assert all(line.count("\n") == 1 and line.count("__label__") == 1 for line in lines)

    out = tmp_path / "m.bin"
    assert _train(corpus, out, "--max-per-class", "200") == 0
    import fasttext

    model = fasttext.load_model(str(out))
    texts = corpus["prose"][700:710] + corpus["code"][700:710]
    with pytest.raises(ValueError):  # fastText itself refuses a newline: scoring must normalise as training did
        model.predict(texts[0], k=-1)
    p_raw = positive_probability(model, texts, "__label__hq")
    p_norm = positive_probability(model, [normalize_for_fasttext(t) for t in texts], "__label__hq")
    assert p_raw.shape == (20,) and np.array_equal(p_raw, p_norm)
    assert ((0 <= p_raw) & (p_raw <= 1)).all() and p_raw[:10].mean() > p_raw[10:].mean()
    assert np.allclose(p_raw + positive_probability(model, texts, "__label__cc"), 1, atol=1e-3)
    assert not positive_probability(model, texts, "__label__other").any()
    assert positive_probability(model, [], "__label__hq").shape == (0,)


def test_roc_auc_by_hand_with_ties():
    # positives 0.8, 0.3, 0.5; negatives 0.8, 0.1: pairs won 1 + 1 + 1, tied 1 (counts 1/2), of 6 → 3.5/6
    y = np.array([1, 0, 1, 0, 1], dtype=bool)
    s = np.array([0.8, 0.8, 0.3, 0.1, 0.5])
    assert roc_auc(y, s) == pytest.approx(3.5 / 6)
    assert roc_auc([1, 1, 0, 0], [0.9, 0.4, 0.4, 0.1]) == pytest.approx(3.5 / 4)
    assert roc_auc([1, 0], [0.2, 0.9]) == 0.0 and roc_auc([1, 0, 1], [0.5, 0.5, 0.5]) == 0.5
    with pytest.raises(ValueError):
        roc_auc([1, 1], [0.1, 0.2])
    mt = binary_metrics(y, s)  # >= 0.5 predicts positive: 0.8 (tp), 0.8 (fp), 0.5 (tp); 0.3 is a miss
    assert (mt["precision"], mt["recall"], mt["accuracy"]) == (pytest.approx(2 / 3), pytest.approx(2 / 3), 0.6)
    assert mt["f1"] == pytest.approx(2 / 3)


def test_help_names_every_option(capsys):
    sub = cli.build_parser()._subparsers._group_actions[0].choices["train-classifier"]
    options = [s for a in sub._actions for s in a.option_strings if s.startswith("--") and s != "--help"]
    with pytest.raises(SystemExit) as exc:
        cli.main(["train-classifier", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert len(options) >= 20 and all(opt in text for opt in options)
    assert "usage: tokenmill train-classifier" in text and "deterministic only with 1 thread" in text


def test_user_errors_are_one_line(corpus, tmp_path, capsys):
    def error(*argv: str) -> str:
        assert cli.main(["train-classifier", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("tokenmill: error: ") and "\n" not in err
        return err

    pos, neg = corpus["positive"], corpus["negative"]
    blank = write_jsonl(tmp_path / "blank.jsonl", [{"text": "  \n\t "}, {"text": ""}, b"oops\n"])
    assert "no usable negative documents in --negative" in error("--positive", pos, "--negative", blank,
                                                                 "-o", str(tmp_path / "x.bin"), *SMALL)
    assert "--positive" in error("--positive", str(tmp_path / "none-*.jsonl"), "--negative", neg,
                                 "-o", str(tmp_path / "x.bin"))
    assert "both --positive and --negative" in error("--positive", pos, "--negative", pos, "-o",
                                                     str(tmp_path / "x.bin"))
    assert "--holdout must be a fraction" in error("--positive", pos, "--negative", neg, "-o",
                                                   str(tmp_path / "x.bin"), "--holdout", "1.5")
    few = write_jsonl(tmp_path / "few.jsonl", [{"text": t} for t in corpus["prose"][:4]])
    assert "--holdout 0.1 holds out no positive document (of 4 used)" in error(
        "--positive", few, "--negative", neg, "-o", str(tmp_path / "x.bin"))
    assert "--negative-label" in error("--positive", pos, "--negative", neg, "-o", str(tmp_path / "x.bin"),
                                       "--negative-label", "cc")
    assert "diverged (NaN) with --lr 1000.0; lower --lr" in error("--positive", pos, "--negative", neg, "-o",
                                                                 str(tmp_path / "x.bin"), "--lr", "1000", *SMALL)
    assert not list(tmp_path.glob("x.bin*"))

    out = tmp_path / "exists.bin"
    out.write_bytes(b"not a model")
    assert f"--output '{out}' already exists; pass --overwrite" in error("--positive", pos, "--negative", neg,
                                                                         "-o", str(out))
    assert out.read_bytes() == b"not a model"
    assert "is a directory" in error("--positive", pos, "--negative", neg, "-o", str(tmp_path))
    assert _train(corpus, out, "--overwrite", "--max-per-class", "100") == 0
    assert out.read_bytes() != b"not a model" and _card(out)["counts"]["positive"]["read"] == N_PER_CLASS
    with pytest.raises(SystemExit) as exc:  # a typo is not passed on to Beam: there is no Beam here
        cli.main(["train-classifier", "--positive", pos, "--negative", neg, "-o", str(out), "--ngrams", "3"])
    assert exc.value.code == 2
