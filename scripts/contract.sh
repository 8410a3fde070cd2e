#!/usr/bin/env bash
# The API contract, tried from outside as clients and gateways see it. Starts keel-api
# (a debug build; APP_ENV=test, so an operation answering a status its document omits
# answers 500) on a fresh database, then:
#   1. schemathesis against /openapi.json: every phase, every check, each run bounded by
#      CONTRACT_MAX_TIME seconds (default 60); once signed in as an ordinary user, once
#      as a superuser, so guarded operations are exercised past 401 and 403;
#   2. the TypeScript and Python clients scripts/clients.sh generates, unmodified: each
#      registers, signs in, refreshes, reads /auth/me and signs out.
# Any failure fails the script; schemathesis's reports land in target/contract/.
# scripts/test.sh runs it after the suites.
#
#   bash scripts/contract.sh
#   CONTRACT_SEED=123 bash scripts/contract.sh     # replay a run's seed
#
# Needs PostgreSQL (TEST_DATABASE_URL, as scripts/test.sh), Python 3 and Node.js 20+.
set -euo pipefail
cd "$(dirname "$0")/.."
me=contract.sh
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

command -v psql >/dev/null || fail "psql not found: apt-get install postgresql-client"
command -v curl >/dev/null || fail "curl not found: apt-get install curl"
pg_url=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
psql "$pg_url" -qAtc 'SELECT 1' >/dev/null 2>&1 || fail "PostgreSQL does not answer at $pg_url"
python_tools
node_tools

say "building keel-api and keel-admin"
cargo build --quiet --locked --bin keel-api --bin keel-admin

reports=$PWD/target/contract
work=$(mktemp -d)
db=keel_contract_$$
rm -rf "$reports" && mkdir -p "$reports"
api_pid=
cleanup() {
  set +e
  [[ -n $api_pid ]] && kill "$api_pid" 2>/dev/null && wait "$api_pid" 2>/dev/null
  psql "$pg_url" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

psql "$pg_url" -qc "CREATE DATABASE $db" >/dev/null
port=$("$py_tools/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base=http://127.0.0.1:$port
# Memory cache and in-process tasks (no REDIS_URL/AMQP_URL): the HTTP surface is the
# same. Sign-in limits are out of the way, since the fuzzer signs in again and again.
export APP_ENV=test APP_PORT=$port LOG_LEVEL=warn LOG_FORMAT=json \
  DATABASE_URL=${pg_url%/*}/$db REDIS_URL= AMQP_URL= SMTP_HOST= S3_BUCKET= \
  MAIL_DIR=$work/mail STORAGE_DIR=$work/storage \
  LOGIN_MAX_FAILURES_PER_ACCOUNT=1000000 LOGIN_MAX_FAILURES_PER_IP=1000000 REGISTER_MAX_PER_IP=1000000

admin_email=admin@contract.example.com user_email=user@contract.example.com
password="the contract run's password"
./target/debug/keel-admin migrate >/dev/null
echo "$password" | ./target/debug/keel-admin create-admin --email "$admin_email" --password-stdin >/dev/null

./target/debug/keel-api >"$reports/keel-api.log" 2>&1 &
api_pid=$!
for _ in $(seq 100); do
  curl -fs "$base/health/live" >/dev/null 2>&1 && break
  kill -0 "$api_pid" 2>/dev/null || { cat "$reports/keel-api.log" >&2; fail "keel-api exited at start"; }
  sleep 0.2
done
curl -fs "$base/health/live" >/dev/null || fail "keel-api did not answer on $base (see $reports/keel-api.log)"
curl -fsS -o /dev/null -H 'content-type: application/json' \
  -d "{\"email\":\"$user_email\",\"password\":\"$password\"}" "$base/api/v1/auth/register" \
  || fail "could not register $user_email"

# fuzz AS EMAIL: one schemathesis run signed in as EMAIL.
failed=()
fuzz() {
  local as=$1 started=$SECONDS
  say "schemathesis as $as (${CONTRACT_MAX_TIME:-60} s)"
  if ! KEEL_CONTRACT_URL=$base KEEL_CONTRACT_EMAIL=$2 KEEL_CONTRACT_PASSWORD=$password \
    PYTHONPATH=scripts/contract SCHEMATHESIS_HOOKS=hooks PYTHONDONTWRITEBYTECODE=1 \
    HYPOTHESIS_STORAGE_DIRECTORY=$PWD/target/schemathesis/hypothesis \
    "$py_tools/bin/schemathesis" --config-file scripts/contract/schemathesis.toml \
    run "$base/openapi.json" \
    --phases examples,coverage,fuzzing,stateful --checks all \
    --max-time "${CONTRACT_MAX_TIME:-60}" --workers 1 ${CONTRACT_SEED:+--seed "$CONTRACT_SEED"} \
    --report junit --report-dir "$reports/$as" --output-truncate false --output-sanitize false --no-color \
    >"$reports/$as.txt" 2>&1; then
    failed+=("schemathesis as $as")
    cat "$reports/$as.txt" >&2
  fi
  say "schemathesis as $as: $(grep -E '^=+ .* in [0-9.]+s =+$' "$reports/$as.txt" | tail -1 | tr -s '=') ($(grep -E '^ +[0-9]+ generated' "$reports/$as.txt" | tail -1 | xargs); $((SECONDS - started)) s)"
}
fuzz user "$user_email"
fuzz superuser "$admin_email"

say "generated clients"
bash scripts/clients.sh "$base/openapi.json" "$work/clients"
ts=$work/clients/typescript
cp scripts/clients/flow.ts scripts/clients/tsconfig.json "$ts/"
echo '{"type": "module"}' >"$ts/package.json"
ln -s "$PWD/$node_tools_dir/node_modules" "$ts/node_modules"
if ! (cd "$ts" && ./node_modules/.bin/tsc -p . && node dist/flow.js "$base"); then
  failed+=("the TypeScript client")
fi
"$py_tools/bin/python" scripts/clients/flow.py "$base" "$work/clients/python" || failed+=("the Python client")

if ((${#failed[@]})); then
  fail "the contract is broken: ${failed[*]} failed (reports in $reports)"
fi
say "the contract holds: schemathesis found nothing as user or superuser, both clients completed the flow ($SECONDS s in all)"
