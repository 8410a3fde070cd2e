#!/usr/bin/env bash
# The replica and fault suite: 2 keel-api and 2 keel-worker processes on loopback, under
# a steady load, through kill -9 of workers, Redis stopped and hung, RabbitMQ stopped and
# PostgreSQL restarted; then checks that nothing was lost, duplicated or answered 500.
# scripts/faults/suite.py holds the scenario and the checks; README.md ("Faults") says
# what it proves. It restarts the local PostgreSQL cluster and RabbitMQ application, so
# run it on a development machine or CI, never beside other work on those servers.
#
#   bash scripts/faults.sh [suite options: --apis 3 --workers 3 --rate 40 ...]
#
# Needs PostgreSQL (TEST_DATABASE_URL, as scripts/test.sh), RabbitMQ on 127.0.0.1:5672
# with rabbitmqctl (for a private vhost), redis-server (a private one is started) and
# Python 3. Logs of every process land in target/faults/.
set -euo pipefail
cd "$(dirname "$0")/.."
me=faults.sh
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

require psql rabbitmqctl redis-server
pg_url=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
require_postgres "${pg_url%/*}" TEST_DATABASE_URL
answers 127.0.0.1 5672 || fail "RabbitMQ is not answering on 127.0.0.1:5672 (rabbitmq-server -detached)"
python_tools

# The cluster to restart: the local one pg_ctlcluster runs on the URL's port, if any.
cluster=
pg_host_port "$pg_url"
if [[ $pg_host == 127.0.0.1 || $pg_host == localhost ]] && command -v pg_lsclusters >/dev/null; then
  cluster=$(pg_lsclusters -h 2>/dev/null | awk -v port="$pg_port" '$3 == port && $4 == "online" { print $1 "/" $2; exit }')
fi
[[ -n $cluster ]] || say "no local cluster serves $pg_host:$pg_port through pg_ctlcluster: the PostgreSQL restart is skipped"

say "building keel-api, keel-worker and keel-admin"
cargo build --quiet --locked --bin keel-api --bin keel-worker --bin keel-admin

started=$SECONDS
PYTHONDONTWRITEBYTECODE=1 "$py_tools/bin/python" scripts/faults/suite.py \
  --database-url "$pg_url" --pg-cluster "$cluster" "$@"
say "the fault suite passed in $((SECONDS - started)) s"
