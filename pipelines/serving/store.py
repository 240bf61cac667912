"""The object store as the serving service opens it: every call bounded in time.

The pipeline's default S3 client waits a minute per read and retries five times: right for a batch
task, wrong while a client waits for an answer (a frozen store held feedback requests 40 s+ and wrote
the record after every client had given up). Here each call has ``serving.store_timeout_seconds`` to
connect and to read, and ``serving.store_max_attempts`` attempts in all, so a feedback request ends in a
few seconds: stored (201), or not stored (503, ``Retry-After``).
"""

from __future__ import annotations

from typing import Any

from pipelines.serving.config import ServingConfig
from pipelines.storage import ObjectStore, S3ObjectStore, identity_credentials, open_store


def bounded_s3_client(*, endpoint_url: str, region: str, serving: ServingConfig,
                      credentials: tuple[str, str] | None = None) -> Any:
    """A boto3 S3 client with the serving path's connect/read timeouts and bounded retries (as ``credentials``)."""
    import boto3
    from botocore.config import Config

    keys = {"aws_access_key_id": credentials[0], "aws_secret_access_key": credentials[1]} if credentials else {}
    return boto3.session.Session(**keys).client(
        "s3", endpoint_url=endpoint_url or None, region_name=region,
        config=Config(connect_timeout=serving.store_timeout_seconds, read_timeout=serving.store_timeout_seconds,
                      retries={"total_max_attempts": serving.store_max_attempts, "mode": "standard"},
                      s3={"addressing_style": "path"}))


def open_serving_store(config: Any, serving: ServingConfig) -> ObjectStore:
    """``pipelines.storage.open_store(config, identity="serving")`` whose S3 client (under any encryption wrapper)
    is bounded. Serving acts as its own S3 identity (read ``models/``, write ``landing/feedback/`` only) when
    per-component credentials are configured (pipelines/identities.py).

    Raises:
        pipelines.storage.StorageError, ConfigError: as ``open_store``.
    """
    store = open_store(config, identity="serving")
    inner = getattr(store, "inner", store)  # pipelines.security's EncryptedObjectStore wraps the real one
    if isinstance(inner, S3ObjectStore):
        region = getattr(getattr(config, "storage", config), "region", "us-east-1")
        inner.client = bounded_s3_client(endpoint_url=inner.endpoint_url, region=region, serving=serving,
                                         credentials=identity_credentials("serving"))
    return store
