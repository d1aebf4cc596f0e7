#!/usr/bin/env bash
# docs/GUIDE.md's Fashion-MNIST ablation: from report 1's network to the full recipe, one
# `cnn train` command a row, each timed as a whole (wall clock) with its final test accuracy
# on the 10,000 test images. Prints the Markdown table; with --write, also puts it into
# docs/GUIDE.md between the `<!-- ablation:begin -->` and `<!-- ablation:end -->` markers.
#
#   scripts/fashion-ablation.sh [--data DIR] [--write]
#
# DIR defaults to ../shared/data/fashion-mnist (the IDX files; `cnn download fashion-mnist`
# fetches them into data/fashion-mnist). Runs go to a temporary folder. The rows take about
# 15 minutes on 2 idle cores, the last one most of it; a machine shared with other work is
# slower, so the time column is only comparable within one run of this script.
set -euo pipefail
cd "$(dirname "$0")/.."

data=../shared/data/fashion-mnist
write=0
while [ $# -gt 0 ]; do
  case "$1" in
    --data) data=$2; shift 2 ;;
    --write) write=1; shift ;;
    *) echo "usage: $0 [--data DIR] [--write]" >&2; exit 2 ;;
  esac
done

cargo build --release --quiet
cnn=target/release/cnn
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

base="--epochs 15 --batch-size 128 --optimizer nesterov --lr 0.05"
rows=(
  "report 1's network|examples/report1-10.cfg $base"
  "+ BatchNorm|examples/report1-bn.cfg $base"
  "+ augmentation (flips, shifts of 2 pixels)|examples/report1-bn.cfg $base --flip --shift 2"
  "+ cosine schedule, warm-up, label smoothing, weight decay|examples/report1-bn.cfg $base --flip --shift 2 --schedule cosine --warmup 1 --label-smoothing 0.1 --weight-decay 5e-4"
  "the full recipe (a wider network, 40 epochs)|examples/fashion-93.cfg"
)

table="| setting | command (\`cnn train ... --data $data\`) | test accuracy | time |
| --- | --- | ---: | ---: |"
i=0
for row in "${rows[@]}"; do
  i=$((i + 1))
  name=${row%%|*}
  args=${row#*|}
  SECONDS=0
  # shellcheck disable=SC2086 # the arguments are words on purpose
  log=$("$cnn" train $args --data "$data" --out "$out/row$i" 2>&1)
  secs=$SECONDS
  acc=$(printf '%s\n' "$log" | sed -n 's/^test accuracy \([0-9.]*%\).*/\1/p' | tail -1)
  time=$(printf '%d:%02d' $((secs / 60)) $((secs % 60)))
  echo "row $i: $name: $acc in $time" >&2
  table="$table
| $name | \`$args\` | $acc | $time |"
done

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
note="Measured $(date -u +%Y-%m-%d) by \`scripts/fashion-ablation.sh\` on $(nproc) cores of $cpu; time is the whole command (loading, training, the test set after each epoch, writing the run folder)."
printf '%s\n\n%s\n' "$table" "$note"

if [ "$write" = 1 ]; then
  python3 - "$table" "$note" <<'PY'
import re, sys
table, note = sys.argv[1], sys.argv[2]
text = open("docs/GUIDE.md").read()
block = f"<!-- ablation:begin -->\n{table}\n\n{note}\n<!-- ablation:end -->"
new, n = re.subn(r"<!-- ablation:begin -->.*?<!-- ablation:end -->", lambda _: block, text, flags=re.S)
if n != 1:
    sys.exit("docs/GUIDE.md has no ablation markers")
open("docs/GUIDE.md", "w").write(new)
PY
  echo "wrote the table into docs/GUIDE.md" >&2
fi
