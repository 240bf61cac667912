"""Least-privilege S3 identities against the real SeaweedFS that scripts/services.sh starts.

Each component's identity may write only what it needs (docs/SECURITY.md, "Threat model"); the admin
identity (credentials.env, what every test and caller without an identity uses) keeps every right.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from pipelines.config import StorageConfig
from pipelines.identities import COMPONENTS, READS, WRITES, actions, aws_policy, ensure_identities, main
from pipelines.storage import IDENTITIES_DIR_ENV, IDENTITY_ENV, StorageError, identity_credentials, open_store

BUCKET = "mlops-test"  # the bucket services.sh creates and the identities are scoped to (tests/conftest.py)
# (identity, key) -> may it write? One key per top-level prefix the pipeline writes (docs/SECURITY.md).
PREFIXES = ("landing/feedback/2026-11-02/f.jsonl", "landing/legal/2026-11-02/a.jsonl", "staging/x",
            "curated/legal/w/v-1/data.parquet", "quarantine/legal/w/q.jsonl", "index/legal/seg", "review/legal/q",
            "privacy/ledger/legal/r.json", "models/legal/artifacts/0123456789abcdef/manifest.json",
            "models/legal/promotions/00000001.json", "audit/2026/e.json")
MAY_WRITE = {
    "serving": {"landing/feedback/"},
    "ingestion": {"landing/", "staging/", "curated/", "quarantine/", "index/", "review/", "audit/"},
    "training": {"models/", "privacy/", "staging/", "audit/"},
    "console": {"models/", "review/", "audit/"},
}  # restated from the issue on purpose: a change of pipelines.identities.WRITES must show up here


@pytest.fixture
def identities(s3_server, monkeypatch, request):
    folder = _identities_dir(request.config)
    monkeypatch.setenv(IDENTITIES_DIR_ENV, str(folder))
    monkeypatch.delenv(IDENTITY_ENV, raising=False)
    config = StorageConfig(bucket=BUCKET, endpoint_url=s3_server["PIPELINE_S3_ENDPOINT_URL"])
    admin = open_store(config)
    for key in PREFIXES:  # something to read for every identity
        admin.put(key, b"admin")
    return folder, config


def _identities_dir(config: pytest.Config) -> Path:
    """The identities folder of the session's SeaweedFS (the state folder of tests/conftest.py's ``s3_server``)."""
    [root] = [p for p in config.pluginmanager.get_plugins() if hasattr(p, "_service_env")]
    return Path(root._service_env()["PIPELINE_STATE_DIR"]) / "identities"


def test_credentials_are_generated_per_component_mode_600(identities):
    folder, _ = identities
    assert sorted(p.name for p in folder.iterdir()) == sorted([*COMPONENTS, "seaweedfs-s3.json"])
    keys = {identity_credentials(c) for c in COMPONENTS}
    assert len(keys) == 4 and None not in keys
    for path in [folder / "seaweedfs-s3.json", *(folder / c / "credentials.env" for c in COMPONENTS)]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for path in [folder, *(folder / c for c in COMPONENTS)]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path


@pytest.mark.parametrize("component", COMPONENTS)
def test_each_identity_writes_only_its_prefixes(identities, component):
    _, config = identities
    store = open_store(config, identity=component)
    allowed = {key for key in PREFIXES if any(key.startswith(p) for p in MAY_WRITE[component])}
    written = set()
    for key in PREFIXES:
        try:
            store.put(key, f"by {component}".encode())
            written.add(key)
        except StorageError as exc:
            assert "AccessDenied" in str(exc), exc
    assert written == allowed


def test_serving_reads_models_only_and_is_refused_a_write_to_models(identities):
    _, config = identities
    serving = open_store(config, identity="serving")
    assert serving.get("models/legal/promotions/00000001.json") in (b"admin", b"by training", b"by console")
    with pytest.raises(StorageError, match="AccessDenied"):
        serving.put("models/legal/promotions/00000002.json", b'{"artifact_id": "evil"}')
    with pytest.raises(StorageError, match="AccessDenied"):
        serving.delete("models/legal/promotions/00000001.json")
    with pytest.raises(StorageError, match="AccessDenied"):
        serving.get("curated/legal/w/v-1/data.parquet")
    assert serving.put("landing/feedback/2026-11-02/g.jsonl", b"{}", if_none_match=True) is True


def test_ingestion_is_refused_models_and_privacy(identities):
    _, config = identities
    ingestion = open_store(config, identity="ingestion")
    for key in ("models/labellers/screen/CURRENT.json", "privacy/ledger/legal/forged.json"):
        with pytest.raises(StorageError, match="AccessDenied"):
            ingestion.put(key, b"{}")
    assert ingestion.get("models/legal/promotions/00000001.json")  # it reads labellers from models/


def test_without_identities_folder_today_single_identity_works(s3_server, monkeypatch):
    monkeypatch.delenv(IDENTITIES_DIR_ENV, raising=False)
    monkeypatch.delenv(IDENTITY_ENV, raising=False)
    assert identity_credentials("serving") is None  # the component named itself; nothing configured
    store = open_store(StorageConfig(bucket=BUCKET, endpoint_url=s3_server["PIPELINE_S3_ENDPOINT_URL"]),
                       identity="serving")
    assert store.put("models/legal/compat.json", b"{}") is True  # the default chain: the admin identity
    monkeypatch.setenv(IDENTITY_ENV, "serving")
    with pytest.raises(StorageError, match=f"{IDENTITIES_DIR_ENV} is not set"):
        identity_credentials()
    monkeypatch.setenv(IDENTITY_ENV, "root")
    with pytest.raises(StorageError, match="'root' is not an S3 identity"):
        identity_credentials()


def test_an_identity_asked_for_without_credentials_fails_early(tmp_path, monkeypatch):
    monkeypatch.setenv(IDENTITIES_DIR_ENV, str(tmp_path))
    monkeypatch.setenv(IDENTITY_ENV, "training")
    with pytest.raises(StorageError, match="no credentials for S3 identity 'training'"):
        identity_credentials()
    (tmp_path / "training").mkdir()
    (tmp_path / "training" / "credentials.env").write_text("AWS_ACCESS_KEY_ID=AK\n")
    with pytest.raises(StorageError, match="lacks AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"):
        identity_credentials()


def test_policy_actions_and_generation_keep_credentials(tmp_path):
    assert actions("serving", "b") == ["Read:b/models/*", "List:b", "Write:b/landing/feedback/*"]
    assert actions("ingestion", "b")[:2] == ["Read:b", "List:b"]
    assert not any(p.startswith(("models", "privacy")) for p in WRITES["ingestion"])
    assert not any(p.startswith("landing") for p in WRITES["training"])
    with pytest.raises(ValueError, match="unknown component 'root'"):
        actions("root", "b")
    config = ensure_identities(tmp_path / "ids", bucket="b", admin=("AK", "SK"))
    first = config.read_text()
    creds = {c: (tmp_path / "ids" / c / "credentials.env").read_text() for c in COMPONENTS}
    config = ensure_identities(tmp_path / "ids", bucket="other", admin=("AK", "SK"))
    assert {c: (tmp_path / "ids" / c / "credentials.env").read_text() for c in COMPONENTS} == creds  # kept
    assert config.read_text() == first.replace('"Read:b', '"Read:other').replace('"List:b', '"List:other') \
        .replace('"Write:b/', '"Write:other/')


@pytest.mark.parametrize("component", COMPONENTS)
def test_the_aws_policy_grants_what_the_seaweedfs_identity_grants(component):
    """Production on AWS S3 gets the same rights as IAM policies: one mapping, two spellings."""
    policy = aws_policy(component, "b")
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert all(s["Effect"] == "Allow" for s in policy["Statement"]) and set(by_sid) == {"List", "Read", "Write"}
    writes = [r.removeprefix("arn:aws:s3:::b/").removesuffix("/*") for r in by_sid["Write"]["Resource"]]
    seaweed_writes = [a.removeprefix("Write:b/").removesuffix("/*") for a in actions(component, "b") if a.startswith("Write:")]
    assert writes == seaweed_writes == list(WRITES[component])
    reads = by_sid["Read"]["Resource"]
    assert reads == ([f"arn:aws:s3:::b/{p}/*" for p in READS[component]] if component in READS else ["arn:aws:s3:::b/*"])
    assert by_sid["Write"]["Action"] == ["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]


def test_serving_policy_cannot_write_models_and_the_cli_prints_it(capsys):
    import json

    assert main(["--aws-policy", "serving", "--bucket", "mlops-data"]) == 0
    policy = json.loads(capsys.readouterr().out)
    [write] = [s for s in policy["Statement"] if s["Sid"] == "Write"]
    assert write["Resource"] == ["arn:aws:s3:::mlops-data/landing/feedback/*"]
    with pytest.raises(SystemExit) as exc:
        main(["--aws-policy", "admin"])
    assert exc.value.code == 2
