"""The names of option values, shared by the command line and the transforms.

The command line offers these as choices and defaults; the transforms check and act on them. They live here, in a
module of the standard library alone, because ``tokenmill COMMAND --help`` needs them and must answer without
importing what the transforms do (numpy, pyarrow, fsspec, tokenizers: most of a second).
"""

from __future__ import annotations

# input formats (transforms.read.sources: detected by file name, or forced by --input-format)
JSONL = "jsonl"
PARQUET = "parquet"
TEXT = "text"
ARROW = "arrow"
WARC = "warc"  # WARC and WET (transforms/read/warc.py), plain or gzip
FORMATS = (JSONL, PARQUET, TEXT, ARROW, WARC)
EVAL_SET_FORMATS = (JSONL, PARQUET, ARROW, TEXT)  # what a decontamination evaluation set may be (filter.eval_sets)
DEFAULT_STREAM_BYTES = 32 * 1024 * 1024  # input bytes per stream (--stream-mb)

# tokenizer backends and tiktoken schemes (transforms.tokenize.tokenizer)
HF = "hf"
TIKTOKEN = "tiktoken"
GIGATOKEN = "gigatoken"
AUTO = "auto"
BACKENDS = (AUTO, HF, GIGATOKEN)
# schemes whose official definitions read a rank file (gpt2's reads other files and is left out)
TIKTOKEN_SCHEMES = ("r50k_base", "p50k_base", "cl100k_base", "o200k_base")

# packing strategies, by the packers' names, and loss masks (transforms.pack.packers)
CONCAT = "concat"
BEST_FIT = "best-fit"
DECOMPOSE = "decompose"
PACKINGS = (CONCAT, BEST_FIT, DECOMPOSE)
LOSS_MASKS = ("none", "padding", "boundaries")

# tokenmill inspect (transforms.inspection.rows): characters shown of a decoded segment or document
DEFAULT_MAX_CHARS = 400

# tokenmill train-classifier (transforms.select.classifier): the fastText labels of the two classes
DEFAULT_POSITIVE_LABEL = "__label__hq"
DEFAULT_NEGATIVE_LABEL = "__label__cc"
