#!/usr/bin/env python3
"""Check `cnn export` and `cnn import` against the ONNX tools and PyTorch.

1. For every layer kind the config format has (report 1's network, LeNet-style, report 1's
   with BatchNorm, strided valid convolutions, average pooling, BatchNorm2D and BatchNorm1D,
   every activation, global average pooling, a stored normalisation, a residual network with
   identity and projection shortcuts, a MobileNetV2-style inverted residual block with ReLU6
   and a concatenation of branches), a model is trained for one epoch on the
   built-in demo set, exported with `cnn export`, checked by
   `onnx.checker.check_model(full_check=True)`, and run by onnxruntime on 64 demo test
   images: its probabilities must equal `cnn predict`'s within 1e-5. The export is imported
   back and must predict the same.
2. PyTorch CNNs, sequential and residual (a torchvision-style BasicBlock with a projection
   shortcut; MobileNetV2-style inverted residual blocks, one with stride 2 and one with its
   residual add, with ReLU6 and depthwise convolutions), (random weights, random BatchNorm
   statistics, eval mode) are
   exported by both of PyTorch's exporters, the TorchScript one (`dynamo=False`, opset 13)
   and torch.export (the default: opset 18 or later, 20 with torch 2.15, and the weights in
   an external `.onnx.data` file), read by `cnn import`, and `cnn predict`'s probabilities must equal PyTorch's within 1e-5.
   The imported model is exported again with `cnn export`, checked, and onnxruntime's
   probabilities must equal PyTorch's within 1e-5.

Every comparison prints one line with its largest absolute difference; the exit code is 1 if
any fails.

Usage (from the repository root, after `cargo build --release`):
  python3 -m venv /tmp/onnx-venv
  /tmp/onnx-venv/bin/pip install -r scripts/requirements-onnx.txt
  /tmp/onnx-venv/bin/python scripts/check-onnx.py
"""

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

TOLERANCE = 1e-5
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name -> config text (the demo set is 1x28x28 with 10 classes).
CONFIGS = {
    "report1": open(os.path.join(ROOT, "examples", "report1-10.cfg")).read(),
    "lenet": open(os.path.join(ROOT, "examples", "lenet.cfg")).read(),
    "report1-bn": open(os.path.join(ROOT, "examples", "report1-bn.cfg")).read(),
    "strided-valid-avgpool": """4
Input shape=1x28x28
Conv2D filters=6 kernel=5x5 stride=2 padding=valid activation=tanh
AvgPool2D pool=2x2
Conv2D filters=8 kernel=3x3 stride=2 activation=sigmoid
Dense units=10
""",
    "explicit-padding-leaky": """4
Input shape=1x28x28
Conv2D filters=4 kernel=3x3 stride=2 padding=1 activation=leaky_relu alpha=0.1
MaxPool2D pool=3x3 stride=2
Dense units=16 activation=leaky_relu alpha=0.2
Dense units=10 activation=softmax
""",
    "batchnorm": """8
Input shape=1x28x28
Conv2D filters=8 kernel=3x3 padding=same
BatchNorm2D
ReLU
MaxPool2D pool=2x2
Flatten
Dense units=32
BatchNorm1D momentum=0.2 eps=0.001
Dense units=10 activation=softmax
""",
    "standalone-activations": """9
Input shape=1x28x28
Conv2D filters=4 kernel=3x3
Tanh
AvgPool2D pool=2x2 stride=2
Sigmoid
Dense units=20
LeakyReLU alpha=0.05
Dropout rate=0.3
Dense units=10
Softmax
""",
    # A softmax over a spatial value: ours is over a sample's C*H*W values, so the export
    # flattens, applies it and reshapes back.
    "softmax-spatial": """4
Input shape=1x28x28
Conv2D filters=3 kernel=4x4 stride=4
Softmax
Dense units=10
""",
    "softmax-inside": """4
Input shape=1x28x28
Conv2D filters=2 kernel=3x3 stride=3
Dense units=12 activation=softmax
Dense units=10 activation=relu
""",
    # Global average pooling (GlobalAveragePool then Flatten): before a BatchNorm1D and a
    # Dense, and ending an all-convolutional network.
    "global-avgpool": """5
Input shape=1x28x28
Conv2D filters=8 kernel=3x3 padding=same activation=relu
MaxPool2D pool=2x2
GlobalAvgPool2D
BatchNorm1D activation=tanh
Dense units=10
""",
    "global-avgpool-all-conv": """3
Input shape=1x28x28
Conv2D filters=6 kernel=5x5 stride=2 activation=relu
Conv2D filters=10 kernel=3x3
GlobalAvgPool2D
""",
    # ReLU6 (ONNX Clip from 0 to 6), fused and on a line of its own, in an inverted residual
    # block: expand, depthwise, project without an activation, and the residual Shortcut.
    "relu6-inverted-residual": """11
Input shape=1x28x28
Conv2D filters=8 kernel=3x3 stride=2 padding=1 bias=false
BatchNorm2D
ReLU6
Conv2D filters=24 kernel=1x1 bias=false
BatchNorm2D activation=relu6
Conv2D filters=24 kernel=3x3 padding=1 groups=24 bias=false
BatchNorm2D activation=relu6
Conv2D filters=8 kernel=1x1 bias=false
BatchNorm2D
Shortcut from=-7
Dense units=10 activation=relu6
""",
    # Shortcut lines (ONNX Add) with identity and projection skip paths.
    # (Without its Train line, whose warm-up needs more than the one epoch run here.)
    "resnet-small": "".join(
        line
        for line in open(os.path.join(ROOT, "examples", "resnet-small.cfg"))
        if not line.startswith("Train")
    ),
    # Two branches concatenated along channels (Concat), one reading the stem again through a
    # one-layer Route, and a flat Shortcut.
    "concat": """10
Input shape=1x28x28
Conv2D filters=6 kernel=3x3 stride=2 padding=same activation=relu
Conv2D filters=4 kernel=1x1 activation=tanh
Route layers=-2
Conv2D filters=5 kernel=3x3 padding=same activation=relu
Route layers=-3,-1
MaxPool2D pool=2x2
GlobalAvgPool2D
Dense units=10 activation=relu
Dense units=10
Shortcut from=-2 activation=sigmoid
""",
}


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout


def demo_images(n):
    """The first n demo test images as uint8 [n, 28, 28], and an IDX file of them."""
    with gzip.open(os.path.join(ROOT, "data", "demo", "t10k-images-idx3-ubyte.gz")) as f:
        raw = f.read()
    count, rows, cols = np.frombuffer(raw[4:16], dtype=">u4")
    images = np.frombuffer(raw[16:], dtype=np.uint8).reshape(count, rows, cols)[:n]
    return images


def write_idx(path, images):
    n, h, w = images.shape
    with open(path, "wb") as f:
        f.write(bytes([0, 0, 8, 3]))
        f.write(np.array([n, h, w], dtype=">u4").tobytes())
        f.write(images.tobytes())


def cnn_probabilities(cnn, model, idx, classes):
    """`cnn predict --json` as a [N, K] array, columns in the model's class order."""
    out = run([cnn, "predict", model, idx, "--json", "--top", str(len(classes))])
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    probs = np.zeros((len(rows), len(classes)), dtype=np.float64)
    for i, row in enumerate(rows):
        for name, p in row["probabilities"]:
            probs[i, classes.index(name)] = p
    return probs


def report(label, diff):
    ok = diff <= TOLERANCE
    print(f"{'ok  ' if ok else 'FAIL'} {label}: max |difference| = {diff:.2e}")
    return ok


def check_exports(cnn, work, images, idx):
    ok = True
    x = (images.astype(np.float32) / np.float32(255.0))[:, None, :, :]
    for name, text in CONFIGS.items():
        cfg = os.path.join(work, f"{name}.cfg")
        with open(cfg, "w") as f:
            f.write(text)
        for norm in ([], ["--normalize"]) if name == "report1" else ([],):
            tag = name + (" (normalised)" if norm else "")
            out = os.path.join(work, "runs", name + ("-norm" if norm else ""))
            run([cnn, "train", cfg, "--epochs", "1", "--out", out, "--force", "--seed", "3"] + norm)
            model = os.path.join(out, "model.safetensors")
            onnx_path = out + ".onnx"
            run([cnn, "export", model, onnx_path])
            proto = onnx.load(onnx_path)
            onnx.checker.check_model(proto, full_check=True)
            classes = json.loads({p.key: p.value for p in proto.metadata_props}["classes"])
            session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
            got = session.run(None, {"input": x})[0]
            want = cnn_probabilities(cnn, model, idx, classes)
            ok &= report(f"export {tag}: checker full_check passed; onnxruntime vs cnn predict", np.abs(got - want).max())
            # And back: cnn import of the export predicts the same.
            back = out + "-imported.safetensors"
            run([cnn, "import", onnx_path, back])
            again = cnn_probabilities(cnn, back, idx, classes)
            ok &= report(f"export {tag} -> cnn import -> cnn predict vs cnn predict", np.abs(again - want).max())
    return ok


class BasicBlock(nn.Module):
    """torchvision.models.resnet.BasicBlock: conv-bn-relu-conv-bn, plus the input (through a
    1x1 strided conv and bn when the shape changes), then relu."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + identity)


class InvertedResidual(nn.Module):
    """torchvision.models.mobilenetv2.InvertedResidual: 1x1 expand conv, BN, ReLU6; 3x3
    depthwise conv (groups = channels), BN, ReLU6; 1x1 project conv, BN (no activation);
    plus the input when the stride is 1 and the channels are equal. Convolutions without a
    bias, as torchvision writes them before a BatchNorm."""

    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        self.residual = stride == 1 and cin == cout
        self.conv = nn.Sequential(
            nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout),
        )

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2Small(nn.Module):
    """A stem (conv 3x3, BN, ReLU6), an inverted residual block with stride 2 (no residual)
    and one with stride 1 (with it), the mean over H and W (as torchvision's MobileNetV2:
    adaptive_avg_pool2d then flatten) and a Linear layer."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU6(),
            InvertedResidual(8, 12, 2, 4), InvertedResidual(12, 12, 1, 4),
        )
        self.classifier = nn.Linear(12, 10)

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


def pytorch_models():
    torch.manual_seed(0)
    models = {
        "report1": nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(16 * 14 * 14, 128), nn.ReLU(), nn.Linear(128, 10),
        ),
        "batchnorm-dropout": nn.Sequential(
            nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.LeakyReLU(0.1),
            nn.AvgPool2d(2), nn.Conv2d(8, 12, 3), nn.Tanh(), nn.Flatten(), nn.Dropout(0.25),
            nn.Linear(12 * 5 * 5, 32), nn.BatchNorm1d(32), nn.Sigmoid(), nn.Linear(32, 10),
            nn.Softmax(dim=1),
        ),
        "log-softmax": nn.Sequential(
            nn.Conv2d(1, 4, 5), nn.ReLU(), nn.MaxPool2d(2, stride=2), nn.Flatten(),
            nn.Linear(4 * 12 * 12, 10), nn.LogSoftmax(dim=1),
        ),
        "global-avgpool": nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 10, 3, stride=2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        ),
        "resnet-basic-blocks": nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            BasicBlock(8, 8, 1), BasicBlock(8, 16, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(16, 10),
        ),
        "mobilenet-v2-inverted-residual": MobileNetV2Small(),
    }
    for m in models.values():
        for mod in m.modules():
            if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.data.uniform_(0.5, 1.5)
                mod.bias.data.uniform_(-0.2, 0.2)
        m.eval()
    # Larger BatchNorm scales, so that ReLU6 clips at 6 as well as at 0 (from 2% to 25% of
    # each ReLU6's inputs pass 6 on the demo images).
    for mod in models["mobilenet-v2-inverted-residual"].modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.weight.data.mul_(5.0)
    return models


def check_imports(cnn, work, images, idx):
    ok = True
    x = torch.from_numpy((images.astype(np.float32) / np.float32(255.0))[:, None, :, :])
    for name, model in pytorch_models().items():
        with torch.no_grad():
            out = model(x).double()
        # The model's last op may be a softmax, a log-softmax or nothing (logits).
        if name == "log-softmax":
            want = out.exp()
        elif name == "batchnorm-dropout":
            want = out
        else:
            want = torch.softmax(out, dim=1)
        want = want.numpy()
        for exporter, kwargs in [
            ("torchscript-opset13", {"dynamo": False, "opset_version": 13}),
            # The default: the weights in a `.onnx.data` file beside the model.
            ("torch.export", {}),
        ]:
            path = os.path.join(work, f"torch-{name}-{exporter}.onnx")
            torch.onnx.export(model, (x[:1],), path, input_names=["input"], **kwargs)
            opset = onnx.load(path).opset_import[0].version
            back = path.replace(".onnx", ".safetensors")
            run([cnn, "import", path, back])
            got = cnn_probabilities(cnn, back, idx, [str(i) for i in range(10)])
            ok &= report(f"PyTorch {name} via {exporter} (opset {opset}) -> cnn import -> cnn predict vs PyTorch", np.abs(got - want).max())
            # And out again: `cnn export` of the imported model, checked and run by onnxruntime.
            again = back.replace(".safetensors", "-exported.onnx")
            run([cnn, "export", back, again])
            onnx.checker.check_model(onnx.load(again), full_check=True)
            session = ort.InferenceSession(again, providers=["CPUExecutionProvider"])
            got = session.run(None, {"input": x.numpy()})[0]
            ok &= report(f"PyTorch {name} via {exporter} -> cnn import -> cnn export -> onnxruntime vs PyTorch", np.abs(got - want).max())
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cnn", default=os.path.join(ROOT, "target", "release", "cnn"))
    ap.add_argument("--images", type=int, default=64)
    args = ap.parse_args()
    print(f"onnx {onnx.__version__}, onnxruntime {ort.__version__}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as work:
        images = demo_images(args.images)
        idx = os.path.join(work, "images-idx3-ubyte")
        write_idx(idx, images)
        ok = check_exports(args.cnn, work, images, idx)
        ok &= check_imports(args.cnn, work, images, idx)
    print("all checks passed" if ok else "SOME CHECKS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
