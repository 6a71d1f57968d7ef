"""``tokenmill train-tokenizer``: corpus → deterministic bounded sample (Beam) → byte-level BPE → tokenizer.json + card.

    files ─► SampleCorpus (pass 1: (group, hash, bytes) ─► per-group hash thresholds; pass 2: documents under
             their group's threshold) ─► sample parts
    sample parts (in input order) ─► BpeTrainer (preset pretokenizer, digit rule, normalisation) ─► tokenizer.json
    [--superbpe-transition T: BpeTrainer to T tokens ─► sample parts ─► CountChunks (stage-2 chunks as stage-1
     token sequences, summed per distinct chunk) ─► chunk counts ─► stage-2 merges (transforms.tokenize.superbpe) to the
     full size]

The card (``<output>.card.json``: inputs, sample per group, shares, recipe, vocabulary size, timings) is written
after the tokenizer. Beam, fsspec and tokenizers are imported by the functions that run the job (``--help`` loads
none of them).
"""

from __future__ import annotations

import argparse
import json
import posixpath
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from pipelines import tokenmill_version
from pipelines.arguments import EPILOG_BEAM, byte_size, positive
from pipelines.runner import pipeline
from schemas.options import FORMATS
from transforms.errors import TokenmillError
from transforms.report.summary import key_value_table
from transforms.tokenize.training import (
    BALANCES,
    BOUNDARIES,
    DIGITS,
    END_OF_TEXT,
    NORMALIZATIONS,
    PAD,
    PRETOKENIZERS,
    TokenizerRecipe,
    train_tokenizer,
)

DESCRIPTION = ("Sample the inputs deterministically up to --sample-bytes (a Beam pipeline: bytes per group, then each "
               "document kept when its seeded hash is under its group's rate; --balance shares the budget equally "
               "among sources or languages), train a byte-level BPE tokenizer with the chosen pretokenizer, digit "
               "rule and normalisation, and write a standard tokenizer.json (exactly --vocab-size tokens; special "
               "tokens first: <|endoftext|> = 0, <|pad|> = 1, then yours) and a card (<output>.card.json) with the "
               "sample and settings.")
EPILOG = EPILOG_BEAM
BEAM = True
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


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The options of ``train-tokenizer``."""
    ap.add_argument("--input", "-i", action="append", required=True, metavar="PATH",
                    help="file, glob, directory or fsspec URL (repeatable)")
    ap.add_argument("--input-format", choices=FORMATS, default=None, help="format of every input (default: by name)")
    ap.add_argument("--text-field", default="text", help="field/column with the document text (default: text)")
    ap.add_argument("--output", "-o", required=True, help="the tokenizer.json to write (its card goes beside it)")
    ap.add_argument("--vocab-size", type=positive, required=True, help="tokens in the vocabulary, exactly")
    ap.add_argument("--pretokenizer", choices=tuple(PRETOKENIZERS), default="gpt4",
                    help="pretokenization regex: gpt2, gpt4 (cl100k, default), llama3 (the same as cl100k), "
                         "whitespace")
    ap.add_argument("--digits", choices=DIGITS, default="none",
                    help="digit rule before the pretokenizer: none (the preset's), single (each digit alone), "
                         "l2r3 (groups of three from the left), r2l3 (groups of three from the right: 1 234 567)")
    ap.add_argument("--normalization", choices=NORMALIZATIONS, default="none",
                    help="Unicode normalisation applied before pretokenizing (default: none)")
    ap.add_argument("--special-token", action="append", default=[], metavar="TOKEN",
                    help="an extra special token (repeatable); ids follow <|endoftext|> = 0 and <|pad|> = 1")
    ap.add_argument("--sample-bytes", type=byte_size, default=10**9,
                    help="bytes of text to train on, about (default: 1GB; e.g. 500MB, 2GB)")
    ap.add_argument("--balance", choices=BALANCES, default="none",
                    help="share the sample budget equally among input files (source) or identified languages "
                         "(language); default: none (uniform over documents)")
    ap.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    ap.add_argument("--min-frequency", type=positive, default=2,
                    help="a pair must occur this often to be merged (default: 2)")
    ap.add_argument("--superbpe-transition", type=positive, default=None, metavar="TOKENS",
                    help="SuperBPE: train ordinary BPE up to this many tokens, then keep merging on the same sample "
                         "without whitespace pretokenization (digits, punctuation and newlines still cut; the "
                         "chunks are counted in Beam), so later tokens may span words (default: off)")
    ap.add_argument("--superbpe-boundaries", choices=BOUNDARIES, default="punctuation",
                    help="where SuperBPE's stage 2 still cuts the text: punctuation (runs of punctuation and "
                         "symbols, digits, newlines; the default) or newlines (digits and newlines only: a token "
                         "may span a whole line of code)")
    ap.add_argument("--workers", type=positive, default=1,
                    help="local Beam worker processes for sampling and counting SuperBPE chunks (default: 1)")
    ap.add_argument("--no-progress", action="store_true",
                    help="no stage lines on stderr (default: shown on a terminal)")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    ap.add_argument("--verbose", "-v", action="store_true", help="show Beam's own log messages")


def config_from_args(args: argparse.Namespace, command_line: list[str]) -> TrainTokenizerConfig:
    """The config the parsed options describe (stage lines on a terminal unless --no-progress)."""
    return TrainTokenizerConfig(
        inputs=args.input, output=args.output, vocab_size=args.vocab_size, pretokenizer=args.pretokenizer,
        digits=args.digits, normalization=args.normalization, special_tokens=args.special_token,
        sample_bytes=args.sample_bytes, balance=args.balance, seed=args.seed, text_field=args.text_field,
        input_format=args.input_format, min_frequency=args.min_frequency,
        superbpe_transition=args.superbpe_transition, superbpe_boundaries=args.superbpe_boundaries,
        overwrite=args.overwrite, workers=args.workers, progress=sys.stderr.isatty() and not args.no_progress,
    )


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
        print(f"tokenmill: [{time.time() - started:6.1f}s] {text}", file=sys.stderr, flush=True)


def _superbpe(cfg: TrainTokenizerConfig, recipe: TokenizerRecipe, parts: list[dict[str, Any]], temp: str,
              beam_args: list[str], run_started: float) -> tuple[Any, dict[str, Any]]:
    """SuperBPE: stage 1 to the transition, the stage-2 chunk counts (Beam), stage 2's merges; the tokenizer and
    what the card records of it."""
    import apache_beam as beam

    from transforms.tokenize.superbpe import CountChunks, read_chunk_counts, sample_texts, spanning_tokens, superbpe

    started = time.time()
    _stage(cfg, run_started, f"SuperBPE stage 1: BPE to {cfg.superbpe_transition:,} tokens")
    stage1 = train_tokenizer(sample_texts(parts), replace(recipe, vocab_size=cfg.superbpe_transition))
    stage1_done = time.time()
    _stage(cfg, run_started, f"SuperBPE: counting the stage-2 chunks ({cfg.superbpe_boundaries} boundaries)")
    prefix = posixpath.join(temp, "chunks", "counts")
    with pipeline(beam_args, cfg.workers) as p:
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
    import apache_beam as beam  # for a run, not for --help
    import fsspec

    from transforms.read.sources import check_field_options, expand_inputs
    from transforms.tokenize.sampling import SampleCorpus
    from transforms.tokenize.superbpe import sample_texts

    started = time.time()
    recipe = recipe_of(cfg)
    fs, path = fsspec.core.url_to_fs(cfg.output)
    card_url = cfg.output + ".card.json"
    if fs.exists(path) and not cfg.overwrite:
        raise TokenizerTrainingError(f"--output {cfg.output!r} exists; pass --overwrite to replace it")
    files = expand_inputs(cfg.inputs, cfg.input_format)
    check_field_options(files, cfg.text_field)
    temp = cfg.output + ".sample-tmp"
    if fs.exists(temp):
        fs.rm(temp, recursive=True)
    fs.makedirs(temp, exist_ok=True)
    summary_url = posixpath.join(temp, "summary.json")
    beam_args = list(beam_args or [])
    try:
        _stage(cfg, started, f"sampling up to {cfg.sample_bytes / 1e6:,.0f} MB from {len(files)} input file(s) "
                             f"({sum(f.size for f in files) / 1e6:,.1f} MB), balance {cfg.balance}")
        with pipeline(beam_args, cfg.workers) as p:
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
    import fsspec

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
    return key_value_table(rows)


def launch(cfg: TrainTokenizerConfig, beam_args: list[str], show_progress: bool) -> int:
    """Run as ``tokenmill train-tokenizer`` does (its stage lines are the config's ``progress``), the summary on
    stderr; the exit code."""
    print(summary_table(run(cfg, beam_args)), file=sys.stderr)
    return 0
