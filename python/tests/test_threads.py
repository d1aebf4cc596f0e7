"""The GIL is released while the model computes, and Ctrl-C stops fit cleanly."""

from __future__ import annotations

import _thread
import threading
import time

import numpy as np
import pytest

import cnn
from conftest import CONFIG


def test_another_python_thread_keeps_running_during_fit(demo):
    (x, y), _, _ = demo
    model = cnn.Model.from_config(CONFIG)
    count = 0
    done = threading.Event()

    def count_up():
        nonlocal count
        while not done.is_set():
            count += 1

    counter = threading.Thread(target=count_up)
    counter.start()
    try:
        time.sleep(0.05)
        start_count, start = count, time.perf_counter()
        model.fit(x, y, epochs=3, progress=False)
        during, seconds = count - start_count, time.perf_counter() - start
    finally:
        done.set()
        counter.join()
    # A pure-Python loop counts millions a second on an idle core. Were the GIL held by fit,
    # the thread would count nothing while fit runs (it only counted in the pauses between
    # Python calls); released, it counts all along.
    assert seconds > 0.2
    assert during > 20_000 * seconds, f"{during} increments in {seconds:.2f} s"


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
    timer = threading.Timer(0.5, _thread.interrupt_main)
    timer.start()
    start = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, epochs=1000, out=tmp_path / "run", progress=False)
    stopped = time.perf_counter() - start
    timer.cancel()
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
