"""The evaluation gate's boundaries, and promotion/rollback records on a local store."""

from __future__ import annotations

import datetime as dt
import json
import threading

import pytest

from _artifacts_helpers import flip_last_byte
from pipelines.artifacts import (
    ArtifactCorrupt,
    GateDecision,
    PromotionRefused,
    current_production,
    evaluate_candidate,
    evaluate_gate,
    force_gate,
    promote,
    promotion_history,
    rollback,
)
from pipelines.storage import LocalObjectStore

T0 = dt.datetime(2026, 10, 12, 9, 30, tzinfo=dt.timezone.utc)
PASS = GateDecision(True, "passed: test", 0.0, metric="macro_f1")


# --- gate -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("candidate, passed, change", [
    (0.7608, True, -0.049),    # 4.9% drop
    (0.76, True, -0.05),       # exactly 5%: the boundary passes
    (0.7592, False, -0.051),   # 5.1% drop
    (0.84, True, 0.05),        # better
])
def test_gate_higher_is_better_boundaries(candidate, passed, change):
    decision = evaluate_gate(candidate={"macro_f1": candidate}, production={"macro_f1": 0.8}, metric="macro_f1",
                             max_drop=0.05)
    assert (decision.passed, decision.relative_change) == (passed, change)
    assert (decision.candidate_value, decision.production_value) == (candidate, 0.8)
    assert decision.reason.startswith("passed: " if passed else "refused: ")


@pytest.mark.parametrize("candidate, passed, change", [
    (20.98, True, 0.049),      # perplexity up 4.9%: passes
    (21.02, False, 0.051),     # up 5.1%: refused
    (19.0, True, -0.05),       # lower perplexity is better
])
def test_gate_lower_is_better_boundaries(candidate, passed, change):
    decision = evaluate_gate(candidate={"perplexity": candidate}, production={"perplexity": 20.0},
                             metric="perplexity", max_drop=0.05, higher_is_better=False)
    assert (decision.passed, decision.relative_change) == (passed, change)


def test_gate_edge_cases():
    first = evaluate_gate(candidate={"macro_f1": 0.5}, production=None, metric="macro_f1", max_drop=0.05)
    assert (first.passed, first.relative_change, first.reason) == (True, None, "no model in production: "
                                                                   "macro_f1=0.5 accepted")
    missing = evaluate_gate(candidate={"loss": 0.5}, production=None, metric="macro_f1", max_drop=0.05)
    assert not missing.passed and "candidate has no finite 'macro_f1'" in missing.reason
    nan = evaluate_gate(candidate={"macro_f1": float("nan")}, production=None, metric="macro_f1", max_drop=0.05)
    assert not nan.passed
    nested = evaluate_gate(candidate={"eval": {"f1": 0.9}}, production={"eval": {"f1": 0.9}}, metric="eval.f1",
                           max_drop=0.0)
    assert (nested.passed, nested.relative_change) == (True, 0.0)
    split = evaluate_gate(candidate={"macro_f1": 0.9, "split": "s2"}, production={"macro_f1": 0.8, "split": "s1"},
                          metric="macro_f1", max_drop=0.05)
    assert not split.passed and "different held-out splits (s2 vs s1)" in split.reason
    with pytest.raises(ValueError, match="max_drop=1.5"):
        evaluate_gate(candidate={"macro_f1": 1}, production=None, metric="macro_f1", max_drop=1.5)


# --- promotion ----------------------------------------------------------------------------------------------

def test_first_promotion_and_record_contents(store, pushed):
    ref = pushed("a", metrics={"macro_f1": 0.8})
    events = []
    record = promote(store, "legal", ref, gate=PASS, who="alice", why="first model", audit=events.append, now=T0)
    assert record.to_dict() == {"number": 1, "domain": "legal", "action": "promote", "artifact_id": ref.artifact_id,
                                "version": "1.0", "previous_artifact_id": None, "gate": PASS.to_dict(),
                                "who": "alice", "when": "2026-10-12T09:30:00Z", "why": "first model"}
    assert json.loads(store.get("models/legal/promotions/00000001.json")) == record.to_dict()
    assert current_production(store, "legal") == record
    assert events == [{"event": "model.promote", **record.to_dict()}]
    # promoting production again changes nothing
    assert promote(store, "legal", ref, gate=PASS, who="bob", why="again", audit=events.append) == record
    assert len(events) == 1 and len(promotion_history(store, "legal")) == 1


@pytest.mark.parametrize("new_macro_f1, promoted, change", [(0.7608, True, -0.049), (0.7592, False, -0.051)])
def test_gate_boundary_decides_promotion(store, pushed, new_macro_f1, promoted, change):
    old = pushed("old", metrics={"macro_f1": 0.8})
    promote(store, "legal", old, gate=PASS, who="alice", why="baseline")
    new = pushed("new", metrics={"macro_f1": new_macro_f1}, version="1.1")
    decision = evaluate_candidate(store, "legal", new, max_drop=0.05)
    assert (decision.passed, decision.relative_change, decision.metric) == (promoted, change, "macro_f1")
    if promoted:
        record = promote(store, "legal", new, gate=decision, who="alice", why="weekly")
        assert (record.number, record.previous_artifact_id, record.gate["relative_change"]) == (2, old.artifact_id,
                                                                                               -0.049)
        assert current_production(store, "legal").artifact_id == new.artifact_id
    else:
        with pytest.raises(PromotionRefused, match="gate refused .*production unchanged"):
            promote(store, "legal", new, gate=decision, who="alice", why="weekly")
        assert current_production(store, "legal").artifact_id == old.artifact_id
        assert [r.number for r in promotion_history(store, "legal")] == [1]


def test_candidate_baseline_on_the_same_split_is_preferred(store, pushed):
    old = pushed("old", metrics={"macro_f1": 0.95, "split": "s1"})
    promote(store, "legal", old, gate=PASS, who="a", why="w")
    # production scored 0.95 on last week's split but 0.80 on the candidate's: compare on the candidate's split
    new = pushed("new", metrics={"macro_f1": 0.79, "split": "s2",
                                 "baseline": {"artifact_id": old.artifact_id, "macro_f1": 0.80, "split": "s2"}})
    decision = evaluate_candidate(store, "legal", new, max_drop=0.05)
    assert (decision.passed, decision.relative_change, decision.production_value) == (True, -0.0125, 0.8)
    stale = pushed("stale", metrics={"macro_f1": 0.99, "split": "s3"})
    assert "different held-out splits" in evaluate_candidate(store, "legal", stale, max_drop=0.05).reason


def test_altered_byte_in_store_blocks_promotion_and_production_is_unchanged(store, pushed):
    good = pushed("good")
    promote(store, "legal", good, gate=PASS, who="alice", why="baseline")
    bad = pushed("bad", version="1.1")
    flip_last_byte(store, f"{bad.root}/model.safetensors")
    events = []
    with pytest.raises(ArtifactCorrupt, match="model.safetensors") as info:
        promote(store, "legal", bad, gate=PASS, who="mallory", why="sneak it in", audit=events.append)
    assert info.value.file == "model.safetensors"
    assert current_production(store, "legal").artifact_id == good.artifact_id
    assert [r.number for r in promotion_history(store, "legal")] == [1] and events == []


def test_refused_and_foreign_candidates(store, pushed):
    ref = pushed("a")
    refused = GateDecision(False, "refused: worse", -0.2, metric="macro_f1")
    with pytest.raises(PromotionRefused, match="refused: worse"):
        promote(store, "legal", ref, gate=refused, who="a", why="w")
    other = pushed("b", domain="finance")
    with pytest.raises(PromotionRefused, match="belongs to finance, not legal"):
        promote(store, "legal", other, gate=PASS, who="a", why="w")
    assert current_production(store, "legal") is None
    forced = promote(store, "legal", ref, gate=force_gate(reason="hotfix"), who="a", why="hotfix")
    assert forced.gate["forced"] is True and forced.gate["reason"] == "forced: hotfix"


def test_rollback_writes_a_new_record_pointing_back(store, pushed):
    a, b, c = pushed("a"), pushed("b", version="1.1"), pushed("c", version="1.2")
    for ref in (a, b, c):
        promote(store, "legal", ref, gate=PASS, who="ci", why=f"weekly {ref.version}")
    events = []
    record = rollback(store, "legal", who="oncall", why="answers regressed", audit=events.append, now=T0)
    assert record.to_dict() == {"number": 4, "domain": "legal", "action": "rollback", "artifact_id": b.artifact_id,
                                "version": "1.1", "previous_artifact_id": c.artifact_id,
                                "gate": {"skipped": "rollback to an artifact that was in production before"},
                                "who": "oncall", "when": "2026-10-12T09:30:00Z", "why": "answers regressed"}
    assert events == [{"event": "model.rollback", **record.to_dict()}]
    assert current_production(store, "legal") == record
    # the rolled-back-from record is still there, untouched
    assert json.loads(store.get("models/legal/promotions/00000003.json"))["artifact_id"] == c.artifact_id
    # default target is the previous *distinct* production artifact: after b's rollback record, that is c
    again = rollback(store, "legal", who="oncall", why="undo")
    assert (again.number, again.artifact_id, again.previous_artifact_id) == (5, c.artifact_id, b.artifact_id)
    explicit = rollback(store, "legal", to_artifact_id=a.artifact_id, who="oncall", why="back to the first")
    assert (explicit.number, explicit.artifact_id) == (6, a.artifact_id)
    assert [r.action for r in promotion_history(store, "legal")] == ["rollback"] * 3 + ["promote"] * 3
    assert [r.number for r in promotion_history(store, "legal", limit=2)] == [6, 5]


def test_rollback_refusals(store, pushed):
    with pytest.raises(PromotionRefused, match="no production model"):
        rollback(store, "legal", who="o", why="w")
    a = pushed("a")
    promote(store, "legal", a, gate=PASS, who="ci", why="w")
    with pytest.raises(PromotionRefused, match="no earlier production artifact"):
        rollback(store, "legal", who="o", why="w")
    never = pushed("never", version="1.1")
    with pytest.raises(PromotionRefused, match="was never in production"):
        rollback(store, "legal", to_artifact_id=never.artifact_id, who="o", why="w")
    with pytest.raises(PromotionRefused, match="already is production"):
        rollback(store, "legal", to_artifact_id=a.artifact_id, who="o", why="w")
    b = pushed("b", version="1.2")
    promote(store, "legal", b, gate=PASS, who="ci", why="w")
    flip_last_byte(store, f"{a.root}/config.json")
    with pytest.raises(ArtifactCorrupt, match="config.json"):
        rollback(store, "legal", who="o", why="w")
    assert current_production(store, "legal").artifact_id == b.artifact_id


class RacingStore(LocalObjectStore):
    """Holds every promotion put at a barrier so that two promoters read the same newest record first."""

    def __init__(self, root, parties):
        super().__init__(root)
        self.barrier = threading.Barrier(parties)
        self.lost = 0

    def put(self, key, data, *, if_none_match=False):
        if "/promotions/" in key and self.barrier is not None:
            try:
                self.barrier.wait(timeout=10)
            except threading.BrokenBarrierError:
                pass
        ok = super().put(key, data, if_none_match=if_none_match)
        if not ok:
            self.lost += 1
            self.barrier = None  # the retry goes through without waiting
        return ok


def _promote_concurrently(store, refs, action=promote):
    records, errors = [], []

    def run(ref):
        try:
            records.append(action(store, "legal", ref, gate=PASS, who=f"w-{ref.version}", why="race"))
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(ref,)) for ref in refs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    return records


def test_two_concurrent_promoters_local_store_get_distinct_numbers(tmp_path, pushed):
    store = RacingStore(tmp_path / "bucket", parties=2)  # the folder the `pushed` fixture writes to
    x, y = pushed("x", version="1.1"), pushed("y", version="1.2")
    records = _promote_concurrently(store, [x, y])
    assert store.lost == 1  # both aimed at number 1; one lost the create-only put and retried
    assert sorted(r.number for r in records) == [1, 2]
    newest = max(records, key=lambda r: r.number)
    oldest = min(records, key=lambda r: r.number)
    assert newest.previous_artifact_id == oldest.artifact_id
    assert current_production(store, "legal") == newest
    assert {r.artifact_id for r in promotion_history(store, "legal")} == {x.artifact_id, y.artifact_id}
