"""A small BERT-style encoder built from public text only: the offline default base for Chinese classification.

Why not masked-language-model pretraining: a DP fine-tune needs *features that already separate the
classes* so it can train few parameters, and the demo may spend only a few CPU minutes building the
base. MLM was not tried here (a few minutes on 2 shared cores is a tiny fraction of what BERT-style
pretraining needs, and random-init features stay at the majority class under DP, issue 14). Word vectors
from a positive-PMI co-occurrence matrix factorised by a truncated SVD (Levy & Goldberg 2014: the matrix
word2vec's skip-gram implicitly factorises) take about a minute for the 1.8M characters of People's Daily,
are deterministic, and give mean-pooled review features a linear probe classifies at 0.72 (majority 0.515;
the DP benchmark's figures are in ``pipelines.train.recipes``).

The encoder is a ``BertForSequenceClassification`` whose weights are *set*, not random:

- word embeddings: the SVD vectors of the public-text tokenizer's tokens (special tokens and tokens
  never seen in the public text: zero); position and token-type embeddings zero;
- each layer: query zero and key identity, so attention starts uniform over the unpadded tokens
  (mean pooling into ``[CLS]``), while a LoRA adapter on ``query`` can learn *which* tokens to attend
  to (its gradient is non-zero because keys are not); value and output projections identity; the
  feed-forward output zero (the block adds nothing until fine-tuning changes it);
- pooler identity (then ``tanh``), classifier small random.

So the ``[CLS]`` vector is a normalised mean of the text's public word vectors, and every weight is a
standard BERT weight: the trainer, Opacus/book-keeping clipping, LoRA, INT8 and serving treat it as
any other BERT. The descriptor records the corpora (package, version, files, sha256, size), the
tokenizer's origin and this recipe under ``"pretraining"``.

The tokenizer is a WordPiece vocabulary learned from the jieba-segmented public text (never the
domain's records): characters first (so any word can be spelled), then the most frequent words.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.pretrain.corpora import Corpus
from pipelines.modeling import DESCRIPTOR, FORMAT, quiet_transformers

RECIPE = "ppmi-svd-mean-pool/1"
SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


@dataclass(frozen=True)
class EncoderShape:
    """The encoder's size: ``hidden`` word-vector dimensions, ``layers`` BERT layers, ``vocab`` tokens.

    ``intermediate`` (the feed-forward width) is small: the block's output starts at zero, so its width only
    costs compute until a fine-tune that trains it (``last_layer``, ``full``) grows its use.
    """

    hidden: int
    layers: int
    heads: int
    vocab: int
    window: int = 5
    intermediate: int = 32

    def __post_init__(self) -> None:
        if self.hidden < 4 or self.hidden % self.heads:
            raise ValueError(f"hidden={self.hidden} must be >= 4 and divisible by heads={self.heads}")
        if self.layers < 1 or self.vocab < 64 or self.window < 1:
            raise ValueError("layers >= 1, vocab >= 64 and window >= 1 are required")


SHAPES = {"tiny": EncoderShape(hidden=64, layers=1, heads=2, vocab=6000),
          "small": EncoderShape(hidden=128, layers=1, heads=4, vocab=16000)}


def segment(texts: Sequence[str]) -> list[str]:
    """Texts as the tokenizer sees them: jieba words separated by spaces (what ``segment: jieba`` models expect)."""
    from pipelines.modeling import segment_chinese

    return [segment_chinese(t) for t in texts]


def train_public_tokenizer(segmented: Sequence[str], *, vocab_size: int):
    """A WordPiece ``tokenizers.Tokenizer`` from segmented public text (deterministic: ties broken by the token)."""
    from pipelines.label.chinese import train_wordpiece

    return train_wordpiece(list(segmented), vocab_size=vocab_size, min_frequency=2)


def ppmi_svd_vectors(token_rows: Sequence[Sequence[int]], *, vocab_size: int, dim: int, window: int, seed: int):
    """Token vectors ``[vocab_size, dim]`` (float32): truncated SVD of the positive PMI matrix of co-occurrences.

    Co-occurrences are counted within ``window`` tokens either side; context counts are smoothed with
    the exponent 0.75 (as word2vec's negative sampling); vectors are ``U * sqrt(S)``, each row scaled to
    unit RMS, signs fixed so each component's largest entry is positive (SVD signs are arbitrary).
    Tokens that never co-occur get zero vectors.
    """
    import numpy as np
    import scipy.sparse as sp
    from sklearn.utils.extmath import randomized_svd

    rows, cols = [], []
    for ids in token_rows:
        a = np.asarray(ids, dtype=np.int64)
        for d in range(1, window + 1):
            if len(a) > d:
                rows += [a[:-d], a[d:]]
                cols += [a[d:], a[:-d]]
    if not rows:
        raise ValueError("the corpus has no co-occurring tokens: give more text")
    r, c = np.concatenate(rows), np.concatenate(cols)
    counts = sp.coo_matrix((np.ones(len(r)), (r, c)), shape=(vocab_size, vocab_size)).tocsr().tocoo()
    total = counts.data.sum()
    row_sum = np.bincount(counts.row, weights=counts.data, minlength=vocab_size)
    ctx = np.bincount(counts.col, weights=counts.data, minlength=vocab_size) ** 0.75
    ctx = ctx / ctx.sum() * total
    pmi = np.log(counts.data * total / (row_sum[counts.row] * ctx[counts.col]))
    keep = pmi > 0
    ppmi = sp.csr_matrix((pmi[keep], (counts.row[keep], counts.col[keep])), shape=(vocab_size, vocab_size))
    k = min(dim, vocab_size - 1)
    u, s, _vt = randomized_svd(ppmi, n_components=k, n_iter=5, random_state=seed)
    vectors = u * np.sqrt(s)
    signs = np.sign(vectors[np.abs(vectors).argmax(axis=0), np.arange(k)])
    vectors = vectors * np.where(signs == 0, 1.0, signs)
    out = np.zeros((vocab_size, dim), dtype=np.float64)
    out[:, :k] = vectors
    rms = np.sqrt((out ** 2).mean(axis=1, keepdims=True))
    out = np.divide(out, rms, out=np.zeros_like(out), where=rms > 0)
    return out.astype(np.float32)


def _mean_pool_bert(config, vectors):
    """A BertForSequenceClassification whose [CLS] output is the normalised mean of the token vectors."""
    import torch
    from transformers import BertForSequenceClassification

    model = BertForSequenceClassification(config)
    hidden = config.hidden_size
    eye = torch.eye(hidden)
    with torch.no_grad():
        emb = model.bert.embeddings
        emb.word_embeddings.weight.copy_(torch.from_numpy(vectors))
        emb.position_embeddings.weight.zero_()
        emb.token_type_embeddings.weight.zero_()
        for layer in model.bert.encoder.layer:
            att = layer.attention
            att.self.query.weight.zero_(), att.self.query.bias.zero_()
            att.self.key.weight.copy_(eye), att.self.key.bias.zero_()
            att.self.value.weight.copy_(eye), att.self.value.bias.zero_()
            att.output.dense.weight.copy_(eye), att.output.dense.bias.zero_()
            layer.output.dense.weight.zero_(), layer.output.dense.bias.zero_()
        model.bert.pooler.dense.weight.copy_(eye)
        model.bert.pooler.dense.bias.zero_()
        model.classifier.weight.normal_(0.0, 0.02)
        model.classifier.bias.zero_()
    return model


def build_public_encoder(
    *,
    corpora: Sequence[Corpus],
    out_dir: str | Path,
    labels: Sequence[str],
    size: str = "small",
    seed: int = 0,
    max_length: int = 128,
    log=None,
) -> Path:
    """Build the public-text base classifier and write it as a model folder (``load_model`` reads it).

    Args:
        corpora: the public text (:mod:`pipelines.pretrain.corpora`); filter out the task's texts first
            (:func:`pipelines.pretrain.corpora.exclude`).
        out_dir: the folder to write (must be empty or absent).
        labels: class names in logit order (the classification head is new; fine-tuning trains it).
        size: ``tiny`` (tests) or ``small`` (the default base), see :data:`SHAPES`.
        seed: seeds the SVD and the classifier head; the same inputs and seed give identical files.
        max_length: position embeddings (all zero: the base is order-free until fine-tuned).
        log: progress lines go here (default: none).

    Returns:
        The folder.
    """
    import torch
    from transformers import BertConfig

    from pipelines.train.models import _wrap_tokenizer

    if size not in SHAPES:
        raise ValueError(f"size={size!r}: use one of {sorted(SHAPES)}")
    labels = [str(x) for x in labels]
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise ValueError(f"need at least two distinct labels, got {labels}")
    texts = [t for corpus in corpora for t in corpus.texts]
    if not texts:
        raise ValueError("no public text: give at least one non-empty corpus")
    folder = Path(out_dir)
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"{folder} is not empty: build the base into a new folder")
    say = log or (lambda _line: None)
    shape = SHAPES[size]
    quiet_transformers()
    torch.manual_seed(seed)
    segmented = segment(texts)
    say(f"[pretrain] segmented {len(texts)} public texts ({sum(map(len, texts))} chars)")
    tok = train_public_tokenizer(segmented, vocab_size=shape.vocab)
    vocab_size = tok.get_vocab_size()
    rows = [tok.encode(t, add_special_tokens=False).ids for t in segmented]
    say(f"[pretrain] tokenizer: {vocab_size} tokens; {sum(map(len, rows))} tokens of public text")
    vectors = ppmi_svd_vectors(rows, vocab_size=vocab_size, dim=shape.hidden, window=shape.window, seed=seed)
    for token in SPECIAL:
        index = tok.token_to_id(token)
        if index is not None:
            vectors[index] = 0.0
    say(f"[pretrain] PPMI-SVD vectors: {vectors.shape[0]} x {vectors.shape[1]}")
    id2label = dict(enumerate(labels))
    config = BertConfig(vocab_size=vocab_size, hidden_size=shape.hidden, num_hidden_layers=shape.layers,
                        num_attention_heads=shape.heads, intermediate_size=shape.intermediate,
                        max_position_embeddings=max_length, type_vocab_size=1, num_labels=len(labels),
                        id2label=id2label, label2id={v: k for k, v in id2label.items()},
                        pad_token_id=tok.token_to_id("[PAD]"), tie_word_embeddings=False,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = _mean_pool_bert(config, vectors)
    tokenizer = _wrap_tokenizer(tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
                                mask_token="[MASK]")
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    descriptor: dict[str, Any] = {
        "format": FORMAT, "task": "classification", "size": size, "seed": seed, "base": "public-pretrained",
        "labels": labels, "max_length": max_length, "segment": "jieba",
        "architecture": "BertForSequenceClassification",
        "pretraining": {"recipe": RECIPE, "private_data": False,
                        "corpora": [c.provenance() for c in corpora],
                        "tokenizer": f"WordPiece {vocab_size} tokens from the jieba-segmented corpora above",
                        "shape": {"hidden": shape.hidden, "layers": shape.layers, "heads": shape.heads,
                                  "window": shape.window},
                        "text_sha256": hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()}}
    (folder / DESCRIPTOR).write_text(json.dumps(descriptor, indent=2, ensure_ascii=False, sort_keys=True) + "\n",
                                     encoding="utf-8")
    say(f"[pretrain] wrote {folder}")
    return folder
