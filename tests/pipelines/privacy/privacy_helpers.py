"""Shared constants and race helpers for the privacy tests (imported by name: pytest's conftest is not a module to import)."""

from __future__ import annotations

import random
import threading
import time

from pipelines.privacy import BudgetExceeded, reserve_budget

WEEKS = ("2026-10-04_2026-10-11", "2026-10-11_2026-10-18", "2026-10-18_2026-10-25")
# One run of each kind fills its share exactly (see conftest's config): a second run on a partition is refused.
Q, STEPS = 0.1, 20


class PausingStore:
    """A store that pauses two runs after writing their entries (``put``), and also after listing the
    ledger (``both``), to force an interleaving."""

    def __init__(self, inner, *, barrier: threading.Barrier | None = None, at: str = "put",
                 jitter: random.Random | None = None):
        self.inner, self.barrier, self.at, self.jitter = inner, barrier, at, jitter
        self.lock = threading.Lock()
        self.writers: set[int] = set()

    def list(self, prefix, **kwargs):
        infos = list(self.inner.list(prefix, **kwargs))
        if self.at == "both" and self.barrier is not None and threading.get_ident() in self.writers:
            self.barrier.wait(timeout=30)
        return iter(infos)

    def put(self, key, data, *, if_none_match=False):
        ok = self.inner.put(key, data, if_none_match=if_none_match)
        is_entry = key.endswith(".json") and not key.endswith((".decision.json", ".done.json"))
        if is_entry:
            self.writers.add(threading.get_ident())
        if is_entry and self.at in ("put", "both") and self.barrier is not None:
            self.barrier.wait(timeout=30)
        if is_entry and self.jitter is not None:
            with self.lock:
                pause = self.jitter.random() * 0.02
            time.sleep(pause)
        return ok

    def __getattr__(self, name):
        return getattr(self.inner, name)


def race(config, store, plans, run_ids) -> dict[str, str]:
    outcomes: dict[str, str] = {}

    def reserve(plan, run_id):
        try:
            reserve_budget(config=config, store=store, plan=plan, run_id=run_id)
            outcomes[run_id] = "granted"
        except BudgetExceeded:
            outcomes[run_id] = "refused"

    threads = [threading.Thread(target=reserve, args=(p, r)) for p, r in zip(plans, run_ids)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return outcomes


# ------------------------------------------------------------------ records and curated partitions
def digest(name: str) -> str:
    """A record's content hash in tests: sha256 of its name (64 hex characters)."""
    import hashlib

    return hashlib.sha256(name.encode()).hexdigest()


def publish_partition(store, *, domain: str, interval: str, names: list[str], committed_at: str,
                      curated_prefix: str = "curated") -> str:
    """Publish a curated partition version holding records ``names`` (content hash = digest(name)), as the
    weekly pipeline lays it out; returns its version. The end-to-end double-training test reuses it."""
    from pipelines.publish import commit_version, partition_prefix
    from pipelines.serialize import parquet_bytes, sha256_hex
    from pipelines.standardize import CURATED_COLUMNS

    rows = [{**{c: None for c in CURATED_COLUMNS}, "id": n, "domain": domain, "text": f"text of {n}",
             "content_sha256": digest(n)} for n in names]
    data = parquet_bytes(rows)
    version = sha256_hex(data)[:16]
    prefix = partition_prefix(curated_prefix, domain, interval)
    store.put(f"{prefix}/v-{version}/data.parquet", data)
    commit_version(store, prefix, {"version": version, "committed_at": committed_at})
    return version
