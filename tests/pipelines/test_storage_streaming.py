"""Streaming puts and gets (``put_file``/``get_file``): a copy on a folder, boto3's managed transfer
(multipart) on S3, the bytes for a store that cannot stream."""

from __future__ import annotations

import os

import pytest

from pipelines import storage
from pipelines.storage import LocalObjectStore, NotFound, S3ObjectStore, get_file, put_file


def _blob(tmp_path, size):
    path = tmp_path / "blob.bin"
    path.write_bytes(os.urandom(size))
    return path


def test_local_store_streams_a_file_in_and_out(tmp_path):
    store = LocalObjectStore(tmp_path / "bucket")
    blob = _blob(tmp_path, 3 * 1024 * 1024 + 5)
    put_file(store, "staging/a/raw.jsonl", blob)
    assert store.get("staging/a/raw.jsonl") == blob.read_bytes()
    assert [o.key for o in store.list("staging/")] == ["staging/a/raw.jsonl"]  # no .tmp- left behind
    get_file(store, "staging/a/raw.jsonl", tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == blob.read_bytes()
    with pytest.raises(NotFound):
        get_file(store, "staging/a/missing", tmp_path / "missing.bin")


class BytesOnlyStore:
    """A store with only the protocol's get/put (as a third-party wrapper would be)."""

    def __init__(self):
        self.objects = {}

    def get(self, key):
        try:
            return self.objects[key]
        except KeyError:
            raise NotFound(key) from None

    def put(self, key, data, *, if_none_match=False):
        self.objects[key] = data
        return True


def test_a_store_that_cannot_stream_is_given_the_bytes(tmp_path):
    store = BytesOnlyStore()
    blob = _blob(tmp_path, 1000)
    put_file(store, "k", blob)
    get_file(store, "k", tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == blob.read_bytes() == store.objects["k"]


def test_s3_store_uploads_large_files_in_parts_and_downloads_them(tmp_path, s3_bucket, s3_server, monkeypatch):
    monkeypatch.setattr(storage, "MULTIPART_BYTES", 5 * 1024 * 1024)  # S3's smallest part
    store = S3ObjectStore(bucket=s3_bucket, endpoint_url=s3_server["PIPELINE_S3_ENDPOINT_URL"])
    blob = _blob(tmp_path, 12 * 1024 * 1024)
    put_file(store, "staging/legal/w/r/labelled.parquet", blob)
    (info,) = store.list("staging/legal/w/r/")
    assert info.size == blob.stat().st_size
    assert info.etag.endswith("-3")  # a multipart object of 3 parts (5 + 5 + 2 MiB)
    get_file(store, info.key, tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == blob.read_bytes()
    with pytest.raises(NotFound):
        get_file(store, "staging/none", tmp_path / "none.bin")


def _assert_reads_ranges(store, tmp_path):
    data = bytes(range(256)) * 40  # 10,240 bytes
    store.put("index/legal/seg-0001.bin", data)
    assert storage.get_range(store, "index/legal/seg-0001.bin", 0, 16) == data[:16]
    assert storage.get_range(store, "index/legal/seg-0001.bin", 1000, 5000) == data[1000:5000]
    assert storage.get_range(store, "index/legal/seg-0001.bin", 10_000, 20_000) == data[10_000:]  # cut at the end
    assert storage.get_range(store, "index/legal/seg-0001.bin", 10_240, 10_300) == b""  # starts at the end
    assert storage.get_range(store, "index/legal/seg-0001.bin", 7, 7) == b""
    with pytest.raises(ValueError, match="0 <= start <= end"):
        store.get_range("index/legal/seg-0001.bin", 9, 8)
    with pytest.raises(NotFound):
        store.get_range("index/legal/missing.bin", 0, 8)


def test_local_store_reads_a_byte_range(tmp_path):
    _assert_reads_ranges(LocalObjectStore(tmp_path / "bucket"), tmp_path)


def test_s3_store_reads_a_byte_range_with_a_range_header(tmp_path, s3_bucket, s3_server):
    _assert_reads_ranges(S3ObjectStore(bucket=s3_bucket, endpoint_url=s3_server["PIPELINE_S3_ENDPOINT_URL"]), tmp_path)


def test_a_store_without_ranges_gives_none_so_the_caller_reads_the_object(tmp_path):
    store = BytesOnlyStore()
    store.put("k", b"0123456789")
    assert storage.get_range(store, "k", 2, 5) is None
