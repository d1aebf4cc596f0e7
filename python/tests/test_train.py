"""Training from NumPy arrays, and the same tensors as `cnn train`, bit for bit."""

from __future__ import annotations

import json

import numpy as np
import pytest

import cnn


def test_datasets_load_gives_the_demo_set_as_arrays(demo):
    (x, y), (xt, yt), classes = demo
    assert x.shape == (2000, 1, 28, 28) and x.dtype == np.uint8
    assert y.shape == (2000,) and y.dtype == np.int64
    assert xt.shape == (500, 1, 28, 28) and yt.shape == (500,)
    assert classes[0] == "T-shirt/top" and len(classes) == 10
    assert np.bincount(y).tolist() == [200] * 10
    assert x.flags.c_contiguous and 0 < x.mean() < 255


def test_fit_on_demo_arrays_learns_and_returns_a_keras_history(demo, config):
    (x, y), (xt, yt), classes = demo
    model = cnn.Model.from_config(config, classes=classes)
    history = model.fit(
        x, y, epochs=3, lr=0.05, validation_data=(xt, yt), progress=False
    )
    assert sorted(history) == ["accuracy", "loss", "lr", "seconds", "val_accuracy", "val_loss"]
    assert all(len(v) == 3 for v in history.values())
    assert history["lr"] == [0.05, 0.05, 0.05]
    assert history["loss"][2] < history["loss"][0]
    assert history["val_accuracy"][-1] > 0.6
    scores = model.evaluate(xt, yt)
    assert scores["accuracy"] == pytest.approx(history["val_accuracy"][-1])
    assert scores["loss"] == pytest.approx(history["val_loss"][-1])
    cm = scores["confusion_matrix"]
    assert cm.shape == (10, 10) and cm.sum() == 500
    assert np.trace(cm) == round(scores["accuracy"] * 500)
    assert scores["support"].tolist() == [50] * 10
    assert scores["f1"].shape == (10,) and scores["classes"] == classes
    p = model.predict(xt)
    assert p.shape == (500, 10) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-5)
    assert (model.predict_classes(xt) == p.argmax(1)).all()


def test_fit_takes_float32_pixels_over_255_as_the_same_bytes(demo, config):
    (x, y), _, _ = demo
    x, y = x[:256], y[:256]
    a = cnn.Model.from_config(config)
    b = cnn.Model.from_config(config)
    a.fit(x, y, epochs=1, progress=False)
    b.fit(x.astype(np.float32) / 255, y, epochs=1, progress=False)
    for k, v in a.state_dict().items():
        assert v.tobytes() == b.state_dict()[k].tobytes(), k
    # Floats that are no pixel / 255 are refused, saying how to round them.
    with pytest.raises(ValueError, match="not a pixel / 255"):
        b.fit(x.astype(np.float32) / 256, y, epochs=1, progress=False)


def test_fit_goes_on_from_the_weights_a_model_has(demo, config):
    (x, y), (xt, yt), _ = demo
    model = cnn.Model.from_config(config)
    first = model.fit(x, y, epochs=1, validation_data=(xt, yt), progress=False)
    second = model.fit(x, y, epochs=1, validation_data=(xt, yt), progress=False)
    assert second["val_loss"][0] < first["val_loss"][0]
    with pytest.raises(ValueError, match="init_scheme"):
        model.fit(x, y, epochs=1, init_scheme="he", progress=False)


def _same_tensors(a: dict, b: dict):
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert a[k].tobytes() == b[k].tobytes(), f"{k} differs"


OPTIONS = [
    # (fit's keywords, the same as cnn train's flags)
    (dict(epochs=2, seed=3, batch_size=64), ["--epochs", "2", "--seed", "3", "--batch-size", "64"]),
    (
        dict(epochs=2, seed=1, optimizer="nesterov", lr=0.05, weight_decay=5e-4,
             label_smoothing=0.1, shift=1, flip=True, normalize=True, schedule="cosine"),
        ["--epochs", "2", "--seed", "1", "--optimizer", "nesterov", "--lr", "0.05",
         "--weight-decay", "5e-4", "--label-smoothing", "0.1", "--shift", "1", "--flip",
         "--normalize", "--schedule", "cosine"],
    ),
]


@pytest.mark.parametrize("kwargs,flags", OPTIONS)
def test_fit_trains_the_tensors_of_cnn_train_bit_for_bit(demo, config, cli, tmp_path, kwargs, flags):
    (x, y), (xt, yt), classes = demo
    cli("train", str(config), *flags, "--threads", "1", "--out", str(tmp_path / "cli"))
    model = cnn.Model.from_config(config, classes=classes)
    history = model.fit(
        x, y, validation_data=(xt, yt), out=tmp_path / "py", threads=2, progress=False, **kwargs
    )
    trained = cnn.Model.load(tmp_path / "cli" / "model.safetensors")
    _same_tensors(model.state_dict(), trained.state_dict())
    assert model.normalization == trained.normalization
    # The same run folder: the same model file, byte for byte, and the same figures.
    cli_model = (tmp_path / "cli" / "model.safetensors").read_bytes()
    assert (tmp_path / "py" / "model.safetensors").read_bytes() == cli_model
    rows = [json.loads(l) for l in (tmp_path / "cli" / "metrics.jsonl").read_text().splitlines()]
    assert history["loss"] == [r["loss"] for r in rows]
    # Keras's name for the figures of `validation_data`; the run folder names them for what they
    # are, the test set (`cnn train --test-data`).
    assert history["val_loss"] == [r["test_loss"] for r in rows]
    for name in ["checkpoint.safetensors", "metrics.csv", "run.json", "config.cfg", "report.md", "loss.png"]:
        assert (tmp_path / "py" / name).exists(), name


def test_fit_on_a_dataset_path_is_cnn_train_data(config, cli, tmp_path):
    cli("train", str(config), "--data", "demo", "--epochs", "1", "--val-split", "0.2",
        "--out", str(tmp_path / "cli"))
    model = cnn.Model.from_config(config)
    history = model.fit("demo", epochs=1, validation_split=0.2, progress=False)
    assert model.classes[9] == "Ankle boot"
    _same_tensors(model.state_dict(), cnn.Model.load(tmp_path / "cli" / "model.safetensors").state_dict())
    assert len(history["val_loss"]) == 1


def test_the_config_train_line_applies_under_the_keywords(demo, tmp_path):
    (x, y), _, _ = demo
    text = (
        "2\nInput shape=1x28x28\nDense units=32 activation=relu\nDense units=10 activation=softmax\n"
        "Train epochs=2 lr=0.2 batch=100\n"
    )
    model = cnn.Model.from_config(text)
    history = model.fit(x, y, lr=0.05, progress=False)
    assert history["lr"] == [0.05, 0.05]
    assert "Train epochs=2" in model.config and "Training settings" in model.summary()


def test_early_stopping_with_restore_best_keeps_the_best_weights_in_memory(demo, config):
    (x, y), _, _ = demo
    model = cnn.Model.from_config(config)
    history = model.fit(
        x, y, epochs=30, lr=0.3, val_split=0.2, early_stop="val_loss", patience=1,
        restore_best=True, progress=False,
    )
    assert len(history["loss"]) < 30
