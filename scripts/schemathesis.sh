#!/usr/bin/env bash
# schemathesis against a running node's /openapi.json, bounded in time: no 5xx, no response
# that breaks the schema. Called by `make test` after the Rust tests (which build the
# binary); installs nothing itself (`make deps` made the venv).
set -euo pipefail
bin="${CARGO_TARGET_DIR:-target}/debug/govern"
st="${SCHEMATHESIS:-/var/tmp/govern-venv/bin/schemathesis}"
tmp="$(mktemp -d)"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
GOVERN_LOG=warn "$bin" node --data-dir "$tmp/data" --listen 127.0.0.1:0 >"$tmp/out" 2>"$tmp/err" &
pid=$!
for _ in $(seq 1 300); do
  url="$(sed -n 's/^govern node listening on \(http:[^ ]*\).*/\1/p' "$tmp/out")"
  [ -n "$url" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$tmp/err"; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { echo "the node did not start"; cat "$tmp/err"; exit 1; }
echo "schemathesis against $url"
# The operator's token lets it create tenants; session and userAction endpoints answer 401
# or 403 to what it can make up (their flows are tested with real passkeys).
token="$(cat "$tmp/data/operator.token")"
"$st" run "$url/openapi.json" \
  --checks not_a_server_error,response_schema_conformance,content_type_conformance \
  --max-examples "${SCHEMATHESIS_EXAMPLES:-40}" \
  --request-timeout 10 \
  --max-time "${SCHEMATHESIS_SECONDS:-180}" \
  -H "Authorization: Bearer $token" \
  --no-color --seed 1
