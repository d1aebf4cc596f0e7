#!/usr/bin/env python3
"""Runs `cnn bench` with the AVX-512 kernels and with the AVX2 ones (CNN_NO_AVX512=1), or
with and without Winograd (`--settings avx512,im2col`: CNN_NO_WINOGRAD=1), alternately,
several times each, and prints the median of each figure per setting and their
ratio: on a shared machine whose speed drifts, only figures taken side by side compare.

Usage: scripts/compare-simd.py [--runs N] [--rounds R] [--threads T] -- CONFIG [bench args]
Example: scripts/compare-simd.py --rounds 5 --threads 2 -- examples/lenet.cfg --batch-size 128
"""
import argparse
import os
import re
import statistics
import subprocess
import sys

SETTINGS = {
    "avx512": {},
    "avx2": {"CNN_NO_AVX512": "1"},
    "portable": {"CNN_NO_SIMD": "1"},
    "im2col": {"CNN_NO_WINOGRAD": "1"},
}
# "train step, batch   32:     2.292 ms median (min 1.267, ...": the label and the median.
LINE = re.compile(r"^(train step|inference), +batch +(\d+): +([\d.]+) ms median")


def one_run(binary, env_extra, threads, runs, bench_args):
    env = dict(os.environ, **env_extra)
    cmd = [binary, "bench", *bench_args, "--threads", str(threads), "--runs", str(runs)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    figures = {}
    for line in out.splitlines():
        m = LINE.match(line)
        if m:
            figures[f"{m.group(1)} batch {m.group(2)} (ms)"] = float(m.group(3))
    return figures


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=5, help="runs of each setting, alternating")
    p.add_argument("--runs", type=int, default=20, help="cnn bench --runs")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--settings", default="avx512,avx2", help="of: " + ",".join(SETTINGS))
    p.add_argument("--binary", default="target/release/cnn")
    p.add_argument("bench_args", nargs="+", help="CONFIG and further cnn bench arguments")
    a = p.parse_args()
    names = a.settings.split(",")
    results = {n: [] for n in names}
    for r in range(a.rounds):
        for n in names:
            results[n].append(one_run(a.binary, SETTINGS[n], a.threads, a.runs, a.bench_args))
        print(f"round {r + 1}/{a.rounds} done", file=sys.stderr)
    keys = list(results[names[0]][0])
    print(f"{' '.join(a.bench_args)}, {a.threads} threads, median of {a.rounds} alternating runs")
    print("| figure | " + " | ".join(names) + f" | {names[1]} / {names[0]} |")
    print("| --- |" + " ---: |" * (len(names) + 1))
    for k in keys:
        med = [statistics.median(run[k] for run in results[n]) for n in names]
        cells = " | ".join(f"{m:.3f} [{min(run[k] for run in results[n]):.3f}-{max(run[k] for run in results[n]):.3f}]" for m, n in zip(med, names))
        print(f"| {k} | {cells} | {med[1] / med[0]:.2f}x |")


if __name__ == "__main__":
    main()
