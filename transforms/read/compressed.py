"""Incremental decompression that keeps everything decoded before damage and detects truncated files.

``gzip``/``bz2``/``lzma`` file objects lose the data a failing ``read()`` had already decoded and (for zstd) may
end a truncated stream silently. Feeding the raw bytes to a decompressor object in small chunks instead yields
every byte that can be decoded, then raises ``CompressedDataError`` naming the damage. Concatenated members
(``cat a.gz b.gz``, pbzip2, multi-frame zstd) are read as one stream, as the command-line tools do.
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from typing import IO, Callable, Iterator

RAW_CHUNK = 64 * 1024  # a damaged chunk loses at most what it would have decoded


class CompressedDataError(OSError):
    """The compressed data is damaged or ends before its end marker."""


def _zstd_decompressor():
    import zstandard

    return zstandard.ZstdDecompressor().decompressobj()


_DECOMPRESSORS: dict[str, Callable[[], object]] = {
    "gzip": lambda: zlib.decompressobj(31),
    "bz2": bz2.BZ2Decompressor,
    "xz": lzma.LZMADecompressor,
    "zstd": _zstd_decompressor,
}


def _errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [zlib.error, OSError, EOFError, lzma.LZMAError, ValueError]
    try:
        import zstandard

        errors.append(zstandard.ZstdError)
    except ImportError:  # pragma: no cover - zstandard is a dependency
        pass
    return tuple(errors)


def iter_decoded(raw: IO[bytes], compression: str, chunk: int = RAW_CHUNK) -> Iterator[bytes]:
    """Decompressed bytes of ``raw`` in pieces; raises CompressedDataError after yielding all decodable data."""
    if compression not in _DECOMPRESSORS:
        raise ValueError(f"unknown compression {compression!r}")
    errors = _errors()
    new = _DECOMPRESSORS[compression]
    dec = new()
    started = False  # has the current member consumed any input?
    raw_pos = 0
    while True:
        data = raw.read(chunk)
        if not data:
            break
        raw_pos += len(data)
        while data:
            if not started:
                data = data.lstrip(b"\x00")  # zero padding between/after members, as gzip(1) and xz(1) allow
                if not data:
                    break
                started = True
            try:
                out = dec.decompress(data)
            except errors as exc:
                raise CompressedDataError(
                    f"damaged {compression} data near compressed byte {raw_pos - len(data)}: {exc}"
                ) from exc
            if out:
                yield out
            if dec.eof:
                data = dec.unused_data
                dec = new()
                started = False
            else:
                data = b""
    if started:
        raise CompressedDataError(
            f"the {compression} data ends before its end marker after {raw_pos} compressed bytes: "
            "the file is truncated"
        )
