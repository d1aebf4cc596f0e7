"""Predictions equal to `cnn predict --json`; activations; the model file round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

import cnn
from conftest import CONFIG, ROOT

ROOT_IMAGES = "data/demo/t10k-images-idx3-ubyte.gz"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, demo):
    (x, y), _, classes = demo
    model = cnn.Model.from_config(CONFIG, classes=classes)
    model.fit(x, y, epochs=2, normalize=True, progress=False)
    path = tmp_path_factory.mktemp("model") / "model.safetensors"
    model.save(path)
    return model, path


def test_predictions_equal_cnn_predict_json_within_1e_6(trained, demo, cli):
    model, path = trained
    _, (xt, _), classes = demo
    lines = cli("predict", str(path), str(ROOT / ROOT_IMAGES), "--json", "--top", "10").splitlines()
    assert len(lines) == 500
    want = np.zeros((500, 10), dtype=np.float64)
    for i, line in enumerate(lines):
        row = json.loads(line)
        assert row["input"].endswith(f"#{i}")
        for name, p in row["probabilities"]:
            want[i, classes.index(name)] = p
    # One image at a time, as cnn predict runs them: its path, equal to the digits JSON
    # prints (a float32's shortest text is within 6e-8 of it, relatively).
    alone = np.concatenate([model.predict(xt[i : i + 1]) for i in range(500)])
    assert np.abs(alone - want).max() <= 1e-6
    assert (np.abs(alone - want) <= 1e-7 * np.maximum(want, 1e-30)).all()
    # A batch goes through the batched kernels, whose sums run in another order: within
    # about 1e-6 (1.2e-6 measured when written), as docs say.
    got = model.predict(xt)
    assert np.abs(got - want).max() <= 3e-6
    # A model loaded from the file predicts the same, bit for bit; one image at a time too.
    loaded = cnn.Model.load(path)
    assert loaded.predict(xt).tobytes() == got.tobytes()
    np.testing.assert_allclose(loaded.predict(xt[:1]), got[:1], atol=1e-6)
    # [N, H, W] for one channel, float32 pixels / 255, a list: the same.
    np.testing.assert_allclose(model.predict(xt[:4, 0]), got[:4], atol=1e-6)
    np.testing.assert_allclose(model.predict(xt[:4].astype(np.float32) / 255), got[:4], atol=1e-6)
    np.testing.assert_allclose(model.predict(xt[:2].tolist()), got[:2], atol=1e-6)
    # A view that is not C-contiguous is made contiguous.
    flipped = xt[:4, :, :, ::-1]
    np.testing.assert_allclose(model.predict(flipped), model.predict(flipped.copy()), atol=0)


def test_evaluate_equals_cnn_evaluate(trained, cli):
    model, path = trained
    _, (xt, yt), _ = cnn.datasets.load("demo")
    report = json.loads(cli("evaluate", str(path), "--json"))
    scores = model.evaluate(xt, yt)
    assert scores["accuracy"] == report["accuracy"]
    assert scores["loss"] == report["loss"]
    per_class = report["per_class"]
    assert scores["f1"].tolist() == [c["f1"] for c in per_class]


def test_activations_are_every_layers_output(trained, demo):
    model, _ = trained
    _, (xt, _), _ = demo
    acts = model.activations(xt[:70])
    assert [a.shape for a in acts] == [(70, 16, 28, 28), (70, 16, 14, 14), (70, 128), (70, 10)]
    assert len(acts) == len(model.layers)
    assert (acts[0] >= 0).all()  # Conv2D ... relu
    np.testing.assert_allclose(acts[-1], model.predict(xt[:70]), atol=1e-6)
    one = model.activations(xt[:1])
    for a, b in zip(one, acts):
        np.testing.assert_allclose(a[0], b[0], atol=1e-5)


def test_save_load_round_trip_and_summary(trained, tmp_path):
    model, _ = trained
    model.save(tmp_path / "m.safetensors")
    again = cnn.Model.load(tmp_path / "m.safetensors")
    assert again.classes == model.classes and again.config == model.config
    assert again.normalization == model.normalization
    assert again.input_shape == (1, 28, 28)
    summary = again.summary()
    assert "Total params: 402,986" in summary and "Classes (10): T-shirt/top" in summary
    assert "Dense 10 softmax" in repr(again.layers)
