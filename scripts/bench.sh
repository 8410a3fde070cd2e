#!/usr/bin/env bash
# Load benchmark for keel-api: a release build against a fresh database, driven by wrk
# on the same machine. Reports req/s, p50 and p99 for /health/live, /api/v1/auth/me and
# a users list page at 64 connections; login p50/p99 with 8 clients; /health/live p99
# idle and while logins hammer argon2; filtered pages of a 1M-entry audit trail at random
# cursor depths (16 connections); the release-notes list; login latency one client at a time for a right
# password, a wrong one and an unknown email; keel-api's peak RSS; then /me, the
# release-notes list and the unread count with the cache on a private Redis, and /me
# while that Redis is shut down mid-run.
#
#   scripts/bench.sh                      # defaults: 10 s per run
#   BENCH_DURATION=30s scripts/bench.sh
#
# Needs: wrk (apt-get install wrk), psql, curl, python3, PostgreSQL on
# BENCH_PG (default postgres://postgres@127.0.0.1:5432); redis-server for the Redis runs
# (port BENCH_REDIS_PORT, default 16390).
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

me=bench
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
require wrk psql curl python3
require_postgres "$PG" BENCH_PG

echo "bench: building release binaries" >&2
cargo build --release --quiet --bin keel-api --bin keel-admin

psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" >/dev/null
psql "$PG/postgres" -qc "CREATE DATABASE $DB_NAME" >/dev/null
export DATABASE_URL="$PG/$DB_NAME"
export APP_PORT="$PORT" LOG_LEVEL=warn DATABASE_POOL_SIZE=20 \
  LOGIN_MAX_FAILURES_PER_IP=1000000 LOGIN_MAX_FAILURES_PER_ACCOUNT=1000000

./target/release/keel-admin migrate 2>/dev/null
echo "$PASSWORD" | ./target/release/keel-admin create-admin --email "$EMAIL" --password-stdin >/dev/null 2>&1

# The audit trail at scale: AUDIT_ROWS entries from 1,000 actors over a year, sealed and
# verified by keel-admin before the API starts (so no sealing runs during the load).
AUDIT_ROWS="${BENCH_AUDIT_ROWS:-1000000}"
echo "bench: loading $AUDIT_ROWS audit entries" >&2
psql "$PG/$DB_NAME" -qv ON_ERROR_STOP=1 >/dev/null <<SQL
-- A year of history: its timestamps are given, so the trigger that stamps new entries
-- with now() is off while it loads.
ALTER TABLE activity_entries DISABLE TRIGGER activity_entries_stamp;
INSERT INTO activity_entries
    (occurred_at, actor_id, actor_email, action, entity_type, entity_id, summary, metadata, ip)
SELECT now() - interval '365 days' + g * (interval '365 days' / $AUDIT_ROWS),
       ('00000000-0000-4000-8000-' || lpad(to_hex(g % 1000), 12, '0'))::uuid,
       'user' || (g % 1000) || '@example.com',
       (ARRAY['auth.login_succeeded', 'auth.login_failed', 'auth.logout', 'user.profile_updated',
              'auth.password_changed', 'user.updated', 'role.updated', 'release_note.published'])[g % 8 + 1],
       'user', (g % 5000)::text,
       'user' || (g % 1000) || ' did thing ' || g,
       jsonb_build_object('n', g), '10.0.' || (g % 250) || '.' || (g % 200)
FROM generate_series(1, $AUDIT_ROWS) AS g;
ALTER TABLE activity_entries ENABLE TRIGGER activity_entries_stamp;
SQL
# Vacuum now, so autovacuum doesn't pick the big table up in the middle of the runs.
psql "$PG/$DB_NAME" -qc "VACUUM ANALYZE activity_entries, activity_words" >/dev/null
seal_started=$(date +%s.%N)
verify_line=$(./target/release/keel-admin activity verify 2>&1)
seal_seconds=$(python3 -c "import time; print(f'{time.time() - $seal_started:.1f}')")
echo "audit: $verify_line (seal + verify of $AUDIT_ROWS entries: $seal_seconds s)"

# Thirty published release notes.
psql "$PG/$DB_NAME" -qv ON_ERROR_STOP=1 >/dev/null <<SQL
INSERT INTO release_notes (id, version, title, body, category, is_published, published_at)
SELECT gen_random_uuid(), '1.' || g || '.0', 'Release 1.' || g, repeat('Some **Markdown**. ', 40),
       (ARRAY['feature', 'improvement', 'fix', 'breaking'])[g % 4 + 1], true,
       now() - (30 - g) * interval '1 day'
FROM generate_series(1, 30) AS g;
SQL
psql "$PG/$DB_NAME" -qc "VACUUM ANALYZE activity_seals" -c "VACUUM ANALYZE release_notes" >/dev/null

./target/release/keel-api >"$WORK/api.log" 2>&1 &
API_PID=$!
REDIS_API_PID=""
REDIS_PID_FILE="$WORK/redis.pid"
cleanup() {
  kill $API_PID $REDIS_API_PID 2>/dev/null || true
  wait $API_PID $REDIS_API_PID 2>/dev/null || true
  [[ -f $REDIS_PID_FILE ]] && kill "$(cat "$REDIS_PID_FILE")" 2>/dev/null || true
  psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" >/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
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
run "release_notes_c64" 64 "$BASE/api/v1/release-notes?size=20" -H "Authorization: Bearer $TOKEN"
run "health_live_idle_c8" 8 "$BASE/health/live"
# Logins (argon2) from 8 clients, and /health/live measured while they run.
run "login_c8" 8 "$BASE/api/v1/auth/login" -s "$WORK/login.lua" &
LOGIN=$!
sleep 1
run "health_live_under_login_c8" 8 "$BASE/health/live"
wait $LOGIN
# Control, no keel code involved: the same run beside a busy loop at the lowest CPU
# priority Linux has (SCHED_IDLE). What this adds to p99 is the machine's floor under the
# figure above, whatever runs the hashing.
if command -v chrt >/dev/null; then
  chrt --idle 0 timeout 12 sh -c 'while :; do :; done' &
  BURNER=$!
  sleep 0.5
  run "health_live_beside_idle_loop_c8" 8 "$BASE/health/live"
  wait $BURNER 2>/dev/null || true
fi

# The audit trail: 16 clients, each request at a random depth of the 1M-entry trail.
# audit_script NAME QUERY: a wrk script requesting /api/v1/activity?size=50&QUERY with a
# random cursor (and {actor}/{entity}/{window} filled in at random).
audit_script() {
  python3 - "$WORK/$1.lua" "$2" "$AUDIT_ROWS" "$TOKEN" <<'PY'
import base64, datetime, random, sys
path, query, rows, token = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
random.seed(7)
now = datetime.datetime.now(datetime.timezone.utc)
paths = []
for _ in range(2000):
    q = query.format(
        actor=f"00000000-0000-4000-8000-{random.randrange(1000):012x}",
        entity=random.randrange(5000),
        since=(now - datetime.timedelta(days=random.uniform(1, 365))).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    # Rows were loaded evenly over the past year: a random row's (occurred_at, id).
    g = random.randrange(1, rows)
    at = now - datetime.timedelta(days=365) + g * datetime.timedelta(days=365) / rows
    key = f"k2:{int(at.timestamp() * 1_000_000)}.{g}"
    cursor = base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")
    paths.append(f"/api/v1/activity?size=50&{q}&cursor={cursor}")
with open(path, "w") as f:
    f.write("paths = {" + ",".join(f'"{p}"' for p in paths) + "}\n")
    f.write(f'wrk.headers["Authorization"] = "Bearer {token}"\n')
    f.write("request = function() return wrk.format(nil, paths[math.random(#paths)]) end\n")
PY
}
audit_script audit_any ""
audit_script audit_action "action=auth.login_failed"
audit_script audit_actor "actor_id={actor}"
audit_script audit_entity "entity_type=user&entity_id={entity}"
audit_script audit_window "since={since}"
audit_script audit_search_user "search=user42%20did"
audit_script audit_search_common "search=did%20thing%2042"
audit_script audit_search_actor "search=did&actor_id={actor}"
for q in any action actor entity window search_user search_common search_actor; do
  run "audit_${q}_c16" 16 "$BASE" -s "$WORK/audit_$q.lua"
done


# One client at a time: an unknown email must cost what a wrong password costs.
run "login_ok_c1" 1 "$BASE/api/v1/auth/login" -t1 -s "$WORK/login.lua"
run "login_wrong_password_c1" 1 "$BASE/api/v1/auth/login" -t1 -s "$WORK/wrong_password.lua"
run "login_unknown_email_c1" 1 "$BASE/api/v1/auth/login" -t1 -s "$WORK/unknown_email.lua"

echo "keel-api peak RSS: $(awk '/VmHWM/ {printf "%.1f MB", $2/1024}' /proc/$API_PID/status)"

# The cache on Redis: a private redis-server, and a second keel-api (on the same
# database) using it. The runs above used the in-process cache. Then Redis is shut
# down three seconds into a run: no request may fail.
if ! command -v redis-server >/dev/null; then
  echo "bench: redis-server not found (apt-get install redis-server): Redis runs skipped" >&2
  exit 0
fi
kill $API_PID 2>/dev/null; wait $API_PID 2>/dev/null || true
REDIS_PORT="${BENCH_REDIS_PORT:-16390}"
redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
  --pidfile "$REDIS_PID_FILE" >/dev/null
REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0" ./target/release/keel-api >"$WORK/api-redis.log" 2>&1 &
REDIS_API_PID=$!
for _ in $(seq 50); do
  curl -fs "$BASE/health/live" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fs "$BASE/health/ready" | python3 -c 'import json,sys; c=json.load(sys.stdin)["components"]["cache"]; print("bench: cache", c["status"])' >&2
run "redis_health_live_c64" 64 "$BASE/health/live"
run "redis_me_c64" 64 "$BASE/api/v1/auth/me" -H "Authorization: Bearer $TOKEN"
run "redis_release_notes_c64" 64 "$BASE/api/v1/release-notes?size=20" -H "Authorization: Bearer $TOKEN"
run "redis_unread_count_c64" 64 "$BASE/api/v1/release-notes/unread-count" -H "Authorization: Bearer $TOKEN"
(sleep 3; kill "$(cat "$REDIS_PID_FILE")") &
run "redis_stopped_me_c64" 64 "$BASE/api/v1/auth/me" -H "Authorization: Bearer $TOKEN"
run "redis_down_release_notes_c64" 64 "$BASE/api/v1/release-notes?size=20" -H "Authorization: Bearer $TOKEN"
curl -s "$BASE/health/ready" | python3 -c 'import json,sys; r=json.load(sys.stdin); print("bench: with Redis down, ready:", r["status"], "cache", r["components"]["cache"]["status"])' >&2
echo "keel-api (Redis) peak RSS: $(awk '/VmHWM/ {printf "%.1f MB", $2/1024}' /proc/$REDIS_API_PID/status)"
