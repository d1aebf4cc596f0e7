#!/usr/bin/env python3
"""Write tests/fixtures/onnx-inverted-residual/: the MobileNetV2-style network of
scripts/check-onnx.py (a stem, an inverted residual block with stride 2 and one with its
residual add: 1x1 expand conv, BatchNorm, ReLU6; 3x3 depthwise conv, BatchNorm, ReLU6; 1x1
project conv, BatchNorm; then the mean over H and W and a Linear layer; random weights and
BatchNorm statistics, eval mode) exported by both of PyTorch's ONNX exporters, and what
PyTorch computes for one image.

- `torchscript.onnx`: `torch.onnx.export(..., dynamo=False, opset_version=13)` (ReLU6 as
  `Clip` with its bounds as inputs).
- `dynamo.onnx` (with `dynamo.onnx.data` if the exporter keeps weights beside it): the
  default exporter, torch.export.
- `expected.json`: `pixels`, a 1x28x28 image as bytes (row by row), fed to the network as
  bytes / 255; `probabilities`, the softmax of the network's output for it, computed by
  PyTorch in float32; `torch_version`.

`tests/cli/onnx.rs` imports both files with `cnn import` and checks that `cnn predict` gives
PyTorch's probabilities for the image (within 1e-5), without PyTorch at test time.

Usage (from the repository root): python scripts/make-onnx-inverted-residual-fixture.py
with torch, onnx, onnxscript and onnxruntime installed (scripts/requirements-onnx.txt).
"""

import importlib.util
import os
import shutil
import tempfile

import torch

from onnx_fixture import image_and_probabilities, write_expected

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "onnx-inverted-residual")


def check_onnx():
    """scripts/check-onnx.py as a module, for its network."""
    spec = importlib.util.spec_from_file_location(
        "check_onnx", os.path.join(ROOT, "scripts", "check-onnx.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main():
    net = check_onnx().pytorch_models()["mobilenet-v2-inverted-residual"]
    torch.manual_seed(1)
    pixels, x, probabilities = image_and_probabilities(net)
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    with tempfile.TemporaryDirectory() as tmp:
        for name, kwargs in [
            ("torchscript", {"dynamo": False, "opset_version": 13}),
            ("dynamo", {"dynamo": True}),
        ]:
            torch.onnx.export(net, (x,), os.path.join(tmp, f"{name}.onnx"), input_names=["input"], **kwargs)
        for name in sorted(os.listdir(tmp)):
            shutil.copyfile(os.path.join(tmp, name), os.path.join(OUT, name))
    write_expected(OUT, pixels, probabilities)
    print(f"wrote {OUT}: {', '.join(sorted(os.listdir(OUT)))}")


if __name__ == "__main__":
    main()
