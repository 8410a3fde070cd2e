#!/usr/bin/env bash
# Generates API clients from keel's OpenAPI document with pinned, mainstream generators,
# to start your own from:
#   - TypeScript: openapi-typescript's types for openapi-fetch -> OUT/typescript/schema.d.ts
#   - Python: openapi-python-client                              -> OUT/python/keel_client
#
#   bash scripts/clients.sh [DOCUMENT] [OUT]
#
# DOCUMENT is a file or an http(s) URL (default: openapi.json, the committed snapshot);
# OUT defaults to target/clients. The generators install themselves under target/tools
# on first use (Python 3 with venv, and Node.js 20+ with npm, are needed).
set -euo pipefail
cd "$(dirname "$0")/.."
me=clients.sh
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

doc=${1:-openapi.json}
out=${2:-target/clients}
python_tools
node_tools

mkdir -p "$out/typescript" "$out/python"
out=$(cd "$out" && pwd)
case $doc in
  http://* | https://*) curl -fsS "$doc" -o "$out/openapi.json" || fail "cannot fetch $doc" ;;
  *) [[ -f $doc ]] || fail "no OpenAPI document at $doc"; cp "$doc" "$out/openapi.json" ;;
esac

"$node_tools_dir/node_modules/.bin/openapi-typescript" "$out/openapi.json" \
  --output "$out/typescript/schema.d.ts" --silent \
  || fail "openapi-typescript could not generate the TypeScript client"
say "TypeScript: $out/typescript/schema.d.ts (use it with openapi-fetch's createClient<paths>)"

"$py_tools/bin/openapi-python-client" generate --path "$out/openapi.json" \
  --config scripts/clients/python.yaml --meta none --overwrite \
  --output-path "$out/python/keel_client" >"$out/python/generate.log" 2>&1 \
  || { cat "$out/python/generate.log" >&2; fail "openapi-python-client could not generate the Python client"; }
if grep -q "^Warning" "$out/python/generate.log"; then
  cat "$out/python/generate.log" >&2
  fail "openapi-python-client skipped parts of the document (above)"
fi
say "Python: $out/python/keel_client (import keel_client with $out/python on the path)"
