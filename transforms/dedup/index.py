"""A finished run's dedup index (recipe ``dedup: {save_index: true}``): the exact and MinHash band keys of the
documents it kept, saved beside its manifest, so that a later run can drop what duplicates them
(``dedup: {against: PATH}``, ``transforms.dedup.earlier``).

    dedup_index/ids.bin      the kept documents' ids, UTF-8 one after another; document n is the n-th kept, in read
                             order (streams in order, each in its order)
    dedup_index/id_ends.npy  <u8 [documents]: where each id ends in ids.bin
    dedup_index/exact.npy    (exact) one (hi <u8, lo <u8, doc) per document with an exact key, sorted by key
    dedup_index/bands.npy    (minhash) [bands, banded] of (hi <u8, lo <u4, doc): each band's keys, sorted by key

Keys are split into parts as in the key files (``transforms.dedup.arrays``); ``doc`` is <u4 (<u8 from 2^32
documents). Sorted, a lookup is a binary search, and the bytes are the same on every run: documents in read order,
keys unique within an index (kept documents never share a key, or one of them would be a duplicate). The commit
moves the files into place before manifest.json, whose ``dedup_index`` section lists them (path, bytes, sha256) with
the dedup configuration; that section's hash is the index's identity, recorded in a later run's recipe section
(``against``) and so in its fingerprint.

Which documents: those deduplication and the selection kept (decompose may still reject one as too short to pack).
Written in one step that reads the key files once per key column: one column of the kept documents in memory at a
time (hi, lo, doc and the sort's order: about 40 bytes per document), as the resolution of the key files itself.
"""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import replace
from typing import Any

import fsspec
import numpy as np
from fsspec.core import url_to_fs

from schemas import manifest as m
from schemas.shards import read_output_manifest
from transforms.dedup.arrays import HAS_BANDS, HAS_EXACT, KeyFile, key_rows, row_dtype
from transforms.hashing import fingerprint
from transforms.recipe.errors import RecipeError
from transforms.recipe.recipes import EarlierOutput, MinHash, Recipe

IDS, ID_ENDS, EXACT, BANDS = "ids.bin", "id_ends.npy", "exact.npy", "bands.npy"
EXACT_PARTS = [("hi", "<u8"), ("lo", "<u8")]
BAND_PARTS = [("hi", "<u8"), ("lo", "<u4")]


def key_dtype(parts: list[tuple[str, str]], documents: int) -> np.dtype:
    """A key row of an index of ``documents``: the key's parts and the document's number."""
    return np.dtype([*parts, ("doc", "<u4" if documents < 2**32 else "<u8")])


def index_config(exact: bool, minhash: MinHash | None) -> dict[str, Any]:
    """The dedup settings an index is made with and compared by (two runs' keys match only under the same)."""
    mh = None if minhash is None else {m.MH_NGRAM: minhash.ngram, m.MH_BANDS: minhash.bands,
                                       m.MH_ROWS: minhash.rows, m.MH_SEED: minhash.seed}
    return {m.DI_EXACT: exact, m.DI_MINHASH: mh}


def index_identity(section: dict[str, Any]) -> str:
    """The identity of a saved index: the sha256 of its manifest section (which holds its files' sha256)."""
    return fingerprint(section)


class _HashedFile:
    """A file written through fsspec with its size and sha256 kept as it goes."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._fh = fsspec.open(url, "wb").open()
        self._sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self._fh.write(data)
        self._sha.update(data)
        self.size += len(data)

    def close(self, name: str) -> dict[str, Any]:
        """Close it; its entry in the manifest (with its temporary URL for the commit)."""
        self._fh.close()
        return {m.E_PATH: posixpath.join(m.DEDUP_INDEX_DIR, name), m.E_BYTES: self.size,
                m.E_SHA256: self._sha.hexdigest(), m.E_TEMP_URL: self.url}


def _write_header(out: _HashedFile, dtype: np.dtype, shape: tuple[int, ...]) -> None:
    np.lib.format.write_array_header_1_0(out, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
                                               "shape": shape})


def write_index(files: list[KeyFile], removed: dict[int, np.ndarray], temp_dir: str, exact: bool,
                minhash: MinHash | None) -> dict[str, Any]:
    """Write the index of the documents in ``files`` (pass 1's key files) but those ``removed`` (stream → ordinals:
    duplicates and what the selection dropped) under ``temp_dir``; returns the manifest's ``dedup_index`` section
    (its file entries with their temporary URLs)."""
    files = sorted((f for f in files if f.docs), key=lambda f: f.stream)
    masks = []
    for f in files:
        mask = np.ones(f.docs, bool)
        mask[np.asarray(removed.get(f.stream, ()), np.int64)] = False
        masks.append(mask)
    kept = np.array([int(mask.sum()) for mask in masks], np.int64)
    bases = np.concatenate(([0], np.cumsum(kept)[:-1])).astype(np.int64)
    documents = int(kept.sum())
    dtype = row_dtype(minhash.bands if minhash else 0)
    folder = f"{temp_dir.rstrip('/')}/{m.DEDUP_INDEX_DIR}"
    entries = _write_ids(files, masks, dtype, folder)
    if exact:
        out = _HashedFile(f"{folder}/{EXACT}")
        table = _sorted_keys(files, masks, bases, dtype, None, key_dtype(EXACT_PARTS, documents))
        _write_header(out, table.dtype, table.shape)
        out.write(table.tobytes())
        entries.append(out.close(EXACT))
    if minhash is not None:
        out = _HashedFile(f"{folder}/{BANDS}")
        for b in range(minhash.bands):
            table = _sorted_keys(files, masks, bases, dtype, b, key_dtype(BAND_PARTS, documents))
            if b == 0:  # every document with band keys has one in each band: the first band's size is the width
                _write_header(out, table.dtype, (minhash.bands, table.size))
            out.write(table.tobytes())
        entries.append(out.close(BANDS))
    return {m.DI_FORMAT: m.DEDUP_INDEX_FORMAT, m.DI_DOCUMENTS: documents, **index_config(exact, minhash),
            m.DI_FILES: entries}


def _write_ids(files: list[KeyFile], masks: list[np.ndarray], dtype: np.dtype, folder: str) -> list[dict[str, Any]]:
    """ids.bin and id_ends.npy of the kept documents, read a chunk of rows at a time from the id files."""
    out = _HashedFile(f"{folder}/{IDS}")
    ends: list[np.ndarray] = []
    written = 0
    for key_file, mask in zip(files, masks):
        previous_end = 0
        with fsspec.open(key_file.ids_url, "rb") as src:
            for first, rows in key_rows(key_file, dtype):
                id_end = rows["id_end"].astype(np.int64)
                blob = src.read(int(id_end[-1]) - previous_end)
                stops = id_end - previous_end
                starts = np.concatenate(([0], stops[:-1]))
                keep = mask[first : first + rows.size]
                out.write(b"".join(blob[s:e] for s, e in zip(starts[keep].tolist(), stops[keep].tolist())))
                ends.append(written + np.cumsum(stops[keep] - starts[keep]))
                written += int((stops[keep] - starts[keep]).sum())
                previous_end = int(id_end[-1])
    entries = [out.close(IDS)]
    id_ends = np.concatenate(ends).astype("<u8") if ends else np.zeros(0, "<u8")
    out = _HashedFile(f"{folder}/{ID_ENDS}")
    _write_header(out, id_ends.dtype, id_ends.shape)
    out.write(id_ends.tobytes())
    entries.append(out.close(ID_ENDS))
    return entries


def _sorted_keys(files: list[KeyFile], masks: list[np.ndarray], bases: np.ndarray, dtype: np.dtype,
                 band: int | None, out_dtype: np.dtype) -> np.ndarray:
    """The kept documents' exact keys (``band`` None) or one band's keys with their numbers, sorted by key."""
    flag = HAS_EXACT if band is None else HAS_BANDS
    size = sum(int(mask.sum()) for mask in masks)
    docs = np.empty(size, np.int64)
    hi = np.empty(size, np.uint64)
    lo = np.empty(size, np.uint64 if band is None else np.uint32)
    filled = 0
    for key_file, mask, base in zip(files, masks, bases.tolist()):
        before = 0  # kept documents of this file in the chunks before
        for first, rows in key_rows(key_file, dtype):
            keep = mask[first : first + rows.size]
            rank = before + np.cumsum(keep) - 1
            chosen = np.flatnonzero(keep & ((rows["flags"] & flag) != 0))
            end = filled + chosen.size
            docs[filled:end] = base + rank[chosen]
            if band is None:
                hi[filled:end], lo[filled:end] = rows["exact_hi"][chosen], rows["exact_lo"][chosen]
            else:
                hi[filled:end], lo[filled:end] = rows["band_hi"][chosen, band], rows["band_lo"][chosen, band]
            filled = end
            before += int(keep.sum())
    order = np.lexsort((docs[:filled], lo[:filled], hi[:filled]))
    table = np.empty(filled, out_dtype)
    table["hi"], table["lo"], table["doc"] = hi[order], lo[order], docs[order]
    return table


def removed_ordinals(parts: list[tuple[int, np.ndarray]]) -> dict[int, np.ndarray]:
    """stream → ordinals of its documents not in the index, from (stream, ordinals) parts: its duplicates and those
    the selection dropped."""
    out: dict[int, list[np.ndarray]] = {}
    for stream, ordinals in parts:
        out.setdefault(stream, []).append(np.asarray(ordinals, np.int64))
    return {s: np.concatenate(found) for s, found in out.items()}


def read_index_section(path: str, recipe: Recipe) -> dict[str, Any]:
    """The ``dedup_index`` section of the earlier output ``path``; RecipeError when it has none or was made with
    other dedup settings than ``recipe``'s."""
    where = f"recipe {recipe.name!r}: dedup.against"
    _, _, manifest = read_output_manifest(path, where, RecipeError)
    section = manifest.get(m.K_DEDUP_INDEX)
    if not isinstance(section, dict) or section.get(m.DI_FORMAT) != m.DEDUP_INDEX_FORMAT:
        raise RecipeError(f"{where} {path!r} has no dedup index: only a run whose recipe has dedup: "
                          "{save_index: true} saves one")
    mine = index_config(recipe.dedup.exact, recipe.dedup.minhash)
    theirs = {k: section.get(k) for k in mine}
    if theirs != mine:
        raise RecipeError(f"{where} {path!r}: its index was made with dedup {_shown(theirs)}, this recipe has "
                          f"{_shown(mine)}: they must be the same to compare keys")
    return section


def _shown(config: dict[str, Any]) -> str:
    mh = config[m.DI_MINHASH]
    shown = "none" if mh is None else "{" + ", ".join(f"{k}: {v}" for k, v in mh.items()) + "}"
    return f"{{exact: {str(config[m.DI_EXACT]).lower()}, minhash: {shown}}}"


def resolve_against(recipe: Recipe | None, output: str) -> Recipe | None:
    """The recipe with the identity of each ``dedup.against`` output's index filled in (what the job's fingerprint
    and manifest record); RecipeError names an output that is missing, has no index, was deduplicated with other
    settings, or is this job's own ``output``."""
    if recipe is None or not recipe.dedup.against:
        return recipe
    target = _location(output)
    resolved = []
    for earlier in recipe.dedup.against:
        if _location(earlier.path) == target:
            raise RecipeError(f"recipe {recipe.name!r}: dedup.against {earlier.path!r} is this job's --output (its "
                              "index would be cleared before it is read): name an earlier output")
        resolved.append(EarlierOutput(earlier.path, index_identity(read_index_section(earlier.path, recipe))))
    return replace(recipe, dedup=replace(recipe.dedup, against=tuple(resolved)))


def _location(url: str) -> tuple[Any, str]:
    try:
        fs, path = url_to_fs(url)
    except (ImportError, ValueError):
        return None, url
    return fs.protocol, path.rstrip("/")
