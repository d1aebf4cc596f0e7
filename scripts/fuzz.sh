#!/bin/sh
# Runs every fuzz target for N seconds each (default 60) with cargo fuzz (needs nightly and
# `cargo install cargo-fuzz`), or, when cargo fuzz cannot run, the property tests of
# tests/engine/fuzz_props.rs with PROPTEST_CASES cases each (default 20000).
#
#   scripts/fuzz.sh [SECONDS]
set -eu
cd "$(dirname "$0")/.."
secs=${1:-60}
targets="config idx labels_txt model_file image onnx_import"
if cargo fuzz --version >/dev/null 2>&1 && rustup run nightly rustc --version >/dev/null 2>&1; then
    for t in $targets; do
        mkdir -p "fuzz/corpus/$t"
        echo "== $t for ${secs}s"
        # The seed corpus is read from fuzz/corpus/$t; new inputs go to a scratch folder so
        # the committed corpus stays small.
        mkdir -p "target/fuzz-scratch/$t"
        cargo +nightly fuzz run -O "$t" "target/fuzz-scratch/$t" "fuzz/corpus/$t" -- \
            -max_total_time="$secs" -rss_limit_mb=1024 -print_final_stats=1 2>&1 |
            grep -E "stat::number_of_executed_units|stat::peak_rss_mb|Done|ERROR|panicked" || true
    done
else
    echo "cargo fuzz unavailable: running the property tests instead" >&2
    PROPTEST_CASES=${PROPTEST_CASES:-20000} cargo test --release --test engine fuzz_props::
fi
