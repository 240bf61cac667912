"""The service under its own least-privilege S3 identity on a real SeaweedFS: training pushes and promotes,
serving loads the model and writes feedback, and serving's identity cannot touch models/."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import serving_helpers as h

from pipelines.config import StorageConfig
from pipelines.serving.auth import TokenSet
from pipelines.serving.config import ServingConfig
from pipelines.serving.feedback import write_feedback
from pipelines.serving.service import ModelService
from pipelines.storage import IDENTITIES_DIR_ENV, IDENTITY_ENV, StorageError, open_store


@pytest.fixture
def stores(s3_server, monkeypatch, request):
    [root] = [p for p in request.config.pluginmanager.get_plugins() if hasattr(p, "_service_env")]
    monkeypatch.setenv(IDENTITIES_DIR_ENV, str(Path(root._service_env()["PIPELINE_STATE_DIR"]) / "identities"))
    monkeypatch.delenv(IDENTITY_ENV, raising=False)
    config = StorageConfig(bucket="mlops-test", endpoint_url=s3_server["PIPELINE_S3_ENDPOINT_URL"])
    return open_store(config, identity="training"), open_store(config, identity="serving")


def test_serving_identity_serves_and_writes_feedback_but_not_models(tmp_path, stores):
    training, serving = stores
    domain = f"id{uuid.uuid4().hex[:8]}"  # the identities are scoped to one shared bucket: a fresh domain
    ref = h.push(training, domain=domain, folder=h.classifier_folder(tmp_path / "m", seed=1), version="1.0",
                 task="classification")
    assert h.promote(training, ref) == 1
    service = ModelService(config=ServingConfig(cache_dir=str(tmp_path / "cache")), store=serving,
                           domains={domain: "classification"}, tokens=TokenSet({h.TOKEN: (domain,)}),
                           alert=lambda _cfg, **kw: None)
    assert service.refresh() == {domain: "loaded"}
    key = write_feedback(serving, request_id=uuid.uuid4().hex, domain=domain, model_version="1.0",
                         question="the loan rate is fixed", answer="contract", rating=5)
    assert key.startswith("landing/feedback/")
    with pytest.raises(StorageError, match="AccessDenied"):
        serving.put(f"models/{domain}/promotions/00000002.json", b'{"artifact_id": "0123456789abcdef"}')
    with pytest.raises(StorageError, match="AccessDenied"):
        serving.put(f"{ref.root}/model.safetensors", b"tampered")
