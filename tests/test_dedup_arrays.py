"""Dedup over key files (local runs): the same decisions as resolve_duplicates and as the shuffle path, on chains and
clusters that span streams; files read in chunks; ids with lone surrogates round-trip."""

from __future__ import annotations

import hashlib
import json
import random

import numpy as np
import pytest

import transforms.dedup.arrays as dedup_arrays
from pipelines.filter import FilterConfig
from pipelines.filter import run as run_filter
from schemas import manifest as m
from tests.conftest import write_jsonl
from tests.test_dedup import _edit
from transforms.dedup.keys import jaccard, make_ref, resolve_duplicates
from transforms.dedup.arrays import KeyFileWriter, compress, duplicates_in_files, join, shared_key_runs


def _key(size: int, *parts: object) -> bytes:
    return hashlib.blake2b(repr(parts).encode(), digest_size=size).digest()


def _random_streams(rng: random.Random, tmp_path, bands: int, exact: bool):
    """Key files of a few streams of documents with keys drawn from small pools (so keys are shared), and the
    groups resolve_duplicates would get from the shuffle path."""
    files, exact_groups, near_groups = [], {}, {}
    for s in range(rng.randint(1, 5)):
        writer = KeyFileWriter(str(tmp_path / f"s{s}"), s, bands)
        n = rng.randint(0, 120)
        ids = [f"d{s}/{o}" + ("\ud800" if o % 17 == 3 else "") for o in range(n)]
        keys = []
        for _ in range(n):
            e = _key(16, rng.randint(0, 60)) if exact else None
            b = [_key(12, band, rng.randint(0, 150)) for band in range(bands)] if rng.random() < 0.9 else []
            keys.append((e, b) if rng.random() < 0.97 else None)
        for start in range(0, n, 13):
            writer.add(ids[start:start + 13], keys[start:start + 13])
        for o, (doc_id, k) in enumerate(zip(ids, keys)):
            if k is not None:
                if k[0] is not None:
                    exact_groups.setdefault(k[0], []).append((make_ref(s, o), doc_id))
                for band_key in k[1]:
                    near_groups.setdefault(band_key, []).append((make_ref(s, o), doc_id))
        files.append(writer.close())
    shared = lambda groups: [g for g in groups.values() if len(g) > 1]  # noqa: E731 (what shared_key_groups keeps)
    return files, shared(exact_groups), shared(near_groups)


@pytest.mark.parametrize("seed", range(12))
def test_key_files_give_the_decisions_of_resolve_duplicates(tmp_path, monkeypatch, seed):
    monkeypatch.setattr(dedup_arrays, "_CHUNK_ROWS", 7)  # rows and ids read across many chunk edges
    rng = random.Random(seed)
    bands = [0, 1, 3, 14][seed % 4]
    files, exact_groups, near_groups = _random_streams(rng, tmp_path, bands, exact=bands == 0 or seed % 3 != 1)
    got = list(duplicates_in_files(files))
    want = resolve_duplicates(exact_groups, near_groups)
    assert {make_ref(s, o): (reason, kept) for s, found in got for o, reason, kept in found} == want
    assert [s for s, _ in got] == sorted({s for s, _ in got})
    assert all([o for o, _, _ in found] == sorted(o for o, _, _ in found) for _, found in got)


def test_chains_join_into_one_cluster_kept_by_the_first_read_document(tmp_path):
    # stream 0: a b c; stream 1: d e.  a~c (band), c=d (exact), d~e (band), b=e (exact): one cluster kept by a;
    # b shares its exact key with e, not with a: near. A document with no keys stays.
    x = lambda *p: _key(16, *p)  # noqa: E731
    y = lambda *p: [_key(12, *p)]  # noqa: E731
    w0 = KeyFileWriter(str(tmp_path / "s0"), 0, 1)
    w0.add(["a", "b", "c"], [(x("a"), y("ac")), (x("be"), y("b")), (x("cd"), y("ac"))])
    w1 = KeyFileWriter(str(tmp_path / "s1"), 1, 1)
    w1.add(["d", "e", "f"], [(x("cd"), y("de")), (x("be"), y("de")), None])
    w2 = KeyFileWriter(str(tmp_path / "s2"), 2, 1)  # a stream that kept nothing
    files = [w1.close(), w2.close(), w0.close()]
    assert files[1].keys_url is None
    assert list(duplicates_in_files(files)) == [
        (0, [(1, m.NEAR_DUPLICATE, "a"), (2, m.NEAR_DUPLICATE, "a")]),
        (1, [(0, m.NEAR_DUPLICATE, "a"), (1, m.NEAR_DUPLICATE, "a")]),
    ]
    w3 = KeyFileWriter(str(tmp_path / "s3"), 3, 1)
    w3.add(["g"], [(x("a"), [])])  # an exact copy of the kept document, without words: exact
    assert dict(duplicates_in_files(files + [w3.close()]))[3] == [(0, m.EXACT_DUPLICATE, "a")]


def test_shared_key_runs_pair_each_member_with_the_first():
    nodes = np.arange(6)
    hi = np.array([5, 1, 5, 2, 1, 5], np.uint64)
    lo = np.array([0, 0, 0, 0, 0, 1], np.uint64)  # node 5 differs from 0 and 2 in the low part only
    first, member = shared_key_runs(nodes, hi, lo)
    assert sorted(zip(first.tolist(), member.tolist())) == [(0, 2), (1, 4)]


def test_union_find_roots_are_the_smallest_of_each_component():
    parent = np.arange(10, dtype=np.int32)
    join(parent, np.array([8, 6, 4, 2], np.int32), np.array([9, 8, 6, 4], np.int32))  # a chain 2-4-6-8-9
    join(parent, np.array([1, 3], np.int32), np.array([7, 1], np.int32))
    compress(parent)
    assert parent.tolist() == [0, 1, 2, 1, 2, 5, 2, 1, 2, 2]


@pytest.fixture(scope="module")
def chained(ml_texts, tmp_path_factory):
    """Documents in near-duplicate chains (each an edit of the one before) read out of chain order, exact copies
    of chain members, over several files and small streams."""
    rng = random.Random(5)
    base: list[str] = []
    for i in range(0, 3600, 12):
        t = "\n".join(ml_texts[i:i + 12])
        if len(t.split()) >= 60 and all(jaccard(t, b, 5) < 0.3 for b in base):
            base.append(t)
    records = []
    for c, text in enumerate(base[:24]):
        chain = [text]
        for _ in range(3):
            edited = _edit(chain[-1], rng, 0.015)
            while jaccard(edited, chain[-1], 5) < 0.9:
                edited = _edit(chain[-1], rng, 0.015)
            chain.append(edited)
        members = [{"id": f"c{c:02d}-{k}", "text": t} for k, t in enumerate(chain)]
        members.append({"id": f"c{c:02d}-copy", "text": chain[1 + c % 3].replace(" ", "  ", 1)})
        records += members
    for c in range(24, 40):
        records.append({"id": f"solo{c:02d}", "text": base[c]})
    rng.shuffle(records)
    d = tmp_path_factory.mktemp("chained")
    third = len(records) // 3
    files = [write_jsonl(d / f"{k}.jsonl", records[k * third:(k + 1) * third if k < 2 else None]) for k in range(3)]
    recipe = d / "dedup.yaml"
    recipe.write_text("dedup: {exact: true, minhash: {ngram: 5, bands: 14, rows: 8}}\n")
    return files, str(recipe), records


def _filter(files, recipe, out):
    manifest = run_filter(FilterConfig(inputs=files, output=str(out), recipe=recipe, stream_bytes=20_000))
    tree = {str(p.relative_to(out)): p.read_bytes() for sub in ("documents", "rejected")
            for p in sorted((out / sub).rglob("*")) if p.is_file()}
    return manifest, tree


@pytest.mark.parametrize("spread", [False, True])
def test_key_files_and_the_shuffle_give_identical_outputs_on_chains(chained, tmp_path, monkeypatch, spread):
    import pipelines.stream_graph as prepare_module
    from transforms.dedup.steps import FindDuplicates

    files, recipe, records = chained
    local, local_tree = _filter(files, recipe, tmp_path / "local")
    assert local[m.K_STREAMS] > 3
    rejected = [json.loads(line) for name, data in local_tree.items() if name.startswith("rejected/")
                for line in data.splitlines()]
    reasons = {r["reason"] for r in rejected}
    assert reasons == {m.EXACT_DUPLICATE, m.NEAR_DUPLICATE}
    order = {r["id"]: i for i, r in enumerate(records)}
    # every chain is one cluster kept by its first-read member, which some members name without resembling it
    for r in rejected:
        assert r["duplicate_of"][:3] == r["id"][:3] and order[r["duplicate_of"]] < order[r["id"]]
    assert len({r["duplicate_of"] for r in rejected}) == 24 and len(rejected) == 24 * 4
    text = {r["id"]: r["text"] for r in records}
    assert any(jaccard(text[r["id"]], text[r["duplicate_of"]], 5) < 0.8 for r in rejected)
    made = []

    def shuffled(**kwargs):  # the shuffle path, its clusters joined in one place or over the workers
        made.append(FindDuplicates(near=kwargs["near"], spread=spread))
        return made[-1]

    monkeypatch.setattr(prepare_module, "is_local", lambda args: False)
    monkeypatch.setattr(prepare_module, "shares_files", lambda args, input_bytes: False)
    monkeypatch.setattr(prepare_module, "FindDuplicates", shuffled)
    remote, remote_tree = _filter(files, recipe, tmp_path / "shuffled")
    assert len(made) == 1
    assert remote_tree == local_tree
    for key in (m.K_COUNTS, m.K_DEDUP):
        assert remote[key] == local[key]


def _reference_band_keys(text: str, hasher) -> list[bytes]:
    """MinHasher.band_keys spelled out in Python integers, one word and one shingle at a time."""
    from transforms.dedup.keys import simplified_words

    mask, base = (1 << 64) - 1, 0x9E3779B97F4A7C15

    def mix(x: int) -> int:
        x ^= x >> 30
        x = (x * 0xBF58476D1CE4E5B9) & mask
        x ^= x >> 27
        x = (x * 0x94D049BB133111EB) & mask
        return x ^ (x >> 31)

    words = [mix(sum((ord(c) + 1) * pow(base, j, 1 << 64) for j, c in enumerate(w)) & mask)
             for w in simplified_words(text)]
    if not words:
        return []
    cfg = hasher.config
    k = min(cfg.ngram, len(words))
    shingles = []
    for i in range(len(words) - k + 1):
        h = 0
        for w in words[i:i + k]:
            h = (h * 0x100000001B3 + w) & mask
        shingles.append(mix(h) >> 32)
    sig = [min(((int(a) * s + int(b)) & mask) >> 32 for s in shingles) for a, b in zip(hasher._a, hasher._b)]
    raw = b"".join(v.to_bytes(4, "little") for v in sig)
    width = cfg.rows * 4
    return [hashlib.blake2b(raw[b * width:(b + 1) * width], digest_size=12, person=b.to_bytes(2, "little")).digest()
            for b in range(cfg.bands)]


@pytest.mark.parametrize("window", [None, 7])
def test_band_keys_are_the_spelled_out_minhash(ml_texts, monkeypatch, window):
    import transforms.dedup.keys as dedup
    from transforms.dedup.keys import MinHasher
    from transforms.recipe.recipes import MinHash

    if window is not None:  # long texts are hashed a window at a time, cut between words
        monkeypatch.setattr(dedup, "_WORD_WINDOW", window)
    rng = random.Random(3)
    alphabet = "ab\u00e9 \u00df\u03a3\u03c2\u4e2d\u0301!?,.\n_019\ufb01"
    texts = ml_texts[:40] + ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(60)]
    texts += ["", "!!! ...", "one two", " ".join(ml_texts[:200]), "x" * 20 + " tail", "ab " + "y" * 30, "z" * 25]
    for cfg in (MinHash(ngram=5, bands=14, rows=8), MinHash(ngram=2, bands=3, rows=2, seed=9)):
        hasher = MinHasher(cfg)
        for text in texts:
            assert hasher.band_keys(text) == _reference_band_keys(text, hasher), text


def test_long_texts_get_the_exact_key_of_the_word_join(monkeypatch):
    import unicodedata

    import transforms.dedup.keys as dedup

    texts = ["", " ", "  a \x1c b\u3000c\u2028\n", "Cafe\u0301  au\n lait ", "\ud800 lone\t\t"]
    want = [hashlib.blake2b(" ".join(unicodedata.normalize("NFC", t).split()).encode("utf-8", "surrogatepass"),
                            digest_size=16).digest() for t in texts]
    monkeypatch.setattr(dedup, "_LONG_TEXT", 0)  # every text takes the long-text path
    assert [dedup.exact_key(t) for t in texts] == want
