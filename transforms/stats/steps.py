"""Beam adapters of ``tokenmill stats``: per split, one ``Partial`` and the text hashes by bucket; combines of both.

    splits ─► SplitStats ─┬─► Partial per split ─► MergePartials (CombineGlobally) ─► one Partial
                          └─► (bucket, hashes) ─► GroupByKey (256 buckets) ─► distinct per bucket ─► Sum

Only partial statistics (fixed-size sketches, a bounded line summary, groups) and 8-byte text hashes leave a
worker: the documents never travel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import apache_beam as beam
import numpy as np

from schemas import stats as s
from transforms.read.readers import read_split
from transforms.stats.measures import Partial, measure, merge_all

HASH_BUCKETS = 256  # text hashes are shuffled by their top 8 bits
LANG_FIELDS = ("lang", "language")
SOURCE_FIELD = "source"


@dataclass(frozen=True)
class StatsSpec:
    """What each worker needs to know."""

    text_field: str = "text"
    id_field: str = "id"
    by: tuple[str, ...] = ()
    tokenizer: Any = None  # a TokenizerSpec, or None
    top_k: int = 1000
    root: str = ""  # common directory of the inputs (a document's source file is named relative to it)
    progress_dir: str | None = None


def _value(v: Any) -> str:
    return s.MISSING_VALUE if v is None else (v if isinstance(v, str) else str(v))


class SplitStats(beam.DoFn):
    """One split → its Partial (main output) and its text hashes per bucket (output "hashes")."""

    def __init__(self, spec: StatsSpec) -> None:
        self.spec = spec
        self.encoders: Any = None
        self.langid: Any = None
        self.progress: Any = None

    def setup(self) -> None:
        from transforms.report.progress import ProgressWriter

        if self.spec.tokenizer is not None:
            from transforms.tokenize.encoders import Encoders

            self.encoders = Encoders(self.spec.tokenizer)
        if any(b in LANG_FIELDS for b in self.spec.by):
            from transforms.filter.langid import LanguageIdentifier

            self.langid = LanguageIdentifier()
        self.progress = ProgressWriter(self.spec.progress_dir)

    def process(self, split: Any) -> Iterator[Any]:
        from transforms.tokenize.sampling import relative_source

        spec = self.spec
        part = Partial(spec.tokenizer is not None, spec.top_k)
        encoder = None
        hashes: list[np.ndarray] = []
        for batch in read_split(split, spec.text_field, spec.id_field, meta_fields=spec.by):
            part.counts[s.RECORDS] += batch.records
            for rejection in batch.rejections:
                part.reject(rejection.reason)
            texts = batch.texts
            self.progress.add(records=batch.records, bytes=batch.bytes_read, docs=len(texts))
            if not texts:
                continue
            m = measure(texts)
            tokens = None
            if self.encoders is not None:
                if encoder is None:
                    encoder, _ = self.encoders.choose(texts, split.url)
                _, tokens = encoder.encode_batch(texts)
                self.progress.add(tokens=int(tokens.sum()))
            groups: dict[str, list[str]] = {}
            for by in spec.by:
                values = [_value(meta.get(by)) if isinstance(meta, dict) else s.MISSING_VALUE
                          for meta in batch.metas] if batch.metas else [s.MISSING_VALUE] * len(texts)
                if by in LANG_FIELDS and all(v == s.MISSING_VALUE for v in values):
                    values = [lang for lang, _ in self.langid.identify_batch(texts)]
                elif by == SOURCE_FIELD and all(v == s.MISSING_VALUE for v in values):
                    values = [relative_source(batch.source, spec.root)] * len(texts)
                groups[by] = values
            part.add(m, tokens, m.hashes, groups)
            hashes.append(m.hashes)
        self.progress.add(force=True, streams=1)
        yield part
        if hashes:
            flat = np.concatenate(hashes)
            bucket = (flat >> np.uint64(56)).astype(np.int64)
            order = np.argsort(bucket, kind="stable")
            flat, bucket = flat[order], bucket[order]
            cuts = np.flatnonzero(np.diff(bucket)) + 1
            for chunk in np.split(flat, cuts):
                yield beam.pvalue.TaggedOutput("hashes", (int(chunk[0] >> np.uint64(56)), chunk))


class MergePartials(beam.CombineFn):
    """Merges Partials (associative and commutative)."""

    def __init__(self, with_tokens: bool, top_k: int) -> None:
        self.with_tokens, self.top_k = with_tokens, top_k

    def create_accumulator(self) -> Partial:
        return Partial(self.with_tokens, self.top_k)

    def add_input(self, acc: Partial, part: Partial) -> Partial:
        return acc.merge(part)

    def merge_accumulators(self, accs: Any) -> Partial:
        return merge_all(accs, self.with_tokens, self.top_k)

    def extract_output(self, acc: Partial) -> Partial:
        return acc


def distinct_in_bucket(item: tuple[int, Any]) -> int:
    """Distinct text hashes of one bucket."""
    _, chunks = item
    return int(len(np.unique(np.concatenate(list(chunks)))))


class CorpusStats(beam.PTransform):
    """splits → one element: (merged Partial, exact distinct documents)."""

    def __init__(self, spec: StatsSpec) -> None:
        super().__init__()
        self.spec = spec

    def expand(self, splits):
        outputs = splits | "Measure" >> beam.ParDo(SplitStats(self.spec)).with_outputs("hashes", main="partials")
        merged = outputs.partials | "Merge" >> beam.CombineGlobally(
            MergePartials(self.spec.tokenizer is not None, self.spec.top_k))
        distinct = (
            outputs.hashes
            | "ByBucket" >> beam.GroupByKey()
            | "DistinctPerBucket" >> beam.Map(distinct_in_bucket)
            | "Distinct" >> beam.CombineGlobally(sum)
        )
        return merged | "WithDistinct" >> beam.Map(lambda p, d: (p, d), beam.pvalue.AsSingleton(distinct))
