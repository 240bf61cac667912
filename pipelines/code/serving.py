"""``POST /v1/{domain}/complete``: grammar-constrained code completion on a causal-LM domain's served model.

Body ``{"prompt": str, "grammar": "python" | "json", "max_new_tokens": int?}``; answer ``{"request_id", "domain",
"model_version", "artifact_id", "promotion", "text", "finished", "grammar", "tokens", "attempts", "detail"}``:
``finished`` true means ``text`` parses (Python: after the prompt; JSON: as a value); false means it could not
finish within the token limit (``detail`` says so) and ``text`` is empty. What is kept for feedback is the
scrubbed prompt (``pipelines.code.scrub``), never a secret the prompt held.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any, Callable, Literal

from fastapi import Request  # module level: FastAPI resolves the handler's string annotations here

from pipelines.code.constrained import CodeCompletion, GrammarCache, complete
from pipelines.code.scrub import scrub_text


class CodeCompleter:
    """Compiled grammars per served artifact, and one completion at a time per model (KV caches are per call,
    the model's weights are shared with the batcher)."""

    def __init__(self, *, max_retries: int = 3) -> None:
        self.max_retries = max_retries
        self._caches: dict[str, GrammarCache] = {}
        self._lock = threading.Lock()

    def complete(self, served: Any, prompt: str, *, grammar: str, max_new_tokens: int) -> CodeCompletion:
        from pipelines.modeling import causal_prompt_ids, stop_token_ids

        model, tokenizer = served.loaded.model, served.loaded.tokenizer
        stops = stop_token_ids(model, tokenizer)
        with self._lock:
            cache = self._caches.get(served.artifact_id)
            if cache is None:
                vocab = model.get_output_embeddings().weight.shape[0]
                cache = self._caches[served.artifact_id] = GrammarCache(tokenizer, vocab_size=vocab, stop_ids=stops)
            return complete(model, tokenizer, prompt, grammar=grammar, max_new_tokens=max_new_tokens,
                            max_retries=self.max_retries, cache=cache, stop_ids=stops,
                            prompt_ids=causal_prompt_ids(tokenizer, prompt))


def add_code_routes(app: Any, *, service: Any, authorize: Callable, body: Callable, require_task: Callable,
                    stamp: Callable, api_error: type, max_retries: int = 3) -> CodeCompleter:
    """Register ``POST /v1/{domain}/complete`` on the serving app (``pipelines.serving.app.create_app``)."""
    from pydantic import BaseModel, ConfigDict, Field

    class CompleteRequest(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)
        prompt: str = Field(min_length=1)
        grammar: Literal["python", "json"] = "python"
        max_new_tokens: int | None = Field(default=None, ge=1)

    completer = CodeCompleter(max_retries=max_retries)
    config = service.config

    async def complete_code(domain: str, request: Request):
        authorize(request, domain)
        parsed = await body(request, CompleteRequest)
        require_task(domain, "causal_lm", "complete")
        budget = parsed.max_new_tokens or config.max_new_tokens
        if budget > config.max_new_tokens:
            raise api_error(422, "invalid_input", f"max_new_tokens: at most {config.max_new_tokens}")
        served = service.served[domain]
        result = await asyncio.get_running_loop().run_in_executor(
            None, lambda: completer.complete(served, parsed.prompt, grammar=parsed.grammar, max_new_tokens=budget))
        request_id = uuid.uuid4().hex
        scrubbed = scrub_text(parsed.prompt)
        if scrubbed.problem is None:  # a prompt with a secret that cannot be cut out is not kept for feedback
            service.requests.remember(request_id=request_id, domain=domain, model_version=served.version,
                                      question=scrubbed.text, answer=scrub_text(result.text).text)
        return {"request_id": request_id, **stamp(served), **result.to_dict()}

    app.add_api_route("/v1/{domain}/complete", complete_code, methods=["POST"])
    return completer
