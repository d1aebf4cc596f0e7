#!/bin/sh
# Regenerates data/demo/ (the built-in demo set) from the full Fashion-MNIST files.
#
# Takes, in file order, the first 200 images of each class from the training set and the first
# 50 of each class from the test set (the first 2,000 / 500 images are only roughly balanced:
# 39 to 65 per class in the test part), keeping their original relative order, and writes them
# as gzipped IDX files. The output is deterministic (gzip mtime 0).
#
# Usage: scripts/make-demo-set.sh [FASHION_MNIST_DIR]   (default: ../shared/data/fashion-mnist)
set -eu
cd "$(dirname "$0")/.."
SRC="${1:-../shared/data/fashion-mnist}"
python3 - "$SRC" data/demo <<'PY'
import gzip, struct, sys, os

src, out = sys.argv[1], sys.argv[2]
for split, per_class in (("train", 200), ("t10k", 50)):
    imgs = gzip.open(os.path.join(src, f"{split}-images-idx3-ubyte.gz")).read()
    labs = gzip.open(os.path.join(src, f"{split}-labels-idx1-ubyte.gz")).read()
    magic, n, rows, cols = struct.unpack(">IIII", imgs[:16])
    assert magic == 0x803 and struct.unpack(">II", labs[:8]) == (0x801, n)
    size = rows * cols
    taken, counts = [], [0] * 10
    for i in range(n):
        y = labs[8 + i]
        if counts[y] < per_class:
            counts[y] += 1
            taken.append(i)
    assert counts == [per_class] * 10, counts
    k = len(taken)
    pix = b"".join(imgs[16 + i * size: 16 + (i + 1) * size] for i in taken)
    lab = bytes(labs[8 + i] for i in taken)
    for name, data in ((f"{split}-images-idx3-ubyte.gz", struct.pack(">IIII", 0x803, k, rows, cols) + pix),
                       (f"{split}-labels-idx1-ubyte.gz", struct.pack(">II", 0x801, k) + lab)):
        with open(os.path.join(out, name), "wb") as f:
            f.write(gzip.compress(data, compresslevel=9, mtime=0))
    print(f"{split}: {k} images, {per_class} per class, last source index {taken[-1]}")
PY
ls -l data/demo
