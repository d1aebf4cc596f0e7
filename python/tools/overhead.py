"""The overhead of `cnn.Model.predict` over the library's Rust API, at batch 1 and 1000.

    python tools/overhead.py   (from python/, with the package installed)

Trains report 1's network for one epoch on the demo set, saves it, then times the same
predictions both ways, alternately, and prints the medians: the Rust side is
`cargo run --release --example predict_latency` (bytes to probabilities with
`Model::predict_proba`, from a program's main thread), the Python side `model.predict(x)`
on a uint8 array (the array read in place, the GIL released, the pool's threads).
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import cnn

ROOT = Path(__file__).resolve().parents[2]


def python_median(model: cnn.Model, x, runs: int) -> float:
    times = []
    for i in range(runs + runs // 10):
        start = time.perf_counter()
        model.predict(x)
        if i >= runs // 10:
            times.append((time.perf_counter() - start) * 1e6)
    return statistics.median(times)


def main() -> None:
    (x, y), (xt, _), classes = cnn.datasets.load("demo")
    model = cnn.Model.from_config(ROOT / "examples" / "report1-10.cfg", classes=classes)
    model.fit(x, y, epochs=1, progress=False)
    path = Path(tempfile.mkdtemp()) / "model.safetensors"
    model.save(path)
    subprocess.run(
        ["cargo", "build", "--release", "--example", "predict_latency"], cwd=ROOT, check=True,
        capture_output=True,
    )
    rust_bin = ROOT / "target" / "release" / "examples" / "predict_latency"
    batches = {1: xt[:1], 1000: (xt.repeat(2, axis=0))[:1000]}
    rounds = 9
    results = {n: {"rust": [], "python": []} for n in batches}
    for _ in range(rounds):
        out = subprocess.run([str(rust_bin), str(path), "1", "1000"], capture_output=True,
                             text=True, check=True).stdout
        for n, us in re.findall(r"batch (\d+): median ([\d.]+) us", out):
            results[int(n)]["rust"].append(float(us))
        for n, x_n in batches.items():
            results[n]["python"].append(python_median(model, x_n, 2000 if n == 1 else 60))
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} cores, load average {load:.2f}; medians of {rounds} rounds:")
    for n, r in results.items():
        rust, py = statistics.median(r["rust"]), statistics.median(r["python"])
        print(f"batch {n:>4}: Rust {rust:9.1f} us, Python {py:9.1f} us, "
              f"overhead {py - rust:+8.1f} us ({(py / rust - 1) * 100:+.0f}%)")


if __name__ == "__main__":
    main()
