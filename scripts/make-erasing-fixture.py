#!/usr/bin/env python3
"""Makes tests/fixtures/random_erasing.json: what torchvision's own RandomErasing erases for
given random draws.

    python3 -m venv /tmp/fixtures-venv
    /tmp/fixtures-venv/bin/pip install -r scripts/requirements-fixtures.txt torchvision==0.29.2
    /tmp/fixtures-venv/bin/python scripts/make-erasing-fixture.py

`cnn train --erase P` is torchvision's `RandomErasing(p=P, scale=(0.02, 0.33),
ratio=(0.3, 3.3), value=0)` with our generator instead of torch's (src/augment.rs). To check
that the algorithm is the same, this script runs torchvision's `RandomErasing.forward` (its
`get_params` and `F.erase`, unchanged) with the three random calls it makes replaced by
numbers drawn here, each a uniform number u in [0, 1):

- `torch.rand(1)`, compared with p: u;
- `torch.empty(1).uniform_(a, b)`: a + (b - a) u, in float64;
- `torch.randint(lo, hi, size=(1,))`: lo + floor(u (hi - lo)).

`torch.tensor(ratio)` is made float64 too, so that the log of the ratios is the float64 one
the Rust code computes (torchvision's is float32: the two pick different rectangles only
when a side lands within about 1e-7 of a half). Everything else is the real torch.

Each case gives the image's shape, p, the draws the forward call consumed, in order, and the
rectangle of the output's zeros (an image of ones goes in) as [top, left, height, width], or
null when it erased nothing. The Rust test (src/augment.rs) replays the same draws through
`erase_box` and must consume as many and erase the same rectangle.
"""

import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
import torchvision
import torchvision.transforms.transforms as T

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "random_erasing.json"


class Replay:
    """Stands for the `torch` module inside torchvision's transforms module: the random calls
    take their numbers from `draws` (and log them), the rest is torch's."""

    def __init__(self, draws):
        self.draws = list(draws)
        self.used = []

    def next(self):
        u = self.draws.pop(0)
        self.used.append(u)
        return u

    def rand(self, *size):
        return torch.tensor([self.next()], dtype=torch.float64)

    def empty(self, *size, **kwargs):
        replay = self

        class Empty:
            def uniform_(self, a, b):
                a, b = float(a), float(b)
                return torch.tensor([a + (b - a) * replay.next()], dtype=torch.float64)

            def normal_(self):
                raise AssertionError("value='random' is not used")

        return Empty()

    def randint(self, low, high, size):
        return torch.tensor([low + math.floor(self.next() * (high - low))])

    def tensor(self, data, **kwargs):
        if isinstance(data, tuple) and all(isinstance(v, float) for v in data):
            return torch.tensor(data, dtype=torch.float64)
        return torch.tensor(data, **kwargs)

    def __getattr__(self, name):
        return getattr(torch, name)


def erased_box(before, after):
    """The rectangle where `after` differs from `before` (all channels), checked to be a
    rectangle of zeros the same in every channel; None when nothing changed."""
    changed = (after != before).any(dim=0)
    if not changed.any():
        return None
    rows = torch.nonzero(changed.any(dim=1)).flatten()
    cols = torch.nonzero(changed.any(dim=0)).flatten()
    top, left = int(rows[0]), int(cols[0])
    height, width = int(rows[-1]) - top + 1, int(cols[-1]) - left + 1
    box = torch.zeros_like(changed)
    box[top : top + height, left : left + width] = True
    assert torch.equal(box, changed), "not a rectangle"
    assert (after[:, box] == 0).all(), "not zeros"
    return [top, left, height, width]


def main():
    rng = np.random.default_rng(20260)
    shapes = [
        (3, 32, 32), (1, 28, 28), (3, 8, 8), (1, 4, 4), (1, 3, 5), (1, 2, 2), (1, 1, 1),
        (1, 8, 64), (1, 64, 8), (3, 7, 16),
    ]
    runs = []
    for c, h, w in shapes:
        for k in range(14):
            runs.append(((c, h, w), [0.5, 1.0][k % 2], rng.random(2 + 2 * 10 + 2).tolist()))
    # Draws made to reach the edges of the algorithm.
    ratio_one = 0.5020956577978013  # exp(ln 0.3 + (ln 3.3 - ln 0.3) u) is exactly 1
    area_6_25 = 0.13709677419354838  # 100 (0.02 + 0.31 u) is exactly 6.25
    area_20_25 = 0.5887096774193549  # ... exactly 20.25
    too_tall, too_wide = [0.999, 0.999], [0.999, 0.001]
    runs += [
        # sides of sqrt(6.25) = 2.5 and sqrt(20.25) = 4.5: Python's round() halves to even.
        ((1, 10, 10), 1.0, [0.3, area_6_25, ratio_one, 0.5, 0.5]),
        ((1, 10, 10), 1.0, [0.3, area_20_25, ratio_one, 0.99, 0.0]),
        # a draw equal to p does not erase (rand(1) < p).
        ((3, 32, 32), 0.5, [0.5]),
        # no attempt fits: nothing is erased, after 1 + 10 x 2 draws.
        ((3, 32, 32), 1.0, [0.0] + too_tall * 5 + too_wide * 5),
        # the tenth attempt fits.
        ((3, 32, 32), 1.0, [0.0] + too_wide * 9 + [0.5, 0.5, 0.999, 0.999]),
    ]
    cases = []
    real_torch = T.torch
    try:
        for (c, h, w), p, draws in runs:
            replay = Replay(draws)
            T.torch = replay
            img = torch.ones(c, h, w)
            out = T.RandomErasing(p=p, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0)(img)
            T.torch = real_torch
            cases.append(
                {
                    "shape": [c, h, w],
                    "p": p,
                    "draws": replay.used,
                    "erased": erased_box(img, out),
                }
            )
    finally:
        T.torch = real_torch
    doc = {
        "description": "torchvision's RandomErasing(p, scale=(0.02, 0.33), ratio=(0.3, 3.3), "
        "value=0) on an image of ones, its random calls replaced by the draws listed "
        "(rand: u; uniform_(a, b): a + (b - a) u in float64; randint(lo, hi): lo + floor(u "
        "(hi - lo))); erased: [top, left, height, width] of the zeros, or null",
        "script": "scripts/make-erasing-fixture.py",
        "torch_version": torch.__version__,
        "torchvision_version": torchvision.__version__,
    }
    # One case a line.
    head = json.dumps(doc, indent=1)[:-2]
    lines = ",\n  ".join(json.dumps(c) for c in cases)
    OUT.write_text(f'{head},\n "cases": [\n  {lines}\n ]\n}}\n')
    erased = sum(c["erased"] is not None for c in cases)
    print(f"wrote {OUT}: {len(cases)} cases, {erased} erased", file=sys.stderr)


if __name__ == "__main__":
    main()
