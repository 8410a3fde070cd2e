#!/usr/bin/env bash
# Runs keel's whole test suite against real services.
#
#   bash scripts/test.sh [extra cargo-nextest arguments]
#
# Without arguments it then runs scripts/contract.sh (schemathesis and the generated
# clients against a live keel-api), scripts/scaffold.sh (a generated feature, built
# and tested in a scratch copy), scripts/k8s.sh (the Kubernetes manifests, rendered
# and checked offline) and scripts/faults.sh (replicas under load through faults);
# with arguments (a filtered run) it doesn't.
#
# It checks that PostgreSQL, Redis and RabbitMQ answer on their usual local ports, starts
# any that are installed but stopped, and says exactly what is missing otherwise.
# Override the PostgreSQL server with TEST_DATABASE_URL (any database on that server)
# Redis with KEEL_TEST_REDIS_URL, and the S3 server with KEEL_TEST_S3_ENDPOINT.
set -euo pipefail
cd "$(dirname "$0")/.."

me=test.sh
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

command -v cargo >/dev/null || fail "cargo not found: install Rust from https://rustup.rs"

pg_url=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
pg_host_port "$pg_url"

# PostgreSQL: required by every database test.
if ! answers "$pg_host" "$pg_port"; then
  if [[ $pg_host == 127.0.0.1 || $pg_host == localhost ]] && command -v pg_ctlcluster >/dev/null && [[ -d /etc/postgresql ]]; then
    say "PostgreSQL is not answering on $pg_host:$pg_port; starting the local cluster"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start \
      || fail "could not start PostgreSQL with pg_ctlcluster"
    wait_for PostgreSQL "$pg_host" "$pg_port" 30 || fail "PostgreSQL did not come up on $pg_host:$pg_port"
  else
    fail "PostgreSQL is not answering on $pg_host:$pg_port. Install it (apt-get install postgresql), \
run \`docker compose up -d postgres\`, or point TEST_DATABASE_URL at a server whose user may create databases."
  fi
fi

# Redis: required by the cache suites (KEEL_TEST_REDIS_URL overrides the local one).
redis_url=${KEEL_TEST_REDIS_URL:-redis://127.0.0.1:6379/0}
redis_hostport=${redis_url#*://}; redis_hostport=${redis_hostport#*@}; redis_hostport=${redis_hostport%%/*}
redis_host=${redis_hostport%%:*}; redis_port=${redis_hostport##*:}
[[ $redis_port == "$redis_hostport" ]] && redis_port=6379
if ! answers "$redis_host" "$redis_port"; then
  if [[ $redis_host == 127.0.0.1 || $redis_host == localhost ]] && command -v redis-server >/dev/null; then
    say "starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no >/dev/null
    wait_for Redis 127.0.0.1 "$redis_port" 15 || fail "Redis did not come up on 127.0.0.1:$redis_port"
  else
    fail "Redis is not answering on $redis_host:$redis_port. Install it (apt-get install redis-server), \
run \`docker compose up -d redis\`, or point KEEL_TEST_REDIS_URL at one."
  fi
fi

# RabbitMQ: required by the task suites (KEEL_TEST_AMQP_URL overrides the local one).
if [[ -z ${KEEL_TEST_AMQP_URL:-} ]] && ! answers 127.0.0.1 5672; then
  if command -v rabbitmq-server >/dev/null; then
    say "starting RabbitMQ (can take half a minute)"
    rabbitmq-server -detached >/dev/null 2>&1 || true
    wait_for RabbitMQ 127.0.0.1 5672 90 || fail "RabbitMQ did not come up on 127.0.0.1:5672"
  else
    fail "RabbitMQ is not answering on 127.0.0.1:5672. Install it (apt-get install rabbitmq-server), \
run \`docker compose up -d rabbitmq\`, or point KEEL_TEST_AMQP_URL at one."
  fi
fi

# An S3-compatible server for the storage suites: moto's server mode, started here on
# 127.0.0.1:5055 unless KEEL_TEST_S3_ENDPOINT names another.
if [[ -z ${KEEL_TEST_S3_ENDPOINT:-} ]] && ! answers 127.0.0.1 5055; then
  python_tools
  say "starting moto (S3) on 127.0.0.1:5055"
  nohup "$py_tools/bin/moto_server" -H 127.0.0.1 -p 5055 >/tmp/keel-moto.log 2>&1 &
  wait_for moto 127.0.0.1 5055 30 || fail "moto did not come up on 127.0.0.1:5055 (see /tmp/keel-moto.log)"
fi

# An SMTP server for the mail suites: aiosmtpd, keeping what it receives in a Maildir the
# tests read (KEEL_TEST_MAILDIR), on 127.0.0.1:1025.
maildir=${KEEL_TEST_MAILDIR:-/tmp/keel-test-maildir}
if ! answers 127.0.0.1 1025; then
  python_tools
  mkdir -p "$maildir"/tmp "$maildir"/new "$maildir"/cur
  say "starting aiosmtpd (SMTP) on 127.0.0.1:1025, mail kept in $maildir"
  nohup "$py_tools/bin/python" -m aiosmtpd -n -l 127.0.0.1:1025 -c aiosmtpd.handlers.Mailbox "$maildir" \
    >/tmp/keel-smtp.log 2>&1 &
  wait_for aiosmtpd 127.0.0.1 1025 30 || fail "aiosmtpd did not come up on 127.0.0.1:1025 (see /tmp/keel-smtp.log)"
fi
export KEEL_TEST_MAILDIR=$maildir

# The contract test validates the published OpenAPI document with it.
python_tools
export KEEL_OPENAPI_VALIDATOR=$PWD/$py_tools/bin/openapi-spec-validator

if ! command -v promtool >/dev/null; then
  [[ -n ${KEEL_REQUIRE_PROMTOOL:-} ]] && fail "promtool not found: apt-get install prometheus"
  say "note: promtool not found, so /metrics is not linted (apt-get install prometheus)"
fi

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  say "cargo-nextest not found (cargo install cargo-nextest --locked); using cargo test"
  cargo test --workspace --no-fail-fast "$@"
fi

# The API contract from outside (schemathesis and the generated clients against a live
# keel-api), `keel-admin new-feature` proven in a scratch copy, the Kubernetes
# manifests, and the replica and fault suite. A filtered run (any arguments) leaves
# them out.
if (($#)); then
  say "arguments given, so the contract, scaffold, manifest and fault checks are skipped \
(bash scripts/contract.sh, bash scripts/scaffold.sh, bash scripts/k8s.sh, bash scripts/faults.sh)"
else
  bash scripts/contract.sh
  bash scripts/scaffold.sh
  bash scripts/k8s.sh
  # It restarts the local PostgreSQL cluster and RabbitMQ: KEEL_SKIP_FAULTS=1 leaves it out.
  if [[ -n ${KEEL_SKIP_FAULTS:-} ]]; then
    say "KEEL_SKIP_FAULTS is set: the fault suite is skipped (bash scripts/faults.sh)"
  else
    bash scripts/faults.sh
  fi
fi
