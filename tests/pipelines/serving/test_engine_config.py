"""``serving.engine``: the typed serving config names the generation engine that ``build_service`` starts."""

from __future__ import annotations

import pytest
import yaml

from pipelines.config import DEFAULT_CONFIG_PATH, ConfigError, load_config
from pipelines.serving import build_service
from pipelines.serving.config import engine_config
from pipelines.serving.engine import EngineConfig


def _config(tmp_path, **serving):
    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text(encoding="utf-8"))
    raw["serving"].update(serving)
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return load_config(path, environ={})


def test_the_default_is_transformers_continuous_batching_with_cpu_cache_sizes(tmp_path):
    config = _config(tmp_path)
    assert engine_config(config.serving) == EngineConfig(backend="transformers", timeout_s=120.0, num_blocks=128,
                                                         page_size=16, max_batch_tokens=512, dtype="float32",
                                                         cuda_graphs=True, compile_level=0)


def test_vllm_with_its_url_from_the_file_and_gpu_sizing_from_the_environment(tmp_path):
    raw_config = _config(tmp_path, engine="vllm", engine_url="http://vllm:8000", engine_model="base")
    assert engine_config(raw_config.serving) == EngineConfig(
        backend="vllm", url="http://vllm:8000", model="base", num_blocks=128, page_size=16, max_batch_tokens=512,
        cuda_graphs=True)
    config = load_config(tmp_path / "pipeline.yaml", environ={"PIPELINE__SERVING__ENGINE_NUM_BLOCKS": "null",
                                                             "PIPELINE__SERVING__ENGINE_DTYPE": "bfloat16"})
    assert (config.serving.engine_num_blocks, config.serving.engine_dtype) == (None, "bfloat16")


@pytest.mark.parametrize(("values", "message"), [
    ({"engine": "tgi"}, r"^serving\.engine='tgi': use one of \('transformers', 'vllm'\)$"),
    ({"engine": "vllm"}, r"^serving\.engine=vllm needs serving\.engine_url .* and serving\.engine_model"),
    ({"engine": "vllm", "engine_url": "vllm:8000", "engine_model": "base"}, r"serving\.engine=vllm needs"),
    ({"engine_num_blocks": 0}, r"^serving\.engine_num_blocks=0: use a positive integer, or null"),
    ({"engine_page_size": None}, r"^serving\.engine_page_size=None: use a positive integer$"),
    ({"engine_dtype": "int8"}, r"^serving\.engine_dtype='int8': use one of"),
    ({"engine_timeout_seconds": 0}, r"^serving\.engine_timeout_seconds=0 must be > 0$"),
    ({"engine_cuda_graphs": "yes"}, r"^serving\.engine_cuda_graphs='yes': use true or false$"),
    ({"engine_compile_level": 5}, r"^serving\.engine_compile_level=5: use 0 \(off\), 1, 2 or 3$"),
])
def test_a_bad_engine_setting_fails_the_load_naming_the_key(tmp_path, values, message):
    with pytest.raises(ConfigError, match=message):
        _config(tmp_path, **values)


def test_build_service_hands_causal_lms_to_the_configured_engine(tmp_path):
    from pipelines.storage import LocalObjectStore

    config = _config(tmp_path, engine="vllm", engine_url="http://127.0.0.1:9", engine_model="base")
    service = build_service(config=config, store=LocalObjectStore(tmp_path / "store"),
                            environ={config.serving.tokens_env: "a-long-random-token-0123456789=*"}, output_screen=None)
    assert service.engine_config == EngineConfig(backend="vllm", url="http://127.0.0.1:9", model="base",
                                                 num_blocks=128, page_size=16, max_batch_tokens=512, cuda_graphs=True)
