"""What the ONNX fixture scripts share: the test image and the expected.json they write.

`expected.json` holds `pixels`, a 1x28x28 image as bytes (row by row), fed to the network
as bytes / 255; `probabilities`, the softmax of the network's output for it, computed by
PyTorch in float32; and `torch_version`. The tests in `tests/cli/onnx.rs` import the ONNX
files with `cnn import` and check that `cnn predict` gives these probabilities (within
1e-5), without PyTorch at test time.
"""

import json
import os

import torch


def image_and_probabilities(net):
    """A random 28x28 byte image drawn from torch's current generator, the network's
    1x1x28x28 input made from it (bytes / 255), and PyTorch's softmax of the output."""
    pixels = torch.randint(0, 256, (28, 28), dtype=torch.uint8)
    x = (pixels.float() / 255).reshape(1, 1, 28, 28)
    with torch.no_grad():
        probabilities = torch.softmax(net(x), dim=1)[0]
    return pixels, x, probabilities


def write_expected(out, pixels, probabilities):
    """Writes `out`/expected.json for the image and the probabilities."""
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(
            {
                "description": "a 1x28x28 image as bytes (fed as bytes / 255) and PyTorch's "
                "softmax of the network's output for it",
                "torch_version": torch.__version__,
                "pixels": pixels.flatten().tolist(),
                "probabilities": [float(p) for p in probabilities],
            },
            f,
        )
        f.write("\n")
