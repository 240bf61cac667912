"""Inference helpers shared by the labeller backends: threads, length-sorted batches, exact text clipping, INT8."""

from __future__ import annotations

import re
from collections.abc import Sequence

_CHUNK = re.compile(r"\S+")


def set_threads(n: int) -> None:
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def length_batches(lengths: Sequence[int], size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (less padding), in a fixed order."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    return [order[i:i + size] for i in range(0, len(order), size)]


def clip_words(text: str, words: int) -> str:
    """The shortest prefix of ``text`` that ends at whitespace and holds ``words`` whitespace-separated
    chunks with a letter or digit, or the whole text.

    Each such chunk gives the BERT tokenizer at least one token and the tokenizer splits at whitespace,
    so the prefix's tokens are the first tokens of the text and truncation to ``words`` tokens is
    unchanged: long documents (7.5 KB) are not tokenized past what the model reads.
    """
    if len(text) < 2 * words:
        return text
    count = 0
    for match in _CHUNK.finditer(text):
        if any(c.isalnum() for c in match.group()):
            count += 1
            if count >= words:
                return text[:match.end()]
    return text


def quantized(model):
    """A dynamic INT8 copy of a model's Linear layers (CPU); the float model is left as it was."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's migration notice
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=False)
