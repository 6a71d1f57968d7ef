"""Packing: packers of tokenized documents into fixed-length rows, and the deterministic global row shuffle."""
