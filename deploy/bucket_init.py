"""Create the pipeline's bucket when it does not exist (docker-compose's ``bucket-init`` service).

Reads the bucket, endpoint and region from the pipeline configuration (``config/pipeline.yaml`` with
``PIPELINE_BUCKET`` / ``PIPELINE_S3_ENDPOINT_URL`` overrides) and the credentials from the usual
``AWS_*`` environment. Idempotent: an existing bucket is left alone. Retries while the object store is
still starting (its filer answers a few seconds after ``/healthz``). Exit codes: 0 done, 1 the store
never answered, 2 a configuration or credentials mistake.

    python deploy/bucket_init.py [--config PATH] [--attempts 60] [--delay 1.0]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# Run as a script from any folder: the project root holds the `pipelines` package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.config import ConfigError, load_config  # noqa: E402

# Errors that no retry can fix: report them at once instead of waiting out the attempts.
FATAL_CODES = frozenset({"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidBucketName"})


def ensure_bucket(*, client: object, bucket: str, attempts: int = 60, delay: float = 1.0) -> str:
    """Create ``bucket`` unless it exists.

    Args:
        client: a boto3 S3 client.
        bucket: the bucket name.
        attempts: how many times to try while the store is not answering yet.
        delay: seconds between attempts.

    Returns:
        ``"exists"`` or ``"created"``.

    Raises:
        PermissionError: the store refused the credentials or the name (not retried).
        TimeoutError: the store did not answer within ``attempts``.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    last: Exception | None = None
    for _ in range(attempts):
        try:
            try:
                client.head_bucket(Bucket=bucket)
                return "exists"
            except ClientError as exc:
                if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") != 404:
                    raise
            client.create_bucket(Bucket=bucket)
            return "created"
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in FATAL_CODES or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 403:
                raise PermissionError(f"{code or 'Forbidden'}: {exc}") from None
            if code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                return "exists"  # another bucket-init won the race
            last = exc
        except BotoCoreError as exc:  # connection refused, timeouts, while the store starts
            last = exc
        time.sleep(delay)
    raise TimeoutError(f"no answer after {attempts} attempts: {last}")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: create the configured bucket; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python deploy/bucket_init.py",
        description="Create the pipeline's S3 bucket (storage.bucket, or PIPELINE_BUCKET) unless it exists.",
    )
    parser.add_argument("--config", help="config file (default: $PIPELINE_CONFIG or config/pipeline.yaml)")
    parser.add_argument("--attempts", type=int, default=60, help="tries while the store starts (default 60)")
    parser.add_argument("--delay", type=float, default=1.0, help="seconds between tries (default 1.0)")
    args = parser.parse_args(argv)
    if args.attempts < 1 or args.delay < 0:
        print("error: --attempts must be >= 1 and --delay >= 0", file=sys.stderr)
        return 2
    try:
        storage = load_config(args.config).storage
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not storage.endpoint_url or storage.endpoint_url.startswith("file://"):
        print(f"bucket-init: endpoint {storage.endpoint_url or '(AWS S3)'}: nothing to create here "
              "(create AWS buckets with your infrastructure code)")
        return 0

    import boto3
    from botocore.config import Config

    client = boto3.client("s3", endpoint_url=storage.endpoint_url, region_name=storage.region,
                          config=Config(retries={"max_attempts": 1}, connect_timeout=3, read_timeout=10))
    try:
        outcome = ensure_bucket(client=client, bucket=storage.bucket, attempts=args.attempts, delay=args.delay)
    except PermissionError as exc:
        print(f"error: {storage.endpoint_url} refused bucket {storage.bucket!r}: {exc}. Check AWS_ACCESS_KEY_ID/"
              "AWS_SECRET_ACCESS_KEY in the env file: they must match the ones the object store started with.",
              file=sys.stderr)
        return 2
    except TimeoutError as exc:
        print(f"error: object store at {storage.endpoint_url} is not answering: {exc}", file=sys.stderr)
        return 1
    print(f"bucket-init: bucket {storage.bucket!r} {outcome} at {storage.endpoint_url}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
