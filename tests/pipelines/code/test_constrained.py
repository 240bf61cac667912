"""Constrained completion: Python by the subset grammar + ast.parse with retries, JSON by its grammar; the
serving endpoint answers a completion that parses or says it could not finish."""

from __future__ import annotations

import ast
import json
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))  # serving_helpers.py

from pipelines.code.constrained import (  # noqa: E402
    GrammarCache, block_indent, complete, longest_parsing_prefix, parses, python_subset_ebnf,
)

PROMPTS = ["def add(a, b):\n", "import os\n\nPATH = ", "class A:\n    def f(self):\n", "x = 1\n"]


def test_block_indent_and_longest_parsing_prefix() -> None:
    assert block_indent("def f(x):\n") == ("    ", False)
    assert block_indent("class A:\n    def f(self):\n        y = 1\n") == ("        ", False)
    assert block_indent("x = ") == ("", True)
    assert longest_parsing_prefix("def f(x):\n", "    return x\n    y = (\n") == "    return x\n"
    assert longest_parsing_prefix("def f(x):\n", "\n") is None
    assert parses("", '{"a": 1}', "json") and not parses("", '{"a": ', "json")


def test_the_grammar_compiles_for_every_indentation() -> None:
    import xgrammar as xgr

    for indent in ("", "    ", "\t"):
        for mid in (False, True):
            xgr.Grammar.from_ebnf(python_subset_ebnf(indent=indent, mid_line=mid))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import torch
    from serving_helpers import causal_folder
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pipelines.modeling import stop_token_ids

    torch.set_num_threads(1)
    folder = causal_folder(tmp_path_factory.mktemp("lm") / "m", seed=3)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    stops = stop_token_ids(model, tokenizer)
    cache = GrammarCache(tokenizer, vocab_size=model.get_output_embeddings().weight.shape[0], stop_ids=stops)
    return model, tokenizer, stops, cache, folder


def test_every_constrained_completion_parses_or_says_it_could_not_finish(tiny) -> None:
    model, tokenizer, stops, cache, _ = tiny
    for prompt in PROMPTS:
        out = complete(model, tokenizer, prompt, grammar="python", max_new_tokens=24, cache=cache, stop_ids=stops)
        assert out.finished, out
        ast.parse(prompt + out.text)
        js = complete(model, tokenizer, prompt, grammar="json", max_new_tokens=24, cache=cache, stop_ids=stops)
        assert not js.finished or json.loads(js.text) is not None
        assert js.finished or (js.text == "" and "could not finish within the token limit" in js.detail)


def test_the_mask_filled_beside_the_forward_decodes_the_tokens_of_the_mask_filled_in_line(tiny) -> None:
    import threading

    from pipelines.code.constrained import decode
    from pipelines.modeling import causal_prompt_ids

    model, tokenizer, stops, cache, _ = tiny
    for prompt in PROMPTS:
        ids = causal_prompt_ids(tokenizer, prompt)
        for grammar in ("python", "json"):
            compiled = cache.compiled(grammar, prompt)
            overlapped = decode(model, ids, max_new_tokens=24, stop_ids=stops, compiled=compiled, cache=cache,
                                overlap=True)
            in_line = decode(model, ids, max_new_tokens=24, stop_ids=stops, compiled=compiled, cache=cache)
            assert overlapped == in_line and overlapped, (prompt, grammar)
    assert [t.name for t in threading.enumerate() if t.name == "grammar-mask"] == []  # every worker stopped


def test_a_budget_too_small_is_answered_as_not_finished(tiny) -> None:
    model, tokenizer, stops, cache, _ = tiny
    out = complete(model, tokenizer, "def f(x):\n", grammar="python", max_new_tokens=1, max_retries=2, cache=cache,
                   stop_ids=stops)
    assert (out.finished, out.text, out.attempts) == (False, "", 3)
    assert out.detail.startswith("could not finish within the token limit")


def test_the_serving_endpoint(tiny, tmp_path) -> None:
    import httpx
    import serving_helpers as h

    from pipelines.serving.auth import TokenSet
    from pipelines.serving.config import ServingConfig
    from pipelines.serving.service import ModelService
    from pipelines.storage import LocalObjectStore

    store = LocalObjectStore(tmp_path / "bucket")
    h.promote(store, h.push(store, domain="code", folder=tiny[4], version="1.0", task="causal_lm"))
    service = ModelService(config=ServingConfig(poll_seconds=0.2, cache_dir=str(tmp_path / "cache"), max_new_tokens=32),
                           store=store, domains={"code": "causal_lm"}, tokens=TokenSet({h.TOKEN_ALL: ("*",)}),
                           alert=lambda _cfg, **kw: None)
    service.start()
    auth = {"Authorization": f"Bearer {h.TOKEN_ALL}"}
    with h.running(service) as url, httpx.Client(base_url=url, timeout=60) as c:
        for prompt in PROMPTS[:2]:
            r = c.post("/v1/code/complete", headers=auth, json={"prompt": prompt, "max_new_tokens": 24})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["finished"] and body["grammar"] == "python" and body["model_version"] == "1.0"
            ast.parse(prompt + body["text"])
        r = c.post("/v1/code/complete", headers=auth, json={"prompt": "{", "grammar": "json", "max_new_tokens": 16})
        assert r.status_code == 200 and (r.json()["finished"] is False or json.loads(r.json()["text"]) is not None)
        assert c.post("/v1/code/complete", headers=auth, json={"prompt": "x", "grammar": "yaml"}).status_code == 422
        assert c.post("/v1/code/complete", json={"prompt": "x"}).status_code == 401
        assert c.post("/v1/code/complete", headers=auth, json={"prompt": "x", "max_new_tokens": 33}).status_code == 422
