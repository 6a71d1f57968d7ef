"""Tokenizers: load a HF ``tokenizer.json`` or a tiktoken rank file, pick a backend, encode batches to flat arrays.

The format of record is the file's own library (HF ``tokenizers`` for tokenizer.json, ``tiktoken`` for rank
files). gigatoken is the fast backend; with ``auto`` it is used for a stream only after it gave identical ids
on that stream's own first documents.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import posixpath
import threading
from dataclasses import dataclass
from typing import Any, Protocol

import fsspec
import numpy as np
import tokenizers
from schemas import manifest as m
from schemas.options import AUTO, BACKENDS, GIGATOKEN, HF, TIKTOKEN, TIKTOKEN_SCHEMES
from transforms.errors import TokenmillError


def _gigatoken() -> Any:
    """The gigatoken module, imported when a worker first loads it (0.2 s with awkward: not for commands that never
    tokenize, nor for --help); ImportError names why it is not importable."""
    try:
        import awkward  # noqa: F401  (gigatoken returns awkward arrays; it would import it at the first encode)
        import gigatoken
    except ImportError as exc:  # a dependency; auto then falls back to the reference
        raise ImportError(f"gigatoken is not importable here ({exc})") from exc
    return gigatoken

log = logging.getLogger(__name__)

EOS_CANDIDATES = ("<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>", "<|eos|>", "[EOS]", "<|end|>")
_GIGATOKEN_PRETOKENIZERS = {"r50k_base": "r50k", "p50k_base": "r50k", "cl100k_base": "cl100k", "o200k_base": "o200k"}
VERIFY_DOCS = 128
VERIFY_CHARS = 1000
VERIFY_TOTAL_CHARS = 64_000


class TokenizerError(TokenmillError, ValueError):
    """A tokenizer problem found before any work starts."""


@dataclass(frozen=True)
class TokenizerSpec:
    """What workers need to load the tokenizer, and what the manifest records about it."""

    path: str
    kind: str
    sha256: str
    vocab_size: int
    eos_id: int
    pad_id: int
    bos_id: int | None
    backend: str
    tiktoken_scheme: str | None = None

    def manifest(self) -> dict:
        """The manifest's tokenizer entry (backend is filled in from the run)."""
        return {
            m.T_PATH: self.path,
            m.T_FORMAT: self.kind,
            m.T_SHA256: self.sha256,
            m.T_VOCAB_SIZE: self.vocab_size,
            m.T_EOS_ID: self.eos_id,
            m.T_PAD_ID: self.pad_id,
            m.T_BOS_ID: self.bos_id,
            m.T_TIKTOKEN_SCHEME: self.tiktoken_scheme,
        }


class Encoder(Protocol):
    """Batch encoder: texts → (flat uint32 token ids, int64 length per text); no special tokens added."""

    name: str

    def encode_batch(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]: ...


def _read_bytes(path: str) -> bytes:
    try:
        with fsspec.open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError as exc:
        raise TokenizerError(f"--tokenizer {path!r}: file not found") from exc
    except (OSError, ValueError) as exc:
        raise TokenizerError(f"--tokenizer {path!r}: cannot read it ({exc})") from exc


def _is_tiktoken(path: str, data: bytes) -> bool:
    if path.endswith(".tiktoken"):
        return True
    first = data[:200].split(b"\n", 1)[0].split()
    return len(first) == 2 and first[1].isdigit() and not data.lstrip().startswith(b"{")


def parse_tiktoken_ranks(data: bytes, path: str) -> dict[bytes, int]:
    """A tiktoken rank file ('base64-token rank' per line) as {token bytes: rank}."""
    ranks: dict[bytes, int] = {}
    for n, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
        except ValueError as exc:
            raise TokenizerError(f"--tokenizer {path!r} line {n}: not a tiktoken rank line ({exc})") from exc
    return ranks


def tiktoken_definition(path: str, data: bytes, scheme: str | None) -> dict:
    """The tiktoken Encoding arguments for a rank file: official pattern and specials for the scheme."""
    import tiktoken_ext.openai_public as openai_public

    name = scheme or posixpath.basename(path).removesuffix(".tiktoken")
    if name not in TIKTOKEN_SCHEMES:
        raise TokenizerError(
            f"--tokenizer {path!r} is a tiktoken rank file, which carries no split pattern: pass "
            f"--tiktoken-scheme {'|'.join(TIKTOKEN_SCHEMES)}"
        )
    ranks = parse_tiktoken_ranks(data, path)
    # the official constructors hold the pattern and specials; give them our ranks instead of a download
    original = openai_public.load_tiktoken_bpe
    openai_public.load_tiktoken_bpe = lambda *args, **kwargs: ranks
    try:
        definition = openai_public.ENCODING_CONSTRUCTORS[name]()
    finally:
        openai_public.load_tiktoken_bpe = original
    if scheme and posixpath.basename(path).removesuffix(".tiktoken") != name:
        # a custom rank file with an official pattern: one end-of-text special right after the ranks
        definition["special_tokens"] = {"<|endoftext|>": max(ranks.values()) + 1}
    definition["name"] = f"tokenmill:{name}"
    definition.pop("explicit_n_vocab", None)
    return definition


def resolve_tokenizer(
    path: str,
    eos_token: str | None = None,
    bos_token: str | None = None,
    pad_token: str | None = None,
    backend: str = AUTO,
    tiktoken_scheme: str | None = None,
) -> TokenizerSpec:
    """Load and check the tokenizer once, before any work; raises TokenizerError with a clear message."""
    if backend not in BACKENDS:
        raise TokenizerError(f"--tokenizer-backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    data = _read_bytes(path)
    sha = hashlib.sha256(data).hexdigest()
    if _is_tiktoken(path, data):
        definition = tiktoken_definition(path, data, tiktoken_scheme)
        vocab = {**{k.decode("utf-8", "replace"): v for k, v in definition["mergeable_ranks"].items()}}
        vocab.update(definition["special_tokens"])
        specials = dict(definition["special_tokens"])
        vocab_size = max(vocab.values()) + 1
        kind = TIKTOKEN
        scheme = definition["name"].split(":", 1)[1]
        lookup = vocab.get
    else:
        try:
            tok = hf_tokenizer(data, sha)
        except Exception as exc:  # tokenizers raises plain Exception subclasses for bad JSON
            raise TokenizerError(
                f"--tokenizer {path!r} is neither a HF tokenizer.json nor a tiktoken rank file ({exc})"
            ) from exc
        specials = {t.content: i for i, t in tok.get_added_tokens_decoder().items() if t.special}
        vocab_size = tok.get_vocab_size(with_added_tokens=True)
        kind = HF
        scheme = None
        lookup = tok.token_to_id

    def token_id(option: str, token: str) -> int:
        """A token's id from its text, or from 'id:N'."""
        if token.startswith("id:") and token[3:].isdigit():
            tid = int(token[3:])
            if tid >= vocab_size:
                raise TokenizerError(f"{option} {token!r}: {path!r} has only {vocab_size} ids")
            return tid
        tid = lookup(token)
        if tid is None:
            raise TokenizerError(f"{option} {token!r} is not a token of {path!r} (give the token text, or id:N)")
        return int(tid)

    if eos_token is None:
        found = [c for c in EOS_CANDIDATES if c in specials]
        if not found:
            raise TokenizerError(
                f"{path!r} has no recognisable end-of-text token (looked for {', '.join(EOS_CANDIDATES)} among its "
                f"special tokens {sorted(specials)[:10]}): pass --eos-token"
            )
        eos_token = found[0]
    eos_id = token_id("--eos-token", eos_token)
    bos_id = token_id("--bos-token", bos_token) if bos_token is not None else None
    pad_id = token_id("--pad-token", pad_token) if pad_token is not None else eos_id
    return TokenizerSpec(path, kind, sha, vocab_size, eos_id, pad_id, bos_id, backend, scheme)


_HF_LOADED: dict[str, object] = {}
_HF_LOCK = threading.Lock()


def hf_tokenizer(data: bytes, sha256: str | None = None) -> object:
    """A HF ``tokenizers.Tokenizer`` from tokenizer.json bytes, parsed once per process (keyed by sha256)."""
    key = sha256 or hashlib.sha256(data).hexdigest()
    with _HF_LOCK:
        tok = _HF_LOADED.get(key)
        if tok is None:
            tok = _HF_LOADED[key] = tokenizers.Tokenizer.from_str(data.decode("utf-8"))
    return tok


class HFEncoder:
    """HF ``tokenizers`` (format of record for tokenizer.json)."""

    name = HF

    def __init__(self, data: bytes, sha256: str | None = None) -> None:
        self._tok = hf_tokenizer(data, sha256)
        self._encode = getattr(self._tok, "encode_batch_fast", self._tok.encode_batch)

    def encode_batch(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        encs = self._encode(texts, add_special_tokens=False)
        lens = np.fromiter((len(e.ids) for e in encs), np.int64, len(encs))
        flat = np.fromiter((i for e in encs for i in e.ids), np.uint32, int(lens.sum()))
        return flat, lens


class TiktokenEncoder:
    """tiktoken (format of record for rank files); special-token text is encoded as ordinary text."""

    name = TIKTOKEN

    def __init__(self, path: str, data: bytes, scheme: str | None) -> None:
        import tiktoken

        self._enc = tiktoken.Encoding(**tiktoken_definition(path, data, scheme))

    def encode_batch(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        encs = self._enc.encode_ordinary_batch(texts)
        lens = np.fromiter((len(e) for e in encs), np.int64, len(encs))
        flat = np.fromiter((i for e in encs for i in e), np.uint32, int(lens.sum()))
        return flat, lens


class GigatokenEncoder:
    """gigatoken (Rust, identical ids to HF on the tokenizers it supports, far faster)."""

    name = GIGATOKEN

    def __init__(self, path: str, data: bytes, kind: str, scheme: str | None) -> None:
        gigatoken = _gigatoken()
        if kind == TIKTOKEN:
            definition = tiktoken_definition(path, data, scheme)
            local = fsspec.open_local(f"simplecache::{path}") if "://" in path else path
            pretok = _GIGATOKEN_PRETOKENIZERS[definition["name"].split(":", 1)[1]]
            self._tok = gigatoken.Tokenizer.from_tiktoken(local, pretok, definition["special_tokens"])
        else:
            self._tok = gigatoken.Tokenizer.from_json(data)

    def encode_batch(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        layout = self._tok.encode_batch(texts, parallel=False).layout
        offsets = np.asarray(layout.offsets.data)
        content = np.asarray(layout.content.data)
        flat = content[offsets[0] : offsets[-1]].astype(np.uint32, copy=False)
        return flat, np.diff(offsets).astype(np.int64)


def load_reference(spec: TokenizerSpec, data: bytes) -> Encoder:
    """The format-of-record encoder for the spec's file."""
    if spec.kind == TIKTOKEN:
        return TiktokenEncoder(spec.path, data, spec.tiktoken_scheme)
    return HFEncoder(data, spec.sha256)


def load_file(spec: TokenizerSpec) -> bytes:
    """The tokenizer file's bytes, checked against the sha256 recorded at launch."""
    data = _read_bytes(spec.path)
    if hashlib.sha256(data).hexdigest() != spec.sha256:
        raise TokenizerError(f"--tokenizer {spec.path!r} changed while the job was running (sha256 differs)")
    return data


def verification_sample(texts: list[str]) -> list[str]:
    """The first documents (each cut to VERIFY_CHARS), up to VERIFY_DOCS of them and VERIFY_TOTAL_CHARS in all."""
    sample, total = [], 0
    for text in texts[:VERIFY_DOCS]:
        if total >= VERIFY_TOTAL_CHARS:
            break
        sample.append(text[:VERIFY_CHARS])
        total += len(sample[-1])
    return sample


def first_mismatch(fast: Encoder, reference: Encoder, texts: list[str]) -> str | None:
    """Compare two encoders on a verification sample of ``texts``; describe the first difference, or None."""
    sample = verification_sample(texts)
    if not sample:
        return None
    f_flat, f_lens = fast.encode_batch(sample)
    r_flat, r_lens = reference.encode_batch(sample)
    if np.array_equal(f_lens, r_lens) and np.array_equal(f_flat, r_flat):
        return None
    f_off = np.concatenate([[0], np.cumsum(f_lens)])
    r_off = np.concatenate([[0], np.cumsum(r_lens)])
    for i, text in enumerate(sample):
        a = f_flat[f_off[i] : f_off[i + 1]]
        b = r_flat[r_off[i] : r_off[i + 1]]
        if not np.array_equal(a, b):
            return f"document {i} of the sample ({text[:40]!r}...): {fast.name} {a[:8].tolist()} vs {b[:8].tolist()}"
    return "token counts differ"


def add_specials(flat: np.ndarray, lens: np.ndarray, eos_id: int, bos_id: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Append EOS to (and optionally prepend BOS before) every document; returns (flat, lens)."""
    extra = 1 + (bos_id is not None)
    new_lens = lens + extra
    ends = np.cumsum(new_lens)
    out = np.empty(int(ends[-1]) if ends.size else 0, np.uint32)
    special = np.zeros(out.size, bool)
    special[ends - 1] = True
    out[ends - 1] = eos_id
    if bos_id is not None:
        starts = ends - new_lens
        special[starts] = True
        out[starts] = bos_id
    out[~special] = flat
    return out, new_lens
