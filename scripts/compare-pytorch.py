#!/usr/bin/env python3
"""Time `cnn` and PyTorch side by side, on this machine, alternately.

Every row is run `--runs` times for each tool, alternating (cnn, PyTorch, cnn, PyTorch, ...),
so that a machine that speeds up or slows down during the comparison affects both alike. Each
figure is the median of those runs, with the lowest and highest beside it. Both tools use the
same number of threads (`--threads`, default 2).

Rows (report 1's network is examples/report1-10.cfg; LeNet-style is examples/lenet.cfg):
  report1-epoch   one Fashion-MNIST epoch (60,000 images), batch 32, SGD lr 0.01, shuffled:
                  cnn's is the training time `cnn train` records in metrics.jsonl; PyTorch's
                  the same loop written as a PyTorch user would (tensors in memory, randperm,
                  index, forward, cross_entropy, backward, step), timed the same way
  lenet-epoch     the same with LeNet-style at batch 128
  recipe-epoch    the same with the network of examples/fashion-93.cfg (BatchNorm, Dropout) at
                  batch 128; its Train and Augment lines are left out, so both tools run the
                  same plain loop (augmentation and the optimiser's extras are not timed)
  separable-epoch the same with examples/separable.cfg (MobileNet-style: depthwise 3x3 and
                  pointwise 1x1 convolutions, BatchNorm, global average pooling) at batch 128,
                  where the depthwise convolutions run on kernels of their own
  resnet-epoch    the same with examples/resnet-small.cfg (three residual blocks, one with a
                  projection shortcut, BatchNorm, global average pooling) at batch 128, its
                  Train line left out
  fashion-resnet-epoch the same with examples/fashion-resnet.cfg (the residual recipe's
                  network, wider) at batch 128, its Train and Augment lines left out
  infer-1         inference of one image (probabilities), per image: `cnn bench`'s median;
                  PyTorch in eval mode under inference_mode, median of blocks of 200 calls
  infer-1000      inference of a batch of 1000 images, per image
  lenet-infer-1000 the same with LeNet-style

The graph rows' PyTorch networks (separable, resnet, fashion-resnet) are built from the
config files' own lines (CfgNet), so they are the networks cnn trains.

Beside each ratio, cnn's share of its measured peak: the FLOPs of the work (`cnn summary`'s
count: forward FLOPs per image for inference, training FLOPs per image times 60,000 for an
epoch) over cnn's time, against the peak `cnn bench` measures (a 1024^3 product on the same
threads). For inference rows it is `cnn bench`'s own figure, each run against the peak it
measured; for epochs, against the median peak of the session's `cnn bench` runs (none
without an inference row). It says how far cnn is from the machine's limit, which a ratio
to PyTorch does not.

The table is markdown, headed by the date and the machine: the CPU model (/proc/cpuinfo),
the core count, the kernels cnn ran (AVX-512, AVX2+FMA or portable: what the CPU's flags and
CNN_NO_AVX512 / CNN_NO_SIMD make cnn choose), cnn's measured peak and PyTorch's version. It
goes to stdout and, with --write, into docs/PERFORMANCE.md (or --write FILE) between the
lines `<!-- compare-pytorch:begin -->` and `<!-- compare-pytorch:end -->`, replacing what
was there; a FILE that does not exist is created with the block alone.

Usage (from the repository root, after `cargo build --release`):
  python3 -m venv /tmp/compare-venv
  /tmp/compare-venv/bin/pip install -r scripts/requirements-compare.txt
  /tmp/compare-venv/bin/python scripts/compare-pytorch.py --runs 5 --write

`python3 scripts/compare-pytorch.py --selftest` checks the table's writing on made-up
figures; it needs neither PyTorch nor numpy and runs nothing.
"""

import argparse
import datetime
import gzip
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as e:  # --selftest needs neither; main() says what is missing
    np = torch = nn = F = None
    MISSING = e

ROOT = Path(__file__).resolve().parent.parent
BEGIN = "<!-- compare-pytorch:begin -->"
END = "<!-- compare-pytorch:end -->"

# The speed-ups over PyTorch we hold ourselves to, per row (the table's last column, beside
# the measured one).
AIMS = {
    "report1-epoch": 4.0,
    "lenet-epoch": 2.0,
    "recipe-epoch": 2.0,
    "separable-epoch": 2.0,
    "resnet-epoch": 2.0,
    "fashion-resnet-epoch": 2.0,
    "infer-1": 6.0,
    "infer-1000": 10.0,
    "lenet-infer-1000": 2.0,
}
LABELS = {
    "report1-epoch": "report 1's network, Fashion-MNIST epoch, batch 32 (s)",
    "lenet-epoch": "LeNet-style, Fashion-MNIST epoch, batch 128 (s)",
    "recipe-epoch": "fashion-93's network, Fashion-MNIST epoch, batch 128 (s)",
    "separable-epoch": "separable (depthwise) network, Fashion-MNIST epoch, batch 128 (s)",
    "resnet-epoch": "resnet-small (residual) network, Fashion-MNIST epoch, batch 128 (s)",
    "fashion-resnet-epoch": "fashion-resnet's network, Fashion-MNIST epoch, batch 128 (s)",
    "infer-1": "report 1's network, inference, batch 1 (us/image)",
    "infer-1000": "report 1's network, inference, batch 1000 (us/image)",
    "lenet-infer-1000": "LeNet-style, inference, batch 1000 (us/image)",
}
# The config each row runs, for its FLOP count.
CONFIGS = {
    "report1-epoch": "examples/report1-10.cfg",
    "lenet-epoch": "examples/lenet.cfg",
    "recipe-epoch": "examples/fashion-93.cfg",
    "separable-epoch": "examples/separable.cfg",
    "resnet-epoch": "examples/resnet-small.cfg",
    "fashion-resnet-epoch": "examples/fashion-resnet.cfg",
    "infer-1": "examples/report1-10.cfg",
    "infer-1000": "examples/report1-10.cfg",
    "lenet-infer-1000": "examples/lenet.cfg",
}
EPOCH_IMAGES = 60_000


def read_idx(path):
    """An IDX file (plain or gzip) as a numpy array."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def find(data_dir, stem):
    for name in (stem, stem + ".gz"):
        p = Path(data_dir) / name
        if p.exists():
            return p
    sys.exit(f"error: {data_dir}: no {stem} or {stem}.gz (expected Fashion-MNIST's IDX files)")


def report1_net():
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2), nn.Flatten(),
        nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))


def lenet_net():
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2), nn.Flatten(),
        nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))


def recipe_net():
    """examples/fashion-93.cfg's layers."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Flatten(), nn.Linear(3136, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Dropout(0.3),
        nn.Linear(256, 10))


class CfgNet(nn.Module if nn else object):
    """The network of a cnn config file, built from its layer lines and run in config order:
    a layer reads the line above it, `Shortcut from=F` adds the output F lines up (or of
    layer F when F >= 0) to it, `Route layers=...` concatenates earlier outputs along
    channels (one layer: reads it again). Covers the lines the residual examples use:
    Conv2D, BatchNorm2D, MaxPool2D, Shortcut, Route, GlobalAvgPool2D, Dropout, Dense; an
    `activation=relu` is a ReLU after the line, softmax is left to cross_entropy."""

    def __init__(self, cfg):
        super().__init__()
        rows = [l.split("#")[0].split() for l in Path(cfg).read_text().splitlines()]
        rows = [r for r in rows if r and r[0] not in ("Train", "Augment")]
        keys = lambda r: dict(kv.split("=", 1) for kv in r[1:])
        shape = [int(v) for v in keys(rows[1])["shape"].split("x")]
        self.layers = nn.ModuleList()
        self.plan = []  # (kind, the layers it reads, relu after)
        shapes = []
        for i, row in enumerate(rows[2:]):
            kind, a = row[0], keys(row)
            at = lambda v: i + int(v) if int(v) < 0 else int(v)
            prev = shapes[-1] if shapes else shape
            reads = [i - 1]
            if kind == "Conv2D":
                k = int(a["kernel"].split("x")[0])
                stride = int(a.get("stride", 1))
                pad = k // 2 if a.get("padding") == "same" else 0
                groups = int(a.get("groups", 1))
                module = nn.Conv2d(prev[0], int(a["filters"]), k, stride=stride, padding=pad,
                                   groups=groups, bias=a.get("bias", "true") == "true")
                out = [int(a["filters"]), (prev[1] + 2 * pad - k) // stride + 1,
                       (prev[2] + 2 * pad - k) // stride + 1]
            elif kind == "BatchNorm2D":
                module, out = nn.BatchNorm2d(prev[0]), prev
            elif kind == "MaxPool2D":
                p = int(a["pool"].split("x")[0])
                module, out = nn.MaxPool2d(p, int(a.get("stride", p))), [prev[0], prev[1] // p, prev[2] // p]
            elif kind == "Shortcut":
                module, out, reads = nn.Identity(), prev, [i - 1, at(a["from"])]
            elif kind == "Route":
                reads = [at(v) for v in a["layers"].split(",")]
                module = nn.Identity()
                out = [sum(shapes[j][0] for j in reads)] + shapes[reads[0]][1:]
            elif kind == "GlobalAvgPool2D":
                module, out = nn.AdaptiveAvgPool2d(1), [prev[0]]
            elif kind == "Dropout":
                module, out = nn.Dropout(float(a["rate"])), prev
            elif kind == "Dense":
                n_in = prev[0] * prev[1] * prev[2] if len(prev) == 3 else prev[0]
                module, out = nn.Linear(n_in, int(a["units"])), [int(a["units"])]
            else:
                sys.exit(f"error: {cfg}: CfgNet does not build `{kind}` lines")
            self.layers.append(module)
            self.plan.append((kind, reads, a.get("activation") == "relu"))
            shapes.append(out)

    def forward(self, x):
        outs = []
        for layer, (kind, reads, relu) in zip(self.layers, self.plan):
            inputs = [outs[j] if j >= 0 else x for j in reads]
            if kind == "Shortcut":
                y = inputs[0] + inputs[1]
            elif kind == "Route":
                y = torch.cat(inputs, dim=1)
            elif kind == "Dense":
                y = layer(inputs[0].flatten(1))
            elif kind == "GlobalAvgPool2D":
                y = layer(inputs[0]).flatten(1)
            else:
                y = layer(inputs[0])
            outs.append(F.relu(y) if relu else y)
        return outs[-1]


def layers_only(cfg, out):
    """Writes `cfg` without its Train and Augment lines to `out` (the network alone)."""
    lines = [l for l in Path(cfg).read_text().splitlines() if not l.startswith(("Train", "Augment"))]
    Path(out).write_text("\n".join(lines) + "\n")
    return out


def torch_epoch(make_net, x, y, batch, seed):
    """Seconds of one training epoch, the loop alone."""
    torch.manual_seed(seed)
    net = make_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    g = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    start = time.perf_counter()
    perm = torch.randperm(n, generator=g)
    for i in range(0, n, batch):
        idx = perm[i : i + batch]
        xb, yb = x[idx], y[idx]
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(xb), yb)
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def torch_infer(x, batch, calls, make_net=None):
    """Median seconds per image of softmax(make_net()(x)) on batches of `batch` images
    (report 1's network by default)."""
    net = (make_net or report1_net)().eval()
    xb = x[:batch].contiguous()
    with torch.inference_mode():
        for _ in range(20):
            F.softmax(net(xb), dim=1)
        samples = []
        for _ in range(calls):
            start = time.perf_counter()
            reps = max(1, 200 // batch)
            for _ in range(reps):
                F.softmax(net(xb), dim=1)
            samples.append((time.perf_counter() - start) / reps / batch)
    return statistics.median(samples)


def settle():
    """Waits for PyTorch's OpenMP workers, which spin for a while after each parallel region,
    to go to sleep, so that they do not take a core from the `cnn` process started next."""
    time.sleep(1.0)


def cnn_epoch(cnn, cfg, data, batch, threads, seed):
    settle()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cmd = [cnn, "train", str(cfg), "--data", str(data), "--epochs", "1", "--batch-size",
               str(batch), "--lr", "0.01", "--optimizer", "sgd", "--threads", str(threads),
               "--seed", str(seed), "--out", str(out)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            sys.exit(f"error: {' '.join(cmd)} failed: {res.stderr.strip()}")
        line = (out / "metrics.jsonl").read_text().splitlines()[0]
        return json.loads(line)["seconds"]


def parse_bench(text):
    """`cnn bench`'s output as ({batch: (seconds per image, share of peak)}, peak GFLOP/s).

    >>> parse_bench("x: 2 threads; machine peak 180.5 GFLOP/s (median)\\n"
    ...             "inference,  batch    1:  0.013 ms median (min 0.012, max 0.02) 76923 img/s "
    ...             "79.3 GFLOP/s (44% of peak)  = 13.0 us per image")
    ({1: (1.3e-05, 0.44)}, 180.5)
    """
    per = {int(b): (float(us) * 1e-6, int(pct) / 100) for b, pct, us in re.findall(
        r"inference,\s+batch\s+(\d+):.*?\((\d+)% of peak\)\s+=\s*([\d.]+) us per image", text)}
    peak = re.search(r"machine peak ([\d.]+) GFLOP/s", text)
    return per, float(peak.group(1)) if peak else None


def cnn_bench(cnn, cfg, batches, threads, runs):
    """({batch: (per-image seconds, share of peak)}, measured peak GFLOP/s) from `cnn bench`."""
    settle()
    cmd = [cnn, "bench", str(ROOT / cfg), "--threads", str(threads), "--runs", str(runs),
           "--inference-batch", ",".join(map(str, batches))]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} failed: {res.stderr.strip()}")
    return parse_bench(res.stdout + res.stderr)


def cnn_flops(cnn, cfg):
    """(forward, training) FLOPs per image of `cfg`, from `cnn summary`."""
    res = subprocess.run([cnn, "summary", str(cfg)], capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"error: cnn summary {cfg} failed: {res.stderr.strip()}")

    def count(what):
        m = re.search(what + r" FLOPs per sample: ([\d,]+)", res.stdout)
        return int(m.group(1).replace(",", ""))
    return count("Forward"), count("Training")


def fmt(values, scale, digits):
    m = statistics.median(values) * scale
    lo, hi = min(values) * scale, max(values) * scale
    return f"{m:.{digits}f} [{lo:.{digits}f}-{hi:.{digits}f}]", m


def kernels_for(flags, env=None, machine=None):
    """The kernels cnn runs with (`kernels::simd` in src/kernels/mod.rs): AVX-512 if the CPU
    has avx512f, else AVX2+FMA if it has avx2 and fma, else portable; CNN_NO_SIMD forces the
    portable path and CNN_NO_AVX512 lowers AVX-512 to AVX2+FMA. `cnn` inherits this process's
    environment, so the same variables decide for it.

    >>> kernels_for({"avx2", "fma", "avx512f"}, {}, "x86_64")
    'AVX-512'
    >>> kernels_for({"avx2", "fma", "avx512f"}, {"CNN_NO_AVX512": "1"}, "x86_64")
    'AVX2+FMA'
    >>> kernels_for({"avx2"}, {}, "x86_64")
    'portable'
    >>> kernels_for(set(), {}, "aarch64")
    'portable'
    """
    env = os.environ if env is None else env
    machine = platform.machine() if machine is None else machine
    if machine not in ("x86_64", "AMD64") or "CNN_NO_SIMD" in env:
        return "portable"
    if "avx512f" in flags and "CNN_NO_AVX512" not in env:
        return "AVX-512"
    if "avx2" in flags and "fma" in flags:
        return "AVX2+FMA"
    return "portable"


def machine_facts():
    """(CPU model, core count, kernels cnn runs with) of this machine."""
    model, flags = platform.processor() or "unknown CPU", set()
    try:
        info = Path("/proc/cpuinfo").read_text()
        m = re.search(r"^model name\s*:\s*(.*)$", info, re.M)
        model = m.group(1).strip() if m else model
        f = re.search(r"^flags\s*:\s*(.*)$", info, re.M)
        flags = set(f.group(1).split()) if f else set()
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))  # what `nproc` prints
    except AttributeError:
        cores = os.cpu_count()
    return model, cores, kernels_for(flags)


def markdown(rows, cnn_t, torch_t, facts, shares=None):
    """The comparison as markdown: a line on the date and the machine, then one table row per
    row name in `rows`. `cnn_t` and `torch_t` map a row name to its timings in seconds (per
    epoch, or per image for inference); `shares` a row name to cnn's shares of its measured
    peak, one per run (a row without them shows a dash); `facts` holds date, cpu, cores,
    kernels, threads, runs, peaks (cnn's measured GFLOP/s, possibly empty), torch (PyTorch's
    version) and command (how the script was run)."""
    shares = shares or {}
    peaks = [p for p in facts["peaks"] if p is not None]
    peak = f"; cnn's measured peak {min(peaks):.0f}-{max(peaks):.0f} GFLOP/s" if peaks else ""
    lines = [
        f"Measured {facts['date']} on {facts['cpu']} ({facts['cores']} cores, cnn on its "
        f"{facts['kernels']} kernels{peak}) by `{facts['command']}`: {facts['threads']} "
        f"threads each, PyTorch {facts['torch']} on the CPU. Median of {facts['runs']} "
        "alternating runs per tool, lowest and highest in brackets.",
        "",
        "| work | PyTorch | cnn | cnn is faster by | cnn's share of its peak | we aim for |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        scale, digits = (1.0, 2) if r.endswith("epoch") else (1e6, 1)
        t_text, t_med = fmt(torch_t[r], scale, digits)
        c_text, c_med = fmt(cnn_t[r], scale, digits)
        share = f"{statistics.median(shares[r]):.0%}" if shares.get(r) else "-"
        lines.append(f"| {LABELS[r]} | {t_text} | {c_text} | {t_med / c_med:.1f}x | {share} "
                     f"| {AIMS[r]:.0f}x |")
    return "\n".join(lines)


def epoch_shares(cnn_t, train_flops, peaks):
    """cnn's share of its peak for each epoch row with a FLOP count in `train_flops`
    (training FLOPs per image): an epoch's FLOPs over each run's seconds, against the median
    of `peaks` (none without peaks)."""
    peaks = [p for p in peaks if p is not None]
    if not peaks:
        return {}
    peak = statistics.median(peaks) * 1e9
    return {r: [train_flops[r] * EPOCH_IMAGES / t / peak for t in cnn_t[r]]
            for r in cnn_t if r.endswith("epoch") and r in train_flops}


def with_block(text, table):
    """`text` with what lies between the BEGIN and END lines replaced by `table`, or None when
    it lacks them."""
    if BEGIN not in text or END not in text or text.index(END) < text.index(BEGIN):
        return None
    return text[: text.index(BEGIN)] + f"{BEGIN}\n{table}\n{END}" + text[text.index(END) + len(END):]


def write_table(path, table):
    """Writes `table` between the markers of `path` (atomically), or a new `path` holding the
    block alone."""
    path = Path(path)
    if path.exists():
        text = with_block(path.read_text(), table)
        if text is None:
            sys.exit(f"error: {path} has no `{BEGIN}` ... `{END}` block; add the two lines where "
                     "the table belongs")
    else:
        text = f"{BEGIN}\n{table}\n{END}\n"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def selftest():
    """Writes a table of made-up figures into a temporary page and checks the result."""
    import doctest

    failed, _ = doctest.testmod(verbose=False)
    assert failed == 0, f"{failed} doctest(s) failed"
    rows = list(LABELS)
    cnn_t = {"report1-epoch": [1.50, 1.40, 2.40], "lenet-epoch": [8.5, 8.6, 8.4],
             "recipe-epoch": [12.0, 11.5, 12.5], "separable-epoch": [9.0, 8.8, 9.9],
             "resnet-epoch": [10.0, 9.5, 11.0], "fashion-resnet-epoch": [30.0, 29.0, 31.0],
             "infer-1": [16e-6, 15e-6, 19e-6],
             "infer-1000": [8.1e-6, 7.3e-6, 16.4e-6], "lenet-infer-1000": [44e-6, 43e-6, 50e-6]}
    torch_t = {"report1-epoch": [6.4, 5.9, 9.7], "lenet-epoch": [18.9, 17.3, 22.2],
               "recipe-epoch": [26.4, 25.4, 28.9], "separable-epoch": [30.1, 29.0, 33.3],
               "resnet-epoch": [25.0, 24.0, 27.0], "fashion-resnet-epoch": [40.0, 39.0, 42.0],
               "infer-1": [125e-6, 100e-6, 145e-6],
               "infer-1000": [84e-6, 82e-6, 99e-6], "lenet-infer-1000": [300e-6, 290e-6, 310e-6]}
    facts = {"date": "2000-01-02", "cpu": "Test CPU", "cores": 2, "kernels": "AVX-512",
             "threads": 2, "runs": 3, "peaks": [150.0, 180.4], "torch": "0.0 (made up)",
             "command": "python3 scripts/compare-pytorch.py --runs 3"}
    shares = {"infer-1": [0.44, 0.41, 0.38], "infer-1000": [0.8, 0.85, 0.4]}
    shares.update(epoch_shares(cnn_t, {"report1-epoch": 2_867_712}, [150.0, 180.4, None]))
    want = [2_867_712 * 60_000 / t / 165.2e9 for t in [1.5, 1.4, 2.4]]
    assert shares["report1-epoch"] == want, shares["report1-epoch"]
    assert epoch_shares(cnn_t, {"report1-epoch": 1}, [None]) == {}
    table = markdown(rows, cnn_t, torch_t, facts, shares)
    print(table)
    lines = table.splitlines()
    assert lines[0].startswith("Measured 2000-01-02 on Test CPU (2 cores, cnn on its AVX-512 "
                               "kernels; cnn's measured peak 150-180 GFLOP/s)"), lines[0]
    assert lines[2] == ("| work | PyTorch | cnn | cnn is faster by | cnn's share of its peak "
                        "| we aim for |")
    assert len(lines) == 4 + len(rows)
    assert lines[4] == ("| report 1's network, Fashion-MNIST epoch, batch 32 (s) | 6.40 [5.90-9.70] "
                        "| 1.50 [1.40-2.40] | 4.3x | 69% | 4x |"), lines[4]
    assert lines[10] == ("| report 1's network, inference, batch 1 (us/image) | 125.0 [100.0-145.0] "
                        "| 16.0 [15.0-19.0] | 7.8x | 41% | 6x |"), lines[10]
    assert lines[11].endswith("| 10.4x | 80% | 10x |"), lines[10]
    assert lines[5].endswith("| 2.2x | - | 2x |"), lines[5]
    assert lines[9].endswith("| 1.3x | - | 2x |"), lines[9]
    assert lines[12].endswith("| 6.8x | - | 2x |"), lines[11]
    assert "peak" not in markdown(rows, cnn_t, torch_t, dict(facts, peaks=[None])).splitlines()[0]
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "PERFORMANCE.md"
        page.write_text(f"# Top\n\nbefore\n\n{BEGIN}\nold table\n{END}\n\nafter\n")
        write_table(page, table)
        write_table(page, table)  # twice: the block is replaced, not added to
        text = page.read_text()
        assert text == f"# Top\n\nbefore\n\n{BEGIN}\n{table}\n{END}\n\nafter\n", text
        assert with_block("no markers here", table) is None
        new = Path(tmp) / "table.md"
        write_table(new, table)
        assert new.read_text() == f"{BEGIN}\n{table}\n{END}\n"
    print("selftest passed", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cnn", default=str(ROOT / "target/release/cnn"))
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/fashion-mnist"))
    ap.add_argument("--runs", type=int, default=5, help="runs per tool and row (default 5)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rows", default=",".join(LABELS))
    ap.add_argument("--write", nargs="?", const=str(ROOT / "docs/PERFORMANCE.md"), metavar="FILE",
                    help="write the table between FILE's compare-pytorch markers "
                         "(default docs/PERFORMANCE.md)")
    ap.add_argument("--selftest", action="store_true",
                    help="check the table's writing on made-up figures, and exit")
    args = ap.parse_args()
    if args.selftest:
        selftest()
        return
    if torch is None:
        sys.exit(f"error: {MISSING}; install scripts/requirements-compare.txt (the usage at the "
                 "top of scripts/compare-pytorch.py says how)")
    if args.runs < 1:
        sys.exit("error: --runs must be at least 1")
    if not Path(args.cnn).exists():
        sys.exit(f"error: {args.cnn} not found; run `cargo build --release` first")
    rows = args.rows.split(",")
    for r in rows:
        if r not in LABELS:
            sys.exit(f"error: unknown row `{r}`; expected some of {', '.join(LABELS)}")

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    x = torch.from_numpy(read_idx(find(args.data, "train-images-idx3-ubyte")).copy())
    x = x.to(torch.float32).div_(255.0).unsqueeze(1)
    y = torch.from_numpy(read_idx(find(args.data, "train-labels-idx1-ubyte")).astype(np.int64))

    recipe_dir = tempfile.TemporaryDirectory()
    recipe_cfg = layers_only(ROOT / "examples/fashion-93.cfg", Path(recipe_dir.name) / "fashion-93-layers.cfg")
    resnet_cfg = layers_only(ROOT / "examples/resnet-small.cfg", Path(recipe_dir.name) / "resnet-small-layers.cfg")
    fashion_resnet_cfg = layers_only(ROOT / "examples/fashion-resnet.cfg",
                                     Path(recipe_dir.name) / "fashion-resnet-layers.cfg")
    cnn_t = {r: [] for r in rows}
    torch_t = {r: [] for r in rows}
    peaks = []
    shares = {r: [] for r in rows}
    for run in range(args.runs):
        seed = run + 1
        for r in rows:
            if r == "report1-epoch":
                cnn_t[r].append(cnn_epoch(args.cnn, ROOT / "examples/report1-10.cfg", args.data, 32, args.threads, seed))
                torch_t[r].append(torch_epoch(report1_net, x, y, 32, seed))
            elif r == "lenet-epoch":
                cnn_t[r].append(cnn_epoch(args.cnn, ROOT / "examples/lenet.cfg", args.data, 128, args.threads, seed))
                torch_t[r].append(torch_epoch(lenet_net, x, y, 128, seed))
            elif r == "recipe-epoch":
                cnn_t[r].append(cnn_epoch(args.cnn, recipe_cfg, args.data, 128, args.threads, seed))
                torch_t[r].append(torch_epoch(recipe_net, x, y, 128, seed))
            elif r == "separable-epoch":
                cnn_t[r].append(cnn_epoch(args.cnn, ROOT / "examples/separable.cfg", args.data, 128, args.threads, seed))
                torch_t[r].append(torch_epoch(lambda: CfgNet(ROOT / "examples/separable.cfg"), x, y, 128, seed))
            elif r == "resnet-epoch":
                cnn_t[r].append(cnn_epoch(args.cnn, resnet_cfg, args.data, 128, args.threads, seed))
                torch_t[r].append(torch_epoch(lambda: CfgNet(resnet_cfg), x, y, 128, seed))
            elif r == "fashion-resnet-epoch":
                cnn_t[r].append(cnn_epoch(args.cnn, fashion_resnet_cfg, args.data, 128, args.threads, seed))
                torch_t[r].append(torch_epoch(lambda: CfgNet(fashion_resnet_cfg), x, y, 128, seed))
        if "infer-1" in rows or "infer-1000" in rows:
            per, peak = cnn_bench(args.cnn, "examples/report1-10.cfg", [1, 1000], args.threads, 30)
            peaks.append(peak)
            for r, b, calls in [("infer-1", 1, 30), ("infer-1000", 1000, 7)]:
                if r in rows:
                    cnn_t[r].append(per[b][0])
                    shares[r].append(per[b][1])
                    torch_t[r].append(torch_infer(x, b, calls))
        if "lenet-infer-1000" in rows:
            per, peak = cnn_bench(args.cnn, "examples/lenet.cfg", [1000], args.threads, 7)
            peaks.append(peak)
            cnn_t["lenet-infer-1000"].append(per[1000][0])
            shares["lenet-infer-1000"].append(per[1000][1])
            torch_t["lenet-infer-1000"].append(torch_infer(x, 1000, 7, lenet_net))
        print(f"run {run + 1}/{args.runs} done", file=sys.stderr)

    cpu, cores, kernels = machine_facts()
    if "CNN_NO_WINOGRAD" in os.environ:
        kernels += " (Winograd off)"
    command = f"python3 scripts/compare-pytorch.py --runs {args.runs}"
    if args.threads != 2:
        command += f" --threads {args.threads}"
    if rows != list(LABELS):
        command += f" --rows {','.join(rows)}"
    facts = {"date": datetime.date.today().isoformat(), "cpu": cpu, "cores": cores,
             "kernels": kernels, "threads": args.threads, "runs": args.runs, "peaks": peaks,
             "torch": torch.__version__, "command": command}
    train_flops = {r: cnn_flops(args.cnn, ROOT / CONFIGS[r])[1] for r in rows if r.endswith("epoch")}
    shares.update(epoch_shares(cnn_t, train_flops, peaks))
    table = markdown(rows, cnn_t, torch_t, facts, shares)
    print(table)
    if args.write:
        write_table(args.write, table)
        print(f"wrote {args.write}", file=sys.stderr)


if __name__ == "__main__":
    main()
