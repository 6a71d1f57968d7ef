"""eval-tokenizer: corpus statistics against direct recomputation, parity premium, Magikarp and Qtok checks, report."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pipelines.cli import main
from pipelines.eval_tokenizer import EvalConfig, run
from tests.conftest import write_jsonl
from transforms.filter.langid import LanguageIdentifier
from transforms.tokenize.evaluation import load_tokenizer, magikarp, qtok, tokenizer_names
from transforms.tokenize.training import train_byte_level_bpe

# a small aligned set written for this test: the same sentences in English, German, French and Russian
PARALLEL = [
    {"id": 1, "texts": {"en": "The cat sleeps on the warm window sill.", "de": "Die Katze schläft auf der warmen "
     "Fensterbank.", "fr": "Le chat dort sur le rebord chaud de la fenêtre.", "ru": "Кошка спит на тёплом "
     "подоконнике."}},
    {"id": 2, "texts": {"en": "We are going to the market tomorrow morning.", "de": "Wir gehen morgen früh auf den "
     "Markt.", "fr": "Nous allons au marché demain matin.", "ru": "Мы пойдём на рынок завтра утром."}},
    {"id": 3, "texts": {"en": "Please close the door when you leave.", "de": "Bitte schließe die Tür, wenn du "
     "gehst.", "fr": "Ferme la porte quand tu pars, s'il te plaît."}},
    {"id": 4, "texts": {"en": "The library opens at nine o'clock.", "ru": "Библиотека открывается в девять часов."}},
    {"id": 5, "texts": {"de": "Das Wetter ist heute schön.", "fr": "Il fait beau aujourd'hui."}},  # no reference
]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, ml_texts, code_texts):
    """Two tokenizers of different sizes, a corpus in three files, the aligned set, and one evaluation run."""
    root = tmp_path_factory.mktemp("evaltok")
    small, large = root / "small.json", root / "large.json"
    train_byte_level_bpe(ml_texts + code_texts, 600).save(str(small))
    train_byte_level_bpe(ml_texts + code_texts, 1500).save(str(large))
    files = {
        str(root / "ml1.jsonl"): ml_texts[:300],
        str(root / "ml2.jsonl"): ml_texts[-300:],
        str(root / "code.jsonl"): code_texts[:20],
    }
    for path, texts in files.items():
        write_jsonl(path, [{"id": i, "text": t} for i, t in enumerate(texts)])
    write_jsonl(root / "parallel.jsonl", PARALLEL)
    cfg = EvalConfig(tokenizers=[str(small), str(large)], inputs=[str(root / "ml*.jsonl"), str(root / "code.jsonl")],
                     output=str(root / "report"), parallel=[str(root / "parallel.jsonl")])
    report = run(cfg)
    return {"root": root, "tokenizers": [str(small), str(large)], "files": files, "report": report, "cfg": cfg}


def _direct(path: str, texts: list[str]) -> tuple[int, int, int, int, np.ndarray]:
    """Bytes, characters, words, tokens and id counts computed with the HF tokenizer directly."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(path)
    ids = [tok.encode(t, add_special_tokens=False).ids for t in texts]
    counts = np.bincount(np.concatenate([np.asarray(i, dtype=np.int64) for i in ids]),
                         minlength=tok.get_vocab_size())
    return (sum(len(t.encode("utf-8")) for t in texts), sum(len(t) for t in texts),
            sum(len(t.split()) for t in texts), sum(len(i) for i in ids), counts)


def test_compression_matches_direct_recomputation(setup):
    rep = setup["report"]
    all_texts = [t for texts in setup["files"].values() for t in texts]
    assert [t["name"] for t in rep["tokenizers"]] == ["small", "large"]
    for name, path in zip(("small", "large"), setup["tokenizers"]):
        nbytes, chars, words, tokens, _ = _direct(path, all_texts)
        s = rep["corpus"]["groups"]["all"][name]
        assert (s["documents"], s["bytes"], s["characters"], s["words"], s["tokens"]) == (
            len(all_texts), nbytes, chars, words, tokens)
        assert s["bytes_per_token"] == pytest.approx(nbytes / tokens)
        assert s["chars_per_token"] == pytest.approx(chars / tokens)
        assert s["fertility"] == pytest.approx(tokens / words)
        for src, texts in setup["files"].items():  # per source file
            nb, _, w, tk, _ = _direct(path, texts)
            g = rep["corpus"]["groups"][f"source:{src}"][name]
            assert (g["documents"], g["bytes_per_token"], g["fertility"]) == (
                len(texts), pytest.approx(nb / tk), pytest.approx(tk / w))


def test_nsl_and_languages(setup):
    rep = setup["report"]
    groups = rep["corpus"]["groups"]
    for g, per in groups.items():
        assert per["small"]["nsl"] == 1.0, g
        assert per["large"]["nsl"] == pytest.approx(per["large"]["tokens"] / per["small"]["tokens"])
    assert groups["all"]["large"]["nsl"] < 1.0  # the larger vocabulary compresses better
    all_texts = [t for texts in setup["files"].values() for t in texts]
    langs = [lang for lang, _ in LanguageIdentifier().identify_batch(all_texts)]
    lang_groups = {g[5:]: per["small"]["documents"] for g, per in groups.items() if g.startswith("lang:")}
    assert lang_groups == {lang: langs.count(lang) for lang in set(langs)}
    en = [t for t, lang in zip(all_texts, langs) if lang == "en"]
    nb, _, _, tk, _ = _direct(setup["tokenizers"][1], en)
    assert groups["lang:en"]["large"]["bytes_per_token"] == pytest.approx(nb / tk)


def test_vocabulary_utilisation_matches_direct_count(setup):
    rep = setup["report"]
    all_texts = [t for texts in setup["files"].values() for t in texts]
    for name, path in zip(("small", "large"), setup["tokenizers"]):
        info = load_tokenizer(name, path)
        counts = _direct(path, all_texts)[4]
        non_special = info.non_special_ids()
        produced = sum(1 for i in non_special if counts[i] > 0)
        v = rep["vocabulary"][name]
        assert (v["non_special"], v["produced"], v["never_produced"]) == (
            len(non_special), produced, len(non_special) - produced)
        assert v["utilisation"] == pytest.approx(produced / len(non_special))
        assert sum(v["length_histogram"]["corpus"]) == counts.sum()
        assert sum(v["length_histogram"]["vocab"]) == len(non_special)
        for i, _ in v["never_produced_sample"]:
            assert counts[i] == 0


def test_parity_premium_matches_direct_computation(setup):
    from tokenizers import Tokenizer

    par = setup["report"]["parity"]
    assert par["reference"] == "en" and par["records"] == len(PARALLEL)
    assert sorted(par["languages"]) == ["de", "fr", "ru"]
    for name, path in zip(("small", "large"), setup["tokenizers"]):
        tok = Tokenizer.from_file(path)
        n = lambda s: len(tok.encode(s, add_special_tokens=False).ids)  # noqa: E731
        for lang in ("de", "fr", "ru"):
            pairs = [(r["texts"][lang], r["texts"]["en"]) for r in PARALLEL if lang in r["texts"] and "en" in
                     r["texts"]]
            got = par["languages"][lang][name]
            assert got["records"] == len(pairs)
            assert got["premium"] == pytest.approx(sum(n(a) for a, _ in pairs) / sum(n(b) for _, b in pairs))
            assert got["mean_ratio"] == pytest.approx(sum(n(a) / n(b) for a, b in pairs) / len(pairs))
    assert par["languages"]["ru"]["small"]["premium"] > 1.0  # Cyrillic costs more tokens than English here


def _crafted_tokenizer(path: Path) -> str:
    """Byte-level BPE: the 256 byte tokens, "ab" (with its merge), "xyz" (no merges: unreachable), one special."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(alphabet)}
    vocab["ab"] = len(vocab)
    vocab["xyz"] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[("a", "b")]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken("<|endoftext|>", special=True)])
    tok.save(str(path))
    return str(path)


def test_magikarp_and_qtok_on_a_crafted_tokenizer(tmp_path):
    info = load_tokenizer("crafted", _crafted_tokenizer(tmp_path / "crafted.json"))
    assert info.byte_level and info.vocab_size == 259 and len(info.special_ids) == 1
    m = magikarp(info)
    xyz = info.tokenizer.token_to_id("xyz")
    assert m["checked"] == 258
    assert m["partial_utf8"] == 128  # the bytes 0x80..0xFF alone
    assert m["round_trip_failures"] == 129  # those, and "xyz" (re-encodes as x, y, z)
    assert m["unreachable"] == 1 and m["samples"]["unreachable"] == [[xyz, "xyz"]]
    assert [xyz, "xyz"] in m["samples"]["round_trip_failures"]
    q = qtok(info)
    assert q["classes"]["special"] == 1 and q["classes"]["partial_utf8"] == 128
    assert q["classes"]["alphabetic"] == 52 + 2  # a-z, A-Z, "ab", "xyz"
    assert q["classes"]["digits"] == 10
    assert q["scripts"] == {"LATIN": 54}
    assert sum(q["classes"].values()) == 259


def test_tokenizer_names_are_unique():
    assert tokenizer_names(["a/tok.json", "b/tok.json", "c.json", "c.json"]) == ["a/tok", "b/tok", "c#1", "c#2"]


def test_report_files_are_self_contained(setup):
    out = Path(setup["cfg"].output)
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "<svg" in html and "http://" not in html and "https://" not in html and "<script" not in html
    assert "Parity premium" in html and "Magikarp" in html
    text = (out / "report.json").read_text(encoding="utf-8")
    assert json.loads(text) == json.loads(json.dumps(setup["report"]))
    assert json.dumps(json.loads(text), indent=1, ensure_ascii=False) + "\n" == text  # stable order, round-trips


def test_report_renders_in_headless_chromium(setup, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no chromium on PATH")
    png = tmp_path / "report.png"
    html = Path(setup["cfg"].output) / "report.html"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={png}",
                    "--window-size=1200,2000", html.resolve().as_uri()], check=True, capture_output=True, timeout=60)
    assert png.exists() and png.stat().st_size > 10_000


def test_cli_writes_report_and_refuses_to_overwrite(setup, tmp_path, capsys):
    small, large = setup["tokenizers"]
    src = next(iter(setup["files"]))
    argv = ["eval-tokenizer", "--tokenizer", small, "--tokenizer", large, "--input", src,
            "--output", str(tmp_path / "r"), "--max-bytes", "5000"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "bytes/tok" in err and "small" in err and "large" in err
    rep = json.loads((tmp_path / "r" / "report.json").read_text())
    assert rep["parity"] is None and 0 < rep["corpus"]["groups"]["all"]["small"]["bytes"] <= 5000
    assert main(argv) == 2
    assert "--output" in capsys.readouterr().err
    assert main(argv + ["--overwrite"]) == 0
    assert main(["eval-tokenizer", "-t", str(tmp_path / "missing.json"), "-i", src, "-o", str(tmp_path / "m")]) == 2
    assert "--tokenizer" in capsys.readouterr().err


def test_workers_report_progress_for_the_live_display(tmp_path, tokenizer_path, ml_texts):
    """eval-tokenizer's workers write the progress side channel the terminal display sums."""
    from pipelines.eval_tokenizer import EvalConfig, run
    from transforms.report.progress import read_progress

    texts = ml_texts[:300]
    path = write_jsonl(tmp_path / "a.jsonl", [{"id": str(i), "text": t} for i, t in enumerate(texts)])
    progress = tmp_path / "progress"
    progress.mkdir()
    run(EvalConfig(tokenizers=[tokenizer_path], inputs=[path], output=str(tmp_path / "out")), [],
        progress_dir=str(progress))
    seen = read_progress(str(progress))
    assert seen["docs"] == seen["records"] == len(texts) and seen["bytes"] == (tmp_path / "a.jsonl").stat().st_size
