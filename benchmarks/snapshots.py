"""Random-init Hugging Face snapshot folders of real architectures (no hub): what a user's pretrained model looks like.

A snapshot here is what ``huggingface-cli download`` leaves on disk: ``config.json``, ``model.safetensors``,
``generation_config.json`` (causal LMs), a tokenizer (``tokenizer.json`` + ``tokenizer_config.json`` with a chat
template for causal LMs) and a ``LICENSE``. Weights are random (seeded); the tokenizer is trained locally on the
texts given. Tests use ``size="tiny"``; the GPU benchmark builds a real-size Qwen2 config with ``shape=``.

    python -m benchmarks.snapshots --family qwen2 --out /tmp/qwen2-tiny
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# family -> (model_type, task). Causal families share the ChatML special tokens (Qwen's), which is also what a
# DeepSeek-R1-Distill-Qwen snapshot uses.
FAMILIES: dict[str, tuple[str, str]] = {
    "llama": ("llama", "causal_lm"),
    "qwen2": ("qwen2", "causal_lm"),
    "qwen3": ("qwen3", "causal_lm"),
    "mistral": ("mistral", "causal_lm"),
    "bert": ("bert", "classification"),
    "roberta": ("roberta", "classification"),
    "xlm-roberta": ("xlm-roberta", "classification"),
    "qwen3_moe": ("qwen3_moe", "causal_lm"),
}
TINY_DECODER = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                    intermediate_size=64, max_position_embeddings=256, head_dim=8)
TINY_ENCODER = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                    max_position_embeddings=130)
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
DEFAULT_TEXTS = (
    "The order arrived late and the box was damaged.", "Thank you, the refund was processed quickly.",
    "How do I reset my password?", "Click 'Forgot password' on the sign-in page.",
    "这个产品质量很好，物流也很快。", "服务态度太差了，再也不买了。", "合同的违约条款需要重新审查。",
    "Patient reports mild headache after the second dose.", "Quarterly revenue grew by 12 percent.",
) * 20


def _decoder_tokenizer(texts: Sequence[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(list(texts), trainer=trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=1, special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                      additional_special_tokens=["<|im_start|>"])
    wrapped.chat_template = CHATML_TEMPLATE
    return wrapped


def _encoder_tokenizer(texts: Sequence[str], vocab_size: int, model_type: str):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if model_type == "bert":
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        tok.train_from_iterator(list(texts), trainer=trainers.WordPieceTrainer(
            vocab_size=vocab_size, min_frequency=1, special_tokens=specials, show_progress=False))
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
            special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
        return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                       sep_token="[SEP]", mask_token="[MASK]")
    # RoBERTa / XLM-R: byte-level BPE with <s> </s> <pad> <unk> <mask> (pad id 1, as RoBERTa's position ids assume)
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(list(texts), trainer=trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=1, special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")))
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", cls_token="<s>", sep_token="</s>", mask_token="<mask>")


def _shape(shape: Mapping[str, Any]) -> dict[str, Any]:
    """Config overrides without the keys that name a model rather than shape it (a real config.json has them)."""
    drop = {"model_type", "architectures", "transformers_version", "torch_dtype", "dtype", "auto_map", "_name_or_path",
            "bos_token_id", "eos_token_id", "pad_token_id"}
    return {k: v for k, v in shape.items() if k not in drop}


def build_snapshot(family: str, out_dir: str | Path, *, texts: Sequence[str] = DEFAULT_TEXTS, seed: int = 0,
                   vocab_size: int = 600, shape: Mapping[str, Any] | None = None, dtype: str = "float32",
                   tie_word_embeddings: bool | None = None, device: str = "cpu") -> Path:
    """Write a random-init snapshot folder of ``family`` (a key of :data:`FAMILIES`) to ``out_dir``.

    Args:
        family: architecture family.
        out_dir: folder to create (must not exist or be empty).
        texts: texts the tokenizer is trained on.
        seed: seeds the weights.
        vocab_size: tokenizer vocabulary (the model's embedding rows follow the tokenizer).
        shape: config overrides (hidden_size, num_hidden_layers, ...); default: a tiny model.
        dtype: ``float32`` or ``bfloat16`` weights.
        tie_word_embeddings: causal LMs only; default: the family's usual choice (Qwen2 small models tie).
        device: where the random weights are created (``cuda`` for a real-size model on the GPU machine).
    """
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    from pipelines.modeling import quiet_transformers

    quiet_transformers()  # no "Writing model shards" bars in logs and test output
    if family not in FAMILIES:
        raise ValueError(f"family={family!r}: use one of {sorted(FAMILIES)}")
    model_type, task = FAMILIES[family]
    folder = Path(out_dir)
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"{folder} is not empty")
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    if task == "causal_lm":
        tokenizer = _decoder_tokenizer(texts, vocab_size)
        values = _shape(TINY_DECODER if shape is None else shape)
        if model_type == "qwen3_moe":
            values.update(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, decoder_sparse_step=1)
        tie = values.pop("tie_word_embeddings", family in ("qwen2", "qwen3"))
        tie = tie if tie_word_embeddings is None else tie_word_embeddings
        # A real config's vocab_size (Qwen2: 151,936) may exceed the local tokenizer's: the extra rows stay unused.
        values["vocab_size"] = max(int(values.get("vocab_size", 0)), len(tokenizer))
        values["tie_word_embeddings"] = tie
        config = AutoConfig.for_model(
            model_type, bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
            eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
            pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"), **values)
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
        model.generation_config.eos_token_id = [config.eos_token_id, config.bos_token_id]
        model.generation_config.pad_token_id = config.pad_token_id
    else:
        tokenizer = _encoder_tokenizer(texts, vocab_size, model_type)
        values = _shape(TINY_ENCODER if shape is None else shape)
        extra = {"type_vocab_size": 1} if model_type != "bert" else {}
        values["vocab_size"] = max(int(values.get("vocab_size", 0)), len(tokenizer))
        config = AutoConfig.for_model(model_type, pad_token_id=tokenizer.pad_token_id, **extra, **values)
        with torch.device(device):
            model = AutoModel.from_config(config, dtype=getattr(torch, dtype))  # an encoder without a task head
    model.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    (folder / "LICENSE").write_text("Apache-2.0 (random-init test snapshot; no pretrained weights)\n", encoding="utf-8")
    return folder


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a random-init snapshot folder of a real architecture.")
    parser.add_argument("--family", required=True, choices=sorted(FAMILIES))
    parser.add_argument("--out", required=True, help="folder to create")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config-json", help="JSON file of config overrides (a real model's config.json works, "
                                              "e.g. benchmarks/configs/qwen2-0.5b.json)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--device", default="cpu", help="where the random weights are made (cuda for big configs)")
    args = parser.parse_args(argv)
    shape = json.loads(Path(args.config_json).read_text()) if args.config_json else None
    folder = build_snapshot(args.family, args.out, seed=args.seed, shape=shape, dtype=args.dtype, device=args.device)
    print(folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
