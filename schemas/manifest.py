"""The manifest (``manifest.json``, written last: the commit marker of an output directory) and its counts.

Besides the run's totals (``counts``) a manifest holds two breakdowns, combined like the totals (``Counts.merge``):

- ``sources`` (K_SOURCES): per input file, keyed by its URL exactly as listed under ``inputs`` (every listed file,
  zeros when nothing was read from it), the ``SOURCE_FIELDS``: records read, documents written, documents
  rejected (all reasons and stages together), tokens in the shards (prepare; 0 for filter), input bytes read and
  characters of the written documents. Each field adds up over the sources to the run's total of the same name
  (``docs_rejected`` to the sum of ``counts.docs_rejected``); per source, records == docs_written + docs_rejected.
  Deterministic: the same for any runner and worker count.
- ``stage_seconds`` (K_STAGE_SECONDS): per timed stage (``TIMED_STAGES``), the seconds the workers spent in it,
  measured per batch with ``time.perf_counter`` in the thread or process doing that work and summed over all
  streams, threads, processes and workers. Summed worker seconds, not wall clock: stages overlap (reading runs
  beside tokenizing, writing beside packing), so the sum can exceed ``wall_time_s``. Timings, like
  ``wall_time_s``, are not part of the deterministic content of a result: compare manifests without them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

FORMAT_PREFIX = "tokenmill."  # every tokenmill manifest's format starts so
MANIFEST_FORMAT = "tokenmill.packed/1"
DOCUMENTS_FORMAT = "tokenmill.documents/1"  # ``tokenmill filter``: documents, no shards
REPORT_HTML = "report.html"  # the run's self-contained report, written beside manifest.json after it

# Reasons a record is rejected (written to rejected/ with the record). Keys of counts.docs_rejected.
MALFORMED_JSON = "malformed_json"
TRUNCATED_LINE = "truncated_line"
NOT_AN_OBJECT = "not_an_object"
MISSING_TEXT = "missing_text"
NULL_TEXT = "null_text"
NON_STRING_TEXT = "non_string_text"
EMPTY_TEXT = "empty_text"
UNREADABLE_FILE = "unreadable_file"
# WARC input (transforms/read/warc.py); the rejected/ record names the byte offset (REJ_OFFSET) where it starts
DAMAGED_GZIP_MEMBER = "damaged_gzip_member"  # a gzip member that cannot be decompressed, or bytes that are not one
TRUNCATED_RECORD = "truncated_record"  # the file ends inside a WARC record (or inside its gzip member)
MALFORMED_WARC_RECORD = "malformed_warc_record"  # no WARC header, no valid Content-Length, a block of another length
UNDECODABLE_PAYLOAD = "undecodable_payload"  # neither UTF-8 nor the detected charset; a damaged HTTP encoding
REJECT_REASONS = (
    MALFORMED_JSON,
    TRUNCATED_LINE,
    NOT_AN_OBJECT,
    MISSING_TEXT,
    NULL_TEXT,
    NON_STRING_TEXT,
    EMPTY_TEXT,
    UNREADABLE_FILE,
    DAMAGED_GZIP_MEMBER,
    TRUNCATED_RECORD,
    MALFORMED_WARC_RECORD,
    UNDECODABLE_PAYLOAD,
)

# Repairs applied to a kept document (keys of counts.docs_repaired); the document is written, repaired.
INVALID_UTF8 = "invalid_utf8"  # undecodable bytes replaced by U+FFFD
LONE_SURROGATE = "lone_surrogate"  # unpaired UTF-16 surrogates replaced by U+FFFD
NUL_REMOVED = "nul_removed"  # NUL characters removed

# Stages of a rejected/ record: read (the record itself is unusable) or filter (a recipe's stage dropped it; its
# counts.docs_rejected key is "<stage>/<reason>", e.g. "gopher_quality/gopher_short_doc").
STAGE_READ = "read"
STAGE_FILTER = "filter"
STAGE_DEDUP = "dedup"  # reasons below; counted as "dedup/<reason>"
STAGE_SELECT = "select"  # the recipe's selection: counted as "select/<reason>"
STAGE_PACK = "pack"  # packing: counted as "pack/<reason>"
SHORTER_THAN_PIECE = "shorter_than_shortest_piece"  # decompose: the document (with EOS) is below 2^low tokens

# Selection reason: the document scored below what was kept; its rejected record carries its scores (REJ_SCORES).
BELOW_SELECTION_THRESHOLD = "below_selection_threshold"

# Deduplication reasons: the rejected record names the kept document it duplicates (REJ_DUPLICATE_OF).
EXACT_DUPLICATE = "exact_duplicate"  # same text after Unicode and whitespace normalisation
NEAR_DUPLICATE = "near_duplicate"  # MinHash-LSH candidate of the same cluster
# ... of a document of an earlier output (recipe dedup.against): the detail also names that output
EARLIER_EXACT_DUPLICATE = "earlier_exact_duplicate"
EARLIER_NEAR_DUPLICATE = "earlier_near_duplicate"
# dedup.lines removed every line (or paragraph) of the document, nothing is left (it names no kept document)
LINES_EMPTY = "lines_empty"

# Fields of a rejected/ record.
REJ_SOURCE = "source"
REJ_LINE = "line"
REJ_OFFSET = "offset"  # WARC: byte offset of the record (of its gzip member in a .warc.gz) where it starts
REJ_ID = "id"
REJ_REASON = "reason"
REJ_STAGE = "stage"
REJ_DETAIL = "detail"
REJ_RECORD = "record"
REJ_DUPLICATE_OF = "duplicate_of"  # dedup: {"id", "source", "line"/"row"} of the kept representative
REJ_SCORES = "scores"  # select: the document's scores ({scorer key: value}, and "bucket" with an ensemble)
# decontam: {"set", "ngram"}: the first evaluation set the document shares an n-gram with, and that n-gram
# (normalised words); mode remove adds "removed_fraction" (of its characters, when too much would have gone)
REJ_CONTAMINATION = "contamination"
REJECTED_RECORD_CHARS = 1024


# Fields of a source's entry in the manifest's ``sources`` section (see the module docstring); each is the
# Counts field of the same name restricted to one input file, docs_rejected as a total over all reasons.
SOURCE_FIELDS = ("records", "docs_written", "docs_rejected", "tokens", "bytes_read", "text_chars")

# Timed stages (keys of the manifest's ``stage_seconds``), in pipeline order.
TIME_READ = "read"  # reading and parsing input files; pass 2: reading staged documents back, minus duplicates and
# the documents the selection plan drops (and, with dedup.lines, the frequent lines removed)
TIME_RECIPE = "recipe"  # the recipe's filters, scorers and dedup keys (in its processes when it has several)
TIME_TOKENIZE = "tokenize"  # encoding (with EOS/BOS and the loss mask source); pass 1 of a token budget too
TIME_PACK = "pack"  # packing tokenized documents into rows
TIME_WRITE = "write"  # writing shards, documents and staged documents (Parquet encoding and I/O)
TIMED_STAGES = (TIME_READ, TIME_RECIPE, TIME_TOKENIZE, TIME_PACK, TIME_WRITE)


@dataclass
class Counts:
    """Counts of one stream or of a whole run; they add up: records == docs_written + sum(docs_rejected).

    ``sources`` and ``stage_seconds`` travel with the counts between workers and become manifest sections of
    their own (K_SOURCES, K_STAGE_SECONDS); ``totals()`` is the manifest's ``counts`` section without them.
    """

    records: int = 0
    docs_written: int = 0
    docs_rejected: dict[str, int] = field(default_factory=dict)
    docs_repaired: dict[str, int] = field(default_factory=dict)
    docs_modified: dict[str, int] = field(default_factory=dict)  # kept documents whose text a recipe stage changed
    # what recipe stages found, "<stage>/<kind>": n (pii/email: addresses replaced); in the manifest only when any
    stage_counts: dict[str, int] = field(default_factory=dict)
    # input records that are not documents by design, by kind (WARC: request, metadata, response/image/jpeg...);
    # not in ``records``: a WARC file holds records + Σ skipped_records + (damaged stretches, rejected) records.
    # In the manifest only when any
    skipped_records: dict[str, int] = field(default_factory=dict)
    tokens: int = 0
    sequences: int = 0
    pad_tokens: int = 0
    bytes_read: int = 0
    text_chars: int = 0
    docs_split: int = 0  # documents whose tokens are in more than one row (cut by concat; pieces of best-fit/decompose)
    tokens_dropped: int = 0  # decompose: remainders below the shortest piece (not in the shards, not in tokens)
    # dedup.lines: lines (or paragraphs) removed from kept documents, and their UTF-8 bytes (with their line breaks);
    # in the manifest only when some were (a document left empty is rejected whole: LINES_EMPTY)
    lines_removed: int = 0
    line_bytes_removed: int = 0
    sources: dict[str, dict[str, int]] = field(default_factory=dict)  # per input URL: SOURCE_FIELDS
    stage_seconds: dict[str, float] = field(default_factory=dict)  # per TIMED_STAGES: summed worker seconds

    def reject(self, reason: str, n: int = 1, source: str | None = None) -> None:
        """Count ``n`` rejections for ``reason`` (and for ``source``; the records are counted where they are read)."""
        self.docs_rejected[reason] = self.docs_rejected.get(reason, 0) + n
        if source is not None:
            self.add_source(source, docs_rejected=n)

    def add_source(self, source: str, **deltas: int) -> None:
        """Add ``deltas`` (SOURCE_FIELDS) to the counts of the input file ``source``."""
        row = self.sources.get(source)
        if row is None:
            row = self.sources[source] = dict.fromkeys(SOURCE_FIELDS, 0)
        for name, n in deltas.items():
            row[name] += n

    def time(self, stage: str, seconds: float) -> None:
        """Add ``seconds`` spent in ``stage`` (one of TIMED_STAGES)."""
        self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + seconds

    def repair(self, kind: str, n: int = 1) -> None:
        """Count ``n`` documents repaired by ``kind``."""
        self.docs_repaired[kind] = self.docs_repaired.get(kind, 0) + n

    def merge(self, other: "Counts") -> "Counts":
        """Add ``other`` into this one and return self."""
        for name in ("records", "docs_written", "tokens", "sequences", "pad_tokens", "bytes_read", "text_chars",
                     "docs_split", "tokens_dropped", "lines_removed", "line_bytes_removed"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for target, source in ((self.docs_rejected, other.docs_rejected), (self.docs_repaired, other.docs_repaired),
                               (self.docs_modified, other.docs_modified), (self.stage_counts, other.stage_counts),
                               (self.skipped_records, other.skipped_records),
                               (self.stage_seconds, other.stage_seconds)):
            for key, value in source.items():
                target[key] = target.get(key, 0) + value
        for url, row in other.sources.items():
            self.add_source(url, **row)
        return self

    def rejected_total(self) -> int:
        """All rejected records."""
        return sum(self.docs_rejected.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON form with sorted reason and source keys (stable manifests), stages in pipeline order."""
        d = asdict(self)
        d["docs_rejected"] = dict(sorted(self.docs_rejected.items()))
        d["docs_repaired"] = dict(sorted(self.docs_repaired.items()))
        d["docs_modified"] = dict(sorted(self.docs_modified.items()))
        if self.stage_counts:
            d["stage_counts"] = dict(sorted(self.stage_counts.items()))
        else:  # no stage counts anything: manifests stay as they were before stages could
            del d["stage_counts"]
        if self.skipped_records:
            d["skipped_records"] = dict(sorted(self.skipped_records.items()))
        else:  # no WARC input: manifests stay as they were
            del d["skipped_records"]
        if not self.lines_removed:  # nor line dedup: the same
            del d["lines_removed"], d["line_bytes_removed"]
        d["sources"] = {url: dict(row) for url, row in sorted(self.sources.items())}
        order = {stage: i for i, stage in enumerate(TIMED_STAGES)}
        d["stage_seconds"] = dict(sorted(self.stage_seconds.items(), key=lambda kv: (order.get(kv[0], 99), kv[0])))
        return d

    def totals(self) -> dict[str, Any]:
        """The manifest's ``counts`` section: to_dict without the per-source and per-stage breakdowns."""
        return {k: v for k, v in self.to_dict().items() if k not in ("sources", "stage_seconds")}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Counts":
        """Inverse of to_dict (and of totals)."""
        out = cls(**{k: (dict(v) if isinstance(v, dict) else v) for k, v in d.items()})
        out.sources = {url: dict(row) for url, row in out.sources.items()}
        return out


# Top-level manifest keys.
K_FORMAT = "format"
K_VERSION = "tokenmill_version"
K_JOB = "job"
K_FINGERPRINT = "fingerprint"
K_INPUTS = "inputs"
K_TOKENIZER = "tokenizer"  # T_ keys
K_SEQ_LEN = "seq_len"
K_PACKING = "packing"  # the strategy's name: concat, best-fit or decompose
K_PACKING_SETTINGS = "packing_settings"  # its settings (P_ keys: best-fit buffer; decompose lengths)
K_PACKING_STATS = "packing_stats"  # padding fraction, documents split; decompose: per length, curriculum
K_COUNTS = "counts"
K_SHARDS = "shards"
K_REJECTED = "rejected"
K_RUNNER = "runner"
K_WALL_TIME = "wall_time_s"
K_SOURCES = "sources"  # per input file (its URL as under K_INPUTS): SOURCE_FIELDS (see the module docstring)
K_STAGE_SECONDS = "stage_seconds"  # per TIMED_STAGES: summed worker seconds, not wall clock; not deterministic
K_STREAMS = "streams"
K_RECIPE = "recipe"  # R_ keys
K_SELECTION = "selection"  # S_ keys: score quantiles, cut-points, buckets, candidates, selected, the rule
K_DOCUMENTS = "documents"  # document files: path, rows, bytes, sha256
K_DEDUP = "dedup"  # duplicates found: EXACT_DUPLICATE, NEAR_DUPLICATE counts, DEDUP_CONSIDERED, DEDUP_RATE
DEDUP_CONSIDERED = "documents_considered"  # documents that reached dedup: not rejected by reading, the filters
# or a min_score selection (which decides as each document is scored, before dedup)
DEDUP_RATE = "duplicate_rate"  # duplicates / documents considered
DEDUP_CLUSTERS = "clusters"  # under K_DEDUP, when there are duplicates: the largest clusters (CL_ keys)
CL_KEPT, CL_EARLIER, CL_DOCUMENTS, CL_MEMBERS = "kept", "earlier_output", "documents", "members"  # a cluster
CL_ID, CL_SOURCE, CL_REASON, CL_EXCERPT = "id", "source", "reason", "excerpt"  # a sampled member
# (with dedup.against, K_DEDUP also counts EARLIER_EXACT_DUPLICATE and EARLIER_NEAR_DUPLICATE, within the rate)
K_DEDUP_INDEX = "dedup_index"  # dedup.save_index: DI_ keys (transforms.dedup.index)
DEDUP_INDEX_DIR = "dedup_index"  # its files' folder
DEDUP_INDEX_FORMAT = "tokenmill.dedup_index/1"
DI_FORMAT, DI_DOCUMENTS, DI_EXACT, DI_MINHASH, DI_FILES = "format", "documents", "exact", "minhash", "files"
K_MODIFIED = "modified"  # modified/ files (original text of documents a recipe stage changed)

# Keys of a file entry (under K_SHARDS, K_DOCUMENTS, K_REJECTED, K_MODIFIED), as the commit step writes them.
E_PATH, E_ROWS, E_BYTES, E_SHA256 = "path", "rows", "bytes", "sha256"
E_TOKENS, E_PAD_TOKENS, E_RECORDS, E_BUCKET = "tokens", "pad_tokens", "records", "bucket"
E_SEQ_LEN = "seq_len"  # a shard entry's own row length (decompose); else the manifest's K_SEQ_LEN
E_TEMP_URL = "temp_url"  # a file's temporary URL in a stream's result; the commit lists its E_PATH instead

# Keys under K_PACKING_STATS (decompose adds K_REMAINDER_DROPPED, K_LENGTHS and K_CURRICULUM).
K_PADDING_FRACTION = "padding_fraction"
K_DOCUMENTS_SPLIT = "documents_split"
K_REMAINDER_DROPPED = "remainder_tokens_dropped"
K_LENGTHS = "lengths"  # per row length (a string key): L_SEQUENCES, L_TOKENS; under K_PACKING_SETTINGS: the lengths
L_SEQUENCES, L_TOKENS = "sequences", "tokens"

# A decompose curriculum: per row length (a string key), the batch multiplier and the sampling odds a loader uses.
# It sits under K_PACKING_STATS, or under a manifest's own K_DECOMPOSE section (read first).
K_DECOMPOSE = "decompose"
K_CURRICULUM = "curriculum"
K_BATCH_MULTIPLIERS = "batch_multipliers"
K_SAMPLING_ODDS = "sampling_odds"

# Keys under K_TOKENIZER (TokenizerSpec.manifest; the commit adds the T_BACKEND keys from the streams).
T_PATH, T_FORMAT, T_SHA256, T_VOCAB_SIZE = "path", "format", "sha256", "vocab_size"  # T_FORMAT: hf or tiktoken
T_EOS_ID, T_PAD_ID, T_BOS_ID = "eos_id", "pad_id", "bos_id"  # T_BOS_ID: None without --bos-token
T_TIKTOKEN_SCHEME = "tiktoken_scheme"  # None for a tokenizer.json
T_BACKEND = "backend"  # the backend every stream used, or "mixed"
T_BACKEND_STREAMS = "backend_streams"  # streams per backend
T_BACKEND_NOTES = "backend_notes"  # why streams fell back to the reference library (the first 20)

# Keys under K_PACKING_SETTINGS (PackingSpec.manifest; decompose adds K_LENGTHS, the row lengths).
P_NAME, P_LOSS_MASK = "name", "loss_mask"  # the strategy (as K_PACKING) and --loss-mask
P_BUFFER = "buffer"  # best-fit: pieces packed together
P_PAD_REMAINDERS = "pad_remainders"  # decompose: remainders padded instead of dropped

# Keys under K_RECIPE (Recipe.to_dict, with Selection.to_dict's R_SCORERS..R_UPSAMPLE): every parameter explicit.
R_NAME, R_ENGINE, R_FILTERS, R_DEDUP = "name", "engine", "filters", "dedup"
R_STAGE_NAME, R_STAGE_PARAMS = "name", "params"  # a stage of R_FILTERS, a scorer of R_SCORERS
R_SCORER_KEY = "key"  # a scorer of R_SCORERS: where its scores go
R_EXACT, R_MINHASH = "exact", "minhash"  # under R_DEDUP (R_MINHASH: MH_ keys, or absent)
R_SAVE_INDEX, R_AGAINST = "save_index", "against"  # under R_DEDUP, only when used (R_AGAINST: a list of AG_ keys)
AG_PATH, AG_INDEX_SHA256 = "path", "index_sha256"  # an earlier output and the identity of its dedup index
R_SCORERS, R_ENSEMBLE, R_SELECT, R_UPSAMPLE = "scorers", "ensemble", "select", "upsample"
R_SELECT_SCORE = "score"  # under R_SELECT, beside {criterion: value}: the score it ranks by
R_STAGE_TIMEOUT = "stage_timeout"  # only when not the default
R_LINES = "lines"  # under R_DEDUP, only when used: LD_ keys (transforms.recipe.line_dedup)
R_KEYS_AFTER = "after"  # under R_DEDUP, only when used: the stage whose output text the dedup keys are of
LD_UNIT, LD_MIN_DOCS, LD_KEEP_FIRST = "unit", "min_docs", "keep_first"
MH_NGRAM, MH_BANDS, MH_ROWS, MH_SEED, MH_THRESHOLD = "ngram", "bands", "rows", "seed", "threshold"  # R_MINHASH
EN_METHOD, EN_BUCKETS, EN_SAMPLE_FRACTION, EN_WEIGHT = "method", "buckets", "sample_fraction", "weight"  # R_ENSEMBLE
EN_COMBINE, EN_SEED, EN_PARTITION = "combine", "seed", "partition"

# Keys under K_SELECTION (the selection plan's report, transforms.select).
S_SCORES = "scores"  # per scorer key: S_DOCUMENTS, S_MIN, S_QUANTILE keys, S_MAX
S_QUANTILE = "p{:02d}"  # a reported quantile's key by its percent, e.g. p50
S_MIN, S_MAX = "min", "max"
S_CUT_POINTS = "cut_points"  # ensemble: per scorer key, its cut-points
S_SAMPLED_WEIGHT = "sampled_weight"  # ensemble: per scorer key, the weight of the sample its cut-points come from
S_BUCKETS = "buckets"  # ensemble: per bucket (a string key), sizes
S_CANDIDATES, S_SELECTED = "candidates", "selected"  # sizes
S_UPSAMPLED = "upsampled"  # per upsampled bucket: S_FACTOR and the sizes of the extra copies
S_FACTOR = "factor"
S_DOCUMENTS, S_BYTES, S_TOKENS = "documents", "bytes", "tokens"  # sizes
S_RULE = "selection"  # the rule and its threshold: S_CRITERION .. S_THRESHOLD
S_CRITERION, S_VALUE, S_SCORE = "criterion", "value", "score"  # S_SCORE: the score it ranks by
S_UNIT, S_BUDGET, S_CANDIDATES_WEIGHT = "unit", "budget", "candidates_weight"  # a budget or top fraction
S_THRESHOLD = "threshold"  # S_THRESHOLD_BUCKET or S_THRESHOLD_SCORE, and S_TIE
S_THRESHOLD_BUCKET, S_THRESHOLD_SCORE, S_TIE = "bucket", "score", "tie"

# Fields of a modified/ record (--emit-modified): a kept document whose text a recipe stage changed.
MOD_SOURCE = "source"
MOD_LINE = "line"
MOD_ROW = "row"
MOD_ID = "id"
MOD_STAGES = "stages"  # the stages that changed it, in order
MOD_ORIGINAL = "original_text"  # the text as read (the kept text is in shards/ or documents/)
