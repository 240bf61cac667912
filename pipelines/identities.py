"""Least-privilege S3 identities: what each component may read and write, and their generated credentials.

The one place the policy lives (docs/SECURITY.md, "Threat model"). ``scripts/services.sh`` and the
``s3-identities`` service of docker-compose run ``python -m pipelines.identities`` before SeaweedFS starts:
it generates each component's credentials once (``<out>/<component>/credentials.env``, mode 600, one
folder each so a container can mount only its own) and writes the
SeaweedFS identities file (``<out>/seaweedfs-s3.json``, ``weed -s3.config``) for the current bucket,
with the admin identity taken from ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``.

    python -m pipelines.identities --out DIR [--bucket BUCKET | --config PATH]
    python -m pipelines.identities --aws-policy COMPONENT [--bucket BUCKET]   # the same rights as an AWS IAM policy
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from pathlib import Path

from pipelines.config import ConfigError, load_config

# Top-level prefixes each component writes (config/pipeline.yaml defaults). Everything else is read-only to it.
WRITES: dict[str, tuple[str, ...]] = {
    # feedback records only; it reads models/ (artifacts, promotion records, the output-screen labeller)
    "serving": ("landing/feedback",),
    # landing -> staging -> curated/quarantine, the dedup index, the review queue, audit entries
    "ingestion": ("landing", "staging", "curated", "quarantine", "index", "review", "audit"),
    # artifacts, version claims, promotion records of gated runs, the privacy ledger
    "training": ("models", "privacy", "staging", "audit"),
    # the operations console: manual promotions/rollbacks, review decisions, audit entries
    "console": ("models", "review", "audit"),
}
READS: dict[str, tuple[str, ...] | None] = {"serving": ("models",)}  # None/absent: the whole bucket
COMPONENTS = tuple(WRITES)
CONFIG_FILE = "seaweedfs-s3.json"
CREDENTIALS_FILE = "credentials.env"
ADMIN_ACTIONS = ["Admin", "Read", "Write", "List", "Tagging"]


def actions(component: str, bucket: str) -> list[str]:
    """SeaweedFS actions of ``component`` on ``bucket`` (``Read:<bucket>/<prefix>/*`` style).

    Raises:
        ValueError: an unknown component.
    """
    reads, writes = _prefixes(component)
    out = [f"Read:{bucket}/{p}/*" for p in reads] if reads else [f"Read:{bucket}"]
    out.append(f"List:{bucket}")
    out.extend(f"Write:{bucket}/{p}/*" for p in writes)
    return out


def _prefixes(component: str) -> tuple[tuple[str, ...] | None, tuple[str, ...]]:
    """``(READS, WRITES)`` of a component (reads None: the whole bucket)."""
    if component not in WRITES:
        raise ValueError(f"unknown component {component!r}; known: {', '.join(COMPONENTS)}")
    return READS.get(component), WRITES[component]


def aws_policy(component: str, bucket: str) -> dict:
    """The AWS IAM policy document granting ``component`` what ``actions`` grants it on SeaweedFS.

    For production on AWS S3, where identities are IAM roles (one per component) instead of SeaweedFS's
    identities file: reads of its ``READS`` prefixes (the whole bucket when absent), listing, and puts/deletes
    under its ``WRITES`` prefixes only.

    Raises:
        ValueError: an unknown component.
    """
    reads, writes = _prefixes(component)
    read_resources = [f"arn:aws:s3:::{bucket}/{p}/*" for p in reads] if reads else [f"arn:aws:s3:::{bucket}/*"]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "List", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [f"arn:aws:s3:::{bucket}"]},
            {"Sid": "Read", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": read_resources},
            {"Sid": "Write", "Effect": "Allow",
             "Action": ["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
             "Resource": [f"arn:aws:s3:::{bucket}/{p}/*" for p in writes]},
        ],
    }


def credentials_path(folder: str | Path, component: str) -> Path:
    """Where ``component``'s credentials live under an identities folder."""
    return Path(folder) / component / CREDENTIALS_FILE


def read_credentials(path: Path) -> tuple[str, str] | None:
    """``(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)`` of an env file, or None when either is missing."""
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and not key.startswith("#"):
            values[key.strip()] = value.strip()
    key, secret = values.get("AWS_ACCESS_KEY_ID", ""), values.get("AWS_SECRET_ACCESS_KEY", "")
    return (key, secret) if key and secret else None


def _write_private(path: Path, text: str, *, create_only: bool) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        if create_only:
            try:
                os.link(tmp, path)  # another process created it meanwhile: its credentials stand
            except FileExistsError:
                pass
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def ensure_identities(out: str | Path, *, bucket: str, admin: tuple[str, str]) -> Path:
    """Generate missing component credentials and (re)write the SeaweedFS identities file; returns its path.

    Credentials are generated once and kept (``<out>/<component>/credentials.env``, mode 600, folders
    mode 700); the
    identities file follows ``bucket`` and the admin credentials and is rewritten every time.

    Raises:
        ValueError: a credentials file exists but lacks a key or secret (remove it to regenerate).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    out.chmod(0o700)
    identities = [{"name": "admin", "credentials": [{"accessKey": admin[0], "secretKey": admin[1]}],
                   "actions": ADMIN_ACTIONS}]
    for component in COMPONENTS:
        path = credentials_path(out, component)
        path.parent.mkdir(exist_ok=True)
        path.parent.chmod(0o700)
        if not path.exists():
            key = "PL" + component[:2].upper() + secrets.token_hex(8).upper()  # 20 chars, like an AWS key id
            _write_private(path, f"# S3 identity of {component} (python -m pipelines.identities); do not commit.\n"
                                 f"AWS_ACCESS_KEY_ID={key}\nAWS_SECRET_ACCESS_KEY={secrets.token_hex(24)}\n",
                           create_only=True)
        path.chmod(0o600)
        pair = read_credentials(path)
        if pair is None:
            raise ValueError(f"{path} lacks AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY; remove it to generate new ones")
        identities.append({"name": component, "credentials": [{"accessKey": pair[0], "secretKey": pair[1]}],
                           "actions": actions(component, bucket)})
    config = out / CONFIG_FILE
    _write_private(config, json.dumps({"identities": identities}, indent=1) + "\n", create_only=False)
    return config


def _config_bucket(path: str | None) -> str | None:
    try:
        return load_config(path).storage.bucket
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.identities", description=__doc__.split("\n\n")[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--out", help="folder of <component>/credentials.env and seaweedfs-s3.json")
    what.add_argument("--aws-policy", metavar="COMPONENT", choices=COMPONENTS,
                      help=f"print the AWS IAM policy of one component ({', '.join(COMPONENTS)}) for AWS S3 and exit")
    parser.add_argument("--bucket", help="the pipeline's bucket (default: storage.bucket of the config, or "
                                          "$PIPELINE_BUCKET)")
    parser.add_argument("--config", help="config file (default: $PIPELINE_CONFIG or config/pipeline.yaml)")
    args = parser.parse_args(argv)
    if args.aws_policy:
        bucket = args.bucket or _config_bucket(args.config)
        if bucket is None:
            return 2
        print(json.dumps(aws_policy(args.aws_policy, bucket), indent=1))
        return 0
    admin = (os.environ.get("AWS_ACCESS_KEY_ID", ""), os.environ.get("AWS_SECRET_ACCESS_KEY", ""))
    if not all(admin):
        print("error: the admin identity comes from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY: set both", file=sys.stderr)
        return 2
    if not args.bucket:
        args.bucket = _config_bucket(args.config)
        if args.bucket is None:
            return 2
    try:
        config = ensure_identities(args.out, bucket=args.bucket, admin=admin)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"identities: {', '.join(COMPONENTS)} + admin for bucket {args.bucket!r} in {config}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
