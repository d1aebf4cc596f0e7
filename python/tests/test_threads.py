"""The GIL is released while the model computes, and Ctrl-C stops fit cleanly."""

from __future__ import annotations

import _thread
import signal
import threading
import time

import numpy as np
import pytest

import cnn
from conftest import CONFIG


def test_another_python_thread_keeps_running_during_fit(demo):
    (x, y), _, _ = demo
    model = cnn.Model.from_config(CONFIG)
    ticks = []
    done = threading.Event()

    def tick():
        # A millisecond's sleep, then a note of the time: a thread that needs the GIL for
        # a moment a thousand times a second.
        while not done.is_set():
            time.sleep(0.001)
            ticks.append(time.perf_counter())

    ticker = threading.Thread(target=tick)
    ticker.start()
    try:
        time.sleep(0.05)
        start = time.perf_counter()
        # 20 epochs: 0.5 s on 2 idle cores, long enough that a GIL held throughout shows.
        model.fit(x, y, epochs=20, progress=False)
        end = time.perf_counter()
    finally:
        done.set()
        ticker.join()
    inside = [start] + [t for t in ticks if start < t < end] + [end]
    gap = max(b - a for a, b in zip(inside, inside[1:]))
    # Were the GIL held by fit, the thread would not tick from its start to its end; released,
    # it ticks all along (at most 50 ms without the GIL for fit's own checks, plus what a
    # busy machine adds).
    assert end - start > 0.3
    assert gap < 0.25, f"no tick for {gap:.3f} s of a {end - start:.2f} s fit"
    assert len(inside) > 50 * (end - start), f"{len(inside)} ticks in {end - start:.2f} s"


def test_predict_releases_the_gil_too(demo):
    (x, _), _, _ = demo
    model = cnn.Model.from_config(CONFIG)
    big = np.repeat(x, 5, axis=0)
    ticks = []
    done = threading.Event()

    def tick():
        while not done.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    t = threading.Thread(target=tick)
    t.start()
    try:
        start = time.perf_counter()
        model.predict(big)
        end = time.perf_counter()
    finally:
        done.set()
        t.join()
    inside = [s for s in ticks if start < s < end]
    assert end - start > 0.02
    assert len(inside) >= 3, f"{len(inside)} ticks in {end - start:.3f} s of predict"


def test_keyboard_interrupt_stops_fit_with_the_checkpoint_written(demo, tmp_path):
    (x, y), _, _ = demo
    model = cnn.Model.from_config(CONFIG)
    before = model.state_dict()["layers.0.weight"].copy()
    # Python's own Ctrl-C handler, which a process started in the background (SIGINT
    # ignored) does not get, and without which interrupt_main does nothing.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.5, _thread.interrupt_main)
    timer.start()
    start = time.perf_counter()
    try:
        with pytest.raises(KeyboardInterrupt):
            model.fit(x, y, epochs=300, out=tmp_path / "run", progress=False)
    finally:
        stopped = time.perf_counter() - start
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert stopped < 5, f"fit took {stopped:.1f} s to stop"
    # The checkpoint of where it stopped, which the command line resumes.
    assert (tmp_path / "run" / "checkpoint.safetensors").exists()
    assert not (tmp_path / "run" / "model.safetensors").exists()
    resumed = cnn.Model.load(tmp_path / "run" / "checkpoint.safetensors")
    # The model is usable and holds the weights of the step it stopped at: the checkpoint's.
    after = model.state_dict()
    assert not np.array_equal(after["layers.0.weight"], before)
    for k, v in resumed.state_dict().items():
        assert v.tobytes() == after[k].tobytes(), k
    assert model.predict(x[:3]).shape == (3, 10)
