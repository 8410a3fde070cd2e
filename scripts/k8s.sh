#!/usr/bin/env bash
# Checks deploy/k8s offline: renders the base and the production overlay with
# `kubectl kustomize`, validates every object against the Kubernetes schemas
# (kubernetes-validate, strict), runs checkov's Kubernetes policies on the production
# render, and loads each render's ConfigMap and Secrets as keel would
# (`keel-admin check-settings` with exactly those variables): every key must be a
# setting keel reads, and every value valid.
#
#   bash scripts/k8s.sh
set -euo pipefail
cd "$(dirname "$0")/.."
me=k8s.sh
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

require kubectl
k8s_tools
cargo build -q --locked --bin keel-admin
admin=target/debug/keel-admin
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# The settings keel reads: every variable .env.example names, set or commented out.
grep -oE '^#? ?[A-Z][A-Z0-9_]+=' .env.example | tr -d '# =' | sort -u >"$out/settings"

for target in base overlays/production; do
  render="$out/${target//\//-}.yaml"
  kubectl kustomize "deploy/k8s/$target" >"$render" || fail "$target: kustomize failed"
  "$k8s_tools_dir/bin/kubernetes-validate" --strict --quiet -k 1.30.0 "$render" \
    || fail "$target: objects that don't match the Kubernetes 1.30 schemas (above)"
  # The ConfigMap's and Secrets' keys and values, as KEY=VALUE lines.
  "$k8s_tools_dir/bin/python" - "$render" >"$out/env" <<'PY'
import base64, sys, yaml
for doc in yaml.safe_load_all(open(sys.argv[1])):
    if doc and doc["kind"] in ("ConfigMap", "Secret"):
        for key, value in (doc.get("data") or {}).items():
            if doc["kind"] == "Secret":
                value = base64.b64decode(value).decode()
            print(f"{key}={value}")
PY
  unknown=$(cut -d= -f1 "$out/env" | sort -u | comm -23 - "$out/settings" | paste -sd' ')
  [[ -z $unknown ]] || fail "$target: keys that are not keel settings: $unknown"
  mapfile -t vars <"$out/env"
  env -i PATH="$PATH" "${vars[@]}" "$admin" check-settings 2>"$out/check" \
    || fail "$target: keel refuses its settings: $(cat "$out/check")"
  say "$target: $(grep -c '^kind:' "$render") objects valid; $(wc -l <"$out/env") settings load"
done

# The security policy on what is deployed. Skipped, on purpose:
# - CKV_K8S_43 (images by digest): the overlay pins a tag; pin digests in your release
#   tooling, which knows them.
# - CKV_K8S_35 (secrets as files): keel reads its settings from the environment, like
#   every twelve-factor service; keys it can read from files (JWT_PRIVATE_KEY_FILE)
#   can be mounted instead.
BC_SKIP_MAPPING=TRUE "$k8s_tools_dir/bin/checkov" --quiet --compact --skip-download \
  --framework kubernetes --skip-check CKV_K8S_43,CKV_K8S_35 \
  -f "$out/overlays-production.yaml" >"$out/checkov" 2>&1 \
  || fail "checkov: $(cat "$out/checkov")"
say "checkov: $(grep -m1 -o 'Passed checks: [0-9]*, Failed checks: [0-9]*' "$out/checkov")"
