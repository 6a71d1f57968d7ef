"""Shared fixtures: a tiny tokenizer trained here, a real multilingual corpus shipped in a PyPI package."""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

import fsspec
import numpy as np
import orjson
import pytest

from pipelines.prepare import PrepareConfig, run
from schemas.shards import iter_packed_rows
from transforms.read.demo_corpus import demo_records
from transforms.tokenize.training import END_OF_TEXT, train_byte_level_bpe

# derived spaCy rule tables go to a cache of this test run, not the user's (worker processes inherit it)
os.environ.setdefault("TOKENMILL_CACHE_DIR", tempfile.mkdtemp(prefix="tokenmill-test-cache-"))


def multilingual_texts() -> list[str]:
    """Conversations in 28 languages from the chatterbot-corpus package (one document per conversation)."""
    import chatterbot_corpus
    import yaml

    root = Path(chatterbot_corpus.__file__).parent / "data"
    texts = []
    for path in sorted(root.rglob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for conv in data.get("conversations", []) or []:
            lines = [str(x) for x in conv if x is not None]
            if lines:
                texts.append("\n".join(lines))
    return texts


@pytest.fixture(scope="session")
def ml_texts() -> list[str]:
    """A real multilingual corpus (several thousand short documents)."""
    texts = multilingual_texts()
    assert len(texts) > 1000
    return texts


@pytest.fixture(scope="session")
def code_texts() -> list[str]:
    """Some real Python source and docstrings (longer documents)."""
    out = []
    for rec in demo_records():
        out.append(rec["text"])
        if len(out) >= 60:
            break
    return out


@pytest.fixture(scope="session")
def tokenizer_path(tmp_path_factory, ml_texts, code_texts) -> str:
    """A byte-level BPE tokenizer (vocab 2000, <|endoftext|>) trained on the test corpora."""
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    train_byte_level_bpe(ml_texts + code_texts, 2000).save(str(path))
    return str(path)


@pytest.fixture(scope="session")
def hf_tokenizer(tokenizer_path):
    """The fixture tokenizer loaded with HF tokenizers (the format of record)."""
    from tokenizers import Tokenizer

    return Tokenizer.from_file(tokenizer_path)


def write_jsonl(path, records) -> str:
    """Write dicts (or raw bytes lines) as JSONL; returns the path."""
    with open(path, "wb") as fh:
        for rec in records:
            fh.write(rec if isinstance(rec, bytes) else orjson.dumps(rec) + b"\n")
    return str(path)


def prepare(inputs, output, tokenizer, seq_len=64, beam_args=None, **kwargs) -> dict:
    """Run the prepare pipeline on FnApiRunner (unless beam_args say otherwise); returns the manifest."""
    cfg = PrepareConfig(inputs=list(inputs) if not isinstance(inputs, str) else [inputs], output=str(output),
                        tokenizer=tokenizer, seq_len=seq_len, **kwargs)
    return run(cfg, beam_args or [])


def documents_from_shards(output, eos_id: int) -> list[list[int]]:
    """Concatenate every row's real tokens in shard and row order and split on EOS (EOS dropped)."""
    rows = [r.input_ids[: len(r.input_ids) - r.num_pad] for r in iter_packed_rows(str(output))]
    if not rows:
        return []
    flat = np.concatenate(rows)
    assert flat.size == 0 or flat[-1] == eos_id, "the token stream must end with EOS"
    return [d[:-1].tolist() for d in np.split(flat, np.flatnonzero(flat == eos_id) + 1)[:-1]]


def hf_ids(hf_tokenizer, texts) -> list[list[int]]:
    """Reference token ids (no special tokens added)."""
    return [e.ids for e in hf_tokenizer.encode_batch(list(texts), add_special_tokens=False)]


def shard_bytes(output) -> dict[str, bytes]:
    """Every shard file's bytes by name."""
    d = Path(output) / "shards"
    return {p.name: p.read_bytes() for p in sorted(d.glob("*.parquet"))}


def eos_of(tokenizer_path: str) -> int:
    """Id of <|endoftext|> in a fixture tokenizer."""
    from tokenizers import Tokenizer

    return Tokenizer.from_file(tokenizer_path).token_to_id(END_OF_TEXT)




@pytest.fixture
def memfs():
    """fsspec's in-process memory filesystem, with a fresh root directory removed afterwards."""
    fs = fsspec.filesystem("memory")
    root = f"/tm-{uuid.uuid4().hex[:10]}"
    yield fs, root
    if fs.exists(root):
        fs.rm(root, recursive=True)


@pytest.fixture(scope="module")
def dask_address(tmp_path_factory):
    """A real Dask cluster (a scheduler and two one-thread worker processes on 127.0.0.1) for a test module (idle
    workers are not left polling through the rest of the suite)."""
    pytest.importorskip("distributed")
    from tests.dask_cluster import dask_cluster

    with dask_cluster(tmp_path_factory.mktemp("dask-logs")) as address:
        yield address


def pytest_sessionfinish(session, exitstatus) -> None:
    """With TOKENMILL_OUTPUT_DIGESTS=FILE: digest every result the suite left (benchmarks/output_identity.py)."""
    target = os.environ.get("TOKENMILL_OUTPUT_DIGESTS")
    factory = getattr(session.config, "_tmp_path_factory", None)
    if not target or factory is None:
        return
    import importlib.util

    script = Path(__file__).resolve().parent.parent / "benchmarks" / "output_identity.py"
    spec = importlib.util.spec_from_file_location("output_identity", script)
    identity = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(identity)
    base = factory.getbasetemp()
    digests = identity.digest_results(base, {str(base): "<tmp>"})
    Path(target).write_text(orjson.dumps(digests, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode())
