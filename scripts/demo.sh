#!/usr/bin/env bash
# The main job on the bundled sample, from a fresh clone: install, start SeaweedFS and Airflow, load the
# sample into the landing prefix, run weekly_ingest for the sample's complete weeks, DP-fine-tune every
# domain's model (domain_finetune) and promote it through the gate, and show the results.
# Safe to run again: services already up are kept, landing files are create-only, finished weeks are
# not re-run, and re-publishing unchanged inputs writes nothing.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
case "${1:-}" in
  -h|--help)
    sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'
    echo; echo "Usage: scripts/demo.sh        (stop everything with: scripts/services.sh stop)"; exit 0 ;;
  "") ;;
  *) echo "error: unknown argument '$1' (try --help)" >&2; exit 2 ;;
esac
# shellcheck source=scripts/lib.sh
source "$HERE/lib.sh"

log "1/6 installing (venv from requirements.txt; skipped when up to date)"
bash "$HERE/bootstrap.sh"
log "2/6 starting SeaweedFS and Airflow"
bash "$HERE/services.sh" start all
load_env
airflow_env
cd "$ROOT"

log "3/6 loading the bundled sample into s3://$PIPELINE_BUCKET/landing/"
python -m pipelines sample load
if [ ! -f "$STATE_DIR/labellers/.trained" ]; then
  log "    training the auto-labellers on the sample (MiniLM heads for legal/medical/finance, a tiny Chinese BERT; ~3 min, once)"
  HF_HUB_OFFLINE=1 python -m pipelines label train-sample --out "$STATE_DIR/labellers" >/dev/null
  touch "$STATE_DIR/labellers/.trained"
fi
python -m pipelines label publish-all --dir "$STATE_DIR/labellers"

read -r FROM TO < <(python - <<'PY'
import json
weeks = json.load(open("data/sample/MANIFEST.json"))["complete_weeks"]
starts = sorted(w["start"] if isinstance(w, dict) else w.split("_")[0] for w in weeks)
print(starts[0], starts[-1])
PY
)
log "4/6 running weekly_ingest for the complete weeks starting $FROM .. $TO (airflow backfill)"
airflow dags unpause weekly_ingest >/dev/null
# SQLite (the local default) allows one writer: under load the CLI can meet "database is locked" from
# the scheduler's writes. A create that met the lock can leave a backfill with some or none of its runs, which
# blocks the next create until it finishes: wait for a running backfill (up to BACKFILL_WAIT_MINUTES, default
# 60), then create again (--reprocess-behavior failed creates only the runs still missing).
wait_until=$(( $(date +%s) + ${BACKFILL_WAIT_MINUTES:-60} * 60 ))
locked=0
while true; do
  if out=$(airflow backfill create --dag-id weekly_ingest --from-date "$FROM" --to-date "$TO" \
        --reprocess-behavior failed --max-active-runs 2 2>&1); then
    break
  elif grep -q "Another backfill is running" <<<"$out" && [ "$(date +%s)" -lt "$wait_until" ]; then
    log "    another weekly_ingest backfill is running: waiting 30 s for it to finish"
    sleep 30
  elif grep -qi "no run\|already" <<<"$out"; then
    log "    nothing new to run: $(grep -i 'no run\|already' <<<"$out" | tail -1)"; break
  elif grep -qi "database is locked" <<<"$out" && [ "$locked" -lt 40 ]; then
    locked=$((locked + 1)); log "    the metadata DB is busy (SQLite); retrying in 5 s"; sleep 5
  else
    printf '%s\n' "$out" | tail -20 >&2; die "airflow backfill create failed"
  fi
done
python "$HERE/airflow_runs.py" --dag weekly_ingest --from "$FROM" --to "$TO" || die "some runs failed: open the UI (below) for the logs"

log "5/6 DP fine-tuning every domain (domain_finetune: budget check, Opacus training, artifact, gate, promotion)"
# A ledger from before per-record accounting gets its record sets (idempotent; a fresh store has nothing to do).
python -m pipelines privacy migrate >/dev/null \
  || die "privacy migrate failed: see python -m pipelines privacy migrate --dry-run"
SLOTS=$(python -c "from pipelines.config import load_config; from pipelines.forecast import forecast_slots
c = load_config(); print(' '.join(sorted(c.domains) + forecast_slots(config=c)))") || die "could not list the domains"
for domain in $SLOTS; do
  # A domain with no public sample text (code: bring your own base, model import-base) is refused with exit 1
  # and a "refused:" line; domain_finetune then skips it. Anything else is a failure.
  if ! err=$(python -m pipelines train build-domain-base --domain "$domain" --if-missing --who demo 2>&1 >/dev/null); then
    case "$err" in
      *"refused: $domain: the bundled sample has no public text"*) log "    $domain: no public base to build (import one with: python -m pipelines model import-base)" ;;
      *) printf '%s\n' "$err" | tail -20 >&2; die "build-domain-base --domain $domain failed" ;;
    esac
  fi
done
airflow pools set gpu "${PIPELINE_GPU_SLOTS:-1}" "GPU training slots (one task per GPU)" >/dev/null
airflow dags unpause domain_finetune >/dev/null
TRAIN_DATE=$(date -d "$TO + 7 days" +%F)
for attempt in 1 2 3 4 5 6; do
  if out=$(airflow dags trigger domain_finetune --logical-date "${TRAIN_DATE}T00:00:00+00:00" \
        --conf '{"domain": "", "epsilon": null, "dry_run": false}' 2>&1); then
    break
  elif grep -qi "already exists\|duplicate\|unique" <<<"$out"; then
    # A re-run of the demo: keep the run, re-run only what failed in it (finished domains are not retrained).
    log "    domain_finetune already has a run for $TRAIN_DATE: clearing its failed tasks, if any"
    airflow tasks clear domain_finetune -s "$TRAIN_DATE" -e "$TRAIN_DATE" --only-failed --yes >/dev/null 2>&1 || true
    break
  elif grep -qi "database is locked" <<<"$out" && [ "$attempt" -lt 40 ]; then
    log "    the metadata DB is busy (SQLite); retrying in 5 s"; sleep 5
  else
    printf '%s\n' "$out" | tail -20 >&2; die "airflow dags trigger domain_finetune failed"
  fi
done
python "$HERE/airflow_runs.py" --dag domain_finetune --from "$TRAIN_DATE" --to "$TRAIN_DATE" \
  || die "domain_finetune failed: open the UI (below) for the logs"

log "6/6 results"
python - <<'PY'
import json, subprocess, sys
rows = json.loads(subprocess.run([sys.executable, "-m", "pipelines", "partitions"], capture_output=True, text=True, check=True).stdout)
print(f"{'domain':18} {'interval':23} {'in':>5} {'kept':>5} {'dup':>4} {'quar':>4}  version")
for r in rows:
    c = r["records"]
    print(f"{r['domain']:18} {r['interval']:23} {c['in']:5} {c['kept']:5} {c['duplicate']:4} {c['quarantined']:4}  {r['version']}")
PY
echo
python - <<'PY'
import json, subprocess, sys
from pipelines.artifacts.gate import TRIVIAL_METRICS
from pipelines.config import load_config
from pipelines.forecast import forecast_slots, model_slot

def model(*args):
    out = subprocess.run([sys.executable, "-m", "pipelines", "model", *args], capture_output=True, text=True)
    return json.loads(out.stdout) if out.returncode == 0 and out.stdout.strip() else None

def fmt(value):
    return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)

config = load_config()
print(f"{'domain':18} {'model':18} {'version':8} {'metric':>10} {'value':>9} {'baseline':>9} {'epsilon':>8}  result")
for domain in sorted(config.domains) + forecast_slots(config=config):
    shown = model("show", "--domain", domain) or {}
    status = "promoted"
    if not shown.get("production"):
        # No production: show the newest candidate the gate refused, with its numbers.
        candidates = [a for a in (model("list", "--domain", domain) or []) if a.get("kind") != "base"]
        if not candidates:
            print(f"{domain:18} (no model trained)"); continue
        shown = model("show", "--domain", domain, "--artifact", candidates[-1]["artifact_id"]) or {}
        status = "REFUSED by the gate"
    manifest = shown.get("artifact") or {}
    metrics = manifest.get("metrics") or {}
    name, higher, margin = TRIVIAL_METRICS.get(model_slot(config=config, name=domain).task, ("metric", True, 0.0))
    value, trivial = metrics.get(name), (metrics.get("trivial") or {}).get(name)
    if status != "promoted" and isinstance(value, (int, float)) and isinstance(trivial, (int, float)):
        need = trivial + margin if higher else trivial * (1 - margin)
        status += f": {name} {value:.4g} vs baseline {trivial:.4g} (needs {'>=' if higher else '<='} {need:.4g})"
    eps = (manifest.get("dp") or {}).get("epsilon")
    print(f"{domain:18} {manifest.get('artifact_id', '?'):18} {manifest.get('version', '?'):8} {name:>10} "
          f"{fmt(value):>9} {fmt(trivial):>9} {fmt(eps if eps is None else round(eps, 4)):>8}  {status}")
print("baseline: what a model that learned nothing scores on the same held-out split (majority class, unigram "
      "perplexity, last value); the gate promotes a first model only above it by the configured margin.")
PY
cat <<MSG

Where the results are (object store ${PIPELINE_S3_ENDPOINT_URL}, bucket ${PIPELINE_BUCKET}; credentials in .local/credentials.env):
  curated partitions  s3://${PIPELINE_BUCKET}/curated/<domain>/<interval>/v-<version>/data.parquet (+ manifest.json)
  commit records      s3://${PIPELINE_BUCKET}/curated/<domain>/<interval>/_commits/
  quarantine          s3://${PIPELINE_BUCKET}/quarantine/<domain>/<interval>/v-<version>/{quarantine,duplicates}.jsonl
  dedup index         s3://${PIPELINE_BUCKET}/index/<domain>/
  models              s3://${PIPELINE_BUCKET}/models/<domain>/artifacts/<id>/ (manifest.json, model_card.md, *.svg)
  production pointer  s3://${PIPELINE_BUCKET}/models/<domain>/promotions/ (newest record wins)
  privacy ledger      s3://${PIPELINE_BUCKET}/privacy/ledger/<domain>/   (python -m pipelines privacy budget --domain medical)
Serve the promoted models: scripts/serve.sh
Inspect:  source scripts/lib.sh && load_env && .venv/bin/python -m pipelines show --domain legal --interval ${FROM}_$(date -d "$FROM + 7 days" +%F)
Airflow UI: ${AIRFLOW__API__BASE_URL}  user admin, password in ${AIRFLOW_HOME}/simple_auth_manager_passwords.json.generated
Stop everything: scripts/services.sh stop
MSG
