#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for a while (default 20 s each).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# fuzz/seeds/<target>/ holds hand-written valid inputs to start from.
#
# Builds the targets with libFuzzer's coverage instrumentation the way
# cargo-fuzz does, on the stable toolchain (RUSTC_BOOTSTRAP for the
# sanitizer-coverage flags), so no cargo-fuzz install is needed. Crashes are
# written to fuzz/artifacts/<target>/; the corpus grows in fuzz/corpus/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-20}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(netconf result cni_args host_local_config portmap_config host_local_store host_local_index isolator_abi isolator_recover)
host=$(rustc -vV | sed -n 's/^host: //p')
export RUSTC_BOOTSTRAP=1
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
cargo build --release --target "$host" --bins >&2
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  echo "== fuzz $t for ${secs}s"
  status=0
  "target/$host/release/$t" -max_total_time="$secs" -artifact_prefix="artifacts/$t/" \
    -print_final_stats=0 "corpus/$t" "seeds/$t" > "artifacts/$t/log" 2>&1 || status=$?
  grep -E '^(Done|INFO: seed)' "artifacts/$t/log" || true
  if [ "$status" -ne 0 ]; then
    tail -n 40 "artifacts/$t/log" >&2
    echo "fuzz target $t failed (exit $status): input saved in fuzz/artifacts/$t/" >&2
    exit 1
  fi
done
