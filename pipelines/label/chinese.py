"""The Chinese labeller backend: a tiny BERT trained from scratch on a WordPiece vocabulary of the training texts.

``train_wordpiece`` is shared with the public encoder and the training stage's tokenizers.
"""

from __future__ import annotations

import copy

import json
import math
from collections.abc import Sequence
from pathlib import Path

from pipelines.label.batching import length_batches, quantized
from pipelines.label.config import LabellerConfig
from pipelines.modeling import segment_chinese

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


# ---------------------------------------------------------------------------------------------
# Chinese: jieba words -> WordPiece -> tiny BERT trained from scratch


def train_wordpiece(texts: Sequence[str], *, vocab_size: int, min_frequency: int):
    """A WordPiece tokenizer (``tokenizers``) whose vocabulary is learned from segmented texts.

    The vocabulary is every character seen ``min_frequency`` times (word-initial and ``##``
    continuation forms, so any word can be spelled), then the most frequent words, ties broken by
    the word itself. It is built here rather than with ``tokenizers``' ``WordPieceTrainer``
    because that trainer breaks count ties differently in every process: the same texts and seed
    gave a different vocabulary, hence a different model, on each run, and a labeller's version
    must name one model.
    """
    from collections import Counter

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=False, strip_accents=False,
                                            lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words: Counter[str] = Counter()
    for text in texts:
        words.update(w for w, _span in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    chars: Counter[str] = Counter()
    for word, count in words.items():
        for ch in word:
            chars[ch] += count

    def by_count(item: tuple[str, int]) -> tuple[int, str]:
        return -item[1], item[0]

    vocab = list(SPECIAL_TOKENS)
    alphabet = [ch for ch, c in sorted(chars.items(), key=by_count) if c >= min_frequency]
    alphabet = alphabet[:max(0, (vocab_size - len(vocab)) // 2)]
    vocab += alphabet + [f"##{ch}" for ch in alphabet]
    known = set(vocab)
    frequent = [w for w, c in sorted(words.items(), key=by_count) if c >= min_frequency and w not in known]
    vocab += frequent[:max(0, vocab_size - len(vocab))]
    tokenizer = Tokenizer(models.WordPiece(vocab={token: i for i, token in enumerate(vocab)}, unk_token="[UNK]",
                                           max_input_chars_per_word=100))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab.index("[CLS]")), ("[SEP]", vocab.index("[SEP]"))])
    return tokenizer


class ChineseBackend:
    kind = "tiny-bert"

    def __init__(self, tokenizer, model, config: LabellerConfig) -> None:
        self.tokenizer, self.model, self.config = tokenizer, model, config
        self.int8 = False
        self._int8 = None
        self.device = "cpu"
        self._on_device = None

    def to(self, device: str) -> None:
        """Predict on ``device`` (``cpu``, ``cuda``, ``cuda:1``); INT8 applies on the CPU only."""
        self.device = device
        self._on_device = None if device == "cpu" else copy.deepcopy(self.model).to(device)
        self.tokenizer.enable_truncation(config.max_length)
        self.tokenizer.no_padding()

    def _ids(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch([segment_chinese(t) for t in texts])]

    @staticmethod
    def _tensors(rows: list[list[int]]):
        import torch

        width = max(len(r) for r in rows)
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = torch.tensor(r)
            mask[i, :len(r)] = 1
        return ids, mask

    @classmethod
    def train(cls, texts: Sequence[str], y: Sequence[int], n_labels: int, config: LabellerConfig,
              seed: int) -> ChineseBackend:
        import random

        import torch
        from transformers import BertConfig, BertForSequenceClassification

        torch.manual_seed(seed)
        segmented = [segment_chinese(t) for t in texts]
        tokenizer = train_wordpiece(segmented, vocab_size=config.vocab_size, min_frequency=config.min_frequency)
        tokenizer.enable_truncation(config.max_length)
        rows = [e.ids for e in tokenizer.encode_batch(segmented)]
        bert = BertConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=config.hidden_size,
                          num_hidden_layers=config.num_layers, num_attention_heads=config.num_heads,
                          intermediate_size=4 * config.hidden_size, max_position_embeddings=config.max_length,
                          type_vocab_size=1, hidden_dropout_prob=config.dropout,
                          attention_probs_dropout_prob=config.dropout, num_labels=n_labels,
                          pad_token_id=tokenizer.token_to_id("[PAD]"))
        model = BertForSequenceClassification(bert)
        rng = random.Random(seed)
        per_epoch = math.ceil(len(rows) / config.batch_size)
        total = config.epochs * per_epoch
        warm = max(1, int(config.warmup * total))
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm))))
        labels = torch.tensor(list(y))
        model.train()
        for _epoch in range(config.epochs):
            # Shuffle, then sort within windows of 50 batches: little padding, still random batches.
            order = list(range(len(rows)))
            rng.shuffle(order)
            window = config.batch_size * 50
            batches = []
            for start in range(0, len(order), window):
                chunk = sorted(order[start:start + window], key=lambda i: len(rows[i]))
                batches.extend(chunk[i:i + config.batch_size] for i in range(0, len(chunk), config.batch_size))
            rng.shuffle(batches)
            for batch in batches:
                ids, mask = cls._tensors([rows[i] for i in batch])
                loss = model(input_ids=ids, attention_mask=mask, labels=labels[batch]).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
        model.eval()
        return cls(tokenizer, model, config)

    def probabilities(self, texts: Sequence[str], batch_size: int):
        import numpy as np
        import torch

        rows = self._ids(texts)
        out = np.zeros((len(texts), self.model.config.num_labels), dtype=np.float32)
        if self._on_device is not None:
            model = self._on_device
        else:
            if self.int8 and self._int8 is None:
                self._int8 = quantized(self.model)
            model = self._int8 if self.int8 else self.model
        with torch.inference_mode():
            for batch in length_batches([len(r) for r in rows], batch_size):
                ids, mask = (t.to(self.device) for t in self._tensors([rows[i] for i in batch]))
                logits = model(input_ids=ids, attention_mask=mask).logits
                out[batch] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        return out

    def save(self, folder: Path) -> dict[str, object]:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in self.model.state_dict().items()}, str(folder / "model.safetensors"))
        (folder / "bert_config.json").write_text(self.model.config.to_json_string(), encoding="utf-8")
        self.tokenizer.save(str(folder / "tokenizer.json"))
        import jieba

        return {"segmenter": f"jieba {jieba.__version__}", "files": ["model.safetensors", "bert_config.json",
                                                                     "tokenizer.json"]}

    @classmethod
    def load(cls, folder: Path, meta: dict, config: LabellerConfig) -> ChineseBackend:
        from safetensors.torch import load_file
        from tokenizers import Tokenizer
        from transformers import BertConfig, BertForSequenceClassification

        bert = BertConfig.from_dict(json.loads((folder / "bert_config.json").read_text(encoding="utf-8")))
        model = BertForSequenceClassification(bert)
        model.load_state_dict(load_file(str(folder / "model.safetensors")))
        return cls(Tokenizer.from_file(str(folder / "tokenizer.json")), model.eval(), config)

