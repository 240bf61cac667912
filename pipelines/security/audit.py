"""The append-only audit log: one create-only object per entry.

Layout: ``<prefix>/<yyyy>/<mm>/<dd>/<ts>-<uuid>.json`` with ``ts`` = ``YYYYMMDDTHHMMSSffffffZ``, so
listing a day (or a month, a year) returns entries in time order. An entry::

    {"action": "data_deletion", "who": "alice", "when": "2026-10-12T09:30:00.123456Z",
     "what": "legal record", "why": "erasure request #123", "details": {...}}

Entries are never changed; ``prune_audit`` deletes whole entries older than the retention period
(at least 180 days, refused below). Personal data does not belong in an entry: record hashes
(``pipelines.security.purge`` records the sha256 of a purged id, never the id or text).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pipelines.config.security import MIN_AUDIT_RETENTION_DAYS
from pipelines.security.keyring import utcnow
from pipelines.storage import ObjectStore

ACTIONS = ("data_deletion", "crypto_shred", "promotion", "rollback", "budget_change", "key_rotation",
           "key_retirement", "access")
_ACTION = re.compile(r"^[a-z][a-z0-9_.]{0,63}$")
_FIELDS = ("action", "who", "when", "what", "why", "details")


class AuditError(ValueError):
    """An audit entry or request is invalid; the message says what to fix."""


def _stamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%S%fZ")


def _when(value: str | dt.datetime | dt.date | None) -> dt.datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, dt.date):
        moment = dt.datetime(value.year, value.month, value.day)
    else:
        try:
            moment = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise AuditError(f"time {value!r} is not ISO-8601 (e.g. 2026-10-12 or 2026-10-12T09:30:00Z)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def write_audit(store: ObjectStore, *, action: str, who: str, what: str, why: str,
                details: Mapping[str, Any] | None = None, now: dt.datetime | None = None,
                prefix: str = "audit") -> str:
    """Append one entry (create-only) and return its key.

    Args:
        store: the object store.
        action: e.g. ``data_deletion``, ``promotion``, ``rollback``, ``budget_change`` (see ``ACTIONS``;
            other lower-case names are accepted).
        who: the person or service that acted.
        what: what was acted on (no personal data).
        why: the reason given.
        details: JSON-able extra facts.
        now: the entry's time (default: now).
        prefix: the audit prefix (``security.audit_prefix``).

    Raises:
        AuditError: a required field is empty or not JSON-able.
    """
    if not isinstance(action, str) or not _ACTION.match(action):
        raise AuditError(f"audit action {action!r}: use a lower-case name such as {', '.join(ACTIONS[:4])}")
    for name, value in (("who", who), ("what", what), ("why", why)):
        if not isinstance(value, str) or not value.strip():
            raise AuditError(f"audit entry for {action!r}: {name!r} is empty; say {name} (it is the point of the log)")
    moment = (_when(now) or utcnow()).astimezone(dt.timezone.utc)
    entry = {"action": action, "who": who, "when": moment.isoformat(timespec="microseconds").replace("+00:00", "Z"),
             "what": what, "why": why, "details": dict(details or {})}
    try:
        body = json.dumps(entry, sort_keys=True, ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise AuditError(f"audit entry for {action!r}: details are not JSON-able ({exc})") from None
    while True:
        key = f"{prefix.rstrip('/')}/{moment:%Y/%m/%d}/{_stamp(moment)}-{uuid.uuid4().hex}.json"
        if store.put(key, body, if_none_match=True):
            return key


def audit_hook(store: ObjectStore, *, prefix: str = "audit", who: str = "pipeline") -> Callable[[Mapping[str, Any]], str]:
    """A callable that other stages pass as ``audit=``: it takes one dict and appends it.

    The dict needs ``action``; ``who`` defaults to ``who``, ``what``/``why`` to ``"-"``; ``when`` is
    the write time; every other key goes into ``details``.
    """
    def record(entry: Mapping[str, Any]) -> str:
        if not isinstance(entry, Mapping) or "action" not in entry:
            raise AuditError(f"audit hook: expected a dict with an 'action', got {entry!r}")
        details = dict(entry.get("details") or {})
        details.update({k: v for k, v in entry.items() if k not in _FIELDS})
        if entry.get("when"):
            details["event_when"] = entry["when"]  # the caller's own time; the entry's `when` is the write time
        # Promotion/rollback records (pipelines.artifacts) carry no `what`: name the model instead.
        what = entry.get("what") or " ".join(str(entry[k]) for k in ("domain", "version", "artifact_id")
                                             if entry.get(k)) or "-"
        return write_audit(store, action=str(entry["action"]), who=str(entry.get("who") or who),
                           what=str(what), why=str(entry.get("why") or "-"), details=details, prefix=prefix)

    return record


def _day_prefixes(prefix: str, since: dt.datetime | None, until: dt.datetime | None) -> list[str]:
    """The day folders to list: by date when the range is bounded, else every folder there is."""
    root = prefix.rstrip("/") + "/"
    if since is not None and until is not None and (until - since).days <= 400:
        day, last = since.date(), until.date()
        out = []
        while day <= last:
            out.append(f"{root}{day:%Y/%m/%d}/")
            day += dt.timedelta(days=1)
        return out
    return [root]


def read_audit(store: ObjectStore, *, action: str | Iterable[str] | None = None, who: str | None = None,
               since: str | dt.datetime | dt.date | None = None, until: str | dt.datetime | dt.date | None = None,
               what_contains: str | None = None, prefix: str = "audit") -> list[dict]:
    """Entries matching every filter given, oldest first; each carries its ``key``.

    Args:
        store: the object store.
        action: one action or several.
        who: exact actor.
        since: entries at or after this time (a date means its midnight UTC).
        until: entries before this time.
        what_contains: substring of ``what``.
        prefix: the audit prefix.
    """
    actions = {action} if isinstance(action, str) else set(action) if action else None
    start, end = _when(since), _when(until)
    out = []
    for folder in _day_prefixes(prefix, start, end):
        for info in store.list(folder):
            if not info.key.endswith(".json"):
                continue
            entry = json.loads(store.get(info.key))
            moment = _when(entry["when"])
            if (actions and entry["action"] not in actions) or (who and entry["who"] != who) \
                    or (start and moment < start) or (end and moment >= end) \
                    or (what_contains and what_contains not in entry["what"]):
                continue
            out.append({**entry, "key": info.key})
    return sorted(out, key=lambda e: (e["when"], e["key"]))


def prune_audit(store: ObjectStore, *, older_than_days: int, now: dt.datetime | None = None,
                prefix: str = "audit", retention_days: int = MIN_AUDIT_RETENTION_DAYS) -> int:
    """Delete entries older than ``older_than_days`` (whole days by the key's date); return how many.

    Raises:
        AuditError: ``older_than_days`` is below the retention (``security.audit_retention_days``,
            never below 180).
    """
    floor = max(retention_days, MIN_AUDIT_RETENTION_DAYS)
    if not isinstance(older_than_days, int) or older_than_days < floor:
        raise AuditError(f"prune_audit(older_than_days={older_than_days!r}) refused: audit entries are kept at "
                         f"least {floor} days (security.audit_retention_days)")
    cutoff = ((_when(now) or utcnow()) - dt.timedelta(days=older_than_days)).astimezone(dt.timezone.utc)
    root = prefix.rstrip("/") + "/"
    deleted = 0
    for info in list(store.list(root)):
        parts = info.key[len(root):].split("/")
        if len(parts) != 4 or not info.key.endswith(".json"):
            continue
        try:
            moment = dt.datetime.strptime(parts[3][:len("YYYYMMDDTHHMMSSffffffZ")], "%Y%m%dT%H%M%S%fZ")
        except ValueError:
            continue
        if moment.replace(tzinfo=dt.timezone.utc) < cutoff:
            store.delete(info.key)
            deleted += 1
    return deleted
