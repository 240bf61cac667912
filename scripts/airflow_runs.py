"""Wait for weekly_ingest runs through the Airflow REST API and report their outcome.

Used by scripts/demo.sh; also handy on call:
    python scripts/airflow_runs.py --dag weekly_ingest --from 2026-10-04 --to 2026-10-25
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

TERMINAL = {"success", "failed"}


def _request(base: str, method: str, path: str, token: str | None = None, body: dict | None = None) -> dict:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{base}{path}", data=data, headers=headers, method=method)
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read() or b"{}")


def token(base: str, user: str, password_file: Path) -> str:
    passwords = json.loads(password_file.read_text())
    return _request(base, "POST", "/auth/token", body={"username": user, "password": passwords[user]})["access_token"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dag", default="weekly_ingest")
    p.add_argument("--from", dest="start", required=True, help="first logical date (YYYY-MM-DD)")
    p.add_argument("--to", dest="end", required=True, help="last logical date (YYYY-MM-DD), inclusive")
    p.add_argument("--timeout", type=int, default=1800, help="seconds to wait (default 1800)")
    p.add_argument("--base", default=os.environ.get("AIRFLOW__API__BASE_URL", "http://127.0.0.1:8080"))
    p.add_argument("--user", default="admin")
    home = Path(os.environ.get("AIRFLOW_HOME", ".local/airflow"))
    p.add_argument("--password-file", type=Path, default=home / "simple_auth_manager_passwords.json.generated")
    args = p.parse_args(argv)
    try:
        tok = token(args.base, args.user, args.password_file)
    except (OSError, KeyError, ValueError) as exc:
        print(f"error: cannot log in to {args.base} as {args.user}: {exc}", file=sys.stderr)
        return 2
    query = (f"/api/v2/dags/{args.dag}/dagRuns?logical_date_gte={args.start}T00:00:00Z"
             f"&logical_date_lte={args.end}T00:00:00Z&order_by=logical_date&limit=100")
    deadline = time.monotonic() + args.timeout
    last = ""
    while True:
        runs = _request(args.base, "GET", query, tok)["dag_runs"]
        line = ", ".join(f"{r['logical_date'][:10]}={r['state']}" for r in runs) or "no runs yet"
        if line != last:
            print(f"[{time.strftime('%H:%M:%S')}] {args.dag}: {line}", flush=True)
            last = line
        if runs and all(r["state"] in TERMINAL for r in runs):
            break
        if time.monotonic() > deadline:
            print(f"error: runs not finished after {args.timeout}s; see the Airflow UI", file=sys.stderr)
            return 1
        time.sleep(5)
    failed = [r for r in runs if r["state"] != "success"]
    for run in failed:
        tis = _request(args.base, "GET", f"/api/v2/dags/{args.dag}/dagRuns/{urllib.request.quote(run['dag_run_id'], safe='')}"
                       "/taskInstances?limit=200", tok)["task_instances"]
        bad = sorted({f"{t['task_id']}[{t['map_index']}]" for t in tis if t["state"] not in ("success", "skipped")})
        print(f"  {run['dag_run_id']} failed: {', '.join(bad)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
