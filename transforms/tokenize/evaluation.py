"""Tokenizer evaluation cores: corpus statistics, Magikarp-style checks, Qtok-style vocabulary classes, parity premium.

Pure functions and small accumulators; ``pipelines.eval_tokenizer`` runs the corpus pass as a Beam pipeline.

``report.json`` (keys in this order; every ratio is null when its denominator is 0)::

    {"tokenmill_eval_tokenizer": 1,
     "options": {"inputs": [...], "text_field": ..., "max_bytes": N|null, "parallel": [...]|null,
                 "reference_lang": ...},
     "tokenizers": [{"name", "path", "vocab_size", "special_tokens", "byte_level"}],   # the first is NSL's baseline
     "corpus": {"groups": {GROUP: {TOKENIZER: STATS}}},  # GROUP: "all", "source:<file>", "lang:<code>"
         # STATS: documents, bytes (UTF-8), characters, words (whitespace-split), tokens, bytes_per_token,
         #        chars_per_token, fertility (tokens/word), nsl (tokens / tokens of the first tokenizer, same texts)
     "vocabulary": {TOKENIZER: {"non_special": N, "produced": N, "utilisation": produced/non_special,
                                "never_produced": N, "never_produced_sample": [[id, token text], ...],
                                "length_histogram": {"bins": ["1", ..., "16+"], "corpus": [...], "vocab": [...]}}},
         # length = token bytes; "corpus": weighted by corpus frequency; "vocab": one per non-special token
     "magikarp": {TOKENIZER: {"checked": N, "round_trip_failures": N, "partial_utf8": N, "unreachable": N,
                              "samples": {"round_trip_failures"|"partial_utf8"|"unreachable": [[id, text], ...]}}},
     "qtok": {TOKENIZER: {"classes": {CLASS: N}, "position": {"initial_alphabetic", "initial_other",
                          "internal_alphabetic", "internal_other": N}, "single_character": N,
                          "scripts": {SCRIPT: N}}},
     "parity": null | {"reference": LANG, "records": N,
                       "languages": {LANG: {TOKENIZER: {"records": N, "tokens": N, "reference_tokens": N,
                                                         "premium": N, "mean_ratio": N}}}}}

Magikarp checks (tokenizer only, every non-special id ``i``; ``b(i)`` its bytes, ``s = decode([i])``):
round-trip failure: ``encode(s) != [i]``; partial UTF-8: ``b(i)`` is not valid UTF-8 on its own (byte-level BPE
tokens are mapped back through the GPT-2 byte alphabet; ``<0xNN>`` byte-fallback pieces are that byte);
unreachable: ``b(i)`` is valid UTF-8 and ``i`` occurs in none of ``encode(t)``, ``encode(" " + t)``,
``encode("a" + t + "a")`` where ``t = b(i).decode()`` (alone, after a space, inside a word). Samples are the
first 20 ids (round-trip failures of valid-UTF-8 tokens before partial-UTF-8 ones).

Qtok classes (one per token): special, partial_utf8, whitespace, digits, punctuation (Unicode P*/S*),
alphabetic (letters and marks, after a leading space), mixed. Position: a token starting with a space followed
by a non-space is word-initial, else word-internal, crossed with alphabetic/other. Script: the first word of the
Unicode name of an alphabetic token's first letter (LATIN, CYRILLIC, ARABIC, ...; CJK is reported as HAN).
"""

from __future__ import annotations

import json
import os
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from transforms.read.sources import InputError

STAT_FIELDS = ("documents", "bytes", "characters", "words", "tokens")
LENGTH_BINS = 16  # token lengths 1..15 bytes, then 16+
SAMPLE = 20
QTOK_CLASSES = ("special", "partial_utf8", "whitespace", "digits", "punctuation", "alphabetic", "mixed")
ALL = "all"


class TokenizerEvalError(InputError):
    """A problem with eval-tokenizer's options or files, found before any work starts (a user error, like --input's)."""


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte → printable character map (the byte-level BPE alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


UNICODE_TO_BYTE = {c: b for b, c in bytes_to_unicode().items()}


def _has_type(node: Any, name: str) -> bool:
    if isinstance(node, dict):
        return node.get("type") == name or any(_has_type(v, name) for v in node.values())
    if isinstance(node, list):
        return any(_has_type(v, name) for v in node)
    return False


@dataclass
class TokenizerInfo:
    """A loaded tokenizer and what the evaluation needs about its vocabulary."""

    name: str
    path: str
    json_text: str
    tokenizer: Any
    vocab_size: int
    special_ids: frozenset[int]
    byte_level: bool
    token_bytes: list[bytes] = field(repr=False)

    def non_special_ids(self) -> list[int]:
        """Every id that is not a special token, in order."""
        return [i for i in range(self.vocab_size) if i not in self.special_ids]


def tokenizer_names(paths: Sequence[str]) -> list[str]:
    """File stems, made unique: duplicates get their parent directory (``dir/stem``), then ``#N``."""
    stems = [os.path.splitext(os.path.basename(p.rstrip("/")))[0] for p in paths]
    parents = [os.path.basename(os.path.dirname(p.rstrip("/"))) for p in paths]
    names = [f"{d}/{s}" if stems.count(s) > 1 and d else s for d, s in zip(parents, stems)]
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if names.count(n) == 1 else f"{n}#{seen[n]}")
    return out


def load_tokenizer(name: str, path: str, json_text: str | None = None) -> TokenizerInfo:
    """Load one HF ``tokenizer.json`` (local path or fsspec URL) with its vocabulary bytes."""
    from tokenizers import Tokenizer

    if json_text is None:
        import fsspec

        try:
            with fsspec.open(path, "r", encoding="utf-8") as fh:
                json_text = fh.read()
        except (OSError, ValueError) as exc:
            raise TokenizerEvalError(f"--tokenizer {path}: cannot read it ({exc})") from None
    try:
        tok = Tokenizer.from_str(json_text)
        cfg = json.loads(json_text)
    except Exception as exc:  # noqa: BLE001 - tokenizers raises plain Exception on bad JSON
        raise TokenizerEvalError(f"--tokenizer {path}: not a Hugging Face tokenizer.json ({exc})") from None
    vocab_size = tok.get_vocab_size(with_added_tokens=True)
    special = frozenset(i for i, t in tok.get_added_tokens_decoder().items() if t.special)
    byte_level = _has_type(cfg.get("decoder"), "ByteLevel") or _has_type(cfg.get("pre_tokenizer"), "ByteLevel")
    token_bytes = [_token_bytes(tok, i, byte_level) for i in range(vocab_size)]
    return TokenizerInfo(name, path, json_text, tok, vocab_size, special, byte_level, token_bytes)


def _token_bytes(tok: Any, i: int, byte_level: bool) -> bytes:
    """The bytes a token stands for (added tokens: their content)."""
    piece = tok.id_to_token(i)
    if piece is None:
        return b""
    if byte_level and all(c in UNICODE_TO_BYTE for c in piece):
        return bytes(UNICODE_TO_BYTE[c] for c in piece)
    if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):  # SentencePiece byte fallback
        try:
            return bytes([int(piece[3:5], 16)])
        except ValueError:
            pass
    return piece.replace("\u2581", " ").encode("utf-8")


# ---------------------------------------------------------------- corpus statistics


def text_stats(texts: Sequence[str]) -> np.ndarray:
    """Per text: [1, UTF-8 bytes, characters, whitespace words] as an int64 array of shape (n, 4)."""
    out = np.zeros((len(texts), 4), dtype=np.int64)
    for k, t in enumerate(texts):
        out[k] = (1, len(t.encode("utf-8")), len(t), len(t.split()))
    return out


def encode_lengths_and_counts(tok: Any, texts: Sequence[str], vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Token count per text and the bincount of every produced id (batch encoding, no special tokens added)."""
    encs = tok.encode_batch(list(texts), add_special_tokens=False)
    lengths = np.fromiter((len(e.ids) for e in encs), dtype=np.int64, count=len(encs))
    ids = [np.asarray(e.ids, dtype=np.int64) for e in encs]
    flat = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)
    return lengths, np.bincount(flat, minlength=vocab_size).astype(np.int64)[:vocab_size]


def group_keys(source: str, lang: str) -> tuple[str, str, str]:
    """The groups a document counts in: all, its source file, its language."""
    return ALL, f"source:{source}", f"lang:{lang}"


def _ratio(a: float, b: float) -> float | None:
    return float(a) / float(b) if b else None


def stats_entry(values: Sequence[int], baseline_tokens: int) -> dict[str, Any]:
    """One STATS record of report.json from [documents, bytes, characters, words, tokens]."""
    docs, nbytes, chars, words, tokens = (int(v) for v in values)
    return {
        "documents": docs, "bytes": nbytes, "characters": chars, "words": words, "tokens": tokens,
        "bytes_per_token": _ratio(nbytes, tokens), "chars_per_token": _ratio(chars, tokens),
        "fertility": _ratio(tokens, words), "nsl": _ratio(tokens, baseline_tokens),
    }


def corpus_section(names: Sequence[str], stats: dict[tuple[str, int], np.ndarray]) -> dict[str, Any]:
    """The ``corpus`` section from summed stats keyed by (group, tokenizer index)."""
    groups = sorted({g for g, _ in stats}, key=lambda g: (g != ALL, g))
    out: dict[str, Any] = {}
    for g in groups:
        base = stats.get((g, 0))
        base_tokens = int(base[4]) if base is not None else 0
        out[g] = {n: stats_entry(stats[(g, k)], base_tokens) for k, n in enumerate(names) if (g, k) in stats}
    return {"groups": out}


def length_bins(info: TokenizerInfo) -> np.ndarray:
    """Length-histogram bin of every id (bytes, 1..15, 16+ → 0..15; empty tokens in bin 0)."""
    return np.array([min(max(len(b), 1), LENGTH_BINS) - 1 for b in info.token_bytes], dtype=np.int64)


def _show(b: bytes) -> str:
    return b.decode("utf-8", errors="backslashreplace")


def vocabulary_section(info: TokenizerInfo, counts: np.ndarray) -> dict[str, Any]:
    """Utilisation, never-produced tokens and the token-length histogram of one tokenizer on the corpus."""
    ids = np.array(info.non_special_ids(), dtype=np.int64)
    counts = np.asarray(counts, dtype=np.int64)
    produced = int((counts[ids] > 0).sum()) if len(ids) else 0
    never = ids[counts[ids] == 0] if len(ids) else ids
    bins = length_bins(info)
    corpus_hist = np.bincount(bins, weights=counts, minlength=LENGTH_BINS)[:LENGTH_BINS]
    vocab_hist = np.bincount(bins[ids], minlength=LENGTH_BINS)[:LENGTH_BINS] if len(ids) else np.zeros(LENGTH_BINS)
    return {
        "non_special": int(len(ids)), "produced": produced, "utilisation": _ratio(produced, len(ids)),
        "never_produced": int(len(never)),
        "never_produced_sample": [[int(i), _show(info.token_bytes[i])] for i in never[:SAMPLE]],
        "length_histogram": {
            "bins": [str(k + 1) for k in range(LENGTH_BINS - 1)] + [f"{LENGTH_BINS}+"],
            "corpus": [int(x) for x in corpus_hist], "vocab": [int(x) for x in vocab_hist],
        },
    }


# ---------------------------------------------------------------- tokenizer-only checks


def magikarp(info: TokenizerInfo) -> dict[str, Any]:
    """Round-trip failures, partial-UTF-8 tokens and unreachable tokens of every non-special id (see module doc)."""
    tok = info.tokenizer
    ids = info.non_special_ids()
    decoded = [tok.decode([i], skip_special_tokens=False) for i in ids]
    encs = tok.encode_batch(decoded, add_special_tokens=False)
    failures = [i for i, e in zip(ids, encs) if e.ids != [i]]
    partial, valid = [], []
    for i in ids:
        try:
            valid.append((i, info.token_bytes[i].decode("utf-8")))
        except UnicodeDecodeError:
            partial.append(i)
    reached = set()
    if valid:
        for ctx in (lambda t: t, lambda t: " " + t, lambda t: "a" + t + "a"):
            texts = [ctx(t) for _, t in valid]
            for (i, _), e in zip(valid, tok.encode_batch(texts, add_special_tokens=False)):
                if i in e.ids:
                    reached.add(i)
    unreachable = [i for i, _ in valid if i not in reached]
    partial_set = set(partial)
    failures.sort(key=lambda i: (i in partial_set, i))  # the sample shows failures of whole-UTF-8 tokens first
    sample = lambda xs: [[int(i), _show(info.token_bytes[i])] for i in xs[:SAMPLE]]  # noqa: E731
    return {
        "checked": len(ids), "round_trip_failures": len(failures), "partial_utf8": len(partial),
        "unreachable": len(unreachable),
        "samples": {"round_trip_failures": sample(failures), "partial_utf8": sample(partial),
                    "unreachable": sample(unreachable)},
    }


def script_of(ch: str) -> str:
    """The script of a letter: the first word of its Unicode name (CJK → HAN), UNKNOWN without a name."""
    name = unicodedata.name(ch, "")
    if not name:
        return "UNKNOWN"
    first = name.split()[0]
    return "HAN" if first == "CJK" else first


def token_class(b: bytes, special: bool) -> str:
    """The Qtok class of one token's bytes (see module doc)."""
    if special:
        return "special"
    try:
        t = b.decode("utf-8")
    except UnicodeDecodeError:
        return "partial_utf8"
    if not t or t.isspace():
        return "whitespace"
    core = t[1:] if t.startswith(" ") and len(t) > 1 else t
    cats = [unicodedata.category(c) for c in core]
    if all(c == "Nd" for c in cats):
        return "digits"
    if all(c[0] in "PS" for c in cats):
        return "punctuation"
    if all(c[0] in "LM" for c in cats):
        return "alphabetic"
    return "mixed"


def qtok(info: TokenizerInfo) -> dict[str, Any]:
    """Qtok-style class counts, word-initial/internal positions, single characters and the alphabetic script mix."""
    classes = dict.fromkeys(QTOK_CLASSES, 0)
    position = dict.fromkeys(("initial_alphabetic", "initial_other", "internal_alphabetic", "internal_other"), 0)
    scripts: dict[str, int] = {}
    single = 0
    for i, b in enumerate(info.token_bytes):
        cls = token_class(b, i in info.special_ids)
        classes[cls] += 1
        if cls in ("special", "partial_utf8"):
            continue
        t = b.decode("utf-8")
        single += len(t) == 1
        if cls == "whitespace":
            continue
        initial = t.startswith(" ") and len(t) > 1 and not t[1].isspace()
        position[f"{'initial' if initial else 'internal'}_{'alphabetic' if cls == 'alphabetic' else 'other'}"] += 1
        if cls == "alphabetic":
            letter = next(c for c in t if unicodedata.category(c)[0] == "L") if any(
                unicodedata.category(c)[0] == "L" for c in t) else t.strip()[0]
            s = script_of(letter)
            scripts[s] = scripts.get(s, 0) + 1
    return {"classes": classes, "position": position, "single_character": single,
            "scripts": dict(sorted(scripts.items(), key=lambda kv: (-kv[1], kv[0])))}


# ---------------------------------------------------------------- parity premium


def read_parallel(paths: Iterable[str]) -> list[dict[str, str]]:
    """Aligned records from JSONL files: each line ``{"id": ..., "texts": {LANG: TEXT, ...}}``."""
    import fsspec

    records = []
    for path in paths:
        try:
            with fsspec.open(path, "r", encoding="utf-8") as fh:
                for n, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        rec = json.loads(line)
                        texts = rec["texts"]
                        if not isinstance(texts, dict) or not all(
                                isinstance(k, str) and isinstance(v, str) for k, v in texts.items()):
                            raise ValueError
                    except (ValueError, KeyError, TypeError):
                        raise TokenizerEvalError(
                            f"--parallel {path}:{n}: expected {{\"id\": ..., \"texts\": {{LANG: TEXT, ...}}}}"
                        ) from None
                    records.append(texts)
        except OSError as exc:
            raise TokenizerEvalError(f"--parallel {path}: cannot read it ({exc})") from None
    return records


def parity(infos: Sequence[TokenizerInfo], records: Sequence[dict[str, str]], reference: str) -> dict[str, Any]:
    """Parity premium per language vs ``reference``: sum tokens(L) / sum tokens(R) over records with both."""
    langs = sorted({lang for r in records for lang in r if lang != reference})
    out: dict[str, Any] = {}
    for lang in langs:
        pairs = [(r[lang], r[reference]) for r in records if lang in r and reference in r]
        per_tok = {}
        for info in infos:
            a = [len(e.ids) for e in info.tokenizer.encode_batch([p[0] for p in pairs], add_special_tokens=False)]
            b = [len(e.ids) for e in info.tokenizer.encode_batch([p[1] for p in pairs], add_special_tokens=False)]
            ratios = [x / y for x, y in zip(a, b) if y]
            per_tok[info.name] = {
                "records": len(pairs), "tokens": int(sum(a)), "reference_tokens": int(sum(b)),
                "premium": _ratio(sum(a), sum(b)), "mean_ratio": _ratio(sum(ratios), len(ratios)),
            }
        out[lang] = per_tok
    with_ref = sum(1 for r in records if reference in r)
    return {"reference": reference, "records": len(records), "records_with_reference": with_ref, "languages": out}


# ---------------------------------------------------------------- summary


def summary_table(report: dict[str, Any], output: str) -> str:
    """The stderr summary: one line per tokenizer over the whole corpus, then where the report is."""
    rows = [("tokenizer", "vocab", "bytes/tok", "chars/tok", "fertility", "NSL", "util", "rt-fail", "partial")]
    overall = report["corpus"]["groups"].get(ALL, {})
    fmt = lambda v, p=3: "-" if v is None else f"{v:.{p}f}"  # noqa: E731
    for t in report["tokenizers"]:
        s = overall.get(t["name"], {})
        v = report["vocabulary"].get(t["name"], {})
        m = report["magikarp"][t["name"]]
        rows.append((t["name"], f"{t['vocab_size']:,}", fmt(s.get("bytes_per_token")), fmt(s.get("chars_per_token")),
                     fmt(s.get("fertility")), fmt(s.get("nsl")), fmt(v.get("utilisation")),
                     str(m["round_trip_failures"]), str(m["partial_utf8"])))
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if k == 0 else c.rjust(w) for k, (c, w) in enumerate(zip(r, widths))) for r in rows]
    docs = overall.get(report["tokenizers"][0]["name"], {}).get("documents", 0) if report["tokenizers"] else 0
    lines.append(f"{docs:,} documents; report: {output.rstrip('/')}/report.html and report.json")
    return "\n".join(lines)
