#!/usr/bin/env python3
"""Write tests/fixtures/onnx-dynamo/: a sequential CNN exported by PyTorch's default ONNX
exporter (torch.export, `torch.onnx.export(..., dynamo=True)`) with its defaults, which keep
the larger weights in `net.onnx.data` beside `net.onnx` (ONNX's external data), and what
PyTorch computes for one image.

- `net.onnx`, `net.onnx.data`: the export, as torch.onnx.export wrote them.
- `expected.json`: `pixels`, a 1x28x28 image as bytes (row by row), fed to the network as
  bytes / 255; `probabilities`, the softmax of the network's output for it, computed by
  PyTorch in float32; `torch_version`.

`tests/cli/onnx.rs` imports the files with `cnn import` and checks that
`cnn predict` gives PyTorch's probabilities for the image (within 1e-5).

Usage (from the repository root): python scripts/make-onnx-dynamo-fixture.py
with torch, onnx and onnxscript installed (scripts/requirements-onnx.txt).
"""

import os
import shutil
import tempfile

import torch
from torch import nn

from onnx_fixture import image_and_probabilities, write_expected

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "onnx-dynamo")


def main():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, stride=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(6 * 6 * 6, 32),
        nn.ReLU(),
        nn.Linear(32, 10),
    )
    net.eval()
    pixels, x, probabilities = image_and_probabilities(net)
    os.makedirs(OUT, exist_ok=True)
    # Exported in a folder of its own, then copied: the exporter names the data file after
    # the model file and writes both side by side.
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "net.onnx")
        torch.onnx.export(net, (x,), path, dynamo=True)
        names = sorted(os.listdir(tmp))
        assert names == ["net.onnx", "net.onnx.data"], names
        for name in names:
            shutil.copyfile(os.path.join(tmp, name), os.path.join(OUT, name))
    write_expected(OUT, pixels, probabilities)
    print(f"wrote {OUT}: {', '.join(sorted(os.listdir(OUT)))}")


if __name__ == "__main__":
    main()
