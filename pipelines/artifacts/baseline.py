"""Trivial baselines: what a model that learned nothing scores on an evaluation split.

The gate (:mod:`pipelines.artifacts.gate`) refuses a candidate that does not beat these by a margin. Each is
computed from the evaluation examples alone (never from training records), and each is the *best* trivial
predictor for that split, so beating it means the model learned something the split's own statistics cannot give:

- classification: the majority class of the split (the best constant prediction), on accuracy;
- causal LM: a unigram model of the split's own answer tokens (add-one smoothed over the vocabulary), on perplexity;
- forecast: the last value of each window (the naive forecast), on mean absolute error.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any


def majority_baseline(labels: Sequence[str]) -> dict[str, Any]:
    """``{"name", "accuracy", "label", "n"}`` of always predicting the split's most frequent label."""
    if not labels:
        raise ValueError("majority_baseline needs at least one evaluation label")
    counts = Counter(str(x) for x in labels)
    label, hits = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))  # ties: the first label by name
    return {"name": "majority class", "accuracy": hits / len(labels), "label": label, "n": len(labels)}


def unigram_baseline(answers: Sequence[Sequence[int]], *, vocab_size: int) -> dict[str, Any]:
    """``{"name", "perplexity", "tokens"}`` of an add-one unigram model of the answer tokens, scored on them.

    Args:
        answers: the token ids the causal LM is scored on (answer tokens and the final end-of-sequence token).
        vocab_size: the tokenizer's vocabulary size (the smoothing's denominator).
    """
    tokens = [int(t) for answer in answers for t in answer]
    if not tokens:
        raise ValueError("unigram_baseline needs at least one answer token")
    if vocab_size < 1:
        raise ValueError(f"vocab_size={vocab_size}: must be positive")
    counts = Counter(tokens)
    total = len(tokens) + vocab_size
    nll = -sum(c * math.log((c + 1) / total) for c in counts.values()) / len(tokens)
    return {"name": "unigram", "perplexity": math.exp(nll), "tokens": len(tokens)}


def last_value_baseline(windows: Sequence[Sequence[float]], targets: Sequence[float]) -> dict[str, Any]:
    """``{"name", "mae", "n"}`` of forecasting each window's last value."""
    if not windows or len(windows) != len(targets):
        raise ValueError("last_value_baseline needs as many targets as windows, at least one")
    errors = [abs(float(t) - float(w[-1])) for w, t in zip(windows, targets)]
    return {"name": "last value", "mae": sum(errors) / len(errors), "n": len(errors)}
