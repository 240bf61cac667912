"""Nothing the service logs holds the raw text of a request: not a rejected sensitive input, not PII, not an answer."""

from __future__ import annotations

import logging

import httpx
import serving_helpers as h

from pipelines.serving.auth import TokenSet
from pipelines.serving.config import ServingConfig
from pipelines.serving.screening import InputFilter
from pipelines.serving.service import ModelService
from pipelines.storage import LocalObjectStore

PHONE = "13800138000"


def test_request_texts_never_reach_the_logs(tmp_path, caplog):
    from pipelines.sensitive import default_lexicon

    lexicon = default_lexicon()
    sensitive = lexicon.entries[0][0]
    store = LocalObjectStore(tmp_path / "store")
    h.promote(store, h.push(store, domain="legal", folder=h.classifier_folder(tmp_path / "m", seed=1),
                            version="1.0", task="classification"))
    service = ModelService(config=ServingConfig(poll_seconds=0.2, cache_dir=str(tmp_path / "cache")), store=store,
                           domains={"legal": "classification"}, tokens=TokenSet({h.TOKEN: ("legal",)}),
                           input_filter=InputFilter(lexicon, policy="reject"), output_screen=None,
                           alert=lambda _cfg, **kw: None)
    service.start()
    caplog.set_level(logging.DEBUG)
    auth = {"Authorization": f"Bearer {h.TOKEN}"}
    with h.running(service) as url, httpx.Client(base_url=url, timeout=30, headers=auth) as client:
        ok = client.post("/v1/legal/predict", json={"text": f"call me on {PHONE} about the lease"})
        refused = client.post("/v1/legal/predict", json={"text": f"the word {sensitive} is here"})
        feedback = client.post("/v1/legal/feedback", json={"request_id": ok.json()["request_id"], "rating": 5,
                                                           "correction": f"mail {PHONE}"})
    assert ok.status_code == 200 and refused.status_code == 400 and feedback.status_code == 201
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert caplog.records, "the service logged nothing: the test would prove nothing"
    assert PHONE not in logged and sensitive not in logged and "about the lease" not in logged
