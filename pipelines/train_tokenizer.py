"""``tokenmill train-tokenizer``: corpus → deterministic bounded sample (Beam) → byte-level BPE → tokenizer.json + card.

    files ─► SampleCorpus (pass 1: (group, hash, bytes) ─► per-group hash thresholds; pass 2: documents under
             their group's threshold) ─► sample parts
    sample parts (in input order) ─► BpeTrainer (preset pretokenizer, digit rule, normalisation) ─► tokenizer.json
    [--superbpe-transition T: BpeTrainer to T tokens ─► sample parts ─► CountChunks (stage-2 chunks as stage-1
     token sequences, summed per distinct chunk) ─► chunk counts ─► stage-2 merges (transforms.tokenize.superbpe) to the
     full size]

The card (``<output>.card.json``: inputs, sample per group, shares, recipe, vocabulary size, timings) is written
after the tokenizer.
"""

from __future__ import annotations

import json
import posixpath
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import apache_beam as beam
import fsspec

from pipelines import tokenmill_version
from transforms.tokenize.sampling import BALANCES, SampleCorpus
from transforms.read.sources import expand_inputs
from transforms.tokenize.superbpe import BOUNDARIES, CountChunks, read_chunk_counts, sample_texts, spanning_tokens, superbpe
from transforms.tokenize.training import END_OF_TEXT, PAD, TokenizerRecipe, train_tokenizer
from transforms.errors import TokenmillError

CARD_FORMAT = "tokenmill.tokenizer-card/1"


class TokenizerTrainingError(TokenmillError, ValueError):
    """A train-tokenizer option or input that cannot be used."""


@dataclass
class TrainTokenizerConfig:
    """The train-tokenizer job as the user configured it."""

    inputs: list[str]
    output: str
    vocab_size: int
    pretokenizer: str = "gpt4"
    digits: str = "none"
    normalization: str = "none"
    special_tokens: list[str] = field(default_factory=list)  # after <|endoftext|> and <|pad|>
    sample_bytes: int = 1 << 30
    balance: str = "none"
    seed: int = 0
    text_field: str = "text"
    input_format: str | None = None
    min_frequency: int = 2
    superbpe_transition: int | None = None  # SuperBPE: stage 1 stops at this many tokens, stage 2 spans words
    superbpe_boundaries: str = "punctuation"  # where stage 2 still cuts: punctuation (and newlines, digits) or newlines
    workers: int = 1  # local worker processes of the Beam steps (counting SuperBPE's chunks)
    progress: bool = False  # one line per stage on stderr as the run goes (the CLI's default on a terminal)
    overwrite: bool = False


def recipe_of(cfg: TrainTokenizerConfig) -> TokenizerRecipe:
    """The checked tokenizer recipe of a config."""
    specials = tuple(dict.fromkeys((END_OF_TEXT, PAD, *cfg.special_tokens)))
    recipe = TokenizerRecipe(cfg.vocab_size, cfg.pretokenizer, cfg.digits, cfg.normalization, specials,
                             cfg.min_frequency)
    try:
        recipe.check()
    except ValueError as exc:
        raise TokenizerTrainingError(str(exc)) from exc
    if cfg.balance not in BALANCES:
        raise TokenizerTrainingError(f"--balance {cfg.balance!r} is not one of {', '.join(BALANCES)}")
    if cfg.sample_bytes < 1:
        raise TokenizerTrainingError(f"--sample-bytes must be positive, got {cfg.sample_bytes}")
    if cfg.superbpe_boundaries not in BOUNDARIES:
        raise TokenizerTrainingError(f"--superbpe-boundaries {cfg.superbpe_boundaries!r} is not one of "
                                     f"{', '.join(BOUNDARIES)}")
    transition = cfg.superbpe_transition
    if transition is not None and not len(specials) + 256 <= transition < cfg.vocab_size:
        raise TokenizerTrainingError(f"--superbpe-transition must be between {len(specials) + 256} and "
                                     f"--vocab-size - 1 "
                                     f"({cfg.vocab_size - 1}), got {transition}")
    return recipe


def _stage(cfg: TrainTokenizerConfig, started: float, text: str) -> None:
    """One progress line on stderr (with the time since the run started), when the config asks for them."""
    if cfg.progress:
        import sys

        print(f"tokenmill: [{time.time() - started:6.1f}s] {text}", file=sys.stderr, flush=True)


def _superbpe(cfg: TrainTokenizerConfig, recipe: TokenizerRecipe, parts: list[dict[str, Any]], temp: str,
              beam_args: list[str], run_started: float) -> tuple[Any, dict[str, Any]]:
    """SuperBPE: stage 1 to the transition, the stage-2 chunk counts (Beam), stage 2's merges; the tokenizer and
    what the card records of it."""
    from pipelines.prepare import beam_options, local_runner

    started = time.time()
    _stage(cfg, run_started, f"SuperBPE stage 1: BPE to {cfg.superbpe_transition:,} tokens")
    stage1 = train_tokenizer(sample_texts(parts), replace(recipe, vocab_size=cfg.superbpe_transition))
    stage1_done = time.time()
    _stage(cfg, run_started, f"SuperBPE: counting the stage-2 chunks ({cfg.superbpe_boundaries} boundaries)")
    prefix = posixpath.join(temp, "chunks", "counts")
    with beam.Pipeline(runner=local_runner(beam_args, cfg.workers), options=beam_options(beam_args, cfg.workers)) as p:
        (p
         | "Parts" >> beam.Create(parts, reshuffle=False)
         | "CountChunks" >> CountChunks(stage1.to_str(), recipe.digits, cfg.superbpe_boundaries, prefix))
    counts = read_chunk_counts(prefix + "-*")
    counted = time.time()
    _stage(cfg, run_started, f"SuperBPE stage 2: merges over {len(counts):,} distinct chunks to "
                             f"{cfg.vocab_size:,} tokens")
    tok = superbpe(stage1, counts, cfg.vocab_size, recipe.digits, recipe.min_frequency, cfg.superbpe_boundaries)
    info = {
        "transition": cfg.superbpe_transition,
        "boundaries": cfg.superbpe_boundaries,
        "stage2_merges": _merges(tok) - _merges(stage1),
        "distinct_chunks": len(counts),
        "chunk_occurrences": sum(counts.values()),
        "spanning_tokens": spanning_tokens(tok),
        "seconds": {"stage1": round(stage1_done - started, 2), "count_chunks": round(counted - stage1_done, 2),
                    "stage2": round(time.time() - counted, 2)},
    }
    return tok, info


def run(cfg: TrainTokenizerConfig, beam_args: list[str] | None = None) -> dict[str, Any]:
    """Sample, train, write the tokenizer and its card; returns the card."""
    from pipelines.prepare import beam_options, local_runner

    started = time.time()
    recipe = recipe_of(cfg)
    fs, path = fsspec.core.url_to_fs(cfg.output)
    card_url = cfg.output + ".card.json"
    if fs.exists(path) and not cfg.overwrite:
        raise TokenizerTrainingError(f"--output {cfg.output!r} exists; pass --overwrite to replace it")
    files = expand_inputs(cfg.inputs, cfg.input_format)
    temp = cfg.output + ".sample-tmp"
    if fs.exists(temp):
        fs.rm(temp, recursive=True)
    fs.makedirs(temp, exist_ok=True)
    summary_url = posixpath.join(temp, "summary.json")
    beam_args = list(beam_args or [])
    try:
        _stage(cfg, started, f"sampling up to {cfg.sample_bytes / 1e6:,.0f} MB from {len(files)} input file(s) "
                             f"({sum(f.size for f in files) / 1e6:,.1f} MB), balance {cfg.balance}")
        with beam.Pipeline(runner=local_runner(beam_args, cfg.workers),
                           options=beam_options(beam_args, cfg.workers)) as p:
            (p
             | "SampleCorpus" >> SampleCorpus(files, cfg.text_field, cfg.sample_bytes, cfg.balance, cfg.seed,
                                              posixpath.join(temp, "part"))
             | "WriteSummary" >> beam.Map(_write_json, summary_url))
        with fsspec.open(summary_url, "r") as fh:
            summary = json.load(fh)
        sampled = time.time()
        if not summary["parts"]:
            raise TokenizerTrainingError("the inputs hold no readable document to train on")
        _stage(cfg, started, f"sampled {sum(p['documents'] for p in summary['parts']):,} documents, "
                             f"{sum(p['bytes'] for p in summary['parts']) / 1e6:,.1f} MB")
        superbpe_info: dict[str, Any] | None = None
        try:
            if cfg.superbpe_transition is None:
                _stage(cfg, started, f"training BPE to {cfg.vocab_size:,} tokens")
                tok = train_tokenizer(sample_texts(summary["parts"]), recipe)
            else:  # stage 1 up to the transition; stage-2 chunks counted in Beam; stage 2 on them, across words
                tok, superbpe_info = _superbpe(cfg, recipe, summary["parts"], temp, beam_args, started)
        except ValueError as exc:
            raise TokenizerTrainingError(str(exc)) from exc
        trained = time.time()
        with fsspec.open(cfg.output + ".partial", "w", encoding="utf-8") as fh:
            fh.write(tok.to_str())
        fs.mv(path + ".partial", path)
    finally:
        if fs.exists(temp):
            fs.rm(temp, recursive=True)
    import tokenizers

    groups_sampled: dict[str, int] = {}
    for part in summary["parts"]:
        for g, n in part["groups"].items():
            groups_sampled[g] = groups_sampled.get(g, 0) + n
    card = {
        "format": CARD_FORMAT,
        "tokenmill_version": tokenmill_version(),
        "tokenizers_version": tokenizers.__version__,
        "tokenizer": cfg.output,
        "config": asdict(cfg),
        "inputs": [f.url for f in files],
        "recipe": asdict(recipe),
        "special_token_ids": {t: tok.token_to_id(t) for t in recipe.special_tokens},
        "vocab_size": tok.get_vocab_size(with_added_tokens=True),
        "sample": {
            "balance": cfg.balance, "budget_bytes": cfg.sample_bytes, "seed": cfg.seed,
            "documents": sum(p["documents"] for p in summary["parts"]),
            "bytes": sum(p["bytes"] for p in summary["parts"]),
            "corpus_bytes_per_group": summary["groups"], "shares": summary["shares"],
            "sampled_bytes_per_group": dict(sorted(groups_sampled.items())),
        },
        "superbpe": superbpe_info,
        "seconds": {"sample": round(sampled - started, 2), "train": round(trained - sampled, 2),
                    "total": round(time.time() - started, 2)},
    }
    with fsspec.open(card_url, "w", encoding="utf-8") as fh:
        json.dump(card, fh, indent=2, ensure_ascii=False)
    return card


def _merges(tok: Any) -> int:
    return len(json.loads(tok.to_str())["model"]["merges"])


def _write_json(value: Any, url: str) -> None:
    with fsspec.open(url, "w", encoding="utf-8") as fh:
        json.dump(value, fh)


def summary_table(card: dict[str, Any]) -> str:
    """The run's summary for the terminal."""
    s = card["sample"]
    rows = [
        ("tokenizer", card["tokenizer"]),
        ("vocabulary", f"{card['vocab_size']:,} tokens "
                       f"({', '.join(f'{t}={i}' for t, i in card['special_token_ids'].items())})"),
        ("pretokenizer", f"{card['recipe']['pretokenizer']}, digits {card['recipe']['digits']}, "
                         f"normalization {card['recipe']['normalization']}"
                         + (f", SuperBPE from {card['config']['superbpe_transition']:,} tokens"
                            if card["config"].get("superbpe_transition") else "")),
        ("sample", f"{s['documents']:,} documents, {s['bytes'] / 1e6:,.1f} MB "
                   f"(budget {s['budget_bytes'] / 1e6:,.1f} MB, "
                   f"balance {s['balance']}, seed {s['seed']})"),
        ("groups", f"{len(s['corpus_bytes_per_group'])}"),
        *([("superbpe", f"{sb['distinct_chunks']:,} distinct stage-2 chunks ({sb['chunk_occurrences']:,} in the "
                        f"sample), {sb['stage2_merges']:,} stage-2 merges, {sb['spanning_tokens']:,} tokens span "
                        f"words; stage 1 {sb['seconds']['stage1']} s, counting {sb['seconds']['count_chunks']} s, "
                        f"stage 2 {sb['seconds']['stage2']} s")] if (sb := card.get("superbpe")) else []),
        ("time", f"sample {card['seconds']['sample']} s, train {card['seconds']['train']} s"),
        ("card", card["tokenizer"] + ".card.json"),
    ]
    width = max(len(k) for k, _ in rows)
    line = "-" * (width + 2 + max(len(v) for _, v in rows))
    return "\n".join([line] + [f"{k:<{width}}  {v}" for k, v in rows] + [line])
