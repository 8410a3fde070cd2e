#!/usr/bin/env bash
# Load benchmark for keel-api: a release build against a fresh database, driven by wrk
# on the same machine. Reports req/s, p50 and p99 for /health/live, /api/v1/auth/me and
# a users list page at 64 connections; login p50/p99 with 8 clients; /health/live p99
# idle and while logins hammer argon2; login latency one client at a time for a right
# password, a wrong one and an unknown email; and keel-api's peak RSS.
#
#   scripts/bench.sh                      # defaults: 10 s per run
#   BENCH_DURATION=30s scripts/bench.sh
#
# Needs: wrk (apt-get install wrk), psql, curl, python3, PostgreSQL on
# BENCH_PG (default postgres://postgres@127.0.0.1:5432).
set -euo pipefail
cd "$(dirname "$0")/.."

PG="${BENCH_PG:-postgres://postgres@127.0.0.1:5432}"
DB_NAME="keel_bench"
PORT="${BENCH_PORT:-18080}"
DURATION="${BENCH_DURATION:-10s}"
BASE="http://127.0.0.1:${PORT}"
WORK="$(mktemp -d)"
EMAIL="bench-admin@example.com"
PASSWORD="bench password 0123"

for tool in wrk psql curl python3; do
  command -v "$tool" >/dev/null || {
    echo "bench: $tool is missing (wrk: apt-get install wrk; psql: apt-get install postgresql-client)" >&2
    exit 1
  }
done
psql "$PG/postgres" -qAtc 'SELECT 1' >/dev/null 2>&1 || {
  echo "bench: PostgreSQL is not reachable at $PG (start it, or set BENCH_PG)" >&2
  exit 1
}

echo "bench: building release binaries" >&2
cargo build --release --quiet --bin keel-api --bin keel-admin

psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" >/dev/null
psql "$PG/postgres" -qc "CREATE DATABASE $DB_NAME" >/dev/null
export DATABASE_URL="$PG/$DB_NAME"
export APP_PORT="$PORT" LOG_LEVEL=warn DATABASE_POOL_SIZE=20 \
  LOGIN_MAX_FAILURES_PER_IP=1000000 LOGIN_MAX_FAILURES_PER_ACCOUNT=1000000

./target/release/keel-admin migrate 2>/dev/null
echo "$PASSWORD" | ./target/release/keel-admin create-admin --email "$EMAIL" --password-stdin >/dev/null 2>&1

./target/release/keel-api >"$WORK/api.log" 2>&1 &
API_PID=$!
trap 'kill $API_PID 2>/dev/null; wait $API_PID 2>/dev/null; psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" >/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 50); do
  curl -fs "$BASE/health/live" >/dev/null 2>&1 && break
  sleep 0.1
done

# Fifty more accounts so the list page has rows to page through.
for i in $(seq 1 50); do
  curl -fs -o /dev/null -H 'content-type: application/json' \
    -d "{\"email\":\"user$i@example.com\",\"password\":\"$PASSWORD\"}" "$BASE/api/v1/auth/register"
done
TOKEN=$(curl -fs -H 'content-type: application/json' \
  -d "{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}" "$BASE/api/v1/auth/login" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')

# login_script NAME EMAIL PASSWORD: a wrk script that posts these credentials.
login_script() {
  cat >"$WORK/$1.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"email":"$2","password":"$3"}'
wrk.headers["Content-Type"] = "application/json"
LUA
}
login_script login "$EMAIL" "$PASSWORD"
login_script wrong_password "$EMAIL" "not the password 0123"
login_script unknown_email "nobody@example.com" "not the password 0123"

# run NAME CONNECTIONS URL [wrk args...] -> prints "NAME req/s p50 p99" and saves the report
run() {
  local name=$1 conns=$2 url=$3
  shift 3
  wrk -t2 -c"$conns" -d"$DURATION" --latency "$@" "$url" >"$WORK/$name.txt"
  python3 - "$name" "$WORK/$name.txt" <<'PY'
import re, sys
name, text = sys.argv[1], open(sys.argv[2]).read()
def ms(label):
    m = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s)" % label, text, re.M)
    v, unit = float(m.group(1)), m.group(2)
    return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
extra = f"  (non-2xx: {non2xx.group(1)})" if non2xx else ""
print(f"{name:<28} {rps:>10.0f} req/s   p50 {ms('50'):>7.2f} ms   p99 {ms('99'):>7.2f} ms{extra}")
PY
}

echo "bench: $(nproc) cores, wrk -t2, $DURATION per run" >&2
run "health_live_c64" 64 "$BASE/health/live"
run "me_c64" 64 "$BASE/api/v1/auth/me" -H "Authorization: Bearer $TOKEN"
run "users_list_c64" 64 "$BASE/api/v1/users?page=1&size=20" -H "Authorization: Bearer $TOKEN"
run "health_live_idle_c8" 8 "$BASE/health/live"
# Logins (argon2) from 8 clients, and /health/live measured while they run.
run "login_c8" 8 "$BASE/api/v1/auth/login" -s "$WORK/login.lua" &
LOGIN=$!
sleep 1
run "health_live_under_login_c8" 8 "$BASE/health/live"
wait $LOGIN

# One client at a time: an unknown email must cost what a wrong password costs.
run "login_ok_c1" 1 "$BASE/api/v1/auth/login" -t1 -s "$WORK/login.lua"
run "login_wrong_password_c1" 1 "$BASE/api/v1/auth/login" -t1 -s "$WORK/wrong_password.lua"
run "login_unknown_email_c1" 1 "$BASE/api/v1/auth/login" -t1 -s "$WORK/unknown_email.lua"

echo "keel-api peak RSS: $(awk '/VmHWM/ {printf "%.1f MB", $2/1024}' /proc/$API_PID/status)"
