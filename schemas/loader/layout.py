"""A packed dataset's layout from its manifest: the shards, the rows of each length cut into blocks (pools), the
decompose curriculum and the dataset's fingerprint."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from schemas.loader.reader import Shard
from schemas.manifest import (
    E_PATH,
    E_ROWS,
    E_SEQ_LEN,
    K_BATCH_MULTIPLIERS,
    K_CURRICULUM,
    K_DECOMPOSE,
    K_FINGERPRINT,
    K_FORMAT,
    K_PACKING_STATS,
    K_SAMPLING_ODDS,
    K_SEQ_LEN,
    K_SHARDS,
    MANIFEST_FORMAT,
)
from schemas.shards import MANIFEST_FILE, join_url, read_manifest


@dataclass
class Pool:
    """Every row of one length: blocks of consecutive rows (shard, start, stop) in manifest order."""

    seq_len: int
    blocks: np.ndarray
    rows: int
    multiplier: int = 1
    odds: float = 0.0


def read_packed_manifest(path: str, storage_options: dict[str, Any]) -> dict[str, Any]:
    """The manifest of a prepare output (``path``: no trailing slash); errors say what the directory is not."""
    try:
        manifest = read_manifest(path, storage_options)
    except FileNotFoundError:
        raise FileNotFoundError(f"no {MANIFEST_FILE} in {path}: not a finished tokenmill prepare output "
                                f"(the manifest is written last)") from None
    if not isinstance(manifest, dict) or manifest.get(K_FORMAT) != MANIFEST_FORMAT or K_SHARDS not in manifest:
        fmt = manifest.get(K_FORMAT) if isinstance(manifest, dict) else None
        raise ValueError(f"{join_url(path, MANIFEST_FILE)} is not a packed-shard manifest (format {fmt!r}, expected "
                         f"{MANIFEST_FORMAT!r} with a {K_SHARDS!r} list, as tokenmill prepare writes)")
    return manifest


def shards_of(manifest: dict[str, Any], path: str) -> list[Shard]:
    """The manifest's shards in order, each with its URL, row length and first global row."""
    shards, first = [], 0
    default_len = manifest.get(K_SEQ_LEN)
    for i, entry in enumerate(manifest[K_SHARDS]):
        try:
            rel, rows = entry[E_PATH], int(entry[E_ROWS])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"manifest shard entry {i} needs {E_PATH!r} and {E_ROWS!r}, got {entry!r}") from None
        seq_len = entry.get(E_SEQ_LEN, default_len)
        if not isinstance(seq_len, int) or seq_len < 1:
            raise ValueError(f"manifest shard {rel}: no usable seq_len (the shard's own or the manifest's), "
                             f"got {seq_len!r}")
        url = rel if "://" in rel or rel.startswith("/") else join_url(path, rel)
        shards.append(Shard(url, rel, rows, seq_len, first))
        first += rows
    return shards


def curriculum(manifest: dict[str, Any]) -> dict[str, Any]:
    """The curriculum of a decompose manifest: its decompose section's, else one under packing_stats."""
    section = manifest.get(K_DECOMPOSE)
    if isinstance(section, dict) and isinstance(section.get(K_CURRICULUM), dict):
        return section[K_CURRICULUM]
    stats = manifest.get(K_PACKING_STATS)
    if isinstance(stats, dict):
        for holder in (stats, stats.get(K_DECOMPOSE)):
            if isinstance(holder, dict) and isinstance(holder.get(K_CURRICULUM), dict):
                return holder[K_CURRICULUM]
    return {}


def dataset_fingerprint(manifest: dict[str, Any], shards: list[Shard]) -> str:
    """What a saved position is valid for: the manifest's fingerprint and the shards' paths, rows and lengths."""
    listing = [manifest.get(K_FINGERPRINT), [(s.path, s.rows, s.seq_len) for s in shards]]
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()


def make_pools(shards: list[Shard], manifest: dict[str, Any], first_group_rows: Callable[[int], int],
               block_rows: int | None, multipliers: dict[int, int] | None,
               odds: dict[int, float] | None) -> list[Pool]:
    """The rows of each length (shortest first) cut into blocks of ``block_rows`` (default: the rows of the first
    row group of the length's first shard), with batch multipliers and sampling odds (default: the curriculum's)."""
    by_len: dict[int, list[int]] = {}
    for i, shard in enumerate(shards):
        by_len.setdefault(shard.seq_len, []).append(i)
    schedule = curriculum(manifest)
    if multipliers is None:
        multipliers = {int(k): v for k, v in (schedule.get(K_BATCH_MULTIPLIERS) or {}).items()}
    if odds is None:
        odds = {int(k): v for k, v in (schedule.get(K_SAMPLING_ODDS) or {}).items()} or None
    longest = max(by_len, default=0)
    pools = []
    for length in sorted(by_len):
        members = [i for i in by_len[length] if shards[i].rows > 0]
        size = block_rows or (first_group_rows(members[0]) if members else 1)
        blocks = [(i, a, min(a + size, shards[i].rows))
                  for i in members for a in range(0, shards[i].rows, size)]
        mult = multipliers.get(length) if multipliers else None
        if mult is None:
            if len(by_len) > 1 and longest % length:
                raise ValueError(f"no batch multiplier for row length {length} in the manifest's curriculum, "
                                 f"and {length} does not divide the longest length {longest}: pass "
                                 f"batch_multipliers={{{length}: N, ...}}")
            mult = longest // length
        if not isinstance(mult, (int, np.integer)) or mult < 1:
            raise ValueError(f"batch multiplier of row length {length} must be a whole number >= 1, got {mult!r}")
        pool = Pool(length, np.array(blocks, np.int64).reshape(-1, 3), sum(b - a for _, a, b in blocks),
                    int(mult))
        if odds is not None and len(by_len) > 1:
            p = odds.get(length)
            if p is None or not p > 0:
                raise ValueError(f"sampling odds of row length {length} must be > 0 (its rows would never be "
                                 f"read), got {p!r}; odds given: {dict(sorted(odds.items()))}")
            pool.odds = float(p)
        pools.append(pool)
    return pools
