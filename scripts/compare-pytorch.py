#!/usr/bin/env python3
"""Time `cnn` and PyTorch side by side, on this machine, in one session, alternately.

Every row is run `--runs` times for each tool, alternating (cnn, PyTorch, cnn, PyTorch, ...),
so that a machine that speeds up or slows down during the session affects both alike. Each
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
  infer-1         inference of one image (probabilities), per image: `cnn bench`'s median;
                  PyTorch in eval mode under inference_mode, median of blocks of 200 calls
  infer-1000      inference of a batch of 1000 images, per image

The table goes to stdout and, with --write, into docs/PERFORMANCE.md between the markers
`<!-- compare-pytorch:begin -->` and `<!-- compare-pytorch:end -->`, with the machine's CPU
model, flags, core count, cnn's measured peak, the date and the versions.

Usage (from the repository root, after `cargo build --release`):
  python3 -m venv /tmp/compare-venv
  /tmp/compare-venv/bin/pip install -r scripts/requirements-compare.txt
  /tmp/compare-venv/bin/python scripts/compare-pytorch.py --runs 5 --write
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

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
BEGIN = "<!-- compare-pytorch:begin -->"
END = "<!-- compare-pytorch:end -->"

# The targets of issue 18: how many times faster than PyTorch cnn should be.
TARGETS = {
    "report1-epoch": 4.0,
    "lenet-epoch": 2.0,
    "recipe-epoch": 2.0,
    "infer-1": 6.0,
    "infer-1000": 10.0,
}
LABELS = {
    "report1-epoch": "report 1's network, Fashion-MNIST epoch, batch 32 (s)",
    "lenet-epoch": "LeNet-style, Fashion-MNIST epoch, batch 128 (s)",
    "recipe-epoch": "fashion-93's network, Fashion-MNIST epoch, batch 128 (s)",
    "infer-1": "report 1's network, inference, batch 1 (us/image)",
    "infer-1000": "report 1's network, inference, batch 1000 (us/image)",
}


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


def torch_infer(x, batch, calls):
    """Median seconds per image of softmax(net(x)) on batches of `batch` images."""
    net = report1_net().eval()
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


def cnn_bench(cnn, threads, runs):
    """(per-image seconds at batch 1, at batch 1000, measured peak GFLOP/s) from `cnn bench`."""
    settle()
    cmd = [cnn, "bench", str(ROOT / "examples/report1-10.cfg"), "--threads", str(threads),
           "--runs", str(runs), "--inference-batch", "1,1000"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} failed: {res.stderr.strip()}")
    text = res.stdout + res.stderr
    per = {int(b): float(us) * 1e-6 for b, us in
           re.findall(r"inference,\s+batch\s+(\d+):.*?=\s*([\d.]+) us per image", text)}
    peak = re.search(r"machine peak ([\d.]+) GFLOP/s", text)
    return per.get(1), per.get(1000), float(peak.group(1)) if peak else None


def fmt(values, scale, digits):
    m = statistics.median(values) * scale
    lo, hi = min(values) * scale, max(values) * scale
    return f"{m:.{digits}f} [{lo:.{digits}f}-{hi:.{digits}f}]", m


def cpu_facts():
    model, flags = platform.processor() or "unknown", []
    try:
        info = Path("/proc/cpuinfo").read_text()
        m = re.search(r"^model name\s*:\s*(.*)$", info, re.M)
        model = m.group(1) if m else model
        f = re.search(r"^flags\s*:\s*(.*)$", info, re.M)
        have = set(f.group(1).split()) if f else set()
        flags = [x for x in ("avx2", "fma", "avx512f", "avx512vl", "avx512_bf16") if x in have]
    except OSError:
        pass
    return model, flags, os.cpu_count()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cnn", default=str(ROOT / "target/release/cnn"))
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/fashion-mnist"))
    ap.add_argument("--runs", type=int, default=5, help="runs per tool and row (default 5)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rows", default="report1-epoch,lenet-epoch,recipe-epoch,infer-1,infer-1000")
    ap.add_argument("--write", action="store_true", help="write the table into docs/PERFORMANCE.md")
    args = ap.parse_args()
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
    cnn_t = {r: [] for r in rows}
    torch_t = {r: [] for r in rows}
    peaks = []
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
        if "infer-1" in rows or "infer-1000" in rows:
            one, thousand, peak = cnn_bench(args.cnn, args.threads, 30)
            peaks.append(peak)
            if "infer-1" in rows:
                cnn_t["infer-1"].append(one)
                torch_t["infer-1"].append(torch_infer(x, 1, 30))
            if "infer-1000" in rows:
                cnn_t["infer-1000"].append(thousand)
                torch_t["infer-1000"].append(torch_infer(x, 1000, 7))
        print(f"run {run + 1}/{args.runs} done", file=sys.stderr)

    model, flags, cores = cpu_facts()
    peak_text = ""
    if peaks and all(p is not None for p in peaks):
        peak_text = f"; cnn's measured peak {min(peaks):.0f}-{max(peaks):.0f} GFLOP/s"
    lines = [
        f"Measured {datetime.date.today().isoformat()} by `python3 scripts/compare-pytorch.py "
        f"--runs {args.runs}`: {model}, {cores} cores, flags {' '.join(flags)}{peak_text}; "
        f"{args.threads} threads each; PyTorch {torch.__version__} (CPU). Median of {args.runs} "
        "alternating runs per tool, lowest and highest in brackets.",
        "",
        "| work | PyTorch | cnn | cnn is faster by | target |",
        "| --- | --- | --- | ---: | ---: |",
    ]
    for r in rows:
        scale, digits = (1.0, 2) if r.endswith("epoch") else (1e6, 1)
        t_text, t_med = fmt(torch_t[r], scale, digits)
        c_text, c_med = fmt(cnn_t[r], scale, digits)
        ratio = t_med / c_med
        mark = "met" if ratio >= TARGETS[r] else "not met"
        lines.append(f"| {LABELS[r]} | {t_text} | {c_text} | {ratio:.1f}x | {TARGETS[r]:.0f}x, {mark} |")
    table = "\n".join(lines)
    print(table)
    if args.write:
        doc = ROOT / "docs/PERFORMANCE.md"
        text = doc.read_text() if doc.exists() else "# Performance\n"
        block = f"{BEGIN}\n{table}\n{END}"
        if BEGIN in text and END in text:
            text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END):]
        else:
            text = text.rstrip() + "\n\n## cnn and PyTorch, side by side\n\n" + block + "\n"
        tmp = doc.with_suffix(".md.tmp")
        tmp.write_text(text)
        tmp.replace(doc)
        print(f"wrote {doc}", file=sys.stderr)


if __name__ == "__main__":
    main()
