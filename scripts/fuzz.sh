#!/usr/bin/env bash
# Runs the fuzz targets in fuzz/ (cargo-fuzz: libFuzzer with AddressSanitizer and debug
# assertions) for FUZZ_SECONDS each, default 20, starting from the committed seed inputs in
# fuzz/seeds/<target>/ plus whatever fuzz/corpus/<target>/ has gathered. A crash, a failed
# assertion or a leak fails the run; the input is kept in fuzz/artifacts/<target>/ and can be
# replayed with `RUSTC_BOOTSTRAP=1 cargo fuzz run <target> <file>` in fuzz/.
#
#   scripts/fuzz.sh                       # every target, 20 s each
#   FUZZ_SECONDS=600 scripts/fuzz.sh manifest recordio
#
# cargo-fuzz passes -Z flags to rustc; RUSTC_BOOTSTRAP=1 lets the pinned stable toolchain take
# them. cargo-fuzz itself is installed with cargo on first use (~1 minute).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
export PATH="$HOME/.cargo/bin:$PATH"
export RUSTC_BOOTSTRAP=1
CARGO_FUZZ_VERSION=0.13.2
seconds=${FUZZ_SECONDS:-20}

if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi
# cargo fuzz has no --locked: check that fuzz/Cargo.lock needs no update first.
cargo metadata --locked --format-version 1 >/dev/null

targets=("$@")
if ((${#targets[@]} == 0)); then
  mapfile -t targets < <(cargo fuzz list)
fi
cargo fuzz build -a
log=$(mktemp "${TMPDIR:-/tmp}/trainyard-fuzz.XXXXXX")
trap 'rm -f "$log"' EXIT
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  if cargo fuzz run -a "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
    runs=$(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
    echo "fuzz $t: ${runs:-?} inputs in ${seconds} s, no failure"
  else
    tail -n 60 "$log"
    echo "fuzz $t: FAILED (input in fuzz/artifacts/$t/)" >&2
    exit 1
  fi
done
