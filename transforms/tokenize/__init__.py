"""Tokenizers: loading and encoding, training (BPE, SuperBPE), the training sample, evaluation and its report."""
