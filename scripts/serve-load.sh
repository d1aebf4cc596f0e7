#!/bin/sh
# Measures `cnn serve` under load with wrk (Debian's package): requests per second and the
# median and 99th-percentile latency of POST /api/predict at 1, 4, 16 and 64 connections,
# for report 1's network and fashion-93's, each trained for one epoch on the built-in demo
# set (speed does not depend on accuracy). The requests cycle through ten demo PNGs
# (scripts/serve-load.lua). Prints one Markdown table row per run.
#
# Usage: scripts/serve-load.sh [CNN ...]
#   CNN: the binaries to compare (default target/release/cnn), e.g. a copy of the binary
#   before a change and the one after; each serves in turn, alone on the machine.
# Environment:
#   SECONDS_PER_RUN   length of each wrk run (default 10)
#   CONNECTIONS       connection counts (default "1 4 16 64")
#   NETWORKS          built-in examples (default "report1-10 fashion-93")
#   VARIANTS          "default" (cnn serve as it is), "nobatch" (--max-batch 1),
#                     "layers" (POST /api/predict?layers=1: every layer's output, as the
#                     page asks), "inspect" (predictions while 4 more connections ask for
#                     every layer's output); default "default"
#   SERVE_FLAGS       more flags for cnn serve (e.g. "--max-batch 64")
# Say the machine's load (uptime) with the table: the server, wrk and anything else share
# the cores.
set -eu
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || set -- target/release/cnn
seconds=${SECONDS_PER_RUN:-10}
connections=${CONNECTIONS:-1 4 16 64}
networks=${NETWORKS:-report1-10 fashion-93}
variants=${VARIANTS:-default}
lua="$PWD/scripts/serve-load.lua"
work=$(mktemp -d)
server=
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"' EXIT

# Models and images, made by the last binary given.
for cnn in "$@"; do trainer=$cnn; done
for net in $networks; do
  # fashion-93's recipe warms up for one epoch; one epoch in all has no room for it.
  "$trainer" train "$net" --epochs 1 --warmup 0 --out "$work/$net" > /dev/null
done
"$trainer" data export demo --split test --per-class 1 --out "$work/pngs" > /dev/null
CNN_LOAD_PNGS=$(ls "$work"/pngs/*.png | tr '\n' ' ')
export CNN_LOAD_PNGS

echo "load before: $(uptime)"
echo "| binary | network | variant | connections | requests/s | p50 ms | p99 ms | errors |"
echo "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"
for cnn in "$@"; do
  for net in $networks; do
    for variant in $variants; do
      flags=${SERVE_FLAGS:-}
      path=/api/predict
      case $variant in
        nobatch) flags="$flags --max-batch 1" ;;
        layers) path="/api/predict?layers=1" ;;
      esac
      # shellcheck disable=SC2086 # flags are words
      "$cnn" serve "$work/$net" --port 0 $flags > "$work/serve.out" 2>&1 &
      server=$!
      while ! grep -q http "$work/serve.out" 2>/dev/null; do
        kill -0 "$server" 2>/dev/null || { cat "$work/serve.out"; exit 1; }
        sleep 0.1
      done
      url=$(grep -o 'http://[^ /]*' "$work/serve.out")
      for c in $connections; do
        side=
        if [ "$variant" = inspect ]; then
          CNN_LOAD_PATH="/api/predict?layers=1" wrk -t1 -c4 -d"$((seconds + 2))s" \
            -s "$lua" "$url" > "$work/side.out" &
          side=$!
          sleep 1
        fi
        row=$(CNN_LOAD_PATH=$path wrk -t1 -c"$c" -d"${seconds}s" -s "$lua" "$url" | grep RESULT)
        extra=
        if [ -n "$side" ]; then
          wait "$side"
          extra=" (layers=1 alongside: $(grep RESULT "$work/side.out" | sed 's/.*rps=\([0-9]*\).*/\1/') requests/s)"
        fi
        rps=$(echo "$row" | sed 's/.*rps=\([0-9]*\).*/\1/')
        p50=$(echo "$row" | sed 's/.*p50_ms=\([0-9.]*\).*/\1/')
        p99=$(echo "$row" | sed 's/.*p99_ms=\([0-9.]*\).*/\1/')
        errors=$(echo "$row" | sed 's/.*errors=\([0-9]*\).*/\1/')
        echo "| $(basename "$cnn") | $net | $variant | $c | $rps$extra | $p50 | $p99 | $errors |"
      done
      kill "$server"
      wait "$server" 2>/dev/null || true
      server=
    done
  done
done
echo "load after: $(uptime)"
