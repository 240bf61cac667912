"""Page data read from the CLI's records, and the console's create-only, audited actions."""

from __future__ import annotations

import json

import pytest

from _console_world import EMAIL, PHONE, WEEK, WEEK2
from pipelines.console import console_user
from pipelines.console import actions, reads
from pipelines.review import ReviewImportError, import_reviews, load_reviews
from pipelines.security.audit import read_audit

ADMIN, REVIEWER, VIEWER = console_user("ann", "admin"), console_user("rob", "op"), console_user("vic", "viewer")


def test_privacy_page_is_the_budget_report_with_runs_refusals_and_a_plot(world):
    from pipelines.privacy import budget_report

    config, store, _ = world
    page = reads.privacy_page(config=config, store=store, domain="legal")
    expected = budget_report(config=config.for_domain("legal").require_privacy(), store=store, domain="legal",
                             partitions=[WEEK.name])
    assert [(p["partition"], p["runs"], p["epsilon"]) for p in page["partitions"]] == \
        [(s.partition, list(s.runs), s.epsilon) for s in expected]
    assert [p["partition"] for p in page["partitions"]] == [WEEK.name, WEEK2.name]
    assert page["partitions"][0]["runs"] == ["weekly-legal-1", "weekly-legal-2"]
    assert [(r["run_id"], r["status"]) for r in page["runs"]] == \
        [("weekly-legal-1", "completed"), ("weekly-legal-2", "completed"), ("weekly-legal-3", "void")]
    assert page["refused"] == [{"run_id": "weekly-legal-3", "kind": "weekly", "created_at": page["runs"][2]["created_at"],
                                "reason": "the reserving task crashed before the decision", "by": "on-call"}]
    assert [h["run_id"] for h in page["history"]] == ["weekly-legal-1", "weekly-legal-2"]
    assert page["history"][1]["epsilon"] == pytest.approx(page["partitions"][0]["epsilon"])
    assert page["svg"].startswith("<svg") and page["epsilon"] == 2.0


def test_models_page_shows_production_history_with_gate_numbers_and_every_artifact(world):
    config, store, ids = world
    page = reads.models_page(config=config, store=store, domain="legal")
    assert page["production"]["artifact_id"] == ids["artifacts"][1] and page["production"]["version"] == "1.1"
    assert [(r["number"], r["action"], r["version"], r["who"]) for r in page["history"]] == \
        [(2, "promote", "1.1", "airflow:test"), (1, "promote", "1.0", "airflow:test")]
    gate = page["history"][0]["gate"]
    assert (gate["metric"], gate["candidate_value"], gate["production_value"]) == ("accuracy", 0.71, 0.7)
    assert [(a["version"], a["production"], a["was_production"]) for a in page["artifacts"]] == \
        [("1.2", False, False), ("1.1", True, True), ("1.0", False, True)]
    card = reads.model_card(config=config, store=store, domain="legal", artifact_id=ids["artifacts"][1])
    assert "1.1" in card["card"] and card["training_curve_svg"].startswith("<svg")


def test_quarantine_page_counts_by_reason_and_masks_raw_text_at_render_time(world):
    config, store, _ = world
    page = reads.quarantine_page(config=config, store=store, domain="legal")
    assert page["by_reason"] == {"clean.language.zh": 1, "clean.pattern.test_message": 1, "invalid_json": 1}
    [part] = page["partitions"]
    assert (part["interval"], part["total"], part["released"]) == (WEEK.name, 3, 0)
    text = json.dumps(page, ensure_ascii=False)
    assert PHONE not in text and EMAIL not in text
    zh = next(s for s in part["samples"] if s["reason"] == "clean.language.zh")
    assert zh["text"] == "合同纠纷请致电 [PHONE_1] 或邮件 [EMAIL_1] 联系李律师"


def test_review_page_progress_counts_the_queue_as_the_required_set(world):
    config, store, ids = world
    page = reads.review_page(config=config, store=store, queue=ids["queue"])
    assert page["labels"] == ["contract", "criminal", "family"]
    assert [i["id"] for i in page["items"]] == ["LG-1", "LG-2", "LG-3", "LG-4", "LG-5"]
    assert page["progress"] == {"required": 5, "reviewed": 0, "low_confidence": 3, "low_confidence_reviewed": 0,
                                "sampled": 2, "complete": False}
    assert reads.review_queues(store=store, domain="legal") == [
        {"queue": ids["queue"], "interval": WEEK.name, "version": "v1", "queued": 5, "reviewed": 0}]


def test_labels_are_stored_exactly_as_review_import_stores_them_and_audited(world, tmp_path):
    import datetime as dt

    config, store, ids = world
    when = dt.datetime(2026, 10, 12, 9, 30, tzinfo=dt.timezone.utc)
    result = actions.label_items(config=config, store=store, user=REVIEWER, queue=ids["queue"],
                                 labels={"LG-2": "criminal", "LG-3": "contract"}, now=when)
    assert (result.written, result.reviewed, result.agreed) == (True, 2, 1)
    assert result.reviews_key == f"review/legal/{WEEK.name}/reviews-1.jsonl"
    # The same labels through `review import` of a JSONL file: the identical reviews file, nothing new written.
    path = tmp_path / "reviewed.jsonl"
    path.write_text("".join(json.dumps({"id": i, "review_label": lab, "reviewer": "console:rob",
                                        "reviewed_at": "2026-10-12T09:30:00Z"}) + "\n"
                            for i, lab in (("LG-3", "contract"), ("LG-2", "criminal"))))
    again = import_reviews(store, ids["queue"], path)
    assert (again.written, again.reviews_key) == (False, result.reviews_key)
    assert load_reviews(store, domain="legal", interval=WEEK.name)["LG-3"] == {
        "id": "LG-3", "predicted_label": "family", "review_label": "contract", "reviewer": "console:rob",
        "reviewed_at": "2026-10-12T09:30:00Z", "queue": ids["queue"]}
    page = reads.review_page(config=config, store=store, queue=ids["queue"])
    assert (page["progress"]["reviewed"], page["progress"]["low_confidence_reviewed"]) == (2, 2)
    [entry] = read_audit(store, action=actions.REVIEW_ACTION)
    assert (entry["who"], entry["details"]["reviews"]) == ("console:rob", result.reviews_key)


def test_a_bad_label_or_a_viewer_writes_nothing(world):
    config, store, ids = world
    with pytest.raises(ReviewImportError, match="'other' is not in the label set"):
        actions.label_items(config=config, store=store, user=REVIEWER, queue=ids["queue"], labels={"LG-1": "other"})
    with pytest.raises(PermissionError, match="may not label"):
        actions.label_items(config=config, store=store, user=VIEWER, queue=ids["queue"], labels={"LG-1": "contract"})
    assert load_reviews(store, domain="legal", interval=WEEK.name) == {}


def test_rollback_writes_a_rollback_record_and_its_audit_entry_approvers_only(world):
    config, store, ids = world
    with pytest.raises(PermissionError, match="may not roll back"):
        actions.rollback_model(config=config, store=store, user=REVIEWER, domain="legal", why="bad answers")
    record = actions.rollback_model(config=config, store=store, user=ADMIN, domain="legal", why="bad answers")
    assert (record.number, record.action, record.artifact_id, record.who, record.why) == \
        (3, "rollback", ids["artifacts"][0], "console:ann", "bad answers")
    [entry] = read_audit(store, action="rollback")
    assert (entry["who"], entry["why"]) == ("console:ann", "bad answers")


def test_release_is_a_request_that_the_next_ingestion_executes_and_the_page_follows(world):
    from pipelines.ops import OpsError, list_quarantine, rerun_partition

    config, store, _ = world
    [found] = list_quarantine(config=config, store=store, domain="legal", reason="clean.pattern.test_message")
    qid = found.records[0].id
    with pytest.raises(PermissionError):
        actions.release_quarantine(config=config, store=store, user=VIEWER, domain="legal", interval=WEEK.name,
                                   ids=[qid], why="false positive")
    request = actions.release_quarantine(config=config, store=store, user=REVIEWER, domain="legal",
                                         interval=WEEK.name, ids=[qid], why="false positive")
    assert request.key.startswith(f"review/releases/legal/{WEEK.name}/")  # the console writes review/, not landing/
    assert not [o.key for o in store.list("landing/legal/") if "released-" in o.key]
    [entry] = read_audit(store, action="quarantine_release_request")
    assert (entry["who"], entry["details"]["request"]) == ("console:rob", request.key)
    rerun = f"python -m pipelines ops rerun --domain legal --interval {WEEK.name}"
    [part] = reads.quarantine_page(config=config, store=store, domain="legal")["partitions"]
    assert [(r["request"], r["state"], r["next_step"]) for r in part["requests"]] == [(request.key, "pending", rerun)]
    assert {s["id"]: s["requested"] for s in part["samples"]}[qid] == request.key
    with pytest.raises(OpsError, match="already in a pending request"):
        actions.release_quarantine(config=config, store=store, user=ADMIN, domain="legal", interval=WEEK.name,
                                   ids=[qid], why="again")

    rerun_partition(config=config, store=store, domain="legal", interval=WEEK.name, run_key="weekly-7")
    [part] = reads.quarantine_page(config=config, store=store, domain="legal")["partitions"]
    [row] = part["requests"]
    assert (row["state"], row["landing_files"], row["next_step"]) == \
        ("done", [f"landing/legal/2026-10-05/released-{request.request_id}.jsonl"],
         "nothing: run weekly-7 released and ingested it")
    [released] = read_audit(store, action="quarantine_release")
    assert released["who"] == "console:rob"  # executed by ingestion, audited as the person who asked
