"""Causal-LM generation on a continuous-batching engine, behind one small client contract.

The serving task keeps its role (auth, screening, feedback, verification of every file, atomic swap); the
tokens are produced by an engine that schedules requests per decoding step over a paged KV cache, so a
request joins the running batch as soon as a slot frees instead of waiting for the slowest row of a
fixed batch (what ``LoadedModel.generate`` / :func:`pipelines.serving.inference.generate` do).

Two backends, one contract (:class:`GenerationEngine`: ``complete``, ``load_adapter``, ``unload_adapter``,
``close``):

* ``transformers`` (:class:`TransformersEngine`): transformers' own continuous batching
  (``model.init_continuous_batching()``, the manager behind ``generate_batch`` and ``transformers serve``),
  in this process. Used where vLLM is not installed: CI, the GPU test machine. It serves one verified
  model folder; a promotion or rollback builds a new engine for the new folder and closes the old one.
* ``vllm`` (:class:`OpenAICompatibleEngine`): an HTTP client of vLLM's OpenAI-compatible server (its own
  image, ``deploy/vllm/``). Generation is ``POST /v1/completions`` (greedy, ``ignore_eos`` as vLLM's extra
  parameter). The LoRA adapter of a promoted version is loaded *after* the serving task verified every file of
  the artifact, with ``POST /v1/load_lora_adapter {"lora_name", "lora_path"}`` (the server must run with
  ``--enable-lora`` and ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``), requests then name the adapter as their
  ``model``; a rollback unloads it with ``POST /v1/unload_lora_adapter {"lora_name"}``. ``lora_path`` is a
  path the vLLM container reads (a volume shared with the serving task's verified artifact cache).

Only the standard library and ``pipelines.modeling`` (torch-free at import) load with this module: the vLLM client
needs no extra package, and torch / transformers load when a transformers engine is built.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pipelines.modeling import EOS, causal_prompt_ids, load_model

BACKENDS = ("transformers", "vllm")


class EngineError(RuntimeError):
    """The engine refused or failed a request; the message says what to do."""


@dataclass(frozen=True)
class Completion:
    """One generated continuation.

    Attributes:
        text: the decoded new tokens.
        token_ids: the new tokens (empty when the backend does not return them).
        prompt_tokens / completion_tokens: token counts, as the OpenAI ``usage`` block reports them.
        finish_reason: ``length`` (hit ``max_tokens``) or ``stop`` (end of sequence).
    """

    text: str
    token_ids: tuple[int, ...]
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str


@dataclass(frozen=True)
class EngineConfig:
    """Which engine generates causal-LM answers (config ``serving.engine``; the serving stage owns the section).

    Attributes:
        backend: ``transformers`` (in-process continuous batching) or ``vllm`` (OpenAI-compatible server).
        url: the vLLM server, e.g. ``http://vllm:8000`` (vllm only).
        model: the name vLLM serves the base model under (``--served-model-name``; vllm only).
        timeout_s: how long one request may take end to end.
        num_blocks / page_size / max_batch_tokens: the transformers backend's paged KV cache (blocks of
            ``page_size`` tokens) and the most tokens one step schedules; ``None`` lets transformers size them
            from free GPU memory (on CPU give them: its heuristics allocate for a GPU).
        dtype: ``float32``, ``bfloat16`` or ``float16`` (transformers backend).
        cuda_graphs: capture the decode and prefill steps as CUDA graphs (transformers backend on a GPU; ``None``
            lets transformers decide, which leaves them off whenever the attention needs a mask). A small model's
            decode step is bound by kernel launches: replaying one graph per step removes that cost.
        compile_level: ``torch.compile`` level of transformers' continuous batching (0 off .. 3; warm-up is
            longer the higher it is).
    """

    backend: str = "transformers"
    url: str = ""
    model: str = ""
    timeout_s: float = 120.0
    num_blocks: int | None = None
    page_size: int = 256
    max_batch_tokens: int | None = None
    dtype: str = "float32"
    cuda_graphs: bool | None = None
    compile_level: int = 0

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise EngineError(f"engine backend={self.backend!r}: use one of {BACKENDS}")
        if self.backend == "vllm" and not (self.url.startswith(("http://", "https://")) and self.model):
            raise EngineError("engine backend vllm needs url (http://host:port of the vLLM server) and model "
                              "(its --served-model-name)")
        if self.timeout_s <= 0:
            raise EngineError(f"engine timeout_s={self.timeout_s}: use a positive number of seconds")
        for name in ("num_blocks", "max_batch_tokens"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise EngineError(f"engine {name}={value!r}: use a positive integer, or null for transformers' sizing")
        if self.page_size < 1:
            raise EngineError(f"engine page_size={self.page_size}: use a positive integer")
        if self.cuda_graphs not in (None, True, False):
            raise EngineError(f"engine cuda_graphs={self.cuda_graphs!r}: use true, false or null (transformers decides)")
        if isinstance(self.compile_level, bool) or self.compile_level not in (0, 1, 2, 3):
            raise EngineError(f"engine compile_level={self.compile_level!r}: use 0 (off), 1, 2 or 3")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise EngineError(f"engine dtype={self.dtype!r}: use float32, bfloat16 or float16")


class GenerationEngine(Protocol):
    """What the serving task needs from an engine (both backends implement it)."""

    def complete(self, prompt: str | Sequence[int], *, max_tokens: int, ignore_eos: bool = False,
                 adapter: str | None = None) -> Completion:
        """Greedy continuation of ``prompt`` (text, or token ids) of at most ``max_tokens`` tokens."""
        ...

    def load_adapter(self, name: str, path: str) -> None:
        """Make the verified LoRA adapter at ``path`` servable as ``name``."""
        ...

    def unload_adapter(self, name: str) -> None:
        """Stop serving adapter ``name`` (rollback)."""
        ...

    def close(self) -> None:
        """Release the engine (threads, cache, connections)."""
        ...


# ---------------------------------------------------------------------------------------------------- transformers


class TransformersEngine:
    """transformers' continuous batching in this process: one manager thread steps every running request.

    Requests from any thread are queued with ``add_request``; one dispatcher thread hands each finished result to
    the caller's future (the manager's own ``get_result(request_id)`` requeues foreign results, which costs O(n)
    per result under load).
    """

    def __init__(self, model: Any, tokenizer: Any = None, *, config: EngineConfig | None = None,
                 eos_token_id: int | None = None) -> None:
        """Start the engine on a loaded causal LM.

        Args:
            model: a transformers causal LM (eval mode, on its device and dtype).
            tokenizer: encodes text prompts and decodes answers (None: prompts and answers are token ids only).
            config: cache sizing (``num_blocks`` / ``page_size`` / ``max_batch_tokens``).
            eos_token_id: the end-of-answer token (default: the model's generation config's).
        """
        import inspect

        from transformers import GenerationConfig

        self.config = config or EngineConfig()
        self.model, self.tokenizer = model, tokenizer
        eos = eos_token_id if eos_token_id is not None else getattr(model.generation_config, "eos_token_id", None)
        self.eos_token_id = -1 if eos is None else int(eos if not isinstance(eos, list) else eos[0])
        pad = getattr(tokenizer, "pad_token_id", None) if tokenizer is not None else None
        generation = GenerationConfig(do_sample=False, eos_token_id=self.eos_token_id,
                                      pad_token_id=0 if pad is None else pad, max_new_tokens=16)
        # The paged-cache settings moved between transformers releases (5.17: on the GenerationConfig, ``block_size``;
        # 5.24: a ContinuousBatchingConfig, ``page_size``): give them in whichever form this release takes.
        wanted = {"num_blocks": self.config.num_blocks, "page_size": self.config.page_size,
                  "block_size": self.config.page_size, "max_batch_tokens": self.config.max_batch_tokens}
        for key, value in wanted.items():
            setattr(generation, key, value)
        options: dict[str, Any] = {}
        try:
            from transformers.generation.configuration_utils import ContinuousBatchingConfig
        except ImportError:
            ContinuousBatchingConfig = None  # noqa: N806 - an older release: the GenerationConfig carries them
        if ContinuousBatchingConfig is not None and \
                "continuous_batching_config" in inspect.signature(model.init_continuous_batching).parameters:
            accepted = inspect.signature(ContinuousBatchingConfig).parameters
            wanted.update(use_cuda_graph=self.config.cuda_graphs, default_compile_level=self.config.compile_level)
            options["continuous_batching_config"] = ContinuousBatchingConfig(
                **{k: v for k, v in wanted.items() if k in accepted})
        self._manager = model.init_continuous_batching(generation_config=generation, **options)
        self._manager.start()
        self._pending: dict[str, tuple[Future, int]] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._dispatcher = threading.Thread(target=self._dispatch, name="engine-results", daemon=True)
        self._dispatcher.start()

    @classmethod
    def from_folder(cls, folder: str | Path, *, config: EngineConfig | None = None,
                    device: str | None = None) -> TransformersEngine:
        """An engine on a verified model folder (``pipelines.modeling`` layout: weights, tokenizer, manifest)."""
        import torch

        config = config or EngineConfig()
        loaded = load_model(folder)
        if loaded.task != "causal_lm":
            raise EngineError(f"{folder}: a {loaded.task} model; the engine serves causal_lm models")
        model = loaded.model.to(device=device or "cpu", dtype=getattr(torch, config.dtype)).eval()
        return cls(model, loaded.tokenizer, config=config, eos_token_id=loaded.tokenizer.convert_tokens_to_ids(EOS))

    def _dispatch(self) -> None:
        while not self._closed.is_set():
            result = self._manager.get_result(timeout=0.05)
            if result is None:
                if not self._manager.is_running() and not self._closed.is_set():
                    self._fail_all("the generation thread stopped")
                    return
                continue
            if not result.is_finished():
                continue
            with self._lock:
                waiting = self._pending.pop(result.request_id, None)
            if waiting is None:
                continue
            future, prompt_tokens = waiting
            if result.error:
                future.set_exception(EngineError(f"generation failed: {result.error}"))
                continue
            tokens = tuple(int(t) for t in result.generated_tokens)
            if tokens and tokens[-1] == self.eos_token_id:
                tokens, reason = tokens[:-1], "stop"
            else:
                reason = "length"
            text = self.tokenizer.decode(list(tokens), skip_special_tokens=True).strip() if self.tokenizer else ""
            future.set_result(Completion(text=text, token_ids=tokens, prompt_tokens=prompt_tokens,
                                         completion_tokens=len(tokens), finish_reason=reason))

    def _fail_all(self, why: str) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for future, _n in pending.values():
            if not future.done():
                future.set_exception(EngineError(f"{why}; restart the serving task"))

    def _ids(self, prompt: str | Sequence[int]) -> list[int]:
        if isinstance(prompt, str):
            if self.tokenizer is None:
                raise EngineError("this engine has no tokenizer: pass the prompt as token ids")
            return causal_prompt_ids(self.tokenizer, prompt)
        return [int(t) for t in prompt]

    def submit(self, prompt: str | Sequence[int], *, max_tokens: int, ignore_eos: bool = False,
               adapter: str | None = None) -> Future:
        """Queue a request; the future resolves to its :class:`Completion` (what ``complete`` waits for)."""
        if adapter is not None:
            raise EngineError("the transformers backend serves one model folder, not adapters: the serving task "
                              "swaps the engine on promotion")
        if max_tokens < 1:
            raise EngineError(f"max_tokens={max_tokens}: use a positive integer")
        if self._closed.is_set():
            raise EngineError("the engine is closed")
        ids = self._ids(prompt)
        future: Future = Future()
        with self._lock:
            request_id = self._manager.add_request(ids, max_new_tokens=max_tokens,
                                                   eos_token_id=-1 if ignore_eos else self.eos_token_id)
            if request_id is None:
                raise EngineError("the engine refused the request (queue full or stopping): retry later")
            self._pending[request_id] = (future, len(ids))
        return future

    def complete(self, prompt: str | Sequence[int], *, max_tokens: int, ignore_eos: bool = False,
                 adapter: str | None = None) -> Completion:
        """Greedy continuation (see :class:`GenerationEngine`)."""
        future = self.submit(prompt, max_tokens=max_tokens, ignore_eos=ignore_eos, adapter=adapter)
        try:
            return future.result(timeout=self.config.timeout_s)
        except TimeoutError:
            raise EngineError(f"no answer within {self.config.timeout_s:.0f} s") from None

    def load_adapter(self, name: str, path: str) -> None:
        """Not offered: this backend serves merged model folders (the serving task swaps engines instead)."""
        raise EngineError("the transformers backend serves one merged model folder; adapters need backend vllm")

    def unload_adapter(self, name: str) -> None:
        """Not offered (see :meth:`load_adapter`)."""
        raise EngineError("the transformers backend serves one merged model folder; adapters need backend vllm")

    def close(self) -> None:
        """Stop the manager thread and fail what is still waiting."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._manager.stop(block=True, timeout=10)
        self._dispatcher.join(timeout=5)
        self._fail_all("the engine was closed")
        destroy = getattr(self.model, "destroy_cached_continuous_batching_manager", None)
        if destroy is not None:
            destroy()


# ---------------------------------------------------------------------------------------------------- vLLM (HTTP)


class OpenAICompatibleEngine:
    """Client of an OpenAI-compatible server with vLLM's adapter API (backend ``vllm``).

    Stateless apart from the adapters it loaded; safe to call from many threads (one HTTP request per call).
    """

    def __init__(self, config: EngineConfig, *, api_key: str | None = None) -> None:
        if config.backend != "vllm":
            raise EngineError(f"OpenAICompatibleEngine is backend vllm, not {config.backend!r}")
        self.config = config
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self.adapters: dict[str, str] = {}

    def _post(self, path: str, body: dict[str, Any]) -> bytes:
        request = urllib.request.Request(self.config.url.rstrip("/") + path, data=json.dumps(body).encode(),
                                         headers=self._headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout_s) as response:  # noqa: S310 - config URL
                return response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:500]
            raise EngineError(f"{path}: HTTP {exc.code} from {self.config.url}: {detail}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise EngineError(f"{path}: cannot reach the engine at {self.config.url}: {exc}") from None

    def complete(self, prompt: str | Sequence[int], *, max_tokens: int, ignore_eos: bool = False,
                 adapter: str | None = None) -> Completion:
        """``POST /v1/completions``, greedy (temperature 0); ``adapter`` names a loaded LoRA adapter."""
        if max_tokens < 1:
            raise EngineError(f"max_tokens={max_tokens}: use a positive integer")
        if adapter is not None and adapter not in self.adapters:
            raise EngineError(f"adapter {adapter!r} is not loaded: load_adapter it after verification first")
        body: dict[str, Any] = {"model": adapter or self.config.model,
                                "prompt": prompt if isinstance(prompt, str) else [int(t) for t in prompt],
                                "max_tokens": int(max_tokens), "temperature": 0.0, "n": 1, "stream": False}
        if ignore_eos:
            body["ignore_eos"] = True  # vLLM's extra sampling parameter (benchmarks: fixed-length answers)
        try:
            answer = json.loads(self._post("/v1/completions", body))
            choice = answer["choices"][0]
            usage = answer.get("usage") or {}
            text = str(choice["text"])
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise EngineError(f"/v1/completions: not an OpenAI completions answer ({exc!r})") from None
        tokens = tuple(int(t) for t in (choice.get("token_ids") or ()))
        return Completion(text=text.strip(), token_ids=tokens, prompt_tokens=int(usage.get("prompt_tokens", 0)),
                          completion_tokens=int(usage.get("completion_tokens", len(tokens))),
                          finish_reason=str(choice.get("finish_reason") or "length"))

    def load_adapter(self, name: str, path: str) -> None:
        """``POST /v1/load_lora_adapter``: call it only after the serving task verified every file at ``path``."""
        self._post("/v1/load_lora_adapter", {"lora_name": name, "lora_path": str(path)})
        self.adapters[name] = str(path)

    def unload_adapter(self, name: str) -> None:
        """``POST /v1/unload_lora_adapter`` (rollback: the previous version's adapter serves again)."""
        self._post("/v1/unload_lora_adapter", {"lora_name": name})
        self.adapters.pop(name, None)

    def close(self) -> None:
        """Nothing held open between requests."""


def open_engine(config: EngineConfig, *, folder: str | Path | None = None, device: str | None = None,
                api_key: str | None = None) -> GenerationEngine:
    """The engine ``config`` names: a transformers engine on the verified ``folder``, or the vLLM client."""
    if config.backend == "vllm":
        return OpenAICompatibleEngine(config, api_key=api_key)
    if folder is None:
        raise EngineError("backend transformers serves a verified model folder: pass folder")
    return TransformersEngine.from_folder(folder, config=config, device=device)
