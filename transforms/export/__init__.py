"""Exports of finished outputs into other trainers' formats (Megatron-LM indexed datasets)."""
