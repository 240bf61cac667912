# shellcheck shell=bash disable=SC2034  # (variables here are used by the scripts that source this file)
# Shared helpers for the project's scripts. Source it, do not run it:
#
#   source scripts/lib.sh      # sets ROOT, VENV, STATE_DIR, PATH, ports; defines the helpers
#   load_env                   # creates (first use) and exports <state>/credentials.env
#   airflow_env                # exports the Airflow settings of this project (calls load_env)
#
# Environment knobs (all optional):
#   PIPELINE_STATE_DIR          runtime state folder (default <root>/.local)
#   PIPELINE_S3_PORT            SeaweedFS S3 port            (default 8333)
#   PIPELINE_WEED_MASTER_PORT   SeaweedFS master port        (default 9333)
#   PIPELINE_WEED_VOLUME_PORT   SeaweedFS volume port        (default 9340)
#   PIPELINE_WEED_FILER_PORT    SeaweedFS filer port         (default 8888)
#   PIPELINE_WEED_ADMIN_PORT    SeaweedFS admin port         (default 23646)
#   AIRFLOW_API_PORT            Airflow api-server port      (default 8080)
#   PIPELINE_AIRFLOW_WORKER_LOG_PORT   Airflow worker log server  (default 8793; binds all interfaces)
#   PIPELINE_AIRFLOW_TRIGGER_LOG_PORT  Airflow trigger log server (default 8794; binds all interfaces)
#   PIPELINE_BUCKET             bucket created at start      (default mlops-data)
#   PIPELINE_AIRFLOW_SSL_CERT   opt-in: PEM certificate (chain) of the Airflow api-server; with the key,
#   PIPELINE_AIRFLOW_SSL_KEY      the api-server speaks HTTPS only (TLS 1.3+) and every URL becomes https
#   PIPELINE_AIRFLOW_TLS_MIN_VERSION  1.3 (default) or 1.2: the oldest TLS version the api-server accepts
#   PIPELINE_AIRFLOW_AUTH       simple (default: SimpleAuthManager) or fab (FAB auth manager, roles from
#                               deploy/airflow-roles.json; needs apache-airflow-providers-fab)
# SeaweedFS also listens on each of its ports + 10000 (gRPC).
# While a service started by scripts/services.sh runs, the ports (and bucket) it was started
# with are read back from <state>/run/<service>.settings and win over the environment.

# Repo root = the folder that holds scripts/ (this file lives in <root>/scripts/).
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
VENV="$ROOT/.venv"
case ":$PATH:" in
  *":$VENV/bin:"*) ;;
  *) PATH="$VENV/bin:$PATH" ;;
esac
export ROOT VENV PATH

STATE_DIR="${PIPELINE_STATE_DIR:-$ROOT/.local}"
[[ "$STATE_DIR" == /* ]] || STATE_DIR="$PWD/$STATE_DIR"
CREDENTIALS_FILE="$STATE_DIR/credentials.env"
IDENTITIES_DIR="$STATE_DIR/identities"  # <component>/credentials.env (mode 600) + seaweedfs-s3.json
S3_IDENTITIES_CONFIG="$IDENTITIES_DIR/seaweedfs-s3.json"  # weed -s3.config: who may do what
WEED_DIR="$STATE_DIR/seaweedfs"
AIRFLOW_STATE_HOME="$STATE_DIR/airflow"
LOG_DIR="$STATE_DIR/logs"
RUN_DIR="$STATE_DIR/run"

# ---------------------------------------------------------------- messages
log()  { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
warn() { printf '[%s] WARNING: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die()  { printf '[%s] ERROR: %s\n' "$(date +%H:%M:%S)" "$*" >&2; exit 1; }

# ---------------------------------------------------------------- ports
# A running service keeps the settings it was started with: services.sh records them in
# $RUN_DIR/<service>.settings, and while that service runs they win over the environment, so
# that `status`, `stop`, load_env (credentials.env) and airflow_env always talk to the real ports.
SEAWEEDFS_SETTINGS=(PIPELINE_S3_PORT PIPELINE_WEED_MASTER_PORT PIPELINE_WEED_VOLUME_PORT
  PIPELINE_WEED_FILER_PORT PIPELINE_WEED_ADMIN_PORT PIPELINE_BUCKET)
AIRFLOW_SETTINGS=(AIRFLOW_API_PORT PIPELINE_AIRFLOW_WORKER_LOG_PORT PIPELINE_AIRFLOW_TRIGGER_LOG_PORT)

_pid_alive() {  # $1 = pid file
  local pid
  [[ -f "$1" ]] || return 1
  pid="$(tr -dc '0-9' <"$1" 2>/dev/null || true)"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null
}

# $1 = settings file, $2 = pid file of the service that wrote it
_adopt_running_settings() {
  local key value
  [[ -f "$1" ]] && _pid_alive "$2" || return 0
  while IFS='=' read -r key value; do
    [[ "$key" =~ ^[A-Z][A-Z0-9_]*$ && "$value" =~ ^[a-z0-9][a-z0-9.-]*$ ]] || continue
    if [[ -n "${!key:-}" && "${!key}" != "$value" ]]; then
      warn "ignoring $key=${!key} from the environment: the running service uses $key=$value ($1)"
    fi
    printf -v "$key" '%s' "$value"
  done <"$1"
}

# Records the current values of the named settings for service $1.
record_settings() {
  local name="$1" key; shift
  mkdir -p "$RUN_DIR"
  for key in "$@"; do printf '%s=%s\n' "$key" "${!key}"; done >"$RUN_DIR/$name.settings"
}

_adopt_running_settings "$RUN_DIR/seaweedfs.settings" "$RUN_DIR/seaweedfs.pid"
_adopt_running_settings "$RUN_DIR/airflow.settings" "$RUN_DIR/airflow-api-server.pid"

# TLS and auth-manager settings of a running Airflow (files paths do not fit the port pattern above,
# hence their own file). An empty value is recorded too: "started without TLS" also wins over the
# environment, so status/stop talk to the server in the scheme it really speaks.
AIRFLOW_SECURITY_SETTINGS=(PIPELINE_AIRFLOW_SSL_CERT PIPELINE_AIRFLOW_SSL_KEY PIPELINE_AIRFLOW_TLS_MIN_VERSION
  PIPELINE_AIRFLOW_AUTH)
_adopt_running_security_settings() {
  local file="$RUN_DIR/airflow-security.settings" key value
  [[ -f "$file" ]] && _pid_alive "$RUN_DIR/airflow-api-server.pid" || return 0
  local allowed='^(/[A-Za-z0-9._/+@-]*|[a-z0-9.]*)$'  # an absolute path, a word, or empty
  while IFS='=' read -r key value; do
    [[ " ${AIRFLOW_SECURITY_SETTINGS[*]} " == *" $key "* && "$value" =~ $allowed ]] || continue
    if [[ -n "${!key:-}" && "${!key}" != "$value" ]]; then
      warn "ignoring $key=${!key} from the environment: the running Airflow uses $key=${value:-(unset)} ($file)"
    fi
    printf -v "$key" '%s' "$value"
  done <"$file"
}
_adopt_running_security_settings
PIPELINE_AIRFLOW_SSL_CERT="${PIPELINE_AIRFLOW_SSL_CERT:-}"
PIPELINE_AIRFLOW_SSL_KEY="${PIPELINE_AIRFLOW_SSL_KEY:-}"
PIPELINE_AIRFLOW_TLS_MIN_VERSION="${PIPELINE_AIRFLOW_TLS_MIN_VERSION:-1.3}"
PIPELINE_AIRFLOW_AUTH="${PIPELINE_AIRFLOW_AUTH:-simple}"

PIPELINE_S3_PORT="${PIPELINE_S3_PORT:-8333}"
PIPELINE_WEED_MASTER_PORT="${PIPELINE_WEED_MASTER_PORT:-9333}"
PIPELINE_WEED_VOLUME_PORT="${PIPELINE_WEED_VOLUME_PORT:-9340}"
PIPELINE_WEED_FILER_PORT="${PIPELINE_WEED_FILER_PORT:-8888}"
PIPELINE_WEED_ADMIN_PORT="${PIPELINE_WEED_ADMIN_PORT:-23646}"
AIRFLOW_API_PORT="${AIRFLOW_API_PORT:-8080}"
PIPELINE_AIRFLOW_WORKER_LOG_PORT="${PIPELINE_AIRFLOW_WORKER_LOG_PORT:-8793}"
PIPELINE_AIRFLOW_TRIGGER_LOG_PORT="${PIPELINE_AIRFLOW_TRIGGER_LOG_PORT:-8794}"
PIPELINE_BUCKET="${PIPELINE_BUCKET:-mlops-data}"
export PIPELINE_S3_PORT PIPELINE_WEED_MASTER_PORT PIPELINE_WEED_VOLUME_PORT \
  PIPELINE_WEED_FILER_PORT PIPELINE_WEED_ADMIN_PORT AIRFLOW_API_PORT PIPELINE_BUCKET \
  PIPELINE_AIRFLOW_WORKER_LOG_PORT PIPELINE_AIRFLOW_TRIGGER_LOG_PORT

_valid_port() {
  if ! [[ "$2" =~ ^[1-9][0-9]{0,4}$ ]] || (( $2 > 65535 )); then
    die "$1 must be a port number (1-65535), got '$2'"
  fi
}
check_ports_config() {
  _valid_port PIPELINE_S3_PORT "$PIPELINE_S3_PORT"
  _valid_port PIPELINE_WEED_MASTER_PORT "$PIPELINE_WEED_MASTER_PORT"
  _valid_port PIPELINE_WEED_VOLUME_PORT "$PIPELINE_WEED_VOLUME_PORT"
  _valid_port PIPELINE_WEED_FILER_PORT "$PIPELINE_WEED_FILER_PORT"
  _valid_port PIPELINE_WEED_ADMIN_PORT "$PIPELINE_WEED_ADMIN_PORT"
  _valid_port AIRFLOW_API_PORT "$AIRFLOW_API_PORT"
  _valid_port PIPELINE_AIRFLOW_WORKER_LOG_PORT "$PIPELINE_AIRFLOW_WORKER_LOG_PORT"
  _valid_port PIPELINE_AIRFLOW_TRIGGER_LOG_PORT "$PIPELINE_AIRFLOW_TRIGGER_LOG_PORT"
  check_airflow_security_config
}

# Validates the opt-in TLS/auth knobs (a no-op when none is set) and makes the file paths absolute.
check_airflow_security_config() {
  local name
  if [[ -n "${PIPELINE_AIRFLOW_SSL_CERT:-}" || -n "${PIPELINE_AIRFLOW_SSL_KEY:-}" ]]; then
    [[ -n "${PIPELINE_AIRFLOW_SSL_CERT:-}" && -n "${PIPELINE_AIRFLOW_SSL_KEY:-}" ]] ||
      die "PIPELINE_AIRFLOW_SSL_CERT and PIPELINE_AIRFLOW_SSL_KEY go together: set both (HTTPS) or neither (HTTP)"
    for name in PIPELINE_AIRFLOW_SSL_CERT PIPELINE_AIRFLOW_SSL_KEY; do
      [[ "${!name}" == /* ]] || printf -v "$name" '%s' "$PWD/${!name}"
      [[ -r "${!name}" ]] || die "$name=${!name}: no such readable file (a PEM file; see docs/SECURITY.md)"
    done
    export PIPELINE_AIRFLOW_SSL_CERT PIPELINE_AIRFLOW_SSL_KEY
  fi
  case "${PIPELINE_AIRFLOW_TLS_MIN_VERSION:-1.3}" in
    1.2|1.3) ;;
    *) die "PIPELINE_AIRFLOW_TLS_MIN_VERSION=$PIPELINE_AIRFLOW_TLS_MIN_VERSION: use 1.3 (default) or 1.2" ;;
  esac
  case "${PIPELINE_AIRFLOW_AUTH:-simple}" in
    simple|fab) ;;
    *) die "PIPELINE_AIRFLOW_AUTH=$PIPELINE_AIRFLOW_AUTH: use 'simple' (SimpleAuthManager, default) or 'fab' (roles)" ;;
  esac
}

# 0 when the Airflow api-server is to speak HTTPS.
airflow_tls_enabled() { [[ -n "${PIPELINE_AIRFLOW_SSL_CERT:-}" ]]; }

# http or https, as the api-server speaks.
airflow_scheme() { if airflow_tls_enabled; then printf https; else printf http; fi; }

require_venv() {
  [[ -x "$VENV/bin/python" ]] || die "no virtualenv at $VENV: run scripts/bootstrap.sh first"
}

# 0 when something listens on 127.0.0.1:$1.
port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# ---------------------------------------------------------------- credentials
_random_hex() {  # $1 = number of random bytes; prints 2*$1 hex chars
  od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'
}

_read_env_value() {  # $1 = file, $2 = key: prints the value of KEY=value (last one wins)
  local line value=""
  while IFS= read -r line || [[ -n "$line" ]]; do
    [[ "$line" == "$2="* ]] && value="${line#*=}"
  done <"$1"
  printf '%s' "$value"
}

# Creates $CREDENTIALS_FILE on first use with freshly generated S3 credentials and exports
# its content. The secrets are generated once and kept; the non-secret lines (endpoint,
# bucket, region) follow the current environment and the file is rewritten when they change.
load_env() {
  local key secret content tmp
  mkdir -p "$STATE_DIR" || die "cannot create state folder $STATE_DIR"
  chmod 700 "$STATE_DIR" 2>/dev/null || true
  if [[ ! -f "$CREDENTIALS_FILE" ]]; then
    key="PL$(_random_hex 9 | tr 'a-f' 'A-F')"   # 20 chars, like an AWS access key id
    secret="$(_random_hex 24)"                    # 48 hex chars = 192 random bits
    [[ ${#key} -eq 20 && ${#secret} -eq 48 ]] || die "could not read random bytes from /dev/urandom"
    tmp="$(mktemp "$STATE_DIR/.credentials.XXXXXX")" || die "cannot write in $STATE_DIR"
    chmod 600 "$tmp"
    printf 'AWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=%s\n' "$key" "$secret" >"$tmp"
    # ln fails when another process created the file meanwhile: then its credentials are used
    if ln "$tmp" "$CREDENTIALS_FILE" 2>/dev/null || { [[ ! -e "$CREDENTIALS_FILE" ]] && mv "$tmp" "$CREDENTIALS_FILE"; }; then
      log "Generated new S3 credentials in $CREDENTIALS_FILE" >&2
    fi
    rm -f "$tmp"
  fi
  key="$(_read_env_value "$CREDENTIALS_FILE" AWS_ACCESS_KEY_ID)"
  secret="$(_read_env_value "$CREDENTIALS_FILE" AWS_SECRET_ACCESS_KEY)"
  [[ -n "$key" && -n "$secret" ]] || die "$CREDENTIALS_FILE lacks AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY; remove it to generate new credentials (objects stored under the old ones stay in $WEED_DIR)"
  content="# Generated by scripts/lib.sh (load_env). Local development credentials; do not commit.
AWS_ACCESS_KEY_ID=$key
AWS_SECRET_ACCESS_KEY=$secret
AWS_DEFAULT_REGION=us-east-1
PIPELINE_S3_ENDPOINT_URL=http://127.0.0.1:${PIPELINE_S3_PORT}
PIPELINE_BUCKET=${PIPELINE_BUCKET}"
  if [[ "$(cat "$CREDENTIALS_FILE")" != "$content" ]]; then
    tmp="$(mktemp "$STATE_DIR/.credentials.XXXXXX")" || die "cannot write in $STATE_DIR"
    chmod 600 "$tmp"
    printf '%s\n' "$content" >"$tmp"
    mv -f "$tmp" "$CREDENTIALS_FILE"
  fi
  chmod 600 "$CREDENTIALS_FILE"
  export AWS_ACCESS_KEY_ID="$key" AWS_SECRET_ACCESS_KEY="$secret" AWS_DEFAULT_REGION=us-east-1
  export PIPELINE_S3_ENDPOINT_URL="http://127.0.0.1:${PIPELINE_S3_PORT}"
  export PIPELINE_BUCKET
  # Where pipelines.storage finds a component's own credentials (PIPELINE_S3_IDENTITY=serving, ...): only when
  # this store was started with them (services.sh generates them); a store started otherwise has one identity.
  if [ -f "$S3_IDENTITIES_CONFIG" ]; then
    export PIPELINE_S3_IDENTITIES_DIR="$IDENTITIES_DIR"
  else
    unset PIPELINE_S3_IDENTITIES_DIR
  fi
  unset AWS_SESSION_TOKEN AWS_PROFILE 2>/dev/null || true
}

# ---------------------------------------------------------------- S3 identities (least privilege)
# One identity per component (serving, ingestion, training, console; the policy is pipelines/identities.py),
# next to the admin identity of credentials.env, which keeps every right (bootstrap, tests, and any caller
# that names no identity). Generated once, mode 600, under $IDENTITIES_DIR; needs load_env first.
ensure_s3_identities() {
  local out
  out="$(PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$VENV/bin/python" -m pipelines.identities \
    --out "$IDENTITIES_DIR" --bucket "$PIPELINE_BUCKET" 2>&1)" || die "seaweedfs: could not write the S3 identities: $out"
}

# ---------------------------------------------------------------- airflow
# Exports everything an Airflow command of this project needs (CLI, services, tests, demo).
airflow_env() {
  load_env
  export AIRFLOW_HOME="$AIRFLOW_STATE_HOME"
  export AIRFLOW__CORE__DAGS_FOLDER="$ROOT/dags"
  export AIRFLOW__CORE__PLUGINS_FOLDER="$ROOT/plugins"
  export AIRFLOW__CORE__LOAD_EXAMPLES=False
  export AIRFLOW__CORE__EXECUTOR=LocalExecutor
  export AIRFLOW__CORE__PARALLELISM=4
  export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="admin:admin"
  export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE="$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated"
  export AIRFLOW__API__HOST=127.0.0.1
  export AIRFLOW__API__PORT="$AIRFLOW_API_PORT"
  export AIRFLOW__API__BASE_URL="http://127.0.0.1:${AIRFLOW_API_PORT}"
  export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://127.0.0.1:${AIRFLOW_API_PORT}/execution/"
  export AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT="$PIPELINE_AIRFLOW_WORKER_LOG_PORT"
  export AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT="$PIPELINE_AIRFLOW_TRIGGER_LOG_PORT"
  # Task logs can hold data: owner only (Airflow's defaults are 0o775 folders, 0o664 files).
  export AIRFLOW__LOGGING__FILE_TASK_HANDLER_NEW_FOLDER_PERMISSIONS=0o700
  export AIRFLOW__LOGGING__FILE_TASK_HANDLER_NEW_FILE_PERMISSIONS=0o600
  # The aws_default connection comes from the environment: nothing secret lands in the DB.
  AIRFLOW_CONN_AWS_DEFAULT="$(printf '{"conn_type": "aws", "login": "%s", "password": "%s", "extra": {"endpoint_url": "%s", "region_name": "%s"}}' \
    "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" "$PIPELINE_S3_ENDPOINT_URL" "$AWS_DEFAULT_REGION")"
  export AIRFLOW_CONN_AWS_DEFAULT
  if airflow_tls_enabled; then
    # Every component reads these: the api-server serves with them, and the task SDK of the workers
    # trusts the certificate file when it calls the execution API (a self-signed certificate works).
    export AIRFLOW__API__SSL_CERT="$PIPELINE_AIRFLOW_SSL_CERT"
    export AIRFLOW__API__SSL_KEY="$PIPELINE_AIRFLOW_SSL_KEY"
    export AIRFLOW__API__BASE_URL="https://127.0.0.1:${AIRFLOW_API_PORT}"
    export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="https://127.0.0.1:${AIRFLOW_API_PORT}/execution/"
  fi
  if [[ "${PIPELINE_AIRFLOW_AUTH:-simple}" == fab ]]; then
    export AIRFLOW__CORE__AUTH_MANAGER=airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager
  fi
  case ":${PYTHONPATH:-}:" in
    *":$ROOT:"*) ;;
    *) export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" ;;
  esac
}
