"""The labeller's training configuration (one frozen dataclass for both languages)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

LANGUAGES = ("en", "zh")


@dataclass(frozen=True)
class LabellerConfig:
    """How a labeller is built and trained.

    English (``en``) labellers embed texts with the frozen all-MiniLM-L6-v2 encoder (mean pooling,
    L2-normalised) and train a linear softmax head on the embeddings. Chinese (``zh``) labellers
    segment with jieba, train a WordPiece tokenizer on the training texts and train a small BERT
    from scratch (MiniLM's vocabulary turns Chinese into ``[UNK]``, and no Chinese weights exist offline).

    Attributes:
        max_length: tokens per text, [CLS] and [SEP] included (longer texts are truncated).
        batch_size: training batch size of the Chinese BERT.
        predict_batch_size: texts per forward pass when predicting (both languages).
        epochs: passes over the training data (Chinese BERT).
        learning_rate: peak AdamW learning rate (linear warm-up over ``warmup`` of the steps, then linear decay).
        warmup: fraction of the steps spent warming up.
        weight_decay: AdamW weight decay (Chinese BERT).
        vocab_size: WordPiece vocabulary size (Chinese).
        min_frequency: a word piece must occur this often in the training texts to enter the vocabulary.
        hidden_size: BERT hidden size (Chinese).
        num_layers: BERT layers (Chinese).
        num_heads: attention heads (Chinese); must divide ``hidden_size``.
        dropout: hidden and attention dropout (Chinese).
        head_l2: L2 penalty of the English linear head (on the mean cross-entropy).
        head_steps: L-BFGS iterations of the English head.
        num_threads: torch CPU threads. 1 by default: on a shared 2-core machine two OpenMP threads
            were measured 7x slower than one when another process held a core.
    """

    max_length: int = 128
    batch_size: int = 32
    predict_batch_size: int = 128
    epochs: int = 2
    learning_rate: float = 1e-3
    warmup: float = 0.06
    weight_decay: float = 0.01
    vocab_size: int = 16000
    min_frequency: int = 2
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 2
    dropout: float = 0.1
    head_l2: float = 1e-4
    head_steps: int = 200
    num_threads: int = 1

    def __post_init__(self) -> None:
        positive = ("max_length", "batch_size", "predict_batch_size", "epochs", "vocab_size", "min_frequency",
                    "hidden_size", "num_layers", "num_heads", "head_steps", "num_threads")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"LabellerConfig.{name}={value!r} must be a positive integer")
        if self.max_length < 8:
            raise ValueError(f"LabellerConfig.max_length={self.max_length} is too short; use 8 or more tokens")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"LabellerConfig.hidden_size={self.hidden_size} must be divisible by "
                             f"num_heads={self.num_heads}")
        if self.vocab_size < 100:
            raise ValueError(f"LabellerConfig.vocab_size={self.vocab_size} is too small; use 100 or more")
        if not 0.0 < self.learning_rate < 1.0:
            raise ValueError(f"LabellerConfig.learning_rate={self.learning_rate!r} must be in (0, 1)")
        for name in ("warmup", "dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"LabellerConfig.{name}={getattr(self, name)!r} must be in [0, 1)")
        for name in ("weight_decay", "head_l2"):
            if getattr(self, name) < 0:
                raise ValueError(f"LabellerConfig.{name}={getattr(self, name)!r} must be >= 0")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)
