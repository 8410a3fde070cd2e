#!/usr/bin/env bash
# Proves `keel-admin new-feature`: in a scratch copy of this checkout, generates a
# feature, checks that it touched nothing but its crate, its migration and one line of
# app/Cargo.toml, then lints it, runs its tests against PostgreSQL, and checks keel-app
# serves it (its operations and permissions are in the OpenAPI document).
#
#   bash scripts/scaffold.sh [NAME]     (default: widgets)
#
# Needs what scripts/test.sh needs (PostgreSQL; it checks). The scratch copy builds in
# a target directory of its own, seeded with a copy of this checkout's compiled
# dependencies so only keel's crates build again. (A copy, not hard links: cargo names
# a workspace crate's outputs the same wherever the checkout lives, and some are
# written in place, so linked files would carry the scratch build back here.)
set -euo pipefail
cd "$(dirname "$0")/.."

me=scaffold.sh
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

name=${1:-widgets}
command -v git >/dev/null || fail "git not found: apt-get install git"
started=$SECONDS
checkout=$PWD
# The generator is this checkout's own keel-admin (the scratch copy holds the same code):
# only what the generated feature changes is built in the scratch copy.
cargo build -q --locked --bin keel-admin
admin=$checkout/target/debug/keel-admin
scratch=$checkout/target/scaffold/keel
export CARGO_TARGET_DIR=$checkout/target/scaffold/target
rm -rf "$CARGO_TARGET_DIR"
mkdir -p "$CARGO_TARGET_DIR"
# Whatever happens, the scratch copy and its build (gigabytes) don't stay behind.
trap 'rm -rf "$scratch" "$CARGO_TARGET_DIR"' EXIT
if [[ -d target/debug/deps ]]; then
  mkdir -p "$CARGO_TARGET_DIR/debug"
  for dir in deps build .fingerprint; do
    cp -a --reflink=auto "target/debug/$dir" "$CARGO_TARGET_DIR/debug/$dir"
  done
fi

# The checkout as it is (committed or not), without build output, as a fresh repository.
rm -rf "$scratch"
mkdir -p "$scratch"
git ls-files -z --cached --others --exclude-standard \
  | tar --null --files-from=- --ignore-failed-read -cf - 2>/dev/null \
  | tar -xf - -C "$scratch"
cd "$scratch"
log=$CARGO_TARGET_DIR/new-feature.log
git init -q && git add -A && git -c user.name=keel -c user.email=keel@localhost commit -qm base

# Names that must be refused, changing nothing: a crate keel has, a schema the API
# has (SessionOut), digits (the audit trail takes letters only), a type the generated
# code imports, a column, an SQL key word, a table an old migration made.
for refused in testkit sessions oauth2_clients uuids name verbose refresh_sessions; do
  if "$admin" new-feature "$refused" >/dev/null 2>"$log"; then
    fail "keel-admin new-feature $refused should have been refused"
  fi
  grep -q '^keel-admin: ' "$log" || { cat "$log" >&2; fail "new-feature $refused failed without saying why"; }
  [[ -z $(git status --porcelain) ]] || fail "a refused new-feature $refused changed files: $(git status --porcelain)"
done
say "generating $name"
# A fixed migration version: every run migrates the same schema, so the test template
# database built for it is reused, not built (and left) anew each time.
"$admin" new-feature "$name" \
  --migration-version 2999-01-01-000000 >/dev/null 2>"$log" \
  || { cat "$log" >&2; fail "keel-admin new-feature $name failed"; }

kebab=${name//_/-}
# Nothing but the crate, its migration and one added line in app/Cargo.toml.
changes=$(git status --porcelain --untracked-files=normal)
expected_untracked="?? app/$name/"
[[ $(grep -c '' <<<"$changes") == 3 ]] || fail "new-feature changed more than expected:
$changes"
grep -qxF " M app/Cargo.toml" <<<"$changes" || fail "app/Cargo.toml was not changed: $changes"
grep -qxF "$expected_untracked" <<<"$changes" || fail "no app/$name/: $changes"
grep -qE "^\?\? migrations/[0-9-]+_${name}/\$" <<<"$changes" || fail "no migration: $changes"
diff=$(git diff --unified=0 app/Cargo.toml | grep -E '^[+-][^+-]' || true)
[[ $diff == "+keel-$kebab = { path = \"$name\" }" ]] \
  || fail "app/Cargo.toml should gain exactly one line, not:
$diff"
say "footprint: app/$name/, its migration, and one line in app/Cargo.toml"

cargo fmt --all --check || fail "the generated crate is not formatted"
# The new member isn't in Cargo.lock yet: from here on cargo may add it (and only it).
cargo clippy -q -p "keel-$kebab" --all-targets -- -D warnings \
  || fail "the generated crate has clippy warnings"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run -p "keel-$kebab" --no-fail-fast
else
  cargo test -p "keel-$kebab" --no-fail-fast
fi

# keel-app picks the feature up from that line: it is mounted and its permissions seeded
# and published.
cargo run -q --bin keel-admin -- openapi --output openapi.json
python3 - "$kebab" "$name" <<'PY' || fail "the OpenAPI document does not show the feature"
import json, sys
kebab, name = sys.argv[1], sys.argv[2]
document = json.load(open("openapi.json"))
paths = [p for p in document["paths"] if p.startswith(f"/api/v1/{kebab}")]
scopes = document["components"]["securitySchemes"]["OAuth2"]["flows"]["password"]["scopes"]
assert paths == [f"/api/v1/{kebab}", f"/api/v1/{kebab}/{{id}}"], paths
assert f"{name}:read" in scopes and f"{name}:write" in scopes, list(scopes)
PY

# Building records the new member in Cargo.lock; nothing else may have moved.
git checkout -q openapi.json
others=$(git status --porcelain | grep -vE "^( M app/Cargo.toml| M Cargo.lock|\?\? app/$name/|\?\? migrations/[0-9-]+_${name}/)\$" || true)
[[ -z $others ]] || fail "building the feature changed other files: $others"
cd "$checkout"
rm -rf "$scratch" "$CARGO_TARGET_DIR"
say "keel-admin new-feature $name: generated, served, seeded, documented and tested ($((SECONDS - started)) s)"
