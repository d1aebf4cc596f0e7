#!/usr/bin/env bash
# docs/GUIDE.md's Fashion-MNIST ablations, one `cnn train` command a row, each timed as a
# whole (wall clock) with its final test accuracy on the 10,000 test images. Prints the
# Markdown table; with --write, also puts it into docs/GUIDE.md between its markers.
#
#   scripts/fashion-ablation.sh [--table recipe|residual] [--rows N,M,...] [--data DIR] [--write]
#
# --table recipe (the default): from report 1's network to examples/fashion-93.cfg, between
#   `<!-- ablation:begin -->` and `<!-- ablation:end -->`; about 15 minutes on 2 idle cores.
# --table residual: what the shortcuts and the width buy in examples/fashion-resnet.cfg (each
#   at 12 epochs, its other settings unchanged), what random erasing does over the whole 36
#   epochs, and the whole recipe, between `<!-- residual-ablation:begin -->` and
#   `<!-- residual-ablation:end -->`; about 80 minutes, most of it the last two rows.
# --rows runs only those rows (1-based) and prints them; it cannot be combined with --write.
#
# DIR defaults to ../shared/data/fashion-mnist (the IDX files; `cnn download fashion-mnist`
# fetches them into data/fashion-mnist). Runs go to a temporary folder. A machine shared with
# other work is slower, so the time column is only comparable within one run of this script.
set -euo pipefail
cd "$(dirname "$0")/.."

data=../shared/data/fashion-mnist
write=0
table=recipe
only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --data) data=$2; shift 2 ;;
    --write) write=1; shift ;;
    --table) table=$2; shift 2 ;;
    --rows) only=",$2,"; shift 2 ;;
    *) echo "usage: $0 [--table recipe|residual] [--rows N,M,...] [--data DIR] [--write]" >&2; exit 2 ;;
  esac
done
if [ -n "$only" ] && [ "$write" = 1 ]; then
  echo "error: --rows prints some rows; --write needs them all" >&2
  exit 2
fi

cargo build --release --quiet
cnn=target/release/cnn
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# The variants of examples/fashion-resnet.cfg the residual rows train, written into $out:
# plain.cfg (no Shortcut lines: each block's last BatchNorm2D gets the ReLU the Shortcut
# had, and the projections, a one-layer Route and the two lines after it, go) and
# narrow.cfg (half the filters of every convolution).
variants() {
  python3 - "$out" <<'PY'
import re, sys
from pathlib import Path
out = Path(sys.argv[1])
lines = [l.split("#")[0].rstrip() for l in Path("examples/fashion-resnet.cfg").read_text().splitlines()]
lines = [l for l in lines if l.strip()]
head, body = lines[1], lines[2:]
layers = [l for l in body if not l.startswith(("Train", "Augment"))]
settings = [l for l in body if l.startswith(("Train", "Augment"))]
plain, skip = [], 0
for l in layers:
    if skip:
        skip -= 1
    elif l.startswith("Shortcut"):
        plain[-1] += " activation=relu"
    elif l.startswith("Route") and "," not in l:
        skip = 2
    else:
        plain.append(l)
narrow = [re.sub(r"filters=(\d+)", lambda m: f"filters={int(m[1]) // 2}", l) for l in layers]
for name, net in [("plain", plain), ("narrow", narrow)]:
    (out / f"{name}.cfg").write_text("\n".join([str(len(net)), head, *net, "", *settings]) + "\n")
PY
}

case "$table" in
  recipe)
    begin="<!-- ablation:begin -->"
    end="<!-- ablation:end -->"
    base="--epochs 15 --batch-size 128 --optimizer nesterov --lr 0.05"
    rows=(
      "report 1's network|examples/report1-10.cfg $base"
      "+ BatchNorm|examples/report1-bn.cfg $base"
      "+ augmentation (flips, shifts of 2 pixels)|examples/report1-bn.cfg $base --flip --shift 2"
      "+ cosine schedule, warm-up, label smoothing, weight decay|examples/report1-bn.cfg $base --flip --shift 2 --schedule cosine --warmup 1 --label-smoothing 0.1 --weight-decay 5e-4"
      "the full recipe (a wider network, 40 epochs)|examples/fashion-93.cfg"
    )
    ;;
  residual)
    begin="<!-- residual-ablation:begin -->"
    end="<!-- residual-ablation:end -->"
    variants
    rows=(
      "the same layers without shortcuts, 12 epochs|$out/plain.cfg --epochs 12"
      "with the shortcuts, 12 epochs|examples/fashion-resnet.cfg --epochs 12"
      "with half the channels, 12 epochs|$out/narrow.cfg --epochs 12"
      "with random erasing (p = 0.5), 36 epochs|examples/fashion-resnet.cfg --erase 0.5"
      "the full recipe, 36 epochs|examples/fashion-resnet.cfg"
    )
    ;;
  *) echo "error: --table is recipe or residual, not $table" >&2; exit 2 ;;
esac

table_text="| setting | command (\`cnn train ... --data $data\`) | test accuracy | time |
| --- | --- | ---: | ---: |"
i=0
for row in "${rows[@]}"; do
  i=$((i + 1))
  if [ -n "$only" ] && [[ "$only" != *",$i,"* ]]; then
    continue
  fi
  name=${row%%|*}
  args=${row#*|}
  SECONDS=0
  # shellcheck disable=SC2086 # the arguments are words on purpose
  log=$("$cnn" train $args --data "$data" --out "$out/row$i" 2>&1)
  secs=$SECONDS
  acc=$(printf '%s\n' "$log" | sed -n 's/^test accuracy \([0-9.]*%\).*/\1/p' | tail -1)
  # With test views, the last epoch's figure is the one-view accuracy.
  if grep -q "test_shift\|test_flip" <<<"$(grep '^Augment' "${args%% *}" 2>/dev/null)"; then
    one=$(printf '%s\n' "$log" | sed -n 's/.*test acc *\([0-9.]*%\).*/\1/p' | tail -1)
    acc="$acc ($one one view)"
  fi
  time=$(printf '%d:%02d' $((secs / 60)) $((secs % 60)))
  echo "row $i: $name: $acc in $time" >&2
  shown=${args//$out\//}
  table_text="$table_text
| $name | \`$shown\` | $acc | $time |"
done

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
note="Measured $(date -u +%Y-%m-%d) by \`scripts/fashion-ablation.sh --table $table\` on $(nproc) cores of $cpu; time is the whole command (loading, training, the test set as often as the config says, writing the run folder)."
printf '%s\n\n%s\n' "$table_text" "$note"

if [ "$write" = 1 ]; then
  python3 - "$table_text" "$note" "$begin" "$end" <<'PY'
import re, sys
table, note, begin, end = sys.argv[1:5]
text = open("docs/GUIDE.md").read()
block = f"{begin}\n{table}\n\n{note}\n{end}"
new, n = re.subn(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
if n != 1:
    sys.exit(f"docs/GUIDE.md has no {begin} ... {end} markers")
open("docs/GUIDE.md", "w").write(new)
PY
  echo "wrote the table into docs/GUIDE.md" >&2
fi
