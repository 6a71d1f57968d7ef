"""Deduplication: exact and MinHash keys, duplicate resolution on arrays or by shuffle, and its Beam steps."""
