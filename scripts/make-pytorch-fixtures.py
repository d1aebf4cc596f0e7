#!/usr/bin/env python3
"""Makes the PyTorch reference values in tests/fixtures/*.json.

The tests in tests/engine/pytorch_reference.rs compare our layers, loss and optimisers with an
independent implementation: these files hold PyTorch's answers, computed in float64.

    python3 -m venv /tmp/fixtures-venv
    /tmp/fixtures-venv/bin/pip install -r scripts/requirements-fixtures.txt
    /tmp/fixtures-venv/bin/python scripts/make-pytorch-fixtures.py --inputs-from tests/fixtures

With --inputs-from DIR, every input (x, weight, bias, dy, z, labels, the network's initial
weights) is read from the files of the same name in DIR (a case without a file there draws
its inputs) and every result is computed again:
that is how the committed files were last written, so their inputs stay those the tests were
written against. Without it, the inputs are drawn from a generator seeded by the case's name.
Either way the inputs are rounded to 12 decimals before anything is computed, so that the
numbers in a file are exactly the inputs that gave its results.

Each file records the PyTorch version that wrote it in "torch_version". The format is
described in tests/fixtures/README.md.
"""

import argparse
import json
import sys
import zlib
from pathlib import Path

import torch
import torch.nn.functional as F

DIGITS = 12

# report 1's network in small: the config our parser reads, and the same network in PyTorch.
SMALL_NET_CONFIG = (
    "4\n"
    "Input shape=1x8x8\n"
    "Conv2D filters=4 kernel=3x3 stride=1 padding=same activation=relu\n"
    "MaxPool2D pool=2x2 stride=2\n"
    "Dense units=16 activation=relu\n"
    "Dense units=3 activation=softmax\n"
)
# Our tensor names (layers.{i}, i the layer line's index) -> the nn.Sequential index below.
SMALL_NET_NAMES = {"layers.0": "0", "layers.2": "4", "layers.3": "6"}


def small_net():
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2, 2),
        torch.nn.Flatten(),
        torch.nn.Linear(64, 16),
        torch.nn.ReLU(),
        torch.nn.Linear(16, 3),
    )


class Inputs:
    """The inputs of one case: from an existing file when given one, else drawn uniformly."""

    def __init__(self, name, existing):
        self.existing = existing
        self.gen = torch.Generator().manual_seed(zlib.crc32(name.encode()))

    def tensor(self, key, shape, low, high):
        if self.existing is not None:
            t = from_json(self.existing[key])
            assert list(t.shape) == list(shape), f"{key}: shape {list(t.shape)}, want {shape}"
            return t
        t = torch.rand(shape, generator=self.gen, dtype=torch.float64) * (high - low) + low
        return rounded(t)

    def params(self, key, names_shapes, low, high):
        if self.existing is not None:
            return {n: from_json(self.existing[key][n]) for n, _ in names_shapes}
        return {n: self.tensor(None, s, low, high) for n, s in names_shapes}

    def labels(self, key, n, classes):
        if self.existing is not None:
            return torch.tensor(self.existing[key], dtype=torch.long)
        return torch.randint(classes, (n,), generator=self.gen)


def rounded(t):
    return torch.round(t, decimals=DIGITS)


def from_json(v):
    return torch.tensor(v["data"], dtype=torch.float64).reshape(v["shape"])


def to_json(t):
    data = [round(float(v), DIGITS) for v in t.detach().reshape(-1).tolist()]
    return {"shape": list(t.shape), "data": data}


def header(description, call):
    return {"description": description, "pytorch": call, "torch_version": torch.__version__}


def layer_case(inputs, description, call, module, x_shape, y_from, has_params):
    """Forward x through `module`, backpropagate a random dy, and record every gradient.
    A convolution without a bias (`bias=False`) records no `bias` and no `dbias`; a grouped
    one records its `groups`."""
    x = inputs.tensor("x", x_shape, -1.0, 1.0).requires_grad_(True)
    has_bias = has_params and module.bias is not None
    if has_params:
        with torch.no_grad():
            module.weight.copy_(inputs.tensor("weight", module.weight.shape, -1.0, 1.0))
            if has_bias:
                module.bias.copy_(inputs.tensor("bias", module.bias.shape, -1.0, 1.0))
    y = module(x)
    dy = inputs.tensor("dy", y.shape, -1.0, 1.0)
    y.backward(dy)
    out = header(description, call)
    if getattr(module, "groups", 1) != 1:
        out["groups"] = module.groups
    out.update({"x": to_json(x), "y": to_json(y), "dy": to_json(dy), "dx": to_json(x.grad)})
    if has_params:
        out.update({"weight": to_json(module.weight), "dweight": to_json(module.weight.grad)})
    if has_bias:
        out.update({"bias": to_json(module.bias), "dbias": to_json(module.bias.grad)})
    if y_from is not None:
        y_from(x, y)
    return out


# A depthwise-separable block as our config writes it (BatchNorm and ReLU as layers of their
# own), and the same chain in PyTorch: our layer index -> the nn.Sequential index.
SEPARABLE_CONFIG = (
    "6\n"
    "Input shape=4x7x6\n"
    "Conv2D filters=4 kernel=3x3 stride=1 padding=1 groups=4 bias=false\n"
    "BatchNorm2D\n"
    "ReLU\n"
    "Conv2D filters=6 kernel=1x1 bias=false\n"
    "BatchNorm2D\n"
    "ReLU\n"
)
SEPARABLE_NAMES = {"layers.0": "0", "layers.1": "1", "layers.3": "3", "layers.4": "4"}


def separable_block(inputs):
    """One training-mode forward and backward pass through depthwise 3x3 + BatchNorm + ReLU
    + pointwise 1x1 + BatchNorm + ReLU, from a random dy: the output, dx, every parameter's
    gradient and the running statistics after the step, named as our model files name
    them."""
    nn = torch.nn
    net = nn.Sequential(
        nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 6, 1, bias=False),
        nn.BatchNorm2d(6),
        nn.ReLU(),
    )
    net.train()
    shapes = []
    for ours, theirs in SEPARABLE_NAMES.items():
        for p, t in net.state_dict().items():
            if p.startswith(theirs + ".") and t.dtype.is_floating_point:
                shapes.append((f"{ours}.{p.split('.', 1)[1]}", tuple(t.shape)))
    def draw(name, shape):
        if inputs.existing is not None:
            return from_json(inputs.existing["initial"][name])
        low, high = (0.5, 1.5) if name.endswith("running_var") else (-1.0, 1.0)
        return inputs.tensor(None, shape, low, high)

    params = {name: draw(name, shape) for name, shape in shapes}
    with torch.no_grad():
        state = net.state_dict()
        for ours, theirs in SEPARABLE_NAMES.items():
            for name, value in params.items():
                if name.startswith(ours + "."):
                    state[f"{theirs}.{name.split('.', 2)[2]}"].copy_(value)
    x = inputs.tensor("x", (3, 4, 7, 6), -1.0, 1.0).requires_grad_(True)
    y = net(x)
    dy = inputs.tensor("dy", y.shape, -1.0, 1.0)
    y.backward(dy)
    grads, after = {}, {}
    named = dict(net.named_parameters())
    state = net.state_dict()
    for ours, theirs in SEPARABLE_NAMES.items():
        for name in params:
            if not name.startswith(ours + "."):
                continue
            key = f"{theirs}.{name.split('.', 2)[2]}"
            if key in named:
                grads[name] = to_json(named[key].grad)
            else:
                after[name] = to_json(state[key])
    out = header(
        "a depthwise-separable block in training mode: depthwise 3x3 (groups = C = 4, "
        "padding 1, no bias), BatchNorm2d, ReLU, pointwise 1x1 (4 -> 6, no bias), "
        "BatchNorm2d, ReLU; one forward and backward pass of a batch of 3 from a random dy",
        "torch.nn.Sequential(Conv2d(4, 4, 3, padding=1, groups=4, bias=False), BatchNorm2d(4), "
        "ReLU(), Conv2d(4, 6, 1, bias=False), BatchNorm2d(6), ReLU())",
    )
    out.update(
        {
            "config": SEPARABLE_CONFIG,
            "initial": {k: to_json(v) for k, v in params.items()},
            "x": to_json(x),
            "y": to_json(y),
            "dy": to_json(dy),
            "dx": to_json(x.grad),
            "grads": grads,
            "buffers_after": after,
        }
    )
    return out


def batchnorm_case(inputs, description, call, module, x_shape):
    """One training-mode forward and backward through BatchNorm (batch statistics; running
    statistics updated with momentum 0.1 and the unbiased variance), then an evaluation-mode
    forward of another batch with the updated running statistics."""
    c = x_shape[1]
    with torch.no_grad():
        module.weight.copy_(inputs.tensor("weight", (c,), 0.5, 1.5))
        module.bias.copy_(inputs.tensor("bias", (c,), -0.5, 0.5))
        module.running_mean.copy_(inputs.tensor("running_mean_before", (c,), -0.5, 0.5))
        module.running_var.copy_(inputs.tensor("running_var_before", (c,), 0.5, 1.5))
    out = header(description, call)
    out.update(
        {
            "momentum": module.momentum,
            "eps": module.eps,
            "running_mean_before": to_json(module.running_mean),
            "running_var_before": to_json(module.running_var),
        }
    )
    module.train()
    x = inputs.tensor("x", x_shape, -2.0, 3.0).requires_grad_(True)
    y = module(x)
    dy = inputs.tensor("dy", y.shape, -1.0, 1.0)
    y.backward(dy)
    out.update(
        {
            "weight": to_json(module.weight),
            "bias": to_json(module.bias),
            "x": to_json(x),
            "y": to_json(y),
            "dy": to_json(dy),
            "dx": to_json(x.grad),
            "dweight": to_json(module.weight.grad),
            "dbias": to_json(module.bias.grad),
            "running_mean": to_json(module.running_mean),
            "running_var": to_json(module.running_var),
            "num_batches_tracked": int(module.num_batches_tracked),
        }
    )
    module.eval()
    x_eval = inputs.tensor("x_eval", x_shape, -2.0, 3.0)
    with torch.no_grad():
        out.update({"x_eval": to_json(x_eval), "y_eval": to_json(module(x_eval))})
    return out


def no_ties(kernel, stride):
    """Max pooling's gradient is defined only without ties: check each window's maximum is unique."""

    def check(x, _y):
        windows = x.detach().unfold(2, kernel, stride).unfold(3, kernel, stride)
        windows = windows.reshape(*windows.shape[:4], -1)
        top2 = windows.topk(2, dim=-1).values
        assert bool((top2[..., 0] > top2[..., 1]).all()), "a pooling window has a tie"

    return check


def softmax_cross_entropy(inputs):
    z = inputs.tensor("z", (4, 5), -4.0, 4.0).requires_grad_(True)
    labels = inputs.labels("labels", 4, 5)
    loss = F.cross_entropy(z, labels)
    loss.backward()
    out = header(
        "mean softmax cross-entropy over a batch of 4 logits vectors (5 classes) and its "
        "gradient dL/dz = (softmax(z) - onehot(y)) / 4",
        "torch.nn.functional.cross_entropy(z, y)",
    )
    out.update(
        {
            "z": to_json(z),
            "labels": labels.tolist(),
            "loss": float(loss),
            "dz": to_json(z.grad),
            "softmax": to_json(torch.softmax(z.detach(), dim=1)),
        }
    )
    return out


def softmax_cross_entropy_smoothed(inputs):
    z = inputs.tensor("z", (4, 5), -4.0, 4.0).requires_grad_(True)
    labels = inputs.labels("labels", 4, 5)
    loss = F.cross_entropy(z, labels, label_smoothing=0.1)
    loss.backward()
    out = header(
        "mean softmax cross-entropy with label smoothing 0.1 over a batch of 4 logits vectors "
        "(5 classes): targets q = 0.9 onehot(y) + 0.1 / 5, and dL/dz = (softmax(z) - q) / 4",
        "torch.nn.functional.cross_entropy(z, y, label_smoothing=0.1)",
    )
    out.update(
        {
            "z": to_json(z),
            "labels": labels.tolist(),
            "label_smoothing": 0.1,
            "loss": float(loss),
            "dz": to_json(z.grad),
        }
    )
    return out


def train_steps(inputs, call, make_optimizer):
    """3 steps of an optimiser on one batch, through report 1's network in small."""
    net = small_net()
    shapes = []
    for ours, theirs in SMALL_NET_NAMES.items():
        for p in ("weight", "bias"):
            shapes.append((f"{ours}.{p}", tuple(net.state_dict()[f"{theirs}.{p}"].shape)))
    initial = inputs.params("initial", shapes, -0.5, 0.5)
    with torch.no_grad():
        for ours, theirs in SMALL_NET_NAMES.items():
            for p in ("weight", "bias"):
                net.state_dict()[f"{theirs}.{p}"].copy_(initial[f"{ours}.{p}"])
    x = inputs.tensor("x", (6, 1, 8, 8), 0.0, 1.0)
    labels = (
        torch.tensor([0, 1, 2, 2, 1, 0]) if inputs.existing is None else inputs.labels("labels", 6, 3)
    )
    opt = make_optimizer(net.parameters())
    losses = []
    for _ in range(3):
        opt.zero_grad()
        loss = F.cross_entropy(net(x), labels)
        losses.append(float(loss))
        loss.backward()
        opt.step()
    after = {}
    for ours, theirs in SMALL_NET_NAMES.items():
        for p in ("weight", "bias"):
            after[f"{ours}.{p}"] = to_json(net.state_dict()[f"{theirs}.{p}"])
    out = header(
        "report 1's network shape in small (1x8x8 input, 4 filters, Dense 16, Dense 3); "
        f"3 steps of {call} on the same batch of 6; weights named as the project's model "
        "files name them",
        call,
    )
    out.update(
        {
            "config": SMALL_NET_CONFIG,
            "x": to_json(x),
            "labels": labels.tolist(),
            "initial": {k: to_json(v) for k, v in initial.items()},
            "losses_before_each_step": losses,
            "after_3_steps": after,
        }
    )
    return out


def schedule_rates(lr, epochs, steps, warmup, main):
    """The learning rate of every step of a run of `epochs` epochs of `steps` steps, driving
    PyTorch's schedulers as a training loop would: with `warmup` epochs, LinearLR stepped after
    every step of them (start_factor 1/T, T = warmup x steps, so that step t of the warm-up is
    at lr (t + 1) / T and its last step at lr); then the schedule `main(optimizer)` (or none),
    made when the warm-up ends and stepped after every epoch."""
    param = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([param], lr=lr)
    param.grad = torch.zeros(1)
    total = warmup * steps
    warm = None
    if warmup > 0:
        warm = torch.optim.lr_scheduler.LinearLR(
            opt, start_factor=1.0 / total, end_factor=1.0, total_iters=total - 1
        )
    after = None
    rates = []
    for epoch in range(epochs):
        if epoch == warmup and main is not None:
            after = main(opt)
        for _ in range(steps):
            rates.append(opt.param_groups[0]["lr"])
            opt.step()
            if epoch < warmup:
                warm.step()
        if after is not None:
            after.step()
    return rates


def lr_schedules(_inputs):
    sched = torch.optim.lr_scheduler
    runs = [
        {
            "schedule": "cosine", "lr": 0.1, "min_lr": 0.001, "epochs": 4, "warmup": 1,
            "steps": 3,
            "pytorch": "LinearLR(opt, start_factor=1/3, total_iters=2) per step for 1 epoch, "
            "then CosineAnnealingLR(opt, T_max=3, eta_min=0.001) per epoch",
            "main": lambda o: sched.CosineAnnealingLR(o, T_max=3, eta_min=0.001),
        },
        {
            "schedule": "cosine", "lr": 0.1, "min_lr": 0.0, "epochs": 5, "warmup": 2,
            "steps": 4,
            "pytorch": "LinearLR(opt, start_factor=1/8, total_iters=7) per step for 2 epochs, "
            "then CosineAnnealingLR(opt, T_max=3) per epoch",
            "main": lambda o: sched.CosineAnnealingLR(o, T_max=3, eta_min=0.0),
        },
        {
            "schedule": "cosine", "lr": 0.05, "min_lr": 0.0, "epochs": 3, "warmup": 0,
            "steps": 2,
            "pytorch": "CosineAnnealingLR(opt, T_max=3) per epoch (no warm-up)",
            "main": lambda o: sched.CosineAnnealingLR(o, T_max=3, eta_min=0.0),
        },
        {
            "schedule": "step", "lr": 0.2, "step_size": 1, "gamma": 0.5, "epochs": 4,
            "warmup": 2, "steps": 2,
            "pytorch": "LinearLR(opt, start_factor=1/4, total_iters=3) per step for 2 epochs, "
            "then StepLR(opt, step_size=1, gamma=0.5) per epoch",
            "main": lambda o: sched.StepLR(o, step_size=1, gamma=0.5),
        },
        {
            "schedule": "constant", "lr": 0.05, "epochs": 3, "warmup": 2, "steps": 5,
            "pytorch": "LinearLR(opt, start_factor=1/10, total_iters=9) per step for 2 epochs, "
            "then the base rate",
            "main": None,
        },
    ]
    out = header(
        "the learning rate of every step of small runs (epochs x steps per epoch), warm-up "
        "linear per step from lr / T to lr over its T = warmup x steps steps (step t at "
        "lr (t + 1) / T), then the schedule per epoch over the epochs after the warm-up",
        "torch.optim.lr_scheduler.LinearLR per step, then CosineAnnealingLR or StepLR per epoch",
    )
    cases_out = []
    for run in runs:
        main = run.pop("main")
        rates = schedule_rates(run["lr"], run["epochs"], run["steps"], run["warmup"], main)
        run["rates"] = [round(r, DIGITS) for r in rates]
        cases_out.append(run)
    out["runs"] = cases_out
    return out


# Networks that are graphs (Shortcut and Route lines), as our configs write them, and the same
# networks in PyTorch as a module whose `layers` is a ModuleList indexed like our layer lines
# (an nn.Identity where a line has no parameters), so that its state dict has our model
# files' names: `layers.{i}.weight`, `layers.{i}.running_mean`, ...
RESIDUAL_CONFIG = (
    "11\n"
    "Input shape=2x8x8\n"
    "Conv2D filters=3 kernel=3x3 padding=1 activation=relu\n"  # 0 the stem: the block's input
    "Conv2D filters=4 kernel=3x3 stride=2 padding=1\n"  # 1
    "BatchNorm2D activation=relu\n"  # 2
    "Conv2D filters=4 kernel=3x3 padding=1\n"  # 3
    "BatchNorm2D\n"  # 4 the main path
    "Route layers=-5\n"  # 5 the block's input again
    "Conv2D filters=4 kernel=1x1 stride=2\n"  # 6
    "BatchNorm2D\n"  # 7 the projection
    "Shortcut from=-4 activation=relu\n"  # 8 relu(7 + 4)
    "GlobalAvgPool2D\n"  # 9
    "Dense units=3\n"  # 10
)
CONCAT_CONFIG = (
    "7\n"
    "Input shape=2x6x6\n"
    "Conv2D filters=3 kernel=3x3 padding=1 activation=relu\n"  # 0 the stem
    "Conv2D filters=2 kernel=1x1 activation=tanh\n"  # 1 branch A
    "Route layers=-2\n"  # 2 the stem again
    "Conv2D filters=4 kernel=3x3 padding=1 activation=relu\n"  # 3 branch B
    "Route layers=-3,-1\n"  # 4 [A, B]: 6 channels
    "AvgPool2D pool=2x2\n"  # 5
    "Dense units=3\n"  # 6 (Flatten implied)
)
# A MobileNetV2 inverted residual block (stride 1, equal channels: with its residual add)
# after a stem: expand 1x1, depthwise 3x3, project 1x1, ReLU6 after all but the projection.
INVERTED_RESIDUAL_CONFIG = (
    "10\n"
    "Input shape=2x8x8\n"
    "Conv2D filters=4 kernel=3x3 padding=1 activation=relu6\n"  # 0 the stem: the block's input
    "Conv2D filters=8 kernel=1x1 bias=false\n"  # 1 expand
    "BatchNorm2D activation=relu6\n"  # 2
    "Conv2D filters=8 kernel=3x3 padding=1 groups=8 bias=false\n"  # 3 depthwise
    "BatchNorm2D activation=relu6\n"  # 4
    "Conv2D filters=4 kernel=1x1 bias=false\n"  # 5 project
    "BatchNorm2D\n"  # 6 no activation
    "Shortcut from=-7\n"  # 7 the stem + 6
    "GlobalAvgPool2D\n"  # 8
    "Dense units=3\n"  # 9
)


class Graph(torch.nn.Module):
    def __init__(self, layers, forward):
        super().__init__()
        self.layers = torch.nn.ModuleList(layers)
        self.run = forward

    def forward(self, x):
        return self.run(self.layers, x)


def residual_net():
    nn = torch.nn

    def forward(l, x):
        stem = torch.relu(l[0](x))
        main = l[4](l[3](torch.relu(l[2](l[1](stem)))))
        skip = l[7](l[6](stem))
        y = torch.relu(skip + main)
        return l[10](y.mean(dim=(2, 3)))

    layers = [
        nn.Conv2d(2, 3, 3, padding=1), nn.Conv2d(3, 4, 3, stride=2, padding=1),
        nn.BatchNorm2d(4), nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Identity(),
        nn.Conv2d(3, 4, 1, stride=2), nn.BatchNorm2d(4), nn.Identity(), nn.Identity(),
        nn.Linear(4, 3),
    ]
    return Graph(layers, forward)


def concat_net():
    nn = torch.nn

    def forward(l, x):
        stem = torch.relu(l[0](x))
        a = torch.tanh(l[1](stem))
        b = torch.relu(l[3](stem))
        y = F.avg_pool2d(torch.cat([a, b], dim=1), 2)
        return l[6](y.flatten(1))

    layers = [
        nn.Conv2d(2, 3, 3, padding=1), nn.Conv2d(3, 2, 1), nn.Identity(),
        nn.Conv2d(3, 4, 3, padding=1), nn.Identity(), nn.Identity(), nn.Linear(6 * 3 * 3, 3),
    ]
    return Graph(layers, forward)


def inverted_residual_net():
    nn = torch.nn
    relu6 = F.relu6

    def forward(l, x):
        stem = relu6(l[0](x))
        h = relu6(l[2](l[1](stem)))
        h = relu6(l[4](l[3](h)))
        h = l[6](l[5](h))
        return l[9]((stem + h).mean(dim=(2, 3)))

    layers = [
        nn.Conv2d(2, 4, 3, padding=1), nn.Conv2d(4, 8, 1, bias=False), nn.BatchNorm2d(8),
        nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.BatchNorm2d(8),
        nn.Conv2d(8, 4, 1, bias=False), nn.BatchNorm2d(4), nn.Identity(), nn.Identity(),
        nn.Linear(4, 3),
    ]
    return Graph(layers, forward)


def relu6_case(inputs):
    """ReLU6 forward and backward on inputs spread over both kinks (0 and 6), none within
    0.01 of one (the derivative there is one-sided)."""
    x = inputs.tensor("x", (2, 3, 4, 5), -4.0, 10.0)
    assert ((x.abs() > 0.01) & ((x - 6).abs() > 0.01)).all(), "x on a kink: draw again"
    x.requires_grad_(True)
    y = torch.nn.ReLU6()(x)
    dy = inputs.tensor("dy", y.shape, -1.0, 1.0)
    y.backward(dy)
    out = header("ReLU6 on 2x3x4x5, inputs from -4 to 10: y = min(max(x, 0), 6)", "torch.nn.ReLU6()")
    out.update({"x": to_json(x), "y": to_json(y), "dy": to_json(dy), "dx": to_json(x.grad)})
    return out


def graph_case(inputs, description, call, config, net, x_shape, x_range=(0.0, 1.0)):
    """One training step's forward and backward pass through a network that is a graph: the
    logits of a batch, the mean cross-entropy loss of its labels, dL/dx, every parameter's
    gradient and BatchNorm's running statistics after the pass (training mode: batch
    statistics), named as our model files name them."""
    net.train()
    state = net.state_dict()

    def draw(name, shape):
        if inputs.existing is not None:
            return from_json(inputs.existing["initial"][name])
        low, high = {"running_var": (0.5, 1.5), "weight": (-0.6, 0.6)}.get(
            name.rsplit(".", 1)[1], (-0.3, 0.3)
        )
        return inputs.tensor(None, shape, low, high)

    initial = {
        name: draw(name, tuple(t.shape))
        for name, t in state.items()
        if t.dtype.is_floating_point
    }
    with torch.no_grad():
        for name, value in initial.items():
            state[name].copy_(value)
    x = inputs.tensor("x", x_shape, *x_range).requires_grad_(True)
    labels = inputs.labels("labels", x_shape[0], 3)
    logits = net(x)
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    grads = {name: to_json(p.grad) for name, p in net.named_parameters()}
    after = {
        name: to_json(t)
        for name, t in net.state_dict().items()
        if name.endswith(("running_mean", "running_var"))
    }
    out = header(description, call)
    out.update(
        {
            "config": config,
            "initial": {k: to_json(v) for k, v in initial.items()},
            "x": to_json(x),
            "labels": labels.tolist(),
            "logits": to_json(logits),
            "loss": float(loss),
            "dx": to_json(x.grad),
            "grads": grads,
            "buffers_after": after,
        }
    )
    return out


def cases():
    """Each fixture: its file name, the name that seeds its drawn inputs, and the function
    that computes it from its inputs."""
    nn = torch.nn
    layers = [
        (
            "conv2d_same_5x5",
            "Conv2D, 1 input channel, 2 filters, 5x5 kernel, stride 1, padding 2 (same), "
            "input 6x6, batch 3",
            "torch.nn.Conv2d(1, 2, 5, padding=2)",
            lambda: nn.Conv2d(1, 2, 5, padding=2),
            (3, 1, 6, 6),
            None,
            True,
        ),
        (
            "conv2d_stride2_pad1",
            "Conv2D, 3 input channels, 4 filters, 3x3 kernel, stride 2, zero padding 1, "
            "odd input 7x6, batch 2",
            "torch.nn.Conv2d(3, 4, 3, stride=2, padding=1)",
            lambda: nn.Conv2d(3, 4, 3, stride=2, padding=1),
            (2, 3, 7, 6),
            None,
            True,
        ),
        (
            "conv2d_valid_2x3",
            "Conv2D, 2 input channels, 3 filters, non-square 2x3 kernel, stride 1, "
            "no padding (valid), input 5x6, batch 2",
            "torch.nn.Conv2d(2, 3, (2, 3))",
            lambda: nn.Conv2d(2, 3, (2, 3)),
            (2, 2, 5, 6),
            None,
            True,
        ),
        (
            "conv2d_groups2",
            "Conv2D in 2 groups, 4 input channels, 6 filters (each reads 2 channels), 3x3 "
            "kernel, stride 1, padding 1, input 5x6, batch 2",
            "torch.nn.Conv2d(4, 6, 3, padding=1, groups=2)",
            lambda: nn.Conv2d(4, 6, 3, padding=1, groups=2),
            (2, 4, 5, 6),
            None,
            True,
        ),
        (
            "conv2d_depthwise_s1",
            "depthwise Conv2D (groups = C = 3, one filter per channel), 3x3 kernel, stride 1, "
            "padding 1, input 7x6, batch 2",
            "torch.nn.Conv2d(3, 3, 3, padding=1, groups=3)",
            lambda: nn.Conv2d(3, 3, 3, padding=1, groups=3),
            (2, 3, 7, 6),
            None,
            True,
        ),
        (
            "conv2d_depthwise_s2",
            "depthwise Conv2D (groups = C = 4, two filters per channel), 3x3 kernel, stride 2, "
            "padding 1, odd input 7x9, batch 3",
            "torch.nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=4)",
            lambda: nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=4),
            (3, 4, 7, 9),
            None,
            True,
        ),
        (
            "conv2d_nobias",
            "Conv2D without a bias, 3 input channels, 4 filters, 3x3 kernel, stride 1, "
            "padding 1, input 5x5, batch 2",
            "torch.nn.Conv2d(3, 4, 3, padding=1, bias=False)",
            lambda: nn.Conv2d(3, 4, 3, padding=1, bias=False),
            (2, 3, 5, 5),
            None,
            True,
        ),
        (
            "dense_7_to_4",
            "Dense 7 -> 4 (weight [4, 7]), batch 3",
            "torch.nn.Linear(7, 4)",
            lambda: nn.Linear(7, 4),
            (3, 7),
            None,
            True,
        ),
        (
            "maxpool_2x2_s2",
            "MaxPool2D 2x2 stride 2 on 2x3x6x6 (no ties)",
            "torch.nn.MaxPool2d(2, 2)",
            lambda: nn.MaxPool2d(2, 2),
            (2, 3, 6, 6),
            no_ties(2, 2),
            False,
        ),
        (
            "maxpool_3x3_s2_odd",
            "MaxPool2D 3x3 stride 2 on 1x2x7x7 (overlapping windows, no ties)",
            "torch.nn.MaxPool2d(3, 2)",
            lambda: nn.MaxPool2d(3, 2),
            (1, 2, 7, 7),
            no_ties(3, 2),
            False,
        ),
        (
            "avgpool_2x2_s2_odd",
            "AvgPool2D 2x2 stride 2 on 2x2x5x5 (last row/column dropped, floor)",
            "torch.nn.AvgPool2d(2, 2)",
            lambda: nn.AvgPool2d(2, 2),
            (2, 2, 5, 5),
            None,
            False,
        ),
        (
            "global_avgpool_2x3x4x5",
            "GlobalAvgPool2D on 2x3x4x5: the mean of each channel's 4x5 plane, "
            "(C, H, W) -> (C), y [2, 3]",
            "torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(1))",
            lambda: nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1)),
            (2, 3, 4, 5),
            None,
            False,
        ),
    ]
    for name, description, call, make, x_shape, check, has_params in layers:
        yield name, name, lambda inp, d=description, c=call, m=make, s=x_shape, k=check, p=has_params: (
            layer_case(inp, d, c, m(), s, k, p)
        )
    batchnorms = [
        (
            "batchnorm2d",
            "BatchNorm2D over 3 channels of 4x5, batch 2 (momentum 0.1, eps 1e-5)",
            "torch.nn.BatchNorm2d(3)",
            lambda: nn.BatchNorm2d(3),
            (2, 3, 4, 5),
        ),
        (
            "batchnorm1d",
            "BatchNorm1D over 6 features, batch 5 (momentum 0.1, eps 1e-5)",
            "torch.nn.BatchNorm1d(6)",
            lambda: nn.BatchNorm1d(6),
            (5, 6),
        ),
    ]
    for name, description, call, make, x_shape in batchnorms:
        yield name, name, lambda inp, d=description, c=call, m=make, s=x_shape: (
            batchnorm_case(inp, d, c, m(), s)
        )
    yield "separable_block", "separable_block", separable_block
    yield "relu6", "relu6", relu6_case
    yield "softmax_cross_entropy", "softmax_cross_entropy", softmax_cross_entropy
    yield (
        "softmax_cross_entropy_smoothed",
        "softmax_cross_entropy_smoothed",
        softmax_cross_entropy_smoothed,
    )
    optimizers = [
        ("sgd", "torch.optim.SGD(params, lr=0.1)", lambda p: torch.optim.SGD(p, lr=0.1)),
        (
            "sgd_momentum",
            "torch.optim.SGD(params, lr=0.1, momentum=0.9)",
            lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
        ),
        (
            "sgd_nesterov",
            "torch.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True)",
            lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
        ),
        (
            "sgd_weight_decay",
            "torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=0.01)",
            lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01),
        ),
        (
            "adam",
            "torch.optim.Adam(params, lr=0.01)  # betas (0.9, 0.999), eps 1e-8",
            lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.9, 0.999), eps=1e-8),
        ),
        (
            "adamw",
            "torch.optim.AdamW(params, lr=0.01, weight_decay=0.1)  # betas (0.9, 0.999), eps 1e-8",
            lambda p: torch.optim.AdamW(p, lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1),
        ),
    ]
    for name, call, make in optimizers:
        # One seed for every optimiser: the same network, weights and batch for each.
        yield f"train_steps_{name}", "train_steps", lambda inp, c=call, m=make: train_steps(inp, c, m)
    yield "lr_schedules", "lr_schedules", lr_schedules
    yield "residual_block_projection", "residual_block_projection", lambda inp: graph_case(
        inp,
        "a residual block with a projection shortcut in training mode, after a stem (Conv2d "
        "3x3 + ReLU, the block's input): conv 3x3 stride 2, BatchNorm2d, ReLU, conv 3x3, "
        "BatchNorm2d on the main path; conv 1x1 stride 2, BatchNorm2d on the skip path "
        "(reading the stem again); their sum, ReLU; global average pooling and a Linear layer; "
        "the mean cross-entropy of a batch of 4, one forward and backward pass",
        "relu(bn(conv(relu(bn(conv(s))))) + bn(conv1x1(s))), s = relu(conv(x)); "
        "torch.nn.functional.cross_entropy(linear(mean over H, W), y)",
        RESIDUAL_CONFIG,
        residual_net(),
        (4, 2, 8, 8),
    )
    yield "concat_branches", "concat_branches", lambda inp: graph_case(
        inp,
        "two branches on one stem concatenated along channels: stem conv 3x3 + ReLU; branch A "
        "conv 1x1 + tanh, branch B conv 3x3 + ReLU, both reading the stem; torch.cat([A, B], "
        "dim=1), average pooling 2x2, a Linear layer; the mean cross-entropy of a batch of 3, "
        "one forward and backward pass",
        "torch.cat([tanh(conv1x1(s)), relu(conv3x3(s))], dim=1), s = relu(conv(x)); "
        "torch.nn.functional.cross_entropy(linear(flatten(avg_pool2d(., 2))), y)",
        CONCAT_CONFIG,
        concat_net(),
        (3, 2, 6, 6),
    )
    yield "inverted_residual_block", "inverted_residual_block", lambda inp: graph_case(
        inp,
        "a MobileNetV2 inverted residual block (stride 1, 4 channels in and out: with its "
        "residual add) in training mode, after a stem (Conv2d 3x3 + ReLU6, the block's input): "
        "expand conv 1x1 (4 -> 8, no bias), BatchNorm2d, ReLU6; depthwise conv 3x3 (groups 8, "
        "no bias), BatchNorm2d, ReLU6; project conv 1x1 (8 -> 4, no bias), BatchNorm2d; plus "
        "the stem; global average pooling and a Linear layer; inputs from 0 to 4 so that the "
        "stem's ReLU6 is capped at 6 in places; the mean cross-entropy of a batch of 4, one "
        "forward and backward pass",
        "s + bn(pw(relu6(bn(dw(relu6(bn(expand(s)))))))), s = relu6(conv(x)); "
        "torch.nn.functional.cross_entropy(linear(mean over H, W), y)",
        INVERTED_RESIDUAL_CONFIG,
        inverted_residual_net(),
        (4, 2, 8, 8),
        (0.0, 4.0),
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("tests/fixtures"), help="where to write")
    parser.add_argument(
        "--inputs-from",
        type=Path,
        help="read each case's inputs from DIR/NAME.json instead of drawing them",
    )
    args = parser.parse_args()
    torch.set_default_dtype(torch.float64)
    torch.use_deterministic_algorithms(True)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, seed_name, compute in cases():
        existing = None
        if args.inputs_from is not None and (args.inputs_from / f"{name}.json").exists():
            existing = json.loads((args.inputs_from / f"{name}.json").read_text())
        torch.manual_seed(0)  # modules draw default weights before theirs are copied in
        result = compute(Inputs(seed_name, existing))
        path = args.out / f"{name}.json"
        path.write_text(json.dumps(result, separators=(",", ":")))
        print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
