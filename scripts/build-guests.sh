#!/usr/bin/env bash
# Builds the example and fixture workloads in examples-wasm/ as WebAssembly components
# (release, wasm32-wasip2) and lists them with their sizes.
#
# Usage: scripts/build-guests.sh            (from any directory)
# Env:   GUEST_TARGET_DIR  cargo target dir (default: examples-wasm/target); the components end up
#                          in $GUEST_TARGET_DIR/wasm32-wasip2/release/<name>.wasm
#
# Cargo names cdylib outputs with underscores (csv_groupby.wasm); a copy with the crate's
# hyphenated name (csv-groupby.wasm) is placed next to each such file.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORKSPACE="$ROOT/examples-wasm"
TARGET=wasm32-wasip2
TARGET_DIR="${GUEST_TARGET_DIR:-$WORKSPACE/target}"
case "$TARGET_DIR" in
  /*) ;;
  *) TARGET_DIR="$PWD/$TARGET_DIR" ;;
esac
COMPONENTS=(wordfreq csv-groupby primes echo ticker spin membomb panic sockets outflood hostile bigmem)

if ! rustup target list --installed | grep -qx "$TARGET"; then
  echo "build-guests: installing the $TARGET target" >&2
  rustup target add "$TARGET"
fi

# From the workspace, so that cargo reads examples-wasm/.cargo/config.toml (the linker's heap
# reservation).
(cd "$WORKSPACE" && cargo build --release --target "$TARGET" --target-dir "$TARGET_DIR")

OUT="$TARGET_DIR/$TARGET/release"
status=0
for name in "${COMPONENTS[@]}"; do
  built="$OUT/${name//-/_}.wasm"
  if [[ ! -f "$built" ]]; then
    echo "build-guests: missing $built" >&2
    status=1
    continue
  fi
  if [[ "$built" != "$OUT/$name.wasm" ]]; then
    cp -f "$built" "$OUT/$name.wasm"
  fi
  # A component (not a core module) has layer 1 in its header: bytes 4..8 = 0d 00 01 00.
  if [[ "$(od -An -tx1 -j4 -N4 "$OUT/$name.wasm" | tr -d ' \n')" != "0d000100" ]]; then
    echo "build-guests: $OUT/$name.wasm is not a component" >&2
    status=1
  fi
done

echo "Components in $OUT:"
for name in "${COMPONENTS[@]}"; do
  [[ -f "$OUT/$name.wasm" ]] && printf '  %-16s %9d bytes\n' "$name.wasm" "$(wc -c <"$OUT/$name.wasm")"
done
exit "$status"
