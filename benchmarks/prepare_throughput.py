"""Throughput and memory benchmark of ``tokenmill prepare`` against raw tokenizers and datatrove.

What it measures, in one run, on the same JSONL files, the same ``tokenizer.json`` and the same cores:

* tokenmill prepare (default ``--workers 1``, and ``--workers 2``): ``pipelines.prepare.run`` timed inside its own
  subprocess, from the call until it returns with the manifest written (Beam pipeline construction, planning,
  reading, tokenizing, packing, Parquet writing, commit, runner shutdown); interpreter start and imports are not
  timed. The whole ``tokenmill prepare`` CLI command (start-up and imports included) is timed as well.
* raw HF ``tokenizers``: ``Tokenizer.encode_batch_fast`` (rayon thread pool, all cores) over batches of ~1 MB of text.
* raw gigatoken: ``Tokenizer.encode_batch`` over the same batches, with ``parallel=True`` (rayon, all cores: the
  reference for the "vs raw gigatoken" ratio) and ``parallel=False`` (one thread, as tokenmill calls it).
  The raw runs first read every text into memory (not timed) and time only the tokenizing.
* datatrove ``DocumentTokenizer`` behind a ``JsonlReader`` in a ``LocalPipelineExecutor`` with tasks = workers = cores
  (``executor.run()`` timed, imports not), ``shuffle_documents=False`` (shuffling is an extra pass over the output
  that the others do not do), default batch size, HF tokenizers underneath.

Throughput is MB of document text (UTF-8 bytes of the text field of every record, MB = 10^6 bytes) divided by the
wall-clock seconds measured as above. Every system runs in a fresh subprocess, so process-global tokenizer caches
start cold and peak RSS is per system: the whole process tree is sampled with psutil every 50 ms (the sum of the
RSS of the process and all its descendants; shared pages of forked workers are counted once per process).

Memory: ``tokenmill prepare`` (CLI, default workers) runs on the corpus at 1x and at 2x its size (every file copied
under another name with other ids, written as plain JSONL) and the peak process-tree RSS of both and the growth are
reported.

The default corpus is the real multilingual corpus of ``benchmarks/corpora.py`` (~110 MB of prose in Latin,
Cyrillic and CJK scripts from translated documentation in Debian packages; built and cached in
``.bench-cache/corpora`` on first use, with ``apt-get download``); ``--corpus code`` or ``mix`` takes another one,
``--slice-mb N`` the first N MB of it. ``--corpus generated`` is the generated corpus (about --size-mb MB of text,
no download): this Python's standard library (module sources and docstrings, via ``transforms.read.demo_corpus``)
mixed with the multilingual conversations of the ``chatterbot_corpus`` package (~10% of the bytes), in several
variants whose paragraphs are reordered and whose words are respelled (about 1 in 4 distinct words per variant,
consistently within the variant) so that the corpus is not the same documents repeated (tokenizer caches make exact
repeats unrealistically fast), shuffled deterministically and written as several JSONL files. A 32k byte-level BPE
tokenizer is trained on a ~10 MB sample of the corpus. With --workdir the generated corpus, slices and the tokenizer
are cached there and reused by later runs. The corpus used is printed first.

Targets (printed with PASS/MISS, never asserted): tokenmill prepare end to end >= 8x datatrove's DocumentTokenizer
and >= 0.5x raw gigatoken on the same input and cores; peak RSS <= 2 GB on a 75 MB corpus; 2x the input grows peak
RSS by <= 30%.

Usage (from the repository root):

    .venv/bin/python benchmarks/prepare_throughput.py [--corpus multilingual] [--slice-mb MB] [--repeat 1]
                                                      [--workdir DIR]
    .venv/bin/python benchmarks/prepare_throughput.py --corpus generated [--size-mb 75]
    .venv/bin/python benchmarks/prepare_throughput.py --corpus 'data/*.jsonl' --tokenizer tok.json --text-field text
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MB = 1_000_000
GB = 1_000_000_000
BATCH_BYTES = 1 << 20
CORPUS_FILES = 8
SAMPLE_INTERVAL_S = 0.05
TOKENIZER_SAMPLE_BYTES = 10 * MB
TOKENIZER_VOCAB = 32_000
CORPUS_VERSION = 2  # bump when the generator changes, so cached corpora in a --workdir are rebuilt
ML_VARIANTS_PER_ROUND = 4
EOS = "<|endoftext|>"

TARGET_VS_DATATROVE = 8.0
TARGET_VS_GIGATOKEN = 0.5
TARGET_RSS_BYTES = 2 * GB
TARGET_RSS_GROWTH = 0.30
TARGET_RSS_CORPUS_MB = 75


# ---------------------------------------------------------------------------------------------------------------
# corpus
# ---------------------------------------------------------------------------------------------------------------


def chatterbot_conversations() -> list[str]:
    """Every conversation of the chatterbot_corpus package (28 languages) as one text, in a stable order."""
    import chatterbot_corpus
    import yaml

    root = Path(chatterbot_corpus.__file__).parent / "data"
    texts = []
    for path in sorted(root.rglob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for conv in data.get("conversations") or []:
            lines = [str(x) for x in conv if x is not None]
            if lines:
                texts.append("\n".join(lines))
    return texts


_WORD = re.compile(r"\w{5,}")


def perturb(text: str, variant: int, seed: int, respell: dict[str, str]) -> str:
    """A variant of a document: its paragraphs reordered and about 1 in 4 distinct words respelled (any script).

    A word is respelled the same way everywhere in a variant (``respell`` caches the variant's choices), so word
    frequencies keep their natural shape while every variant brings new vocabulary, as more real text would.
    """
    rng = random.Random(seed * 1_000_003 + variant)
    paragraphs = text.split("\n\n")
    if len(paragraphs) > 2:
        rng.shuffle(paragraphs)
    text = "\n\n".join(paragraphs)

    def swap(match: re.Match) -> str:
        """The variant's spelling of one word."""
        word = match.group(0)
        new = respell.get(word)
        if new is None:
            h = zlib.crc32(f"{variant}:{word}".encode("utf-8"))
            if h % 4:
                new = word
            else:  # swap two neighbouring letters, not the first one
                i = 1 + (h >> 8) % (len(word) - 2)
                new = word[:i] + word[i + 1] + word[i] + word[i + 2 :]
            respell[word] = new
        return new

    return _WORD.sub(swap, text)


def multilingual_documents(conversations: list[str], variant: int) -> Iterator[tuple[str, str]]:
    """(id, text): conversations grouped into documents of 8-40, regrouped (and perturbed after variant 0)."""
    rng = random.Random(7919 + variant)
    respell: dict[str, str] = {}
    order = list(range(len(conversations)))
    rng.shuffle(order)
    i = doc = 0
    while i < len(order):
        n = rng.randint(8, 40)
        text = "\n\n".join(conversations[j] for j in order[i : i + n])
        yield f"chatterbot/v{variant}/{doc}", perturb(text, variant, doc, respell) if variant else text
        i += n
        doc += 1


def corpus_records(size_bytes: int) -> Iterator[dict[str, str]]:
    """Records {id, text, source} of about ``size_bytes`` of UTF-8 text, deterministic, in shuffled order."""
    from transforms.read.demo_corpus import demo_records

    stdlib = [(r["id"], r["text"], r["source"]) for r in demo_records()]
    conversations = chatterbot_conversations()
    chosen: list[tuple[str, str, str]] = []
    total = 0
    variant = 0
    while total < size_bytes:
        round_docs = []
        respell: dict[str, str] = {}
        for k, (doc_id, text, source) in enumerate(stdlib):
            text = perturb(text, variant, k, respell) if variant else text
            round_docs.append((f"{doc_id}#v{variant}", text, source))
        for v in range(ML_VARIANTS_PER_ROUND):
            ml_variant = variant * ML_VARIANTS_PER_ROUND + v
            round_docs += [(i, t, "chatterbot") for i, t in multilingual_documents(conversations, ml_variant)]
        random.Random(variant).shuffle(round_docs)
        for doc in round_docs:
            chosen.append(doc)
            total += len(doc[1].encode("utf-8"))
            if total >= size_bytes:
                break
        variant += 1
    random.Random(12345).shuffle(chosen)
    for doc_id, text, source in chosen:
        yield {"id": doc_id, "text": text, "source": source}


def write_jsonl_files(records: list[dict[str, Any]], directory: Path, n_files: int, prefix: str) -> list[str]:
    """Write records as ``n_files`` JSONL files of about equal text size, in order; returns the paths."""
    import orjson

    directory.mkdir(parents=True, exist_ok=True)
    sizes = [len(r["text"].encode("utf-8")) for r in records]
    total = sum(sizes)
    paths = []
    i = 0
    done = 0
    for f in range(n_files):
        path = directory / f"{prefix}-{f:02d}.jsonl"
        with open(path, "wb") as fh:
            while i < len(records) and (f == n_files - 1 or done < total * (f + 1) / n_files):
                fh.write(orjson.dumps(records[i]) + b"\n")
                done += sizes[i]
                i += 1
        paths.append(str(path))
    return paths


def cached_corpus(directory: Path, identity: dict[str, Any], describe: str,
                  records: Callable[[], Iterable[dict[str, Any]]], n_files: int = CORPUS_FILES) -> list[str]:
    """JSONL files of ``records()`` in ``directory``, reused when an earlier run wrote them with the same
    ``identity`` (generator version, size, Python...)."""
    meta_path = directory / "corpus.json"
    want = {**identity, "files": n_files, "python": sys.version}
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if {k: meta.get(k) for k in want} == want and all(os.path.exists(p) for p in meta["paths"]):
            log(f"reusing the generated corpus in {directory}")
            return meta["paths"]
    log(f"generating {describe} ...")
    t0 = time.perf_counter()
    shutil.rmtree(directory, ignore_errors=True)
    rows = list(records())
    paths = write_jsonl_files(rows, directory, n_files, "part")
    meta_path.write_text(json.dumps(want | {"paths": paths}))
    log(f"  {len(rows)} documents in {len(paths)} files, {time.perf_counter() - t0:.1f} s")
    return paths


def generated_corpus(workdir: Path, size_mb: float) -> list[str]:
    """The generated corpus files in ``workdir`` (built, or reused when an identical one is there)."""
    return cached_corpus(workdir / f"corpus-{size_mb:g}mb", {"version": CORPUS_VERSION, "size_mb": size_mb},
                         f"a ~{size_mb:g} MB corpus (stdlib sources and docstrings + chatterbot multilingual)",
                         lambda: corpus_records(int(size_mb * MB)))


def doubled_corpus(files: list[str], directory: Path, text_field: str, id_field: str) -> list[str]:
    """The 2x corpus: the original files plus a copy of each under another name, with other ids."""
    import orjson

    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    out = []
    for n, path in enumerate(files):
        for copy in (0, 1):
            target = directory / f"copy{copy}-{n:03d}.jsonl"
            with open(target, "wb") as fh:
                for obj in iter_json_records(path):
                    if copy and isinstance(obj, dict) and id_field in obj:
                        obj[id_field] = f"{obj[id_field]}#copy1"
                    fh.write(orjson.dumps(obj) + b"\n")
            out.append(str(target))
    return out


def iter_json_records(path: str) -> Iterator[Any]:
    """Parsed JSON lines of a (possibly compressed) JSONL file; unparsable lines are skipped."""
    import fsspec
    import orjson

    with fsspec.open(path, "rb", compression="infer") as fh:
        for line in fh:
            if line.strip():
                try:
                    yield orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue


def corpus_stats(files: list[str], text_field: str) -> tuple[int, int]:
    """(documents, UTF-8 bytes of their text) of JSONL files: what throughput is measured in."""
    n_docs = text_bytes = 0
    for path in files:
        for obj in iter_json_records(path):
            text = obj.get(text_field) if isinstance(obj, dict) else None
            if isinstance(text, str):
                n_docs += 1
                text_bytes += len(text.encode("utf-8", "surrogatepass"))
    return n_docs, text_bytes


REAL_CORPORA = ("multilingual", "code", "mix")  # built by benchmarks/corpora.py from Debian packages' text
GENERATED = "generated"
DEFAULT_CORPUS = "multilingual"  # what every benchmark runs on unless told otherwise


def corpus_arguments(ap: argparse.ArgumentParser, size_mb: float | None, unique_ids: bool = False,
                     default: str = DEFAULT_CORPUS, slice_mb: float | None = None) -> None:
    """The corpus options every benchmark takes: --corpus, --slice-mb, --text-field, --id-field, --size-mb (the size
    of the generated corpus; ``size_mb=None``: a generated corpus of a fixed size, no --size-mb)."""
    ap.add_argument("--corpus", default=default, metavar="NAME|GLOB",
                    help=f"the corpus: {', '.join(REAL_CORPORA)} (real text nobody here wrote, built on first use "
                         f"and cached by benchmarks/corpora.py), {GENERATED} (the generated corpus, --size-mb) or a "
                         f"glob of JSONL files (plain or .gz/.zst/.bz2/.xz) (default: {default})")
    whole = "the whole corpus" if not slice_mb else f"{slice_mb:g}"
    ap.add_argument("--slice-mb", type=float, default=slice_mb, metavar="MB",
                    help="only the first MB of a named real corpus (its documents interleave languages, so a "
                         f"slice is a small copy of the whole; 0: the whole corpus) (default: {whole})")
    ap.add_argument("--text-field", default="text", help="text field of --corpus records (default: text)")
    ap.add_argument("--id-field", default="id",
                    help=f"id field of --corpus records{', unique' if unique_ids else ''} (default: id)")
    if size_mb is None:
        ap.set_defaults(size_mb=None)
    else:
        ap.add_argument("--size-mb", type=float, default=size_mb,
                        help=f"size of the generated corpus (--corpus {GENERATED}) in MB of text (default {size_mb:g})")


def named_corpus(name: str, slice_mb: float | None, workdir: Path) -> tuple[list[str], str]:
    """(files, description) of a real corpus of benchmarks/corpora.py, whole or its first ``slice_mb`` MB (0 or
    None: whole). The corpus is built (downloaded with apt-get and cached) on first use, reused after."""
    import corpora

    corpus = corpora.build(name)
    if not slice_mb:
        return corpus.files, f"real: {corpus.describe()}"
    if slice_mb * MB >= corpus.text_bytes:
        return corpus.files, f"real: {corpus.describe()} (the whole corpus: --slice-mb {slice_mb:g} is not smaller)"
    files = corpora.slice_files(corpus, slice_mb, workdir / f"slice-{name}-{slice_mb:g}mb")
    return files, f"real: the first {slice_mb:g} MB of {corpus.describe()}"


def corpus_source(corpus: str) -> tuple[list[str] | None, str]:
    """(files, description) of a --corpus value for a benchmark that makes its own generated input: a named real
    corpus (built on first use, reused after), the files of a glob, or (None, "") for ``generated``."""
    if corpus == GENERATED:
        return None, ""
    if corpus in REAL_CORPORA:
        import corpora

        built = corpora.build(corpus)
        return built.files, f"real: {built.describe()}"
    files = [os.path.abspath(f) for f in sorted(glob.glob(os.path.expanduser(corpus)))]
    if not files:
        raise SystemExit(f"--corpus {corpus!r} is neither a corpus name ({', '.join(REAL_CORPORA)}, {GENERATED}) nor "
                         "a glob matching a file")
    size = sum(os.path.getsize(f) for f in files)
    return files, f"{len(files)} file(s) matching {corpus!r}, {size / MB:.1f} MB on disk"


def read_texts(files: list[str], text_field: str) -> list[str]:
    """Every non-empty string text field of the files, in order."""
    texts = []
    for path in files:
        for obj in iter_json_records(path):
            if isinstance(obj, dict):
                text = obj.get(text_field)
                if isinstance(text, str) and text:
                    texts.append(text)
    return texts


def training_tokenizer(workdir: Path, files: list[str], text_field: str) -> str:
    """A 32k byte-level BPE tokenizer.json trained on ~10 MB spread over the corpus (cached in workdir)."""
    digest = hashlib.sha256()
    for path in files:
        st = os.stat(path)
        digest.update(f"{os.path.abspath(path)}:{st.st_size}:{st.st_mtime_ns};".encode())
    path = workdir / f"tokenizer-{TOKENIZER_VOCAB // 1000}k-{digest.hexdigest()[:12]}.json"
    if path.exists():
        log(f"reusing the tokenizer {path}")
        return str(path)
    log(f"training a {TOKENIZER_VOCAB // 1000}k byte-level BPE tokenizer on ~{TOKENIZER_SAMPLE_BYTES / MB:g} MB ...")
    from transforms.tokenize.training import train_byte_level_bpe

    t0 = time.perf_counter()
    texts = read_texts(files, text_field)
    total = sum(len(t.encode("utf-8")) for t in texts)
    step = max(1, round(total / TOKENIZER_SAMPLE_BYTES))
    sample = texts[::step]
    train_byte_level_bpe(sample, TOKENIZER_VOCAB, (EOS,)).save(str(path))
    log(f"  {len(sample)} documents, {sum(len(t.encode()) for t in sample) / MB:.1f} MB, "
        f"{time.perf_counter() - t0:.1f} s -> {path}")
    return str(path)


# ---------------------------------------------------------------------------------------------------------------
# the measured systems (each runs in a fresh child process: ``prepare_throughput.py --_child SPEC.json``)
# ---------------------------------------------------------------------------------------------------------------


def text_batches(texts: list[str], batch_bytes: int = BATCH_BYTES) -> list[list[str]]:
    """Consecutive texts grouped into batches of about ``batch_bytes`` UTF-8 bytes."""
    batches: list[list[str]] = []
    current: list[str] = []
    size = 0
    for text in texts:
        current.append(text)
        size += len(text.encode("utf-8"))
        if size >= batch_bytes:
            batches.append(current)
            current, size = [], 0
    if current:
        batches.append(current)
    return batches


def child_raw_hf(spec: dict[str, Any]) -> dict[str, Any]:
    """Raw HF tokenizers: encode_batch_fast over ~1 MB batches (texts in memory first, untimed)."""
    from tokenizers import Tokenizer

    batches = text_batches(read_texts(spec["files"], spec["text_field"]))
    tok = Tokenizer.from_file(spec["tokenizer"])
    encode = getattr(tok, "encode_batch_fast", tok.encode_batch)
    tokens = 0
    t0 = time.perf_counter()
    for batch in batches:
        tokens += sum(map(len, encode(batch, add_special_tokens=False)))
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "tokens": tokens, "docs": sum(map(len, batches))}


def child_raw_gigatoken(spec: dict[str, Any]) -> dict[str, Any]:
    """Raw gigatoken: encode_batch(parallel=...) over ~1 MB batches (texts in memory first, untimed)."""
    import gigatoken

    batches = text_batches(read_texts(spec["files"], spec["text_field"]))
    with open(spec["tokenizer"], "rb") as fh:
        tok = gigatoken.Tokenizer.from_json(fh.read())
    parallel = bool(spec["parallel"])
    tokens = 0
    t0 = time.perf_counter()
    for batch in batches:
        offsets = tok.encode_batch(batch, parallel=parallel).layout.offsets.data
        tokens += int(offsets[-1] - offsets[0])
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "tokens": tokens, "docs": sum(map(len, batches))}


def child_tokenmill(spec: dict[str, Any]) -> dict[str, Any]:
    """tokenmill prepare through its Python API: run() timed from the call to the manifest written."""
    import logging

    logging.basicConfig(level=logging.ERROR)
    for name in ("apache_beam", "root", "absl"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from pipelines.prepare import PrepareConfig, run
    from schemas import manifest as m

    cfg = PrepareConfig(
        inputs=list(spec["files"]), output=spec["output"], tokenizer=spec["tokenizer"], seq_len=spec["seq_len"],
        text_field=spec["text_field"], id_field=spec["id_field"], overwrite=True, workers=spec["workers"],
    )
    t0 = time.perf_counter()
    manifest = run(cfg, beam_args=[])
    seconds = time.perf_counter() - t0
    counts = manifest[m.K_COUNTS]
    return {
        "seconds": seconds,
        "tokens": counts["tokens"] - counts["docs_written"],  # without the EOS appended to every document
        "docs": counts["docs_written"],
        "manifest_wall_time_s": manifest.get(m.K_WALL_TIME),
        "bytes_read": counts["bytes_read"],
        "backend": manifest[m.K_TOKENIZER].get(m.T_BACKEND),
        "backend_streams": manifest[m.K_TOKENIZER].get(m.T_BACKEND_STREAMS),
        "streams": manifest.get(m.K_STREAMS),
        "rejected": counts["docs_rejected"],
    }


def child_datatrove(spec: dict[str, Any]) -> dict[str, Any]:
    """datatrove: JsonlReader -> DocumentTokenizer on a LocalPipelineExecutor; executor.run() timed."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.tokens import DocumentTokenizer

    output = Path(spec["output"])
    executor = LocalPipelineExecutor(
        pipeline=[
            JsonlReader(spec["input_dir"], text_key=spec["text_field"], id_key=spec["id_field"], glob_pattern="*"),
            DocumentTokenizer(
                output_folder=str(output / "tokens"),
                tokenizer_name_or_path=spec["tokenizer"],
                eos_token=spec["eos"],
                shuffle_documents=False,
            ),
        ],
        tasks=spec["tasks"],
        workers=spec["tasks"],
        logging_dir=str(output / "logs"),
        skip_completed=False,
    )
    t0 = time.perf_counter()
    executor.run()
    seconds = time.perf_counter() - t0
    tokens = 0
    for meta in sorted((output / "tokens").glob("*.metadata")):
        tokens += int(meta.read_text().splitlines()[1])
    # the .index files hold one uint64 document end per document
    docs = sum(p.stat().st_size // 8 for p in (output / "tokens").glob("*.index"))
    # every document got one EOS token more: remove them to compare with the raw encoders
    return {"seconds": seconds, "tokens": tokens - docs, "docs": docs,
            "tokens_with_eos": tokens}


CHILDREN: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "raw-hf": child_raw_hf,
    "raw-gigatoken": child_raw_gigatoken,
    "tokenmill": child_tokenmill,
    "datatrove": child_datatrove,
}


def child_main(spec_path: str) -> int:
    """Entry point of a child process: run one system and write its result next to the spec."""
    spec = json.loads(Path(spec_path).read_text())
    result = CHILDREN[spec["kind"]](spec)
    Path(spec["result"]).write_text(json.dumps(result))
    return 0


# ---------------------------------------------------------------------------------------------------------------
# running children and measuring them
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Measured:
    """One child process run: its own result, wall time of the whole process, peak RSS of its process tree."""

    result: dict[str, Any]
    process_seconds: float
    peak_tree_rss: int
    peak_single_rss: int


class TreeRssSampler(threading.Thread):
    """Samples the summed RSS of a process and all its descendants every 50 ms; keeps the peak."""

    def __init__(self, pid: int) -> None:
        """A sampler of the tree rooted at ``pid`` (start() to begin)."""
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self.stop = threading.Event()

    def sample(self) -> None:
        """One sample of the tree."""
        import psutil

        try:
            root = psutil.Process(self.pid)
            procs = [root] + root.children(recursive=True)
        except psutil.Error:
            return
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                continue
        self.peak = max(self.peak, total)

    def run(self) -> None:
        """Sample until stopped."""
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(SAMPLE_INTERVAL_S)


def run_measured(argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> tuple[int, float, int, int]:
    """Run a command with its output in ``log_path``; returns (exit code, wall s, peak tree RSS, max single RSS)."""
    with open(log_path, "wb") as logfh:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=logfh, stderr=subprocess.STDOUT, env=env, cwd=str(repo_root()))
        sampler = TreeRssSampler(proc.pid)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        sampler.stop.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
    # ru_maxrss (KiB on Linux) of wait4 is the largest of the child and the descendants it waited for
    return proc.returncode, seconds, sampler.peak, usage.ru_maxrss * 1024


def run_child(kind: str, spec: dict[str, Any], workdir: Path, label: str) -> Measured:
    """Run one system in a fresh interpreter and collect its result and memory."""
    runs = workdir / "runs"
    runs.mkdir(exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
    spec = dict(spec, kind=kind, result=str(runs / f"{slug}.result.json"))
    spec_path = runs / f"{slug}.spec.json"
    spec_path.write_text(json.dumps(spec))
    Path(spec["result"]).unlink(missing_ok=True)
    log_path = runs / f"{slug}.log"
    code, seconds, peak, single = run_measured([sys.executable, str(Path(__file__).resolve()), "--_child",
                                                str(spec_path)], log_path)
    if code != 0 or not Path(spec["result"]).exists():
        raise RuntimeError(f"{label} failed (exit {code}); its output is in {log_path}:\n{tail(log_path)}")
    return Measured(json.loads(Path(spec["result"]).read_text()), seconds, peak, single)


def tokenmill_command(*args: str) -> list[str]:
    """The argv of a tokenmill command: this environment's console script (as a user runs it), or the module."""
    exe = Path(sys.executable).parent / "tokenmill"
    return ([str(exe)] if exe.exists() else [sys.executable, "-m", "pipelines.cli"]) + list(args)


def tokenmill_cli(files: list[str], tokenizer: str, output: Path, args: argparse.Namespace) -> list[str]:
    """The ``tokenmill prepare`` command line for these files."""
    cmd = tokenmill_command("prepare")
    for f in files:
        cmd += ["--input", f]
    cmd += ["--tokenizer", tokenizer, "--seq-len", str(args.seq_len), "--output", str(output), "--text-field",
            args.text_field, "--id-field", args.id_field, "--no-progress", "--overwrite"]
    return cmd


def run_cli(files: list[str], tokenizer: str, output: Path, args: argparse.Namespace, log_path: Path) -> Measured:
    """Run the tokenmill CLI as a subprocess; returns its manifest (as result), wall time and peak RSS."""
    code, seconds, peak, single = run_measured(tokenmill_cli(files, tokenizer, output, args), log_path)
    manifest_path = output / "manifest.json"
    if code != 0 or not manifest_path.exists():
        raise RuntimeError(f"tokenmill CLI failed (exit {code}); its output is in {log_path}:\n{tail(log_path)}")
    from schemas import manifest as m
    from schemas.shards import read_manifest

    manifest = read_manifest(str(output))
    counts = manifest[m.K_COUNTS]
    result = {"seconds": seconds, "tokens": counts["tokens"] - counts["docs_written"], "docs": counts["docs_written"],
              "manifest_wall_time_s": manifest.get(m.K_WALL_TIME),
              "backend": manifest[m.K_TOKENIZER].get(m.T_BACKEND)}
    return Measured(result, seconds, peak, single)


# ---------------------------------------------------------------------------------------------------------------
# reporting
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class SystemResult:
    """All repeats of one system."""

    name: str
    note: str
    runs: list[Measured] = field(default_factory=list)
    use_process_time: bool = False

    def times(self) -> list[float]:
        """Measured seconds of each repeat."""
        return [m.process_seconds if self.use_process_time else m.result["seconds"] for m in self.runs]

    @property
    def seconds(self) -> float:
        """Median seconds over the repeats."""
        return statistics.median(self.times())

    @property
    def peak_rss(self) -> int:
        """Largest peak process-tree RSS over the repeats."""
        return max(m.peak_tree_rss for m in self.runs)

    @property
    def tokens(self) -> int | None:
        """Tokens (no special tokens) of the first repeat."""
        return self.runs[0].result.get("tokens")


def log(message: str) -> None:
    """Progress line on stderr."""
    print(message, file=sys.stderr, flush=True)


def tail(path: Path, lines: int = 25) -> str:
    """The last lines of a log file."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def repo_root() -> Path:
    """The repository this script belongs to."""
    return Path(__file__).resolve().parent.parent


def fmt_ratio(a: float | None, b: float | None) -> str:
    """a / b as '12.3x', or '-'."""
    return f"{a / b:.2f}x" if a and b else "-"


def fmt_gb(n: int) -> str:
    """Bytes as GB (10^9) with 2 decimals."""
    return f"{n / GB:.2f} GB"


def verdict(ok: bool) -> str:
    """PASS or MISS."""
    return "PASS" if ok else "MISS"


def machine_line() -> str:
    """CPU count, model and library versions."""
    from importlib.metadata import PackageNotFoundError, version

    parts = [f"cores={os.cpu_count()}"]
    try:
        with open("/proc/cpuinfo") as fh:
            model = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "")
        if model:
            parts.append(f"cpu={model}")
    except OSError:
        pass
    parts.append(f"python={sys.version.split()[0]}")
    for pkg in ("tokenmill", "apache-beam", "gigatoken", "tokenizers", "datatrove"):
        try:
            parts.append(f"{pkg}={version(pkg)}")
        except PackageNotFoundError:
            parts.append(f"{pkg}=?")
    return " ".join(parts)


# ---------------------------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    corpus_arguments(ap, 75)
    ap.add_argument("--tokenizer", default=None, metavar="PATH",
                    help="HF tokenizer.json to use, with an end-of-text token tokenmill recognises (default: a 32k "
                         "byte-level BPE trained on the corpus)")
    ap.add_argument("--seq-len", type=int, default=2048, help="tokenmill --seq-len (default 2048)")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each throughput measurement; the median is "
                                                          "reported (default 1)")
    ap.add_argument("--skip-datatrove", action="store_true", help="do not run datatrove")
    ap.add_argument("--skip-memory", action="store_true", help="do not run the 1x/2x peak RSS measurement")
    ap.add_argument("--workdir", default=None, metavar="DIR",
                    help="where corpus, tokenizer and outputs go; kept, and the corpus and tokenizer are reused by "
                         "later runs (default: a temporary directory removed at the end)")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run every system, print the table, the targets and the memory results."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_benchmark(argv, parse_args, child_main, benchmark, "tokenmill-bench-")


def run_benchmark(argv: list[str], parse: Callable, child: Callable, bench: Callable, prefix: str) -> int:
    """A benchmark script's main: a child process's work, or ``bench(args, workdir, cores)`` in --workdir or in a
    temporary directory removed at the end."""
    if argv[:1] == ["--_child"]:
        return child(argv[1])
    args = parse(argv)
    temp = args.workdir is None
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix=prefix)).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        return bench(args, workdir, os.cpu_count() or 1)
    finally:
        if temp:
            shutil.rmtree(workdir, ignore_errors=True)


def corpus_files(args: argparse.Namespace, workdir: Path, generate: Callable[[Path, float], list[str]],
                 generated_desc: str) -> tuple[list[str], str]:
    """(files, description): a named real corpus (the default), the generated corpus, or the files of a glob."""
    if args.corpus in REAL_CORPORA:
        args.text_field, args.id_field = "text", "id"
        return named_corpus(args.corpus, args.slice_mb, workdir)
    if args.corpus == GENERATED:
        args.text_field, args.id_field = "text", "id"
        files = generate(workdir, args.size_mb)
        size = f", ~{args.size_mb:g} MB" if args.size_mb else ""
        return files, f"generated ({generated_desc}{size}), {len(files)} JSONL files in {Path(files[0]).parent}"
    files = [os.path.abspath(f) for f in sorted(glob.glob(os.path.expanduser(args.corpus)))]
    if not files:
        raise SystemExit(f"--corpus {args.corpus!r} is neither a corpus name ({', '.join(REAL_CORPORA)}, "
                         f"{GENERATED}) nor a glob matching a file")
    size = sum(os.path.getsize(f) for f in files)
    return files, f"{len(files)} file(s) matching {args.corpus!r}, {size / MB:.1f} MB on disk"


def benchmark(args: argparse.Namespace, workdir: Path, cores: int) -> int:
    """The whole benchmark in ``workdir``."""
    started = time.perf_counter()
    files, corpus_desc = corpus_files(args, workdir, generated_corpus,
                                      "stdlib sources/docstrings + chatterbot multilingual")
    log(f"corpus: {corpus_desc}")
    tokenizer = str(Path(args.tokenizer).resolve()) if args.tokenizer else training_tokenizer(workdir, files,
                                                                                               args.text_field)
    texts = read_texts(files, args.text_field)
    text_bytes = sum(len(t.encode("utf-8")) for t in texts)
    n_docs = len(texts)
    del texts
    file_bytes = sum(os.path.getsize(f) for f in files)
    mb = text_bytes / MB
    eos = eos_token(tokenizer)

    # datatrove reads a folder: give it one made of links to exactly these files
    dt_input = workdir / "datatrove-input"
    shutil.rmtree(dt_input, ignore_errors=True)
    dt_input.mkdir()
    for n, f in enumerate(files):
        os.symlink(f, dt_input / f"{n:05d}-{os.path.basename(f)}")

    common = {"files": files, "tokenizer": tokenizer, "text_field": args.text_field, "id_field": args.id_field}
    out_dir = workdir / "out"
    runs_dir = workdir / "runs"
    runs_dir.mkdir(exist_ok=True)
    systems: dict[str, SystemResult] = {
        "tm1": SystemResult("tokenmill prepare (workers=1, default)", "run() timed inside its process (imports "
                            "excluded): Beam pipeline from start to manifest written and run() returned"),
        "tm2": SystemResult("tokenmill prepare --workers 2", "as above, FnApiRunner multi_processing with 2 SDK "
                            "worker processes (their start-up is inside run())"),
        "cli": SystemResult("tokenmill prepare CLI (workers=1)", "whole `tokenmill prepare` command, interpreter "
                            "start and imports included", use_process_time=True),
        "hf": SystemResult("raw HF encode_batch_fast", f"tokenizers' rayon pool ({cores} cores), ~1 MB batches, texts "
                           "in memory (untimed) first"),
        "gtp": SystemResult("raw gigatoken (parallel=True)", f"rayon pool ({cores} cores), ~1 MB batches, texts in "
                            "memory (untimed) first; the reference of the 'vs raw gigatoken' column"),
        "gt1": SystemResult("raw gigatoken (parallel=False)", "one thread (as tokenmill calls it), ~1 MB batches, "
                            "texts in memory (untimed) first"),
    }
    specs: dict[str, tuple[str, dict[str, Any]]] = {
        "tm1": ("tokenmill", dict(common, output=str(out_dir / "tm1"), seq_len=args.seq_len, workers=1)),
        "tm2": ("tokenmill", dict(common, output=str(out_dir / "tm2"), seq_len=args.seq_len, workers=2)),
        "hf": ("raw-hf", common),
        "gtp": ("raw-gigatoken", dict(common, parallel=True)),
        "gt1": ("raw-gigatoken", dict(common, parallel=False)),
    }
    if not args.skip_datatrove:
        systems["dt"] = SystemResult("datatrove DocumentTokenizer", f"JsonlReader -> DocumentTokenizer, "
                                     f"LocalPipelineExecutor tasks={cores} workers={cores}, eos_token={eos!r}, "
                                     "shuffle_documents=False, batch_size=10000 (default), HF tokenizers underneath; "
                                     "executor.run() timed (imports in the parent excluded)")
        specs["dt"] = ("datatrove", dict(common, input_dir=str(dt_input), output=str(out_dir / "dt"), tasks=cores,
                                         eos=eos))
        if len(files) < cores:
            log(f"warning: {len(files)} input file(s) < {cores} tasks: some datatrove tasks get no work")

    for rep in range(args.repeat):
        tag = f" (run {rep + 1}/{args.repeat})" if args.repeat > 1 else ""
        for key, system in systems.items():
            log(f"running {system.name}{tag} ...")
            if key == "cli":
                measured = run_cli(files, tokenizer, out_dir / "cli", args, runs_dir / f"cli-{rep}.log")
            else:
                kind, spec = specs[key]
                measured = run_child(kind, spec, workdir, f"{key}-{rep}")
            system.runs.append(measured)
            secs = system.times()[-1]
            log(f"  {secs:.2f} s, {mb / secs:.1f} MB/s, peak tree RSS {fmt_gb(measured.peak_tree_rss)}")
            shutil.rmtree(out_dir, ignore_errors=True)

    memory: dict[str, Measured] = {}
    if not args.skip_memory:
        log("memory: tokenmill prepare CLI on the corpus at 1x and 2x ...")
        double = doubled_corpus(files, workdir / "corpus-2x", args.text_field, args.id_field)
        for label, inputs in (("1x", files), ("2x", double)):
            memory[label] = run_cli(inputs, tokenizer, out_dir / f"mem-{label}", args, runs_dir / f"memory-{label}.log")
            log(f"  {label}: peak tree RSS {fmt_gb(memory[label].peak_tree_rss)}, "
                f"{memory[label].process_seconds:.1f} s")
            shutil.rmtree(out_dir, ignore_errors=True)
        shutil.rmtree(workdir / "corpus-2x", ignore_errors=True)

    print_report(args, systems, memory, corpus_desc, tokenizer, mb, file_bytes, n_docs, cores,
                 time.perf_counter() - started)
    return 0


def eos_token(tokenizer: str) -> str:
    """The end-of-text token tokenmill appends (as it resolves it), as text, for datatrove to append too."""
    from tokenizers import Tokenizer

    from transforms.tokenize.tokenizer import resolve_tokenizer

    spec = resolve_tokenizer(tokenizer)
    return Tokenizer.from_file(tokenizer).id_to_token(spec.eos_id)


def print_report(args: argparse.Namespace, systems: dict[str, SystemResult], memory: dict[str, Measured],
                 corpus_desc: str, tokenizer: str, mb: float, file_bytes: int, n_docs: int, cores: int,
                 total_seconds: float) -> None:
    """The final report on stdout."""
    p = print
    p("")
    p("tokenmill prepare throughput benchmark")
    p("=" * 38)
    p(f"machine:    {machine_line()}")
    p(f"corpus:     {corpus_desc}")
    p(f"            {n_docs} documents, {mb:.1f} MB of text ({file_bytes / MB:.1f} MB of JSONL)")
    p(f"tokenizer:  {tokenizer}")
    p(f"tokenmill:  --seq-len {args.seq_len}, default options (backend auto, stream 32 MB, shard rows 8192)")
    p(f"throughput: MB of document text (UTF-8 bytes of the '{args.text_field}' field, MB = 10^6 bytes) / wall "
      f"seconds; median of {args.repeat} run(s); each system in a fresh process")
    p("")
    dt = systems.get("dt")
    gt = systems["gtp"]
    dt_rate = mb / dt.seconds if dt else None
    gt_rate = mb / gt.seconds
    header = f"{'system':<40} {'seconds':>8} {'MB/s':>8} {'vs datatrove':>13} {'vs raw gigatoken':>17} " \
             f"{'peak RSS':>10} {'tokens':>12}"
    p(header)
    p("-" * len(header))
    for s in systems.values():
        rate = mb / s.seconds
        p(f"{s.name:<40} {s.seconds:>8.2f} {rate:>8.1f} {fmt_ratio(rate, dt_rate):>13} "
          f"{fmt_ratio(rate, gt_rate):>17} {fmt_gb(s.peak_rss):>10} {s.tokens if s.tokens is not None else '-':>12}")
    p("")
    p("how each was timed / configured:")
    for s in systems.values():
        runs = ", ".join(f"{t:.2f}" for t in s.times())
        whole = ", ".join(f"{m.process_seconds:.1f}" for m in s.runs)
        p(f"  {s.name}: {s.note} [measured: {runs} s; whole child process: {whole} s]")
    tm = systems["tm1"].runs[0].result
    p(f"  tokenmill backend used: {tm.get('backend')} (streams per backend: {tm.get('backend_streams')}), "
      f"{tm.get('streams')} stream(s); manifest wall_time_s of the default run: {tm.get('manifest_wall_time_s')} s")
    p("  peak RSS: max over 50 ms samples of the summed RSS of the child process and all its descendants "
      "(GB = 10^9 bytes); the raw runs hold all texts in memory")
    p("  tokens: token ids produced, without the EOS appended per document (a cross-check that all did the same work)")
    tokens = {s.name: s.tokens for s in systems.values() if s.tokens is not None}
    if len(set(tokens.values())) <= 1:
        p(f"  token counts (no EOS) agree across systems: {next(iter(tokens.values()), '-')}")
    else:
        p("  WARNING: token counts differ across systems: " + ", ".join(f"{k}={v}" for k, v in tokens.items()))
    p("")
    p("targets (informational, never asserted):")
    tm_rate = mb / systems["tm1"].seconds
    tm2_rate = mb / systems["tm2"].seconds
    gt1_rate = mb / systems["gt1"].seconds
    if dt_rate:
        p(f"  [{verdict(tm_rate >= TARGET_VS_DATATROVE * dt_rate)}] tokenmill prepare (default) >= "
          f"{TARGET_VS_DATATROVE:g}x datatrove DocumentTokenizer: {tm_rate / dt_rate:.2f}x "
          f"({tm_rate:.1f} vs {dt_rate:.1f} MB/s)")
    else:
        p("  [SKIP] tokenmill prepare >= 8x datatrove (--skip-datatrove)")
    p(f"  [{verdict(tm_rate >= TARGET_VS_GIGATOKEN * gt_rate)}] tokenmill prepare (default) >= "
      f"{TARGET_VS_GIGATOKEN:g}x raw gigatoken on {cores} cores: {tm_rate / gt_rate:.2f}x "
      f"({tm_rate:.1f} vs {gt_rate:.1f} MB/s)")
    p(f"  (info) tokenmill --workers 2: {fmt_ratio(tm2_rate, dt_rate)} datatrove, {tm2_rate / gt_rate:.2f}x raw "
      f"gigatoken on {cores} cores; tokenmill default vs single-thread raw gigatoken: {tm_rate / gt1_rate:.2f}x")
    if memory:
        one, two = memory["1x"], memory["2x"]
        growth = two.peak_tree_rss / one.peak_tree_rss - 1
        scaled = f" (corpus is {mb:.0f} MB, the target is stated for {TARGET_RSS_CORPUS_MB} MB)" \
            if abs(mb - TARGET_RSS_CORPUS_MB) > 5 else ""
        p(f"  [{verdict(one.peak_tree_rss <= TARGET_RSS_BYTES)}] peak RSS <= {fmt_gb(TARGET_RSS_BYTES)} at 1x: "
          f"{fmt_gb(one.peak_tree_rss)}{scaled}")
        p(f"  [{verdict(growth <= TARGET_RSS_GROWTH)}] 2x input grows peak RSS by <= {TARGET_RSS_GROWTH:.0%}: "
          f"{growth:+.1%}")
        p("")
        p("peak RSS of tokenmill prepare (CLI, workers=1, process tree sampled every 50 ms; 2x = every file "
          "copied under another name with other ids):")
        p(f"  1x ({mb:.1f} MB text):  {fmt_gb(one.peak_tree_rss)}  (largest single process "
          f"{fmt_gb(one.peak_single_rss)}, {one.process_seconds:.1f} s)")
        p(f"  2x ({2 * mb:.1f} MB text): {fmt_gb(two.peak_tree_rss)}  (largest single process "
          f"{fmt_gb(two.peak_single_rss)}, {two.process_seconds:.1f} s)")
        p(f"  growth: {growth:+.1%}")
    p("")
    p(f"total benchmark time: {total_seconds:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
