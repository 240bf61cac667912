"""Record-set objects of the ledger: ``<ledger_prefix>/<domain>/<run_id>.records`` (and ``.subjects``).

Each is written once, create-only, *before* the entry that names it, so an entry never names a
missing set. The entry (or a legacy entry's ``.migrated.json``) holds a reference
``{"object": "<run_id>.records", "count": n, "sha256": <of the object's bytes>}``, and every read
checks count and digest: a record set that does not match its entry is an error, never a smaller charge.
"""

from __future__ import annotations

import hashlib

from pipelines.privacy.records import RecordSet, SubjectMap
from pipelines.storage import NotFound, ObjectStore

RECORDS_SUFFIX = ".records"
SUBJECTS_SUFFIX = ".subjects"


class RecordSetError(RuntimeError):
    """A record-set object is missing, or differs from what its ledger entry says."""


def record_ref(run_id: str, value: RecordSet | SubjectMap, *, suffix: str) -> dict:
    """The reference an entry stores for a record set / subject map of ``run_id``."""
    return {"object": f"{run_id}{suffix}", "count": len(value), "sha256": value.sha256}


def write_record_object(store: ObjectStore, *, folder: str, ref: dict, value: RecordSet | SubjectMap) -> None:
    """Write ``value`` create-only under ``folder + ref["object"]``; an existing object must be identical.

    Raises:
        RecordSetError: the key already holds different bytes (a different run under this id).
    """
    key = folder + ref["object"]
    blob = value.encode()
    if not store.put(key, blob, if_none_match=True):
        existing = store.get(key)
        if existing != blob:
            raise RecordSetError(f"{store.uri(key)} already holds another record set: use a new run id for a new plan")


def read_record_object(store: ObjectStore, *, folder: str, ref: dict, kind: type[RecordSet] | type[SubjectMap]):
    """Read and verify the object a ref names.

    Raises:
        RecordSetError: missing, undecodable, or its count/digest differ from ``ref``.
    """
    key = folder + str(ref.get("object", ""))
    try:
        blob = store.get(key)
    except NotFound:
        raise RecordSetError(f"{store.uri(key)} (named by its ledger entry) is missing: the run's charge cannot be "
                             "placed on its records; restore it from a backup") from None
    if hashlib.sha256(blob).hexdigest() != ref.get("sha256"):
        raise RecordSetError(f"{store.uri(key)} does not match the sha256 its ledger entry recorded")
    try:
        value = kind.decode(blob, where=store.uri(key))
    except ValueError as exc:
        raise RecordSetError(str(exc)) from None
    if len(value) != ref.get("count"):
        raise RecordSetError(f"{store.uri(key)} holds {len(value)} items, its entry says {ref.get('count')}")
    return value
