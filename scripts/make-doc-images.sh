#!/bin/sh
# Regenerates the pictures in docs/images with the current `cnn`, from the commands the
# README and docs/GUIDE.md show: report 1 reproduced on MNIST 0s and 1s, its learning-rate sweep, and report
# 1's network on Fashion-MNIST (training curves, confusion matrix, misclassified gallery,
# first-layer filters and the feature maps of an ankle boot).
#
# Usage: scripts/make-doc-images.sh   (needs ../shared/data/mnist and ../shared/data/fashion-mnist)
set -eu
cd "$(dirname "$0")/.."
cargo build --release --quiet
cnn=target/release/cnn
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

$cnn data export ../shared/data/mnist --split test --classes 0,1 --per-class 100 --out "$work/mnist01/train"
$cnn data export ../shared/data/mnist --split test --classes 0,1 --per-class 13 --offset 100 --out "$work/mnist01/eval"
$cnn train examples/report1.cfg --data "$work/mnist01/train" --test-data "$work/mnist01/eval" --epochs 10 --lr 0.01 --out "$work/report1"
$cnn evaluate "$work/report1/model.safetensors" --data "$work/mnist01/eval" --out "$work/report1/eval"
$cnn sweep examples/report1.cfg --data "$work/mnist01/train" --test-data "$work/mnist01/eval" --lr 0.001,0.01,0.2 --epochs 10 --out "$work/lr"

$cnn train examples/report1-10.cfg --data ../shared/data/fashion-mnist --epochs 10 --out "$work/fashion"
$cnn evaluate "$work/fashion/model.safetensors" --data ../shared/data/fashion-mnist --out "$work/fashion/eval"
$cnn data export ../shared/data/fashion-mnist --split test --classes 9 --per-class 1 --out "$work/boot"
$cnn visualize "$work/fashion/model.safetensors" "$(find "$work/boot" -name '*.png' | head -n 1)" --out "$work/vis"

cp "$work/report1/eval/confusion_matrix.png" docs/images/report1-confusion.png
cp "$work/lr/loss.png" docs/images/report1-learning-rates.png
cp "$work/fashion/loss.png" docs/images/fashion-loss.png
cp "$work/fashion/accuracy.png" docs/images/fashion-accuracy.png
cp "$work/fashion/eval/confusion_matrix.png" docs/images/fashion-confusion.png
cp "$work/fashion/eval/misclassified.png" docs/images/fashion-misclassified.png
cp "$work/vis/filters.png" docs/images/fashion-filters.png
cp "$work/vis/layer0-conv2d.png" docs/images/fashion-feature-maps.png
cp "$work/vis/layer3-dense.png" docs/images/fashion-output.png
echo "docs/images updated"
