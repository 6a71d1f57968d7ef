"""Training-side loader for packed token shards: a pure numpy core and an optional PyTorch wrapper.

``PackedShardDataset`` reads a ``tokenmill prepare`` output directory (local or any fsspec URL) through its
manifest and yields batches of numpy arrays for one consumer (a rank, and a DataLoader worker inside it)::

    from schemas.loader import PackedShardDataset

    ds = PackedShardDataset("out/", rank=0, world_size=8, seed=1234)
    for batch in ds.batches(batch_size=8):
        batch["input_ids"]      # (B, L) int64 (ids_dtype=None: the shards' uint32)
        batch["position_ids"]   # (B, L) int64, 0 at every segment start (padding is a segment of its own)
        batch["cu_seqlens"]     # (S + 1,) int32 segment offsets of the flattened (B * L) batch, ends at B * L
        batch["max_seqlen"]     # int, the longest segment
        batch["loss_mask"]      # (B, L) uint8: the shards' loss_mask column, else 1 on real tokens, 0 on padding
        batch["row_index"]      # (B,) int64 global row index (cumulative rows of earlier shards + row in shard)

Epoch order. The rows of each row length are cut into blocks (by default one block per Parquet row group); for
epoch ``e`` the blocks are put in the order of a permutation drawn with ``numpy.random.Generator(PCG64)`` seeded by
``(seed, e)``: the same on every rank and worker. That sequence of rows is split into ``world_size * num_workers``
contiguous spans, consumer ``rank * num_workers + worker_id`` taking span number that index, so every row belongs
to exactly one consumer and each consumer reads its own row groups. Inside a span, the rows of each window of
``shuffle_window`` consecutive blocks are permuted together (again seeded by seed, epoch and consumer), which mixes
rows from that many places of the corpus into every batch while holding only one window in memory.

Uneven partitions. With ``drop_last=False`` (the default) every row is read exactly once per epoch: span sizes
differ by at most one row, and a consumer's last batch of each length may be short (so consumers may yield a
different number of batches). With ``drop_last=True`` every consumer gets the same ``rows // consumers`` rows
(the rows at the end of the epoch's block order are left out, different ones every epoch) and only full batches
are yielded, so every rank and worker yields the same number of batches, with the same row length at each step.

Padding. Padding (``num_pad`` pad ids at the end of a row) is a segment of its own in ``cu_seqlens`` and
``position_ids`` restart at 0 at its start, exactly as at every other segment start. ``cu_seqlens`` therefore
covers the whole flattened batch (its last value is ``B * L``), so ``flash_attn_varlen_func`` runs on the
``(B * L, ...)`` tensors as they are, and the segments that ``position_ids == 0`` mark (how Hugging Face
transformers finds packed sequences) are exactly those of ``cu_seqlens``. ``loss_mask`` is 0 on padding.
A segment at the start of a row may be the continuation of a document from the previous row; it restarts at 0.

Several row lengths (``--packing decompose``: shards with a ``seq_len`` of their own in the manifest). Each batch
holds rows of one length. ``batch_size`` counts rows of the longest length; a batch of length ``L`` holds
``batch_size * multiplier(L)`` rows, the multipliers coming from the manifest's ``decompose.curriculum
.batch_multipliers`` (default: longest // L), so tokens per batch stay constant. The length of the next batch is
drawn with the curriculum's ``sampling_odds`` (default: proportional to each length's batches in the epoch) from a
generator seeded by ``(seed, epoch)``, among the lengths that still have batches this epoch for this consumer;
with ``drop_last=True`` all consumers draw the same sequence of lengths (with ``drop_last=False`` a consumer may
have one batch more or less of a length, and once one runs out of a length earlier than another their sequences
can differ). A ``curriculum`` under ``packing_stats`` is read when there is no ``decompose`` section.

Resuming. ``state_dict()`` records the dataset, the world layout, the seed, the epoch and the batches yielded in it;
after ``load_state_dict(state)`` the next batches are exactly those an uninterrupted run would have produced next.
When an epoch's batches are exhausted the dataset moves to the next epoch; ``set_epoch(e)`` starts epoch ``e``
from its beginning, except when the dataset is already inside epoch ``e`` (after ``load_state_dict``), where it
keeps its position, so a training loop that calls ``set_epoch(epoch)`` at the top of each epoch resumes correctly.

Options (keywords of ``PackedShardDataset``): ``worker=(id, count)`` this consumer's DataLoader worker (set by
``PackedShardIterable``); ``shuffle`` (False: manifest order, blocks dealt out in order, no permutation);
``drop_last``; ``shuffle_window`` blocks per window (default 16); ``block_rows`` rows per block (default: the
row count of the first row group of each length's first shard); ``ids_dtype`` (default int64; int32 is a free view
of the stored uint32 ids, which are below 2**31; None keeps uint32); ``position_dtype`` (default int64);
``batch_multipliers`` / ``sampling_odds`` ({length: value}, instead of the manifest's curriculum);
``cache_row_groups`` decoded row groups kept (default 2); ``fast_decode`` (default True: the token ids of shards
laid out as tokenmill writes them, data pages of BYTE_STREAM_SPLIT or PLAIN uint32 values, are decoded by the
loader itself from the decompressed pages, about twice as fast as pyarrow's list decoding, and for int64 ids a
row group whose ids are all below 2**16 is decoded to 2-byte values, widened once when batches are gathered; any
other layout is read by pyarrow); ``storage_options`` for fsspec.

Batches are views of arrays computed for about 2**20 tokens at a time. An array is reused for later batches only
once no batch refers to it any more, so a batch that is kept stays valid; memory is about ``shuffle_window`` row
groups (4 MB of ids each in prepare's shards) per row length in use plus a few such arrays.

``PackedShardIterable`` (only when PyTorch is installed: ``pip install 'tokenmill[torch]'``) wraps the core as a
``torch.utils.data.IterableDataset`` yielding whole batches as tensors; use it with ``DataLoader(ds,
batch_size=None, num_workers=N)``. Each DataLoader worker reads its own part (``get_worker_info``); rank and
world size default to ``torch.distributed``'s. Call ``set_epoch(e)`` before each epoch (workers receive a copy of
the dataset). Its ``state_dict``/``load_state_dict`` are per worker, as torchdata's ``StatefulDataLoader`` calls
them.

Modules: ``dataset`` (PackedShardDataset and its batch arrays), ``layout`` (manifest → shards, pools, curriculum),
``plan`` (a consumer's epoch), ``batches`` (windows and batch arrays), ``reader`` and ``rows`` (row groups as
numpy; files through ``schemas.shards.PackedShard``, the one packed-row reader), ``pages`` (the speed path for the
token ids, see there why) and ``torch_iterable``.
"""

from __future__ import annotations

from typing import Any

from schemas.loader.dataset import STATE_FORMAT, PackedShardDataset

__all__ = ["STATE_FORMAT", "PackedShardDataset", "PackedShardIterable"]


def __getattr__(name: str) -> Any:
    """``PackedShardIterable``, built (importing torch) on first access."""
    if name == "PackedShardIterable":
        from schemas.loader.torch_iterable import packed_shard_iterable

        cls = packed_shard_iterable()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
