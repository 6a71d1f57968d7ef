"""Incremental decompression: concatenated members, padding, damage and truncation in every codec."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os

import pytest
import zstandard

from transforms.read.compressed import CompressedDataError, iter_decoded
from transforms.read.sources import InputError, detect_format

DATA = b"".join(f"line {i} {hashlib.sha256(str(i).encode()).hexdigest()}\n".encode() for i in range(20000))

CODECS = {
    "gzip": gzip.compress,
    "bz2": bz2.compress,
    "xz": lzma.compress,
    "zstd": lambda d: zstandard.ZstdCompressor().compress(d),
}


def decode(blob: bytes, codec: str, chunk: int = 4096) -> bytes:
    return b"".join(iter_decoded(io.BytesIO(blob), codec, chunk))


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("chunk", [1, 777, 1 << 20])
def test_round_trip_whatever_the_chunk_size(codec, chunk):
    data = DATA[:5000] if chunk == 1 else DATA
    assert decode(CODECS[codec](data), codec, chunk) == data


@pytest.mark.parametrize("codec", CODECS)
def test_concatenated_members_and_zero_padding_read_as_one_stream(codec):
    a, b = DATA[:100_000], DATA[100_000:]
    blob = CODECS[codec](a) + CODECS[codec](b)
    assert decode(blob, codec) == DATA
    if codec in ("gzip", "xz"):  # the tools accept zero padding after a member
        assert decode(blob + b"\x00" * 512, codec) == DATA


@pytest.mark.parametrize("codec", CODECS)
def test_empty_input_is_an_empty_stream(codec):
    assert decode(b"", codec) == b""
    assert decode(CODECS[codec](b""), codec) == b""


@pytest.mark.parametrize("codec", CODECS)
def test_truncation_is_an_error_after_all_decodable_data(codec):
    blob = CODECS[codec](DATA)
    cut = blob[: len(blob) * 6 // 10]
    got = []
    with pytest.raises(CompressedDataError, match="truncated"):
        for piece in iter_decoded(io.BytesIO(cut), codec, 4096):
            got.append(piece)
    decoded = b"".join(got)
    assert DATA.startswith(decoded)
    if codec != "zstd":  # zstd releases whole blocks only; the others stream
        assert len(decoded) > len(DATA) // 3


@pytest.mark.parametrize("codec", CODECS)
def test_garbage_is_an_error_naming_the_codec(codec):
    with pytest.raises(CompressedDataError, match=codec):
        decode(b"this is not compressed data at all", codec)


def test_damage_in_the_middle_keeps_what_came_before():
    blob = bytearray(gzip.compress(DATA))
    mid = len(blob) // 2
    blob[mid : mid + 64] = b"\xff" * 64
    got = []
    with pytest.raises(CompressedDataError, match="damaged gzip"):
        for piece in iter_decoded(io.BytesIO(bytes(blob)), "gzip", 1024):
            got.append(piece)
    # deflate may decode garbage before its checks fail; everything before the damage is intact
    intact = os.path.commonprefix([b"".join(got), DATA])
    assert len(intact) > len(DATA) // 3


def test_trailing_garbage_after_a_member_is_an_error():
    with pytest.raises(CompressedDataError):
        decode(gzip.compress(DATA[:1000]) + b"garbage", "gzip")


def test_unknown_codec_is_refused():
    with pytest.raises(ValueError, match="unknown compression"):
        decode(b"", "lz4")


def test_forced_table_format_through_compression_is_refused():
    with pytest.raises(InputError, match="cannot be read through gzip"):
        detect_format("data.bin.gz", "parquet")
    assert detect_format("data.bin.gz", "jsonl") == ("jsonl", "gzip")
