"""Model card and the two SVG plots (parsed as XML)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from _artifacts_helpers import make_folder
from pipelines.artifacts import epsilon_svg, training_curve_svg, verify_folder, write_model_card

SVG = "{http://www.w3.org/2000/svg}"
HISTORY = [{"epoch": 1, "loss": 0.9, "accuracy": 0.61}, {"epoch": 2, "loss": 0.6, "accuracy": 0.74},
           {"epoch": 3, "loss": 0.45, "accuracy": 0.8}]
POINTS = [("2026-09-27T03:00:00Z", 0.8), ("2026-10-04T03:00:00Z", 1.6), ("2026-10-11T03:00:00Z", 2.85)]


def test_write_model_card_adds_card_plots_and_metrics_to_the_artifact(tmp_path):
    folder = make_folder(tmp_path, "m", seed="s1", metrics={"accuracy": 0.8, "eval": {"f1": 0.78}})
    before = verify_folder(folder)
    manifest = write_model_card(folder, before, HISTORY, epsilon_points=POINTS, epsilon_budget=8.0)
    assert sorted(manifest["files"]) == ["config.json", "epsilon.svg", "metrics.json", "model.safetensors",
                                         "model_card.md", "tokenizer/tokenizer.json", "training_curve.svg"]
    assert manifest["artifact_id"] != before["artifact_id"]
    assert verify_folder(folder) == manifest  # the manifest was re-sealed over the new files

    card = (folder / "model_card.md").read_text()
    for text in ("# legal classification model 1.0", "## What", "| parent artifact | none |",
                 "| code version | git:1234abcd |", "## Data",
                 "| 2026-10-04_2026-10-11 | abc123 |", "1 partition(s); exact record counts and digests are kept in "
                 "the private store only", "**What is protected:** one record", "**Published outside DP:**",
                 "## Privacy", "| noise_multiplier | 1.1 |", "epsilon = 1.25 at delta = 1e-05 (rdp accountant)",
                 "total spend including this run is epsilon = 2.85", "![epsilon over time](epsilon.svg)",
                 "## Metrics", "| accuracy | 0.8 |", "| eval.f1 | 0.78 |", "![training curve](training_curve.svg)",
                 "## Intended use", "## Limitations"):
        assert text in card, text
    assert "d" * 64 not in card and "120" not in card  # no digest or exact row count of the record set
    assert json.loads((folder / "metrics.json").read_text()) == {"metrics": {"accuracy": 0.8, "eval": {"f1": 0.78}},
                                                                 "history": HISTORY}

    curve = ET.parse(folder / "training_curve.svg").getroot()
    assert curve.tag == f"{SVG}svg"
    lines = curve.findall(f"{SVG}polyline")
    assert len(lines) == 2  # loss and accuracy, one panel each
    assert [len(line.get("points").split()) for line in lines] == [3, 3]
    assert len(curve.findall(f"{SVG}circle")) == 6
    labels = [t.text for t in curve.iter(f"{SVG}text")]
    assert "loss by epoch (last 0.45)" in labels and "accuracy by epoch (last 0.8)" in labels

    eps = ET.parse(folder / "epsilon.svg").getroot()
    step = eps.find(f"{SVG}polyline").get("points").split()
    assert len(step) == 5  # 3 points joined by 2 horizontal steps
    assert len(eps.findall(f"{SVG}line")) == 1  # the budget
    labels = [t.text for t in eps.iter(f"{SVG}text")]
    assert {"epsilon spent (now 2.85)", "2026-09-27", "2026-10-11", "budget 8"} <= set(labels)


def test_plots_without_data_are_still_valid_svg():
    for text in (training_curve_svg([]), epsilon_svg([]), training_curve_svg([{"epoch": 1, "note": "x"}])):
        root = ET.fromstring(text.encode())
        assert root.tag == f"{SVG}svg" and root.find(f"{SVG}polyline") is None
    single = ET.fromstring(epsilon_svg([("not a date", 1.0)]).encode())
    assert len(single.findall(f"{SVG}circle")) == 1


def test_svg_text_is_escaped():
    root = ET.fromstring(training_curve_svg([{"epoch": 1, "a<b&c": 1.0}], title="x <&> y").encode())
    assert root.find(f"{SVG}title").text == "x <&> y"
    assert "a<b&c by epoch (last 1)" in [t.text for t in root.iter(f"{SVG}text")]


def test_model_without_dp_says_so(tmp_path):
    folder = make_folder(tmp_path, "m", seed="s1")
    manifest = dict(verify_folder(folder), dp=None)
    assert write_model_card(folder, manifest, HISTORY)["dp"] is None
    assert verify_folder(folder)["dp"] is None  # the card and the manifest agree
    assert "Trained **without** differential privacy." in (folder / "model_card.md").read_text()
    assert "no privacy spend recorded" in (folder / "epsilon.svg").read_text()


def test_card_states_the_unit_the_subject_epsilon_and_what_was_erased(tmp_path):
    from pipelines.artifacts import model_card_markdown

    folder = make_folder(tmp_path, "m", seed="s2")
    base = dict(verify_folder(folder), dp=None)
    facts = {"unit": "record", "subject_epsilon": 0.2, "max_records_per_subject": 1, "purged_since_parent": 3,
             "purged_in_start_model": 1}
    card = model_card_markdown({**base, "privacy": facts})
    assert "## Records, subjects and erasure" in card
    assert "at most 1 record(s) per subject per run; the worst subject's epsilon" in card and "is 0.2." in card
    assert "3 record(s) were erased (purged) since the previous model; none of them is in this run's" in card
    assert "1 of them were read by the model this one was fine-tuned from" in card
    plain = model_card_markdown({**base, "privacy": {**facts, "subject_epsilon": None, "purged_since_parent": 0}})
    assert "about k times a record's epsilon" in plain and "No record was erased since the previous model." in plain
    assert "## Records, subjects and erasure" not in model_card_markdown(base)  # a manifest without the block
