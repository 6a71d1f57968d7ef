"""Seeded, stable hashing: the same value for the same input on any machine, runner or Python (never ``hash()``)."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable

import numpy as np

_GAMMA = np.uint64(0x9E3779B97F4A7C15)  # splitmix64's increment (the golden ratio)
_MIX = (np.uint64(30), np.uint64(0xBF58476D1CE4E5B9), np.uint64(27), np.uint64(0x94D049BB133111EB), np.uint64(31))


def utf8(text: str) -> bytes:
    """A text's UTF-8 bytes, lone surrogates (from JSON ``\\ud800`` escapes) kept rather than raising."""
    return text.encode("utf-8", "surrogatepass")


def stable_hash64(*parts: object) -> int:
    """A 64-bit hash of the parts joined by NUL (BLAKE2b, big-endian): e.g. ``(seed, source, line, doc_id)``."""
    key = "\0".join(str(p) for p in parts)
    return int.from_bytes(hashlib.blake2b(utf8(key), digest_size=8).digest(), "big")


def stable_hashes64(texts: Iterable[str]) -> np.ndarray:
    """``stable_hash64(text)`` of each text as a uint64 array (one BLAKE2b call per text, no Python ints)."""
    blake2b = hashlib.blake2b
    digests = b"".join([blake2b(t.encode("utf-8", "surrogatepass"), digest_size=8).digest() for t in texts])
    return np.frombuffer(digests, ">u8").astype(np.uint64)


def unit_hash(text: str, seed: int) -> float:
    """A stable number in [0, 1) for a text under a seed (BLAKE2b keyed by the seed)."""
    digest = hashlib.blake2b(utf8(text), digest_size=8, key=seed.to_bytes(8, "little"))
    return int.from_bytes(digest.digest(), "little") / 2**64


def fingerprint(identity: Any) -> str:
    """sha256 hex of a JSON-able value in canonical form (sorted keys): what a result's inputs and settings are."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser of uint64 values: every input bit affects every output bit (so the top 32 bits are a
    good hash). Works in place on ``x`` (callers pass temporaries)."""
    s1, m1, s2, m2, s3 = _MIX
    with np.errstate(over="ignore"):
        x ^= x >> s1
        x *= m1
        x ^= x >> s2
        x *= m2
        x ^= x >> s3
    return x


def splitmix64(x: np.ndarray) -> np.ndarray:
    """One SplitMix64 step of uint64 values (a bijection that mixes every bit): seeds and places into keys."""
    with np.errstate(over="ignore"):
        return mix64(x + _GAMMA)
