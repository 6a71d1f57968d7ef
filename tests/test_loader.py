"""The training-side loader: partitions, epoch order, resuming, batch arrays, several row lengths."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from schemas import loader
from schemas.loader import PackedShardDataset
from schemas.loader import dataset as loader_dataset
from schemas.manifest import MANIFEST_FORMAT
from schemas.shards import INPUT_IDS_LEAF, SHARD_SCHEMA, iter_packed_rows
from tests.conftest import write_jsonl

SEQ_LEN = 64


# -- data ---------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def prepared(tmp_path_factory, tokenizer_path, ml_texts) -> str:
    """A real `tokenmill prepare` output: the multilingual corpus in rows of 64 tokens, 300 rows per shard."""
    from pipelines.cli import main

    root = tmp_path_factory.mktemp("loader")
    corpus = write_jsonl(root / "corpus.jsonl", [{"id": str(i), "text": t} for i, t in enumerate(ml_texts)])
    out = root / "out"
    assert main(["prepare", "-i", corpus, "-t", tokenizer_path, "--seq-len", str(SEQ_LEN), "-o", str(out),
                 "--shard-rows", "300", "--no-progress"]) == 0
    return str(out)


@pytest.fixture(scope="module")
def truth(prepared) -> dict[str, list]:
    """Every row of the prepare output in manifest order, read with the reference reader."""
    rows = list(iter_packed_rows(prepared))
    return {"ids": np.stack([r.input_ids for r in rows]), "cu": [r.cu_seqlens for r in rows],
            "pad": np.array([r.num_pad for r in rows])}


def _random_rows(rng: np.random.Generator, n: int, seq_len: int, loss_mask: bool, id_high: int = 5000) -> pa.Table:
    ids = rng.integers(3, id_high, (n, seq_len)).astype(np.uint32)
    cus, pads = [], []
    for i in range(n):
        kind = rng.random()
        pad = 0 if kind < 0.6 else (seq_len if kind > 0.97 else int(rng.integers(1, seq_len)))
        real = seq_len - pad
        inner = np.sort(rng.choice(np.arange(1, real), min(real - 1, int(rng.integers(0, 5))), replace=False)) \
            if real > 1 else np.array([], np.int64)
        cus.append([0, *inner.tolist(), real] if real else [0])
        pads.append(pad)
        ids[i, real:] = 0
    columns = [pa.array(list(ids), pa.list_(pa.uint32())), pa.array(cus, pa.list_(pa.int32())),
               pa.array(pads, pa.int32())]
    fields = list(SHARD_SCHEMA)
    if loss_mask:
        masks = (rng.random((n, seq_len)) < 0.7).astype(np.uint8)
        columns.append(pa.array(list(masks), pa.list_(pa.uint8())))
        fields.append(pa.field("loss_mask", pa.list_(pa.uint8()), nullable=False))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def write_synthetic(root: Path, rows_by_len: dict[int, list[int]], group_rows: int = 50, seed: int = 0,
                    odds: dict[int, float] | None = None, loss_mask: bool = False, id_high: int = 5000,
                    **writer: object) -> str:
    """Shards of several row lengths under shards/len=NNNNN/ and a manifest with a decompose curriculum."""
    rng = np.random.default_rng(seed)
    longest = max(rows_by_len)
    shards = []
    for length, counts in sorted(rows_by_len.items()):
        directory = root / "shards" / f"len={length:05d}"
        directory.mkdir(parents=True, exist_ok=True)
        for i, n in enumerate(counts):
            table = _random_rows(rng, n, length, loss_mask, id_high)
            path = directory / f"part-{i:05d}.parquet"
            options = {"compression": "zstd", "column_encoding": {INPUT_IDS_LEAF: "BYTE_STREAM_SPLIT"},
                       "use_dictionary": False, **writer}
            pq.write_table(table, path, row_group_size=group_rows, **options)
            shards.append({"path": f"shards/len={length:05d}/{path.name}", "rows": n, "seq_len": length})
    curriculum = {"batch_multipliers": {str(n): longest // n for n in rows_by_len}}
    if odds:
        curriculum["sampling_odds"] = {str(n): p for n, p in odds.items()}
    manifest = {"format": MANIFEST_FORMAT, "fingerprint": f"synthetic-{seed}", "seq_len": longest,
                "shards": shards, "decompose": {"lengths": sorted(rows_by_len), "curriculum": curriculum}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return str(root)


def synthetic_truth(path: str) -> dict[int, tuple[np.ndarray, list[np.ndarray], np.ndarray, np.ndarray | None]]:
    """Global row index -> (ids, cu_seqlens, num_pad, loss_mask or None), in manifest order."""
    manifest = json.loads((Path(path) / "manifest.json").read_text())
    out, at = {}, 0
    for shard in manifest["shards"]:
        table = pq.read_table(Path(path) / shard["path"])
        masks = table.column("loss_mask").to_pylist() if "loss_mask" in table.column_names else None
        for i, (ids, cu, pad) in enumerate(zip(*(table.column(c).to_pylist() for c in
                                                 ("input_ids", "cu_seqlens", "num_pad")))):
            out[at] = (np.array(ids), np.array(cu), pad, None if masks is None else np.array(masks[i]))
            at += 1
    return out


def read_all(ds: PackedShardDataset, batch_size: int) -> list[dict]:
    """One epoch's batches (copies)."""
    return [{k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in b.items()} for b in ds.batches(batch_size)]


def same_batches(a: list[dict], b: list[dict]) -> bool:
    """Batch lists equal in every array."""
    return len(a) == len(b) and all(
        x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x) for x, y in zip(a, b))


def check_batch(batch: dict, rows: list[tuple[np.ndarray, np.ndarray, int, np.ndarray | None]]) -> None:
    """The batch arrays agree with the rows they come from (ids, cu_seqlens, num_pad, loss_mask)."""
    n, seq_len = batch["input_ids"].shape
    assert len(rows) == n and batch["input_ids"].dtype == np.int64 and batch["position_ids"].dtype == np.int64
    expected_starts = []
    for r, (ids, cu, pad, mask) in enumerate(rows):
        assert np.array_equal(batch["input_ids"][r], ids)
        assert cu[-1] == seq_len - pad
        starts = list(cu[:-1]) + ([cu[-1]] if pad else [])
        expected_starts += sorted({r * seq_len + int(s) for s in starts})
        want_mask = mask if mask is not None else (np.arange(seq_len) < seq_len - pad)
        assert np.array_equal(batch["loss_mask"][r], want_mask.astype(np.uint8))
    cu = batch["cu_seqlens"]
    assert cu.dtype == np.int32 and cu[0] == 0 and cu[-1] == n * seq_len
    assert cu[:-1].tolist() == expected_starts
    assert batch["max_seqlen"] == int(np.diff(cu).max())
    # positions restart at 0 at every segment start (padding included) and count up inside a segment
    flat = batch["position_ids"].ravel()
    assert np.flatnonzero(flat == 0).tolist() == cu[:-1].tolist()
    seg = np.repeat(np.arange(len(cu) - 1), np.diff(cu))
    assert np.array_equal(flat, np.arange(n * seq_len) - cu[:-1][seg])


# -- partitions ---------------------------------------------------------------------------------------------------

def test_8_ranks_x_2_workers_read_every_row_once_per_epoch(prepared, truth):
    n_rows = len(truth["ids"])
    for epoch in (0, 3):
        seen, counts = [], []
        for rank in range(8):
            for worker in range(2):
                ds = PackedShardDataset(prepared, rank=rank, world_size=8, worker=(worker, 2), seed=1234)
                ds.set_epoch(epoch)
                got = np.concatenate([b["row_index"] for b in ds.batches(batch_size=8)])
                seen.append(got)
                counts.append(len(got))
        seen = np.concatenate(seen)
        assert len(seen) == n_rows and np.array_equal(np.sort(seen), np.arange(n_rows))
        assert max(counts) - min(counts) <= 1  # uneven by at most one row (drop_last=False)


def test_drop_last_gives_every_consumer_the_same_full_batches(prepared, truth):
    n_rows, consumers, batch_size = len(truth["ids"]), 16, 8
    per_consumer = (n_rows // consumers) // batch_size
    seen = []
    for rank in range(8):
        for worker in range(2):
            ds = PackedShardDataset(prepared, rank=rank, world_size=8, worker=(worker, 2), seed=7, drop_last=True)
            batches = list(ds.batches(batch_size))
            assert len(batches) == per_consumer == ds.num_batches(batch_size)
            assert all(b["input_ids"].shape == (batch_size, SEQ_LEN) for b in batches)
            seen.append(np.concatenate([b["row_index"] for b in batches]))
    seen = np.concatenate(seen)
    assert len(np.unique(seen)) == len(seen) == consumers * per_consumer * batch_size
    assert n_rows - len(seen) < consumers * (batch_size + 1)


def test_batches_hold_the_rows_they_name(prepared, truth):
    ds = PackedShardDataset(prepared, rank=1, world_size=3, seed=5, block_rows=64)  # blocks across row groups
    for batch in ds.batches(batch_size=8):
        rows = [(truth["ids"][i], truth["cu"][i], int(truth["pad"][i]), None) for i in batch["row_index"]]
        check_batch(batch, rows)


def test_without_shuffle_rows_come_in_manifest_order(prepared, truth):
    ds = PackedShardDataset(prepared, shuffle=False, block_rows=70)
    batches = list(ds.batches(batch_size=16))
    assert np.array_equal(np.concatenate([b["row_index"] for b in batches]), np.arange(len(truth["ids"])))
    assert np.array_equal(np.concatenate([b["input_ids"] for b in batches]), truth["ids"])
    assert batches[-1]["input_ids"].shape[0] == (len(truth["ids"]) % 16 or 16)


def test_padding_is_a_segment_of_its_own(tmp_path):
    path = write_synthetic(tmp_path, {32: [120, 80]}, group_rows=30, seed=3)
    rows = synthetic_truth(path)
    assert any(pad for _, _, pad, _ in rows.values()) and any(pad == 32 for _, _, pad, _ in rows.values())
    for batch in PackedShardDataset(path, seed=2).batches(batch_size=6):
        check_batch(batch, [rows[int(i)] for i in batch["row_index"]])


def test_loss_mask_column_is_used(tmp_path):
    path = write_synthetic(tmp_path, {16: [90]}, group_rows=40, loss_mask=True)
    rows = synthetic_truth(path)
    for batch in PackedShardDataset(path, seed=2).batches(batch_size=7):
        check_batch(batch, [rows[int(i)] for i in batch["row_index"]])


def test_own_page_decoding_matches_pyarrow(prepared):
    fast = PackedShardDataset(prepared, rank=1, world_size=2, seed=6)
    slow = PackedShardDataset(prepared, rank=1, world_size=2, seed=6, fast_decode=False)
    assert same_batches(read_all(fast, 8), read_all(slow, 8))
    assert all(f.ids_leaf is not None for f in fast._reader._files.values())  # the fast path was taken


@pytest.mark.parametrize("writer, fast", [
    ({}, True),
    ({"column_encoding": {INPUT_IDS_LEAF: "PLAIN"}}, True),
    ({"compression": "snappy"}, True),
    ({"compression": "none", "data_page_size": 1000}, True),  # many small pages
    ({"compression": "gzip", "data_page_version": "2.0"}, True),
    ({"data_page_version": "2.0", "data_page_size": 3000}, True),
    ({"column_encoding": None, "use_dictionary": True}, False),  # a dictionary: pyarrow decodes
])
def test_page_layouts(tmp_path, writer, fast):
    path = write_synthetic(tmp_path, {64: [130, 70]}, group_rows=40, id_high=2 ** 31 - 1, **writer)
    rows = synthetic_truth(path)
    ds = PackedShardDataset(path, seed=4)
    batches = read_all(ds, 5)
    for batch in batches:
        check_batch(batch, [rows[int(i)] for i in batch["row_index"]])
    assert all((f.ids_leaf is not None) == fast for f in ds._reader._files.values())
    assert same_batches(batches, read_all(PackedShardDataset(path, seed=4, fast_decode=False), 5))


def test_ids_of_any_size_after_two_byte_decoding(tmp_path):
    """int64 batches decode row groups of ids below 2**16 to 2 bytes; a later group with larger ids is exact too."""
    path = write_synthetic(tmp_path, {64: [120]}, group_rows=40)
    shard = tmp_path / "shards" / "len=00064" / "part-00000.parquet"
    table = pq.read_table(shard)
    ids = np.array(table.column("input_ids").to_pylist(), np.uint32)
    ids[100, 0] = 2 ** 16 + 7  # the third row group only; its first page
    ids[110, 5] = 2 ** 31 - 1
    table = table.set_column(0, table.schema.field(0), pa.array(list(ids), pa.list_(pa.uint32())))
    pq.write_table(table, shard, row_group_size=40, compression="zstd", use_dictionary=False,
                   column_encoding={INPUT_IDS_LEAF: "BYTE_STREAM_SPLIT"})
    rows = synthetic_truth(path)
    for options in ({"shuffle": False}, {"shuffle_window": 1}, {"shuffle_window": 3}):
        ds = PackedShardDataset(path, seed=4, cache_row_groups=3, **options)
        batches = read_all(ds, 7)
        for batch in batches:
            check_batch(batch, [rows[int(i)] for i in batch["row_index"]])
        if options == {"shuffle": False}:  # groups in file order: once a file has a wide group it stays wide
            assert [g.ids.dtype for g in ds._reader._groups.values()] == [np.uint16, np.uint16, np.uint32]
        assert same_batches(batches, read_all(PackedShardDataset(path, seed=4, fast_decode=False, **options), 7))
    narrow = PackedShardDataset(path, seed=4, ids_dtype=np.int32)  # a 4-byte view: no 2-byte decoding
    read_all(narrow, 7)
    assert all(g.ids.dtype == np.uint32 for g in narrow._reader._groups.values())


def test_long_rows_across_windows(tmp_path):
    path = write_synthetic(tmp_path, {512: [70, 45]}, group_rows=16, loss_mask=True)
    rows = synthetic_truth(path)
    seen = []
    for worker in range(2):
        for batch in PackedShardDataset(path, worker=(worker, 2), seed=1, shuffle_window=2).batches(6):
            check_batch(batch, [rows[int(i)] for i in batch["row_index"]])
            seen.append(batch["row_index"])
    assert np.array_equal(np.sort(np.concatenate(seen)), np.arange(115))


def test_batch_arrays_are_reused_only_when_no_batch_holds_them(prepared, truth, monkeypatch):
    monkeypatch.setattr(loader_dataset, "_CHUNK_TOKENS", 4 * 8 * SEQ_LEN)  # batch arrays for 4 batches at a time
    held = list(PackedShardDataset(prepared, seed=2, shuffle_window=2).batches(8))
    assert len({id(b["input_ids"].base) for b in held}) >= len(held) // 4
    for batch in held:  # nothing held was overwritten
        assert np.array_equal(batch["input_ids"], truth["ids"][batch["row_index"]])
        assert np.array_equal(batch["loss_mask"].sum(axis=1), SEQ_LEN - truth["pad"][batch["row_index"]])
    ds = PackedShardDataset(prepared, seed=2, shuffle_window=2)
    for batch in ds.batches(8):
        assert np.array_equal(batch["input_ids"], truth["ids"][batch["row_index"]])
        # dropped batches free their arrays for the next ones: every batch lives in one of a few kept arrays
        for key in ("input_ids", "position_ids"):
            assert any(batch[key].base is kept for kept in ds._buffers.arrays["<i8"])
    assert len(ds._buffers.arrays["<i8"]) <= 4


def test_ids_dtypes(prepared, truth):
    for dtype, expected in ((None, np.uint32), (np.int32, np.int32), (np.int64, np.int64)):
        ds = PackedShardDataset(prepared, seed=3, ids_dtype=dtype, position_dtype=np.int32)
        batch = next(iter(ds.batches(4)))
        assert batch["input_ids"].dtype == expected and batch["position_ids"].dtype == np.int32
        assert np.array_equal(batch["input_ids"], truth["ids"][batch["row_index"]])


# -- epoch order --------------------------------------------------------------------------------------------------

def test_order_depends_on_seed_and_epoch_only(prepared):
    def order(seed: int, epoch: int) -> np.ndarray:
        ds = PackedShardDataset(prepared, rank=2, world_size=4, seed=seed)
        ds.set_epoch(epoch)
        return np.concatenate([b["row_index"] for b in ds.batches(8)])

    a = order(1234, 0)
    assert np.array_equal(a, order(1234, 0))
    assert not np.array_equal(a, order(1234, 1))
    assert not np.array_equal(a, order(99, 0))
    assert not np.array_equal(np.sort(a), np.sort(order(1234, 1)))  # each epoch deals other rows to the rank
    ds = PackedShardDataset(prepared, rank=2, world_size=4, seed=1234)
    first = np.concatenate([b["row_index"] for b in ds.batches(8)])
    assert ds.epoch == 1  # an exhausted epoch moves on
    second = np.concatenate([b["row_index"] for b in ds.batches(8)])
    assert np.array_equal(first, a) and np.array_equal(second, order(1234, 1))


def test_rows_of_a_batch_come_from_many_places(prepared):
    ds = PackedShardDataset(prepared, seed=11)
    batch = next(iter(ds.batches(16)))
    shards = {int(i) // 300 for i in batch["row_index"]}
    assert len(shards) >= 6  # windows of 16 blocks (row groups) are mixed row by row


# -- resuming -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("k", [0, 1, 37, 90])
def test_resume_continues_exactly(prepared, k):
    options = dict(rank=1, world_size=2, worker=(1, 2), seed=42, shuffle_window=3)
    reference = PackedShardDataset(prepared, **options)
    expected = read_all(reference, 10)[k:] + read_all(reference, 10)  # the rest of epoch 0, then epoch 1

    ds = PackedShardDataset(prepared, **options)
    it = ds.batches(10)
    for _ in range(k):
        next(it)
    state = json.loads(json.dumps(ds.state_dict()))
    assert state["epoch"] == 0 and state["batches"] == k

    resumed = PackedShardDataset(prepared, **options)
    resumed.load_state_dict(state)
    resumed.set_epoch(0)  # a training loop's set_epoch(epoch) keeps the position inside that epoch
    got = read_all(resumed, 10) + read_all(resumed, 10)
    assert same_batches(got, expected)


def test_resume_at_the_end_of_an_epoch_starts_the_next(prepared):
    ds = PackedShardDataset(prepared, seed=1)
    batches = read_all(ds, 32)
    state = ds.state_dict()
    assert (state["epoch"], state["batches"]) == (1, 0)
    again = PackedShardDataset(prepared, seed=1)
    again.load_state_dict(state)
    fresh = PackedShardDataset(prepared, seed=1)
    fresh.set_epoch(1)
    assert same_batches(read_all(again, 32), read_all(fresh, 32))
    assert len(batches) == fresh.num_batches(32, epoch=0)


def test_a_state_of_another_layout_or_dataset_is_refused(prepared, tmp_path):
    ds = PackedShardDataset(prepared, rank=0, world_size=8, seed=1)
    next(iter(ds.batches(8)))
    state = ds.state_dict()
    with pytest.raises(ValueError, match="world_size"):
        PackedShardDataset(prepared, rank=0, world_size=4, seed=1).load_state_dict(state)
    with pytest.raises(ValueError, match="rank"):
        PackedShardDataset(prepared, rank=1, world_size=8, seed=1).load_state_dict(state)
    with pytest.raises(ValueError, match="worker"):
        PackedShardDataset(prepared, rank=0, world_size=8, worker=(0, 2), seed=1).load_state_dict(state)
    with pytest.raises(ValueError, match="seed"):
        PackedShardDataset(prepared, rank=0, world_size=8, seed=2).load_state_dict(state)
    other = write_synthetic(tmp_path, {64: [40]})
    with pytest.raises(ValueError, match="another dataset"):
        PackedShardDataset(other, rank=0, world_size=8, seed=1).load_state_dict(state)
    with pytest.raises(ValueError, match="not a loader state"):
        ds.load_state_dict({"epoch": 0})
    resumed = PackedShardDataset(prepared, rank=0, world_size=8, seed=1)
    resumed.load_state_dict(state)
    with pytest.raises(ValueError, match="batch_size=8"):
        next(iter(resumed.batches(16)))


def test_a_stale_iterator_stops_with_an_error(prepared):
    ds = PackedShardDataset(prepared, seed=1)
    first = ds.batches(8)
    next(first)
    ds.set_epoch(5)
    with pytest.raises(RuntimeError, match="position was changed"):
        next(first)


# -- several row lengths ------------------------------------------------------------------------------------------

ODDS = {16: 0.5, 32: 0.3, 64: 0.2}


@pytest.fixture(scope="module")
def decomposed(tmp_path_factory) -> str:
    """Rows of 16, 32 and 64 tokens (multipliers 4, 2, 1) with sampling odds, several shards each."""
    root = tmp_path_factory.mktemp("decompose")
    return write_synthetic(root, {16: [2000, 2000, 1500], 32: [1500, 1200], 64: [700, 330]}, group_rows=128,
                           odds=ODDS)


def test_each_batch_holds_one_length_and_the_same_tokens(decomposed):
    rows = synthetic_truth(decomposed)
    ds = PackedShardDataset(decomposed, seed=3)
    assert ds.lengths == [16, 32, 64] and ds.batch_rows(2) == {16: 8, 32: 4, 64: 2}
    batches = list(ds.batches(batch_size=2))
    seen = np.concatenate([b["row_index"] for b in batches])
    assert np.array_equal(np.sort(seen), np.arange(len(rows)))
    full = [b for b in batches if b["input_ids"].size == 2 * 64]
    assert len(batches) - len(full) <= 3  # only each length's last batch may be short
    for b in batches[:200]:
        check_batch(b, [rows[int(i)] for i in b["row_index"]])
        assert {len(rows[int(i)][0]) for i in b["row_index"]} == {b["input_ids"].shape[1]}


def test_lengths_follow_the_sampling_odds(decomposed):
    ds = PackedShardDataset(decomposed, seed=5)
    lengths = [b["input_ids"].shape[1] for b in ds.batches(batch_size=2)]
    # batches available: 16: 5500/8, 32: 2700/4, 64: 1030/2 -> none runs out in the first 600 draws (about)
    head = Counter(lengths[:600])
    for length, p in ODDS.items():
        assert abs(head[length] - 600 * p) < 4 * np.sqrt(600 * p), (head, ODDS)
    assert Counter(lengths) == {16: 688, 32: 675, 64: 515}  # every row is read: the rest come at the end


def test_decompose_partitions_and_lockstep(decomposed):
    rows = len(synthetic_truth(decomposed))
    seen, sequences = [], []
    for rank in range(4):
        for worker in range(2):
            ds = PackedShardDataset(decomposed, rank=rank, world_size=4, worker=(worker, 2), seed=9)
            seen += [b["row_index"] for b in ds.batches(2)]
            strict = PackedShardDataset(decomposed, rank=rank, world_size=4, worker=(worker, 2), seed=9,
                                        drop_last=True)
            sequences.append([b["input_ids"].shape for b in strict.batches(2)])
    seen = np.concatenate(seen)
    assert np.array_equal(np.sort(seen), np.arange(rows))
    assert all(s == sequences[0] for s in sequences)  # drop_last: the same lengths at every step everywhere


def test_decompose_resume_continues_exactly(decomposed):
    options = dict(rank=1, world_size=2, seed=8)
    expected = read_all(PackedShardDataset(decomposed, **options), 2)
    ds = PackedShardDataset(decomposed, **options)
    it = ds.batches(2)
    for _ in range(123):
        next(it)
    resumed = PackedShardDataset(decomposed, **options)
    resumed.load_state_dict(ds.state_dict())
    assert same_batches(read_all(resumed, 2), expected[123:])


def test_curriculum_errors_are_clear(tmp_path):
    path = write_synthetic(tmp_path, {32: [40], 48: [40]})
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    del manifest["decompose"]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="32 does not divide the longest length 48"):
        PackedShardDataset(path)
    assert PackedShardDataset(path, batch_multipliers={32: 3, 48: 2}).batch_rows(2) == {32: 6, 48: 4}
    with pytest.raises(ValueError, match="sampling odds of row length 48"):
        PackedShardDataset(path, batch_multipliers={32: 3, 48: 2}, sampling_odds={32: 1.0})


# -- paths and errors ---------------------------------------------------------------------------------------------

def test_reads_through_fsspec(prepared, memfs):
    fs, root = memfs
    local = Path(prepared)
    for path in sorted(local.rglob("*")):
        if path.is_file():
            fs.pipe(f"{root}/{path.relative_to(local).as_posix()}", path.read_bytes())
    url = f"memory://{root}"
    a = read_all(PackedShardDataset(prepared, rank=1, world_size=2, seed=4), 8)
    b = read_all(PackedShardDataset(url, rank=1, world_size=2, seed=4), 8)
    assert same_batches(a, b)


def test_bad_inputs_have_clear_errors(prepared, tmp_path):
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        PackedShardDataset(str(tmp_path))
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "tokenmill.documents/1", "documents": []}))
    with pytest.raises(ValueError, match="not a packed-shard manifest"):
        PackedShardDataset(str(tmp_path))
    with pytest.raises(ValueError, match="rank must be in 0..world_size-1"):
        PackedShardDataset(prepared, rank=8, world_size=8)
    with pytest.raises(ValueError, match="worker id"):
        PackedShardDataset(prepared, worker=(2, 2))
    with pytest.raises(ValueError, match="batch_size"):
        next(iter(PackedShardDataset(prepared).batches(0)))


def test_a_changed_shard_is_reported(prepared, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(prepared, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["shards"][0]["rows"] += 1
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="has 300 rows but the manifest says 301"):
        list(PackedShardDataset(str(copy), shuffle=False, block_rows=100).batches(8))


# -- PyTorch ------------------------------------------------------------------------------------------------------

def test_torch_dataloader_workers_read_every_row_once(prepared, truth):
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    from schemas.loader import PackedShardIterable

    seen = []
    for rank in range(2):
        ds = PackedShardIterable(prepared, batch_size=8, rank=rank, world_size=2, seed=3)
        ds.set_epoch(1)
        for batch in DataLoader(ds, batch_size=None, num_workers=2):
            assert isinstance(batch["input_ids"], torch.Tensor) and batch["input_ids"].dtype == torch.int64
            seen.append(batch["row_index"].numpy())
    seen = np.concatenate(seen)
    assert np.array_equal(np.sort(seen), np.arange(len(truth["ids"])))


def test_without_torch_the_wrapper_says_how_to_get_it():
    import importlib.util

    if importlib.util.find_spec("torch") is not None:
        pytest.skip("torch is installed")
    with pytest.raises(ImportError, match=r"tokenmill\[torch\]"):
        loader.PackedShardIterable
