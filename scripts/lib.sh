# Helpers the scripts share: `source scripts/lib.sh` from the repository root, after
# setting `me` to the script's name (it prefixes every message).

say() { printf '%s: %s\n' "${me:-keel}" "$*" >&2; }
fail() { say "$*"; exit 1; }

# answers HOST PORT: something accepts TCP connections there.
answers() { timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

# wait_for NAME HOST PORT SECONDS
wait_for() {
  local deadline=$((SECONDS + $4))
  until answers "$2" "$3"; do
    ((SECONDS < deadline)) || return 1
    sleep 1
  done
  say "$1 is up on $2:$3"
}

# require TOOL...: fails naming each missing command and the Debian package that has it.
require() {
  local tool missing=()
  for tool in "$@"; do
    command -v "$tool" >/dev/null && continue
    case $tool in
      psql) missing+=("psql (apt-get install postgresql-client)") ;;
      pgbench) missing+=("pgbench (apt-get install postgresql-contrib)") ;;
      kubectl) missing+=("kubectl 1.27 or newer, for its kustomize (https://kubernetes.io/docs/tasks/tools/)") ;;
      *) missing+=("$tool (apt-get install $tool)") ;;
    esac
  done
  ((${#missing[@]} == 0)) && return
  local list
  list=$(printf '; %s' "${missing[@]}")
  fail "missing: ${list#; }"
}

# pg_host_port URL: sets pg_host and pg_port (5432 unless the URL names one) from a
# PostgreSQL URL.
pg_host_port() {
  local hostport=${1#*@}
  hostport=${hostport%%/*}
  pg_host=${hostport%%:*}
  pg_port=${hostport##*:}
  [[ $pg_port == "$hostport" ]] && pg_port=5432
  return 0
}

# require_postgres URL VARIABLE: PostgreSQL answers at URL (a server URL, no database),
# else fails saying which variable points elsewhere.
require_postgres() {
  psql "$1/postgres" -qAtc 'SELECT 1' >/dev/null 2>&1 \
    || fail "PostgreSQL is not reachable at $1 (start it, or set $2)"
}

# venv DIR CONSTRAINTS PIN...: Python tools in a venv of their own at DIR, made on first
# use and again when the pins or the constraints change. CONSTRAINTS pins every
# dependency (refresh it with `DIR/bin/pip freeze` after changing a pin).
venv() {
  local dir=$1 constraints=$2 wanted
  shift 2
  # Its scripts name the venv by absolute path, so a moved checkout makes it anew.
  wanted="$* $(cksum <"$constraints") $PWD/$dir"
  if [[ -x $dir/bin/python && "$(cat "$dir/.pins" 2>/dev/null)" == "$wanted" ]]; then
    return
  fi
  command -v python3 >/dev/null || fail "python3 not found: install Python 3 (apt-get install python3 python3-venv)"
  say "installing $* into $dir (once; needs PyPI)"
  rm -rf "$dir"
  python3 -m venv "$dir" || fail "cannot make a Python venv in $dir: apt-get install python3-venv"
  "$dir/bin/python" -m pip install -q --disable-pip-version-check -c "$constraints" "$@" \
    || fail "cannot install $* from PyPI into $dir"
  echo "$wanted" >"$dir/.pins"
}

# The Python tools the suites and the contract checks run: moto's S3 server, aiosmtpd's
# SMTP server, the OpenAPI validator, schemathesis and the Python client generator.
py_tools=target/tools/python
python_tools() {
  venv "$py_tools" scripts/python-constraints.txt "moto[server]==5.2.5" "aiosmtpd==1.4.6" \
    "openapi-spec-validator==0.9.0" "schemathesis==4.32.5" "openapi-python-client==0.29.1"
}

# What scripts/k8s.sh checks the manifests with: the Kubernetes schemas and checkov's
# policies, both offline.
k8s_tools_dir=target/tools/k8s
k8s_tools() {
  venv "$k8s_tools_dir" scripts/k8s-constraints.txt "kubernetes-validate==1.37.0" "checkov==3.3.30"
}

# The npm tools the TypeScript client needs (openapi-typescript, openapi-fetch,
# typescript), installed from scripts/clients/package-lock.json under target/ on first use.
node_tools_dir=target/tools/node
node_tools() {
  local lock=scripts/clients/package-lock.json
  if [[ -d $node_tools_dir/node_modules ]] && cmp -s "$lock" "$node_tools_dir/package-lock.json"; then
    return
  fi
  command -v npm >/dev/null || fail "npm not found: install Node.js 20 or newer (apt-get install nodejs npm)"
  say "installing the TypeScript client tools into $node_tools_dir (once; needs the npm registry)"
  rm -rf "$node_tools_dir"
  mkdir -p "$node_tools_dir"
  cp scripts/clients/package.json "$lock" "$node_tools_dir/"
  # Removed again on failure, so a half-made install is never taken for a whole one.
  (cd "$node_tools_dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) \
    || { rm -rf "$node_tools_dir"; fail "cannot install the npm packages of $lock into $node_tools_dir"; }
}
