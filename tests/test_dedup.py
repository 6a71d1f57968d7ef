"""Dedup cores: exact keys, exact modular arithmetic, MinHash finding planted near duplicates but not distinct texts."""

from __future__ import annotations

import random

import numpy as np

from schemas.manifest import EXACT_DUPLICATE, NEAR_DUPLICATE
from transforms.dedup.keys import MinHasher, clusters, exact_key, jaccard, make_ref, resolve_duplicates, split_ref
from transforms.recipe.recipes import MinHash


def test_exact_key_normalises_unicode_and_whitespace_only():
    assert exact_key("Caf\u00e9  au\n lait ") == exact_key("Cafe\u0301 au lait")
    assert exact_key("Hello world") != exact_key("hello world")
    assert len(exact_key("x")) == 16 and exact_key("\ud800 lone") == exact_key("\ud800  lone")


def _edit(text: str, rng: random.Random, fraction: float) -> str:
    """A copy with about ``fraction`` of its words replaced, dropped or duplicated."""
    words = text.split()
    out = []
    for w in words:
        r = rng.random()
        if r < fraction / 3:
            continue
        out.append(f"w{rng.randrange(10**6)}" if r < 2 * fraction / 3 else w)
        if fraction * 2 / 3 <= r < fraction:
            out.append(w)
    if out == words:  # at least one edit: an edited copy is never an exact copy
        out[len(out) // 2] = f"w{rng.randrange(10**6)}"
    return " ".join(out)


def test_planted_duplicates_are_found_and_distinct_documents_are_not(ml_texts):
    rng = random.Random(7)
    candidates = ["\n".join(ml_texts[i:i + 12]) for i in range(0, 3600, 12)]  # multi-line documents
    base: list[str] = []
    for t in candidates:  # the corpus repeats some conversations: keep only texts unlike every earlier one
        if len(t.split()) >= 60 and all(jaccard(t, b, 5) < 0.3 for b in base):
            base.append(t)
    base = base[:120]
    assert len(base) >= 80
    docs = {f"d{i:04d}": t for i, t in enumerate(base)}
    planted = {}
    for i in range(0, len(base), 4):  # every 4th document gets an exact copy and a lightly edited copy
        docs[f"x{i:04d}"] = base[i]
        docs[f"e{i:04d}"] = _edit(base[i], rng, 0.015)  # Jaccard about 0.9 with the original
        planted[f"x{i:04d}"] = planted[f"e{i:04d}"] = f"d{i:04d}"
    hasher = MinHasher(MinHash(ngram=5, bands=14, rows=8))
    groups: dict[bytes, list[str]] = {}
    for doc_id, text in docs.items():
        for key in hasher.band_keys(text):
            groups.setdefault(key, []).append(doc_id)
    found = clusters(groups.values())
    assert found == planted, {k: v for k, v in found.items() if planted.get(k) != v}
    for dup, rep in planted.items():
        assert jaccard(docs[dup], docs[rep], 5) > 0.8
    exact_groups: dict[bytes, list[str]] = {}
    for doc_id, text in docs.items():
        exact_groups.setdefault(exact_key(text), []).append(doc_id)
    assert clusters(exact_groups.values()) == {k: v for k, v in planted.items() if k.startswith("x")}


def test_signatures_are_deterministic_and_estimate_jaccard(ml_texts):
    a = " ".join(ml_texts[:80])
    b = _edit(a, random.Random(3), 0.3)
    h1, h2 = MinHasher(MinHash(5, 20, 10, seed=3)), MinHasher(MinHash(5, 20, 10, seed=3))
    s1, s2 = h1.signature(a), h2.signature(b)
    assert np.array_equal(s1, MinHasher(MinHash(5, 20, 10, seed=3)).signature(a))
    assert abs(float(np.mean(s1 == s2)) - jaccard(a, b, 5)) < 0.1
    assert h1.band_keys("") == [] and h1.band_keys("!!! ...") == []
    assert len(h1.band_keys("two words")) == 20  # shorter than n words: one shingle of all words


def test_clusters_join_chains_and_pick_the_smallest_id():
    assert clusters([["c", "b"], ["b", "a"], ["x", "y"], ["z"]]) == {"b": "a", "c": "a", "y": "x"}
    assert clusters([["d", "e"], ["a", "e"]]) == {"d": "a", "e": "a"}


def test_signature_is_the_same_whatever_the_block_size(ml_texts, monkeypatch):
    import transforms.dedup.keys as dedup

    text = " ".join(ml_texts[:1500])  # thousands of shingles: more than one block
    hasher = MinHasher(MinHash())
    assert hasher.shingles(text).size > dedup._SHINGLE_CHUNK
    whole = hasher.signature(text)
    monkeypatch.setattr(dedup, "_SHINGLE_CHUNK", 7)
    assert np.array_equal(hasher.signature(text), whole)
    assert whole.max() < 2**32


def test_refs_order_documents_as_read():
    refs = [make_ref(s, o) for s, o in ((0, 0), (0, 5), (0, 2**32 - 1), (1, 0), (7, 3))]
    assert refs == sorted(refs) and [split_ref(r) for r in refs][-1] == (7, 3)


def test_resolution_keeps_the_first_read_and_names_it():
    a, b, c, d, e = (make_ref(0, 0), "A"), (make_ref(0, 1), "B"), (make_ref(1, 0), "C"), (make_ref(2, 0), "D"), \
        (make_ref(2, 1), "E")
    exact = [[c, a], [e, d]]  # C is an exact copy of A; E of D
    near = [[b, a, c], [d, e]]  # B is near A (and C, which is A); D and E are near each other
    got = resolve_duplicates(exact, near)
    assert got == {b[0]: (NEAR_DUPLICATE, "A"), c[0]: (EXACT_DUPLICATE, "A"), e[0]: (EXACT_DUPLICATE, "D")}
    # an exact copy of a near duplicate names the kept representative, as a near duplicate of it
    assert resolve_duplicates([[c, b]], [[a, b]]) == {b[0]: (NEAR_DUPLICATE, "A"), c[0]: (NEAR_DUPLICATE, "A")}
    assert resolve_duplicates([], []) == {}


def test_word_hashes_are_the_simplified_words(ml_texts, code_texts):
    from transforms.dedup.keys import simplified_words, word_hashes

    seen: dict[int, str] = {}
    for text in ml_texts[:3000] + code_texts[:20] + ["", "!!! ...", "ǅungla ﬁne Straße İstanbul 𝔘𝔫𝔦 x_y 12"]:
        words, hashes = simplified_words(text), word_hashes(text).tolist()
        assert len(words) == len(hashes)
        for w, h in zip(words, hashes):
            assert seen.setdefault(h, w) == w  # one word per hash (and the same hash in every text)
    assert len(seen) > 5000


def test_exact_groups_resolved_in_place_equal_the_global_resolution():
    """Exact-only dedup resolves each group where it is; the result equals resolve_duplicates on all groups."""
    from transforms.dedup.steps import exact_group_duplicates

    rng = random.Random(5)
    groups = []
    refs = list(range(400))
    rng.shuffle(refs)
    for i in range(0, 400, 7):
        members = [(make_ref(r % 5, r), f"id{r}") for r in refs[i:i + rng.randint(2, 7)]]
        groups.append(members + members[:1])  # a document may repeat its key within a group
    expected: dict[int, list] = {}
    for ref, (reason, kept) in sorted(resolve_duplicates(groups, []).items()):
        expected.setdefault(split_ref(ref)[0], []).append((split_ref(ref)[1], reason, kept))
    found: dict[int, list] = {}
    for group in groups:
        for stream, dup in exact_group_duplicates(("exact", group)):
            found.setdefault(stream, []).append(dup)
    assert {s: sorted(d) for s, d in found.items()} == expected


def test_spread_clusters_equal_the_one_place_resolution():
    """MinHash clusters joined over the workers (label rounds, then a union-find of what is left) give exactly the
    one-place result, also for chains longer than the rounds can settle."""
    import apache_beam as beam
    from apache_beam.testing.util import assert_that, equal_to

    from transforms.dedup.steps import LABEL_ROUNDS, SpreadClusters, duplicates_by_stream

    rng = random.Random(9)
    ref = lambda i: make_ref(i % 3, i)  # noqa: E731
    exact = [[(ref(i), f"id{i}") for i in rng.sample(range(300), rng.randint(2, 4))] for _ in range(25)]
    near = [[(ref(i), f"id{i}") for i in rng.sample(range(300), rng.randint(2, 3))] for _ in range(60)]
    chain = [[(ref(400 + k), f"id{400 + k}"), (ref(401 + k), f"id{401 + k}")] for k in range(4 * LABEL_ROUNDS)]
    chain.reverse()  # the smallest label has the longest way to go
    near += chain
    seen: set[int] = set()  # a document has one exact key: keep the exact groups disjoint
    exact = [g for g in exact if not (seen & {r for r, _ in g}) and not seen.update(r for r, _ in g)]
    groups = [("exact", g) for g in exact] + [("near", g) for g in near]
    expected = list(duplicates_by_stream(groups))
    assert sum(len(d) for _, d in expected) > 100
    with beam.Pipeline(runner="FnApiRunner") as p:
        found = ((p | "E" >> beam.Create([("exact", g) for g in exact]),
                  p | "N" >> beam.Create([("near", g) for g in near])) | SpreadClusters())
        assert_that(found, equal_to(expected))
