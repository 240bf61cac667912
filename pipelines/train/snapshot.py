"""Bring your own pretrained model: check a Hugging Face snapshot folder and turn it into a base model folder.

A snapshot is what a team already has on disk for DeepSeek-R1-Distill-Qwen, Qwen, Llama, Mistral or a Chinese BERT:
``config.json``, weights in ``*.safetensors``, a tokenizer (``tokenizer.json`` / ``tokenizer_config.json``, a chat
template for causal LMs), ``generation_config.json``, a licence. :func:`inspect_snapshot` says whether it can be
trained under DP here, and how, before a byte is published; :func:`prepare_base_folder` writes the project's model
folder (the snapshot's files plus ``pipeline_model.json``) that training, evaluation and serving load with the Auto
classes.

Refused, with the reason: pickled weights (``*.bin``, ``*.pt``: loading them runs code), custom code
(``*.py``, ``auto_map``: ``trust_remote_code``), a model type transformers does not know, a task the architecture
cannot do, and a DP method the architecture cannot be trained with (full fine-tuning needs every trainable layer to
be one that per-sample clipping supports: Linear, Embedding, LayerNorm, RMSNorm; fused expert weights of
mixture-of-experts models are not, so those train with LoRA on their attention projections or not at all).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from pipelines.modeling import DESCRIPTOR, FORMAT, quiet_transformers

# File names a snapshot may hold; anything else is refused (not silently dropped: the user should know).
_ALLOWED = re.compile(
    r"^(config\.json|generation_config\.json|model(-\d{5}-of-\d{5})?\.safetensors|model\.safetensors\.index\.json|"
    r"tokenizer\.json|tokenizer_config\.json|special_tokens_map\.json|added_tokens\.json|vocab\.(txt|json)|"
    r"merges\.txt|spiece\.model|sentencepiece\.bpe\.model|tokenizer\.model|chat_template\.(jinja|json)|"
    r"preprocessor_config\.json|LICEN[CS]E(\.[A-Za-z]+)?|NOTICE(\.[A-Za-z]+)?|README\.md|USE_POLICY\.md)$")
_PICKLE = re.compile(r"\.(bin|pt|pth|pkl|pickle|ckpt|h5|msgpack)$")
_CODE = re.compile(r"\.py$")
# Layers whose weights LoRA adapts (attention projections; the names of the families transformers ships).
LORA_TARGETS = {
    "causal_lm": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "classification": ("query", "key", "value"),
}
ENCODER_TYPES = ("bert", "roberta", "xlm-roberta", "distilbert", "electra", "camembert", "ernie")
METHODS = ("full", "lora", "head", "head_bias", "last_layer")


class SnapshotError(ValueError):
    """The folder is not a snapshot this project can train under DP; the message says why and what to do."""


@dataclass(frozen=True)
class SnapshotInfo:
    """What :func:`inspect_snapshot` found.

    Attributes:
        task: ``classification`` (encoders) or ``causal_lm``.
        model_type: the config's ``model_type`` (``qwen2``, ``llama``, ``bert``, ...).
        architecture: the Auto class the project loads it with.
        parameters: number of parameters.
        methods: DP training methods this architecture supports here (``full``, ``lora``, ``head``).
        unsupported_layers: layer types that per-sample clipping cannot handle (why ``full`` is missing).
        tied_embeddings: input and output embeddings share weights.
        chat_template: the tokenizer has a chat template (causal LMs must).
        files: the snapshot's file names.
    """

    task: str
    model_type: str
    architecture: str
    parameters: int
    methods: tuple[str, ...]
    unsupported_layers: tuple[str, ...]
    tied_embeddings: bool
    chat_template: bool
    files: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _files(folder: Path) -> list[str]:
    """The snapshot's file names; hidden ones (``.gitattributes``, ``.cache/huggingface/`` that
    ``huggingface-cli download --local-dir`` leaves) are download metadata: neither loaded nor imported."""
    out = []
    for path in sorted(folder.rglob("*")):
        if path.relative_to(folder).parts[0].startswith("."):
            continue
        if path.is_symlink():
            raise SnapshotError(f"{path}: symbolic links are not imported; copy the real file into the snapshot")
        if path.is_file():
            out.append(path.relative_to(folder).as_posix())
    return out


def _check_names(names: Sequence[str], folder: Path) -> None:
    pickled = [n for n in names if _PICKLE.search(n)]
    if pickled:
        raise SnapshotError(f"{folder}: pickled weights {pickled[:3]} can run code when loaded; convert them to "
                            "safetensors (transformers: model.save_pretrained(dir, safe_serialization=True))")
    code = [n for n in names if _CODE.search(n)]
    if code:
        raise SnapshotError(f"{folder}: custom model code {code[:3]} (trust_remote_code) is not imported; use an "
                            "architecture transformers ships")
    unknown = [n for n in names if "/" in n or not _ALLOWED.match(n)]
    if unknown:
        raise SnapshotError(f"{folder}: unexpected file(s) {unknown[:5]}; a snapshot holds config, safetensors "
                            "weights, tokenizer files, chat template, generation config and licence only")
    if "config.json" not in names:
        raise SnapshotError(f"{folder}: no config.json: not a Hugging Face model snapshot")
    if not any(n.endswith(".safetensors") for n in names):
        raise SnapshotError(f"{folder}: no *.safetensors weights")
    if not ({"tokenizer.json", "tokenizer_config.json"} & set(names)):
        raise SnapshotError(f"{folder}: no tokenizer (tokenizer.json or tokenizer_config.json)")


def _has_chat_template(folder: Path) -> bool:
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    try:
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    return bool(config.get("chat_template"))


def _layer_report(model: Any, task: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(methods, unsupported layer types) of a model built on the meta device."""
    from pipelines.train.fastclip import supported_layer_kind

    unsupported: set[str] = set()
    for module in model.modules():
        own = [p for p in module.parameters(recurse=False)]
        if own and supported_layer_kind(module) is None:
            unsupported.add(type(module).__name__)
    names = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if type(m).__name__ == "Linear"}
    methods = []
    if not unsupported:
        methods.append("full")
    if set(LORA_TARGETS[task]) & names:
        methods.append("lora")
    if task == "classification":
        methods.extend(("head", "head_bias", "last_layer"))  # the head (+ biases, LayerNorms, last layer): Linear/norms
    return tuple(methods), tuple(sorted(unsupported))


def inspect_snapshot(folder: str | Path, *, task: str) -> SnapshotInfo:
    """Check a snapshot folder without loading its weights.

    Args:
        folder: the snapshot folder.
        task: ``classification`` (an encoder gets a new classification head) or ``causal_lm``.

    Raises:
        SnapshotError: it cannot be imported; the message says why and what to do.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    quiet_transformers()
    path = Path(folder)
    if not path.is_dir():
        raise SnapshotError(f"{path} is not a folder: give the snapshot folder (config.json, *.safetensors, tokenizer)")
    names = _files(path)
    _check_names(names, path)
    try:
        raw = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SnapshotError(f"{path}/config.json is not valid JSON ({exc})") from None
    if raw.get("auto_map"):
        raise SnapshotError(f"{path}/config.json has auto_map (custom code, trust_remote_code): not imported")
    try:
        config = AutoConfig.from_pretrained(str(path), local_files_only=True)
    except (ValueError, KeyError, OSError) as exc:
        raise SnapshotError(f"{path}: transformers cannot read this config ({exc}); model_type "
                            f"{raw.get('model_type')!r} may need a newer transformers") from None
    model_type = str(config.model_type)
    encoder = model_type in ENCODER_TYPES
    if task == "classification" and not encoder:
        raise SnapshotError(f"{path}: model_type {model_type!r} is not an encoder this project classifies with "
                            f"(use one of {', '.join(ENCODER_TYPES)}), or give the domain task causal_lm")
    if task == "causal_lm" and encoder:
        raise SnapshotError(f"{path}: {model_type!r} is an encoder; a causal_lm domain needs a decoder (Qwen, Llama...)")
    if task not in LORA_TARGETS:
        raise SnapshotError(f"task={task!r}: use classification or causal_lm")
    auto = AutoModelForCausalLM if task == "causal_lm" else AutoModelForSequenceClassification
    try:
        with torch.device("meta"):
            model = auto.from_config(config)
    except ValueError as exc:
        raise SnapshotError(f"{path}: {model_type!r} has no {auto.__name__} in transformers ({exc})") from None
    methods, unsupported = _layer_report(model, task)
    if not methods:
        raise SnapshotError(f"{path}: {model_type!r} cannot be trained under DP here: layers {list(unsupported)} are "
                            "not supported by per-sample clipping and no LoRA target projections were found")
    chat = _has_chat_template(path)
    if task == "causal_lm" and not chat:
        raise SnapshotError(f"{path}: the tokenizer has no chat template (tokenizer_config.json 'chat_template' or "
                            "chat_template.jinja): causal LMs are trained and served through it")
    tied = bool(getattr(config, "tie_word_embeddings", False)) and task == "causal_lm"
    return SnapshotInfo(task=task, model_type=model_type, architecture=auto.__name__,
                        parameters=sum(p.numel() for p in model.parameters()), methods=methods,
                        unsupported_layers=unsupported, tied_embeddings=tied, chat_template=chat,
                        files=tuple(names))


def check_method(info: SnapshotInfo, method: str) -> None:
    """Refuse a training method the architecture cannot be trained with under DP (message says what to use)."""
    if method not in METHODS:
        raise SnapshotError(f"method={method!r}: use one of {METHODS}")
    if method == "full" and info.tied_embeddings:
        raise SnapshotError(f"{info.model_type}: method 'full' is not possible: the snapshot ties its input "
                            "embeddings and lm_head (one weight used by two layers, which per-sample clipping cannot "
                            "clip correctly); set training.method lora for the domain (embeddings stay frozen)")
    if method not in info.methods:
        why = f" (layers {list(info.unsupported_layers)} are not supported by per-sample clipping)" \
            if method == "full" and info.unsupported_layers else ""
        raise SnapshotError(f"{info.model_type}: method {method!r} is not possible{why}; this architecture trains "
                            f"with {list(info.methods)}: set training.method for the domain")


def prepare_base_folder(
    snapshot: str | Path,
    out_dir: str | Path,
    *,
    task: str,
    labels: Sequence[str] = (),
    max_length: int = 128,
    seed: int = 0,
    provenance: Mapping[str, Any] | None = None,
) -> tuple[Path, SnapshotInfo]:
    """Write the project's base model folder for a snapshot.

    Causal LMs keep the snapshot's files byte for byte (the artifact's sha256s are the user's files).
    Encoders get a classification head for ``labels`` (seeded), saved with the encoder as one folder.

    Args:
        snapshot: the snapshot folder.
        out_dir: the folder to write (must not exist or be empty).
        task: ``classification`` or ``causal_lm``.
        labels: class names in logit order (classification).
        max_length: longest sequence training uses (capped by the model's position embeddings).
        seed: seeds a new classification head.
        provenance: ``source``, ``revision``, ``licence`` ... recorded in ``pipeline_model.json``.

    Returns:
        (the folder, what :func:`inspect_snapshot` found).
    """
    info = inspect_snapshot(snapshot, task=task)
    src, folder = Path(snapshot), Path(out_dir)
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"{folder} is not empty")
    folder.mkdir(parents=True, exist_ok=True)
    descriptor: dict[str, Any] = {
        "format": FORMAT, "task": task, "base": "imported", "architecture": info.architecture,
        "model_type": info.model_type, "labels": [], "segment": None, "max_length": int(max_length), "seed": seed,
        "size": "imported", "parameters": info.parameters, "dp_methods": list(info.methods),
        "tied_embeddings": info.tied_embeddings, "provenance": dict(provenance or {}),
    }
    if task == "classification":
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        labels = [str(x) for x in labels]
        if len(labels) < 2 or len(set(labels)) != len(labels):
            raise SnapshotError(f"classification needs at least two distinct labels, got {labels}")
        torch.manual_seed(seed)
        model = AutoModelForSequenceClassification.from_pretrained(
            str(src), local_files_only=True, num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={v: i for i, v in enumerate(labels)})
        model.save_pretrained(str(folder), safe_serialization=True)
        AutoTokenizer.from_pretrained(str(src), local_files_only=True).save_pretrained(str(folder))
        for name in info.files:
            if re.match(r"^(LICEN[CS]E|NOTICE|README)", name):
                shutil.copy2(src / name, folder / name)
        descriptor["labels"] = labels
    else:
        for name in info.files:
            shutil.copy2(src / name, folder / PurePosixPath(name).name)
    (folder / DESCRIPTOR).write_text(json.dumps(descriptor, indent=2, ensure_ascii=False, sort_keys=True) + "\n",
                                     encoding="utf-8")
    return folder, info


def licence_text(folder: str | Path) -> str:
    """The first line of the snapshot's LICENSE file (or '' when it has none)."""
    for path in sorted(Path(folder).glob("LICEN[CS]E*")):
        lines = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        return lines[0][:200] if lines else ""
    return ""
