"""Tiny seeded models built by the training stage's own builder, pushed and promoted with pipelines.artifacts,
and a server on a loopback thread."""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import threading
import time
from pathlib import Path

TEXTS = [f"{a} {b}" for a in ("the contract was signed by both parties", "the patient has a fever",
                              "the loan rate is fixed", "payment due next month", "court hearing scheduled",
                              "doctor prescribed rest", "refund my order please")
         for b in ("today", "again", "thanks a lot", "good", "bad")]
QA = [f"{q}\n{a}" for q in ("refund my order please", "hello how can i help you", "where is my parcel")
      for a in ("we will refund it today", "thanks a lot for waiting", "your parcel ships tomorrow")]
TOKEN = "tok-legal-0123456789abcdef"
TOKEN_ALL = "tok-all-0123456789abcdef00"
TOKEN_CS = "tok-cs-0123456789abcdef000"
CREATED = dt.datetime(2026, 11, 2, tzinfo=dt.timezone.utc)


def classifier_folder(folder: Path, *, seed: int, labels: tuple[str, ...] = ("contract", "other", "tort")) -> Path:
    """A tiny random-init BERT classifier (``pipelines.train.models.build_base_model``)."""
    from pipelines.train.models import build_base_model

    return build_base_model(task="classification", texts_or_series=TEXTS, out_dir=folder, labels=labels,
                            size="tiny", seed=seed, dropout=0.0)


def causal_folder(folder: Path, *, seed: int) -> Path:
    """A tiny random-init Llama causal LM with its byte-level BPE tokenizer."""
    from pipelines.train.models import build_base_model

    return build_base_model(task="causal_lm", texts_or_series=QA, out_dir=folder, size="tiny", seed=seed)


def push(store, *, domain: str, folder: Path, version: str, task: str):
    """``build_manifest`` + ``push_artifact``; returns the ``ArtifactRef``."""
    from pipelines.artifacts import build_manifest, push_artifact

    build_manifest(folder, domain=domain, task=task, kind="weekly", version=version, parent=None, data=[],
                   code_version="tests", dp=None, metrics={}, created_by="tests", created_at=CREATED)
    return push_artifact(store, folder, domain=domain)


def promote(store, ref) -> int:
    """Promote ``ref`` (gate forced: these models have no metrics); returns the record number."""
    from pipelines.artifacts import force_gate, promote as promote_ref

    return promote_ref(store, ref.domain, ref, gate=force_gate(reason="tests"), who="tests", why="tests").number


def rollback(store, domain: str, to_artifact_id: str) -> int:
    from pipelines.artifacts import rollback as roll_back

    return roll_back(store, domain, to_artifact_id=to_artifact_id, who="tests", why="tests").number


class CorruptingStore:
    """The store as a reader behind a faulty disk or proxy sees it: keys in ``corrupt`` read altered bytes
    (same size), everything else passes through."""

    def __init__(self, store) -> None:
        self.store = store
        self.corrupt: set[str] = set()

    def get(self, key: str) -> bytes:
        data = self.store.get(key)
        return data[:-8] + b"tampered" if key in self.corrupt else data

    def __getattr__(self, name):
        return getattr(self.store, name)


@contextlib.contextmanager
def running(service):
    """Serve ``service`` (already started) on a free loopback port in a thread; yields the base URL."""
    from pipelines.serving.app import build_server

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = build_server(service)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.02)
    scheme = "https" if service.config.tls else "http"
    try:
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()
        service.stop()


def wait_for(predicate, *, timeout: float = 30.0, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("condition not reached in time")
