"""The engine contract: transformers' continuous batching on a tiny causal LM (CPU), and the vLLM client against a
fake OpenAI-compatible server on loopback."""

from __future__ import annotations

import http.server
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from pipelines.serving.engine import (
    Completion, EngineConfig, EngineError, OpenAICompatibleEngine, TransformersEngine, open_engine,
)
from serving_helpers import causal_folder

SMALL_CACHE = EngineConfig(num_blocks=64, page_size=16, max_batch_tokens=256, timeout_s=60)


@pytest.fixture(scope="module")
def tiny_lm():
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    return Qwen2ForCausalLM(config).eval()


def _reference(model, prompt: list[int], n: int) -> list[int]:
    import torch

    with torch.inference_mode():
        out = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                             max_new_tokens=n, do_sample=False, eos_token_id=None, pad_token_id=0)
    return out[0, len(prompt):].tolist()


def test_concurrent_requests_equal_one_at_a_time_greedy_generate(tiny_lm):
    prompts = [[1, 2, 3, 4], [9, 8, 7], [5] * 11, [200, 3, 17, 90, 4, 4], [33]]
    engine = TransformersEngine(tiny_lm, config=SMALL_CACHE, eos_token_id=255)
    try:
        with ThreadPoolExecutor(len(prompts)) as pool:
            answers = list(pool.map(lambda p: engine.complete(p, max_tokens=12, ignore_eos=True), prompts))
    finally:
        engine.close()
    assert [list(a.token_ids) for a in answers] == [_reference(tiny_lm, p, 12) for p in prompts]
    assert [(a.prompt_tokens, a.completion_tokens, a.finish_reason) for a in answers] == [
        (len(p), 12, "length") for p in prompts]


def test_eos_stops_an_answer_unless_ignored(tiny_lm):
    first = _reference(tiny_lm, [1, 2, 3, 4], 8)
    engine = TransformersEngine(tiny_lm, config=SMALL_CACHE, eos_token_id=first[2])  # the third token ends it
    try:
        stopped = engine.complete([1, 2, 3, 4], max_tokens=8)
        full = engine.complete([1, 2, 3, 4], max_tokens=8, ignore_eos=True)
        with pytest.raises(EngineError, match="serves one model folder, not adapters"):
            engine.complete([1, 2], max_tokens=2, adapter="legal-1.2")
        with pytest.raises(EngineError, match="max_tokens=0"):
            engine.complete([1, 2], max_tokens=0)
        with pytest.raises(EngineError, match="adapters need backend vllm"):
            engine.load_adapter("legal-1.2", "/x")
    finally:
        engine.close()
    assert (list(stopped.token_ids), stopped.finish_reason) == (first[:2], "stop")
    assert (list(full.token_ids), full.finish_reason) == (first, "length")
    with pytest.raises(EngineError, match="closed"):
        engine.complete([1], max_tokens=1)


def test_a_served_model_folder_answers_text_prompts_as_serving_does(tmp_path):
    from pipelines.artifacts import build_manifest
    from pipelines.serving.inference import generate
    from pipelines.serving.source import load_servable

    folder = causal_folder(tmp_path / "lm", seed=3)
    build_manifest(folder, domain="customer_service", task="causal_lm", kind="weekly", version="1.0", parent=None,
                   data=[], code_version="tests", dp=None, metrics={}, created_by="tests")
    prompts = ["refund my order please", "where is my parcel"]
    servable = load_servable(folder)
    expected = [generate(servable, [p], [6])[0] for p in prompts]  # today's path, one request at a time
    engine = open_engine(SMALL_CACHE, folder=folder)
    try:
        answers = [engine.complete(p, max_tokens=6) for p in prompts]
    finally:
        engine.close()
    assert [(a.text, a.completion_tokens) for a in answers] == [(g.text, g.tokens) for g in expected]


class _FakeOpenAI(http.server.BaseHTTPRequestHandler):
    """Answers like vLLM's OpenAI-compatible server; records every request."""

    seen: list[tuple[str, dict]] = []
    adapters: set[str] = set()

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append((self.path, body))
        if self.path == "/v1/load_lora_adapter":
            self.adapters.add(body["lora_name"])
            return self._send(200, b"Success: LoRA adapter loaded")
        if self.path == "/v1/unload_lora_adapter":
            if body["lora_name"] not in self.adapters:
                return self._send(404, b'{"error": "adapter not found"}')
            self.adapters.discard(body["lora_name"])
            return self._send(200, b"Success: LoRA adapter unloaded")
        if self.path == "/v1/completions":
            if body["model"] not in {"base", *self.adapters}:
                return self._send(404, json.dumps({"error": f"model {body['model']} does not exist"}).encode())
            n = body["max_tokens"]
            return self._send(200, json.dumps({
                "object": "text_completion", "model": body["model"],
                "choices": [{"index": 0, "text": " " + " ".join(["tok"] * n), "finish_reason": "length"}],
                "usage": {"prompt_tokens": len(str(body["prompt"]).split()), "completion_tokens": n}}).encode())
        return self._send(404, b"{}")

    def _send(self, status: int, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *_args) -> None:
        pass


@pytest.fixture
def fake_vllm():
    _FakeOpenAI.seen, _FakeOpenAI.adapters = [], set()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeOpenAI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_vllm_client_completes_loads_and_unloads_adapters(fake_vllm):
    engine = open_engine(EngineConfig(backend="vllm", url=fake_vllm, model="base", timeout_s=5), api_key="k")
    assert isinstance(engine, OpenAICompatibleEngine)
    assert engine.complete("where is my parcel", max_tokens=3, ignore_eos=True) == Completion(
        text="tok tok tok", token_ids=(), prompt_tokens=4, completion_tokens=3, finish_reason="length")
    with pytest.raises(EngineError, match="adapter 'legal-1.3' is not loaded"):
        engine.complete("x", max_tokens=1, adapter="legal-1.3")
    engine.load_adapter("legal-1.3", "/artifacts/legal/abc/adapter")
    assert engine.complete("x y", max_tokens=1, adapter="legal-1.3").text == "tok"
    engine.unload_adapter("legal-1.3")
    with pytest.raises(EngineError, match=r"/v1/unload_lora_adapter: HTTP 404 .*adapter not found"):
        engine.unload_adapter("legal-1.3")
    assert _FakeOpenAI.seen == [
        ("/v1/completions", {"model": "base", "prompt": "where is my parcel", "max_tokens": 3, "temperature": 0.0,
                             "n": 1, "stream": False, "ignore_eos": True}),
        ("/v1/load_lora_adapter", {"lora_name": "legal-1.3", "lora_path": "/artifacts/legal/abc/adapter"}),
        ("/v1/completions", {"model": "legal-1.3", "prompt": "x y", "max_tokens": 1, "temperature": 0.0, "n": 1,
                             "stream": False}),
        ("/v1/unload_lora_adapter", {"lora_name": "legal-1.3"}),
        ("/v1/unload_lora_adapter", {"lora_name": "legal-1.3"}),
    ]


def test_vllm_client_says_when_the_server_is_unreachable():
    engine = OpenAICompatibleEngine(EngineConfig(backend="vllm", url="http://127.0.0.1:9", model="base",
                                                 timeout_s=2))
    with pytest.raises(EngineError, match="cannot reach the engine at http://127.0.0.1:9"):
        engine.complete("x", max_tokens=1)


@pytest.mark.parametrize(("values", "message"), [
    ({"backend": "tgi"}, "backend='tgi': use one of"),
    ({"backend": "vllm"}, "needs url"),
    ({"num_blocks": 0}, "num_blocks=0"),
    ({"dtype": "int8"}, "dtype='int8'"),
    ({"cuda_graphs": "yes"}, "cuda_graphs='yes'"),
    ({"compile_level": 4}, "compile_level=4"),
    ({"compile_level": True}, "compile_level=True"),
])
def test_engine_config_fails_early(values, message):
    with pytest.raises(EngineError, match=message):
        EngineConfig(**values)


def _engine_service(tmp_path, store, engine: EngineConfig):
    import serving_helpers as h

    from pipelines.serving.auth import TokenSet
    from pipelines.serving.config import ServingConfig
    from pipelines.serving.service import ModelService

    config = ServingConfig(poll_seconds=3600, cache_dir=str(tmp_path / "cache"), max_wait_ms=2.0)
    return ModelService(config=config, store=store, domains={"customer_service": "causal_lm"},
                        tokens=TokenSet({h.TOKEN_CS: ("customer_service",)}), alert=lambda _cfg, **kw: None,
                        engine=engine)


def test_serving_hands_generation_to_the_engine_and_swaps_it_on_promotion(tmp_path):
    import httpx
    import serving_helpers as h

    from pipelines.serving.inference import generate
    from pipelines.serving.source import load_servable
    from pipelines.storage import LocalObjectStore

    store = LocalObjectStore(tmp_path / "store")
    one = h.push(store, domain="customer_service", folder=causal_folder(tmp_path / "v1", seed=1), version="1.0",
                 task="causal_lm")
    two = h.push(store, domain="customer_service", folder=causal_folder(tmp_path / "v2", seed=2), version="1.1",
                 task="causal_lm")
    h.promote(store, one)
    service = _engine_service(tmp_path, store, EngineConfig(num_blocks=64, page_size=16, max_batch_tokens=256,
                                                            timeout_s=0.5))
    service.start()
    first = service.served["customer_service"].engine
    assert isinstance(first, TransformersEngine)
    with h.running(service) as url:
        answer = httpx.post(f"{url}/v1/customer_service/generate", json={"prompt": "where is my parcel",
                                                                         "max_new_tokens": 5},
                            headers={"Authorization": f"Bearer {h.TOKEN_CS}"}, timeout=60).json()
        today = generate(load_servable(tmp_path / "cache" / "customer_service" / one.artifact_id),
                         ["where is my parcel"], [5])[0]
        assert (answer["model_version"], answer["text"], answer["tokens"]) == ("1.0", today.text, today.tokens)
        h.promote(store, two)
        assert service.refresh() == {"customer_service": "loaded"}
        second = service.served["customer_service"].engine
        assert second is not first and service.served["customer_service"].version == "1.1"
        h.wait_for(lambda: first._closed.is_set(), timeout=10)  # released after its in-flight grace period
    assert second._closed.is_set()  # service.stop() closes the serving engines


def test_vllm_adapters_follow_promotions_and_rollbacks_after_verification(tmp_path, fake_vllm):
    import serving_helpers as h

    from pipelines.storage import LocalObjectStore

    store = LocalObjectStore(tmp_path / "store")
    one = h.push(store, domain="customer_service", folder=causal_folder(tmp_path / "v1", seed=1), version="1.0",
                 task="causal_lm")
    two = h.push(store, domain="customer_service", folder=causal_folder(tmp_path / "v2", seed=2), version="1.1",
                 task="causal_lm")
    h.promote(store, one)
    service = _engine_service(tmp_path, store, EngineConfig(backend="vllm", url=fake_vllm, model="base",
                                                            timeout_s=0.2))
    assert service.refresh() == {"customer_service": "loaded"}
    served, output, _screen = service.generate_on_engine("customer_service", "hello", 2)
    assert (served.version, output.text, output.tokens) == ("1.0", "tok tok", 2)
    h.promote(store, two)
    assert service.refresh() == {"customer_service": "loaded"}
    h.rollback(store, "customer_service", one.artifact_id)
    assert service.refresh() == {"customer_service": "loaded"}
    h.wait_for(lambda: sum(p == "/v1/unload_lora_adapter" for p, _b in _FakeOpenAI.seen) == 2, timeout=10)
    cache = tmp_path / "cache" / "customer_service"
    # Each record's verified folder is loaded as its own adapter; the replaced ones are unloaded after their grace.
    assert [b for p, b in _FakeOpenAI.seen if p == "/v1/load_lora_adapter"] == [
        {"lora_name": "customer_service-1.0-p1", "lora_path": str(cache / one.artifact_id)},
        {"lora_name": "customer_service-1.1-p2", "lora_path": str(cache / two.artifact_id)},
        {"lora_name": "customer_service-1.0-p3", "lora_path": str(cache / one.artifact_id)},
    ]
    assert sorted(b["lora_name"] for p, b in _FakeOpenAI.seen if p == "/v1/unload_lora_adapter") == [
        "customer_service-1.0-p1", "customer_service-1.1-p2"]
    assert _FakeOpenAI.adapters == {"customer_service-1.0-p3"}
    service.stop()
