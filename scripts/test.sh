#!/usr/bin/env bash
# Runs edgeplane's whole test suite: installs the peers the tests need, checks formatting and
# lints, runs every unit and integration test, then fuzzes the DNS query path, the zone-file
# parser and the HTTP/2 server side for a bounded time each.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi

echo "== fuzzing (bounded)"
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --quiet
(
  cd fuzz
  for target in query zonefile h2; do
    mkdir -p "corpus/$target"
    log=$(mktemp)
    if ! cargo fuzz run "$target" --sanitizer none "corpus/$target" "seeds/$target" -- \
        -max_total_time="$FUZZ_SECONDS" >"$log" 2>&1; then
      tail -40 "$log" >&2
      echo "fuzz target $target failed (crash inputs, if any, are in fuzz/artifacts/$target)" >&2
      exit 1
    fi
    echo "fuzz $target: $(grep -E '^Done' "$log")"
    rm -f "$log"
  done
)
