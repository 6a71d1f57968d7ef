"""eval-tokenizer's Beam step (the graph is ``pipelines.eval_tokenizer``'s): one input split read, its languages
identified, every tokenizer run over it (``transforms.tokenize.evaluation`` turns the sums into the report)."""

from __future__ import annotations

from typing import Any, Iterator

import apache_beam as beam
import numpy as np

from transforms.tokenize.evaluation import group_keys, load_tokenizer, text_stats


class EvalSplit(beam.DoFn):
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


def sum_arrays(values: Any) -> np.ndarray:
    """Sum of equally shaped int64 arrays (a CombineFn-compatible callable)."""
    total = None
    for v in values:
        total = np.array(v, dtype=np.int64) if total is None else total + v
    return total
