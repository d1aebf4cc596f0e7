#!/bin/sh
# Regenerates docs/images/serve-*.png: screenshots of `cnn serve` in headless Chromium, for
# report 1's network with 10 outputs trained on MNIST test digits (the first 750 of each
# class; the next 100 of each class are the --data shown in the confusion matrix). The page's
# self-test mode (`/?selftest`) draws a 7 on the pad and explains a convolution cell.
#
# Usage: scripts/make-serve-images.sh   (needs ../shared/data/mnist and Debian's chromium)
set -eu
cd "$(dirname "$0")/.."
cargo build --release --quiet
cnn="$PWD/target/release/cnn"
work=$(mktemp -d)
server=
trap '[ -n "$server" ] && kill "$server"; rm -rf "$work"' EXIT

$cnn data export ../shared/data/mnist --split test --per-class 750 --out "$work/train"
$cnn data export ../shared/data/mnist --split test --per-class 100 --offset 750 --out "$work/eval"
$cnn train examples/report1-10.cfg --data "$work/train" --test-data "$work/eval" --epochs 8 --out "$work/digits"

# From the work folder, so that the page names digits/ and eval/ rather than temporary paths.
(cd "$work" && exec "$cnn" serve digits --data eval --port 0 > serve.out) &
server=$!
while ! grep -q http "$work/serve.out"; do sleep 0.2; done
url=$(grep -o 'http://[^ ]*' "$work/serve.out")

shot() { # WIDTH,HEIGHT FILE
  chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$work/profile-$2" --virtual-time-budget=30000 --hide-scrollbars \
    --window-size="$1" --screenshot="$2" "${url}?selftest" 2>/dev/null
}
shot 1280,2900 docs/images/serve-page.png
shot 390,844 docs/images/serve-phone.png
