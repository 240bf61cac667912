"""Model artifacts: content-addressed model folders, the evaluation gate, promotion and rollback.

See docs/CONTRACTS.md ("Artifact", "Versions", "Promotion"). Typical use by the training stage::

    version = claim_version(store, domain, kind="weekly", parent_version=parent_version, run_id=run_id)
    manifest = build_manifest(folder, domain=domain, task=task, kind="weekly", version=version, ...)
    manifest = write_model_card(folder, manifest, history, epsilon_points=points)
    ref = push_artifact(store, folder, domain=domain)
    production = production_ref(store, domain)
    decision = evaluate_gate(candidate=manifest["metrics"], production=<production's metrics on the same split>,
                             metric="macro_f1", max_drop=0.05)
    # or, reading production's numbers from the store: evaluate_candidate(store, domain, ref, max_drop=0.05)
    promote(store, domain, ref, gate=decision, who=run_id, why="weekly fine-tune")
"""

from __future__ import annotations

from pipelines.artifacts.card import epsilon_svg, model_card_markdown, training_curve_svg, write_model_card
from pipelines.artifacts.gate import GATE_METRICS, TRIVIAL_METRICS, GateDecision, evaluate_gate, force_gate, gate_metric_for
from pipelines.artifacts.manifest import (
    MANIFEST,
    ArtifactCorrupt,
    ArtifactError,
    ArtifactNotFound,
    artifact_id_of,
    build_manifest,
    file_map,
    parse_version,
    read_manifest,
    reseal_manifest,
    verify_folder,
)
from pipelines.artifacts.promotion import (
    PromotionConflict,
    PromotionRecord,
    PromotionRefused,
    current_production,
    evaluate_candidate,
    production_ref,
    promote,
    promotion_history,
    rollback,
)
from pipelines.artifacts.store import (
    ArtifactRef,
    artifact_root,
    claim_version,
    fetch_artifact,
    fetch_cached,
    list_artifacts,
    load_ref,
    push_artifact,
    read_artifact_manifest,
    verify_artifact,
)

__all__ = [
    "GATE_METRICS", "MANIFEST", "TRIVIAL_METRICS", "ArtifactCorrupt", "ArtifactError", "ArtifactNotFound", "ArtifactRef",
    "GateDecision", "PromotionConflict", "PromotionRecord", "PromotionRefused", "artifact_id_of",
    "artifact_root", "build_manifest", "claim_version", "current_production",
    "epsilon_svg", "evaluate_candidate", "evaluate_gate", "fetch_artifact", "fetch_cached", "file_map", "force_gate",
    "gate_metric_for", "list_artifacts",
    "load_ref", "model_card_markdown", "parse_version", "production_ref", "promote", "promotion_history",
    "push_artifact", "read_artifact_manifest", "read_manifest", "reseal_manifest", "rollback", "training_curve_svg",
    "verify_artifact", "verify_folder", "write_model_card",
]
