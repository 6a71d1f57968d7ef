"""``tokenmill eval-tokenizer``: compare tokenizers on a corpus, on parallel text and on their vocabularies alone.

The corpus pass is a Beam pipeline: each input split is read, languages identified and every tokenizer run over
each batch (batch encoding); a split emits small fixed-size arrays (per group stats, one bincount per tokenizer)
which are summed per key. Texts are never collected. The tokenizer-only checks and the parallel set run in this
process. Writes ``report.json`` (schema: ``transforms.tokenize.evaluation``) and a self-contained ``report.html``.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterator

import apache_beam as beam
import fsspec
import numpy as np

from pipelines.prepare import beam_options, local_runner
from transforms.gather import read_pickle, write_pickle
from transforms.read.sources import expand_inputs, plan_splits
from transforms.tokenize.evaluation import (
    STAT_FIELDS,
    TokenizerEvalError,
    TokenizerInfo,
    corpus_section,
    group_keys,
    load_tokenizer,
    magikarp,
    parity,
    qtok,
    read_parallel,
    text_stats,
    tokenizer_names,
    vocabulary_section,
)
from transforms.tokenize.eval_report import render_html

REPORT_JSON = "report.json"
REPORT_HTML = "report.html"


@dataclass
class EvalConfig:
    """Options of one evaluation."""

    tokenizers: list[str]
    inputs: list[str]
    output: str
    text_field: str = "text"
    input_format: str | None = None
    parallel: list[str] = field(default_factory=list)
    reference_lang: str = "en"
    max_bytes: int | None = None
    overwrite: bool = False


class _EvalSplit(beam.DoFn):
    """One split → ((group, tokenizer index), stats array) and (("counts", tokenizer index), bincount)."""

    def __init__(self, names: list[str], jsons: list[str], text_field: str, split_budget: int | None,
                 progress_dir: str | None = None) -> None:
        self.names, self.jsons, self.text_field, self.split_budget = names, jsons, text_field, split_budget
        self.progress_dir = progress_dir

    def setup(self) -> None:
        """Load the tokenizers and the language model once per worker."""
        from transforms.filter.langid import LanguageIdentifier
        from transforms.report.progress import ProgressWriter

        self.infos = [load_tokenizer(n, n, j) for n, j in zip(self.names, self.jsons)]
        self.langid = LanguageIdentifier()
        self.progress = ProgressWriter(self.progress_dir)

    def process(self, split: Any) -> Iterator[tuple[tuple[Any, int], np.ndarray]]:
        """Read, identify and tokenize the split's documents; emit its sums."""
        from transforms.read.readers import read_split

        stats: dict[tuple[str, int], np.ndarray] = {}
        counts = [np.zeros(info.vocab_size, dtype=np.int64) for info in self.infos]
        used = 0
        for batch in read_split(split, text_field=self.text_field, id_field="id"):
            texts = batch.texts
            self.progress.add(records=batch.records, bytes=batch.bytes_read, docs=len(texts))
            if self.split_budget is not None:
                keep = []
                for t in texts:
                    n = len(t.encode("utf-8"))
                    if used + n > self.split_budget:
                        break
                    used += n
                    keep.append(t)
                texts = keep
            if not texts:
                break
            base = text_stats(texts)
            groups = [group_keys(split.url, lang) for lang, _ in self.langid.identify_batch(texts)]
            for k, info in enumerate(self.infos):
                encs = info.tokenizer.encode_batch(list(texts), add_special_tokens=False)
                for j, (e, gs) in enumerate(zip(encs, groups)):
                    row = np.append(base[j], len(e.ids))
                    for g in gs:
                        acc = stats.get((g, k))
                        if acc is None:
                            stats[(g, k)] = row.copy()
                        else:
                            acc += row
                ids = np.fromiter((i for e in encs for i in e.ids), dtype=np.int64)
                counts[k] += np.bincount(ids, minlength=info.vocab_size)[: info.vocab_size]
            if self.split_budget is not None and len(texts) < len(batch.texts):
                break
        yield from stats.items()
        for k, c in enumerate(counts):
            yield ("counts", k), c


def _sum_arrays(values: Any) -> np.ndarray:
    """Sum of equally shaped int64 arrays (a CombineFn-compatible callable)."""
    total = None
    for v in values:
        total = np.array(v, dtype=np.int64) if total is None else total + v
    return total


def check_output(output: str, overwrite: bool) -> None:
    """Refuse to replace an existing report unless --overwrite."""
    fs, root = fsspec.core.url_to_fs(output)
    if fs.exists(f"{root.rstrip('/')}/{REPORT_JSON}") and not overwrite:
        raise TokenizerEvalError(f"--output {output}: already holds a report (use --overwrite to replace it)")


def corpus_pass(cfg: EvalConfig, infos: list[TokenizerInfo], beam_args: list[str],
                progress_dir: str | None = None) -> dict[tuple[Any, int], Any]:
    """Run the Beam corpus pass; returns the summed arrays keyed by (group or "counts", tokenizer index)."""
    files = expand_inputs(cfg.inputs, cfg.input_format)
    splits = [s for i, f in enumerate(files) for s in plan_splits(i, f)]
    budget = None if cfg.max_bytes is None else max(1, cfg.max_bytes // max(1, len(splits)))
    fs, root = fsspec.core.url_to_fs(cfg.output)
    fs.makedirs(root, exist_ok=True)
    parts_url = f"{cfg.output.rstrip('/')}/_eval_parts_{uuid.uuid4().hex}.pkl"
    fn = _EvalSplit([i.name for i in infos], [i.json_text for i in infos], cfg.text_field, budget, progress_dir)
    try:
        with beam.Pipeline(runner=local_runner(beam_args, 1), options=beam_options(beam_args, 1)) as p:
            _ = (p | "Splits" >> beam.Create(splits) | "Reshuffle" >> beam.Reshuffle()
                 | "Evaluate" >> beam.ParDo(fn) | "Sum" >> beam.CombinePerKey(_sum_arrays)
                 | "Gather" >> beam.combiners.ToList() | "Write" >> beam.Map(write_pickle, parts_url))
        parts = read_pickle(parts_url)
    finally:
        if fs.exists(fs._strip_protocol(parts_url)):
            fs.rm(fs._strip_protocol(parts_url))
    return {k: v for k, v in parts}


def run(cfg: EvalConfig, beam_args: list[str] | None = None, progress_dir: str | None = None) -> dict[str, Any]:
    """Evaluate every tokenizer; writes report.json and report.html under ``cfg.output`` and returns the report
    (``progress_dir``: where the workers report progress for a live display)."""
    if not cfg.tokenizers:
        raise TokenizerEvalError("--tokenizer: give at least one tokenizer.json")
    check_output(cfg.output, cfg.overwrite)
    names = tokenizer_names(cfg.tokenizers)
    infos = [load_tokenizer(n, p) for n, p in zip(names, cfg.tokenizers)]
    records = read_parallel(cfg.parallel) if cfg.parallel else None
    sums = corpus_pass(cfg, infos, list(beam_args or []), progress_dir)
    stats = {k: v for k, v in sums.items() if k[0] != "counts"}
    report: dict[str, Any] = {
        "tokenmill_eval_tokenizer": 1,
        "options": {"inputs": list(cfg.inputs), "text_field": cfg.text_field, "max_bytes": cfg.max_bytes,
                    "parallel": list(cfg.parallel) or None, "reference_lang": cfg.reference_lang},
        "tokenizers": [{"name": i.name, "path": i.path, "vocab_size": i.vocab_size,
                        "special_tokens": len(i.special_ids), "byte_level": i.byte_level} for i in infos],
        "corpus": corpus_section(names, stats),
        "vocabulary": {i.name: vocabulary_section(i, sums.get(("counts", k), np.zeros(i.vocab_size, np.int64)))
                       for k, i in enumerate(infos)},
        "magikarp": {i.name: magikarp(i) for i in infos},
        "qtok": {i.name: qtok(i) for i in infos},
        "parity": parity(infos, records, cfg.reference_lang) if records is not None else None,
    }
    assert all(len(v) == len(STAT_FIELDS) for v in stats.values())
    out = cfg.output.rstrip("/")
    with fsspec.open(f"{out}/{REPORT_HTML}", "w", encoding="utf-8") as fh:
        fh.write(render_html(report))
    with fsspec.open(f"{out}/{REPORT_JSON}", "w", encoding="utf-8") as fh:  # last: its presence means done
        fh.write(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    return report
