"""Every error is a Python exception with the command line's message; none is a panic."""

from __future__ import annotations

import numpy as np
import pytest

import cnn
from conftest import CONFIG


@pytest.fixture(scope="module")
def model():
    return cnn.Model.from_config(CONFIG)


def test_a_missing_file_is_file_not_found_with_the_clis_message(tmp_path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(FileNotFoundError) as e:
        cnn.Model.load(missing)
    assert str(e.value) == f"{missing}: No such file or directory (os error 2)"
    with pytest.raises(FileNotFoundError, match="nope.cfg"):
        cnn.Model.from_config(tmp_path / "nope.cfg")
    with pytest.raises(FileNotFoundError, match="no-data"):
        cnn.datasets.load(tmp_path / "no-data")
    with pytest.raises(OSError, match="truncated or not a safetensors file"):
        (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
        cnn.Model.load(tmp_path / "bad.safetensors")


def test_a_config_error_is_a_value_error_at_its_line_and_column():
    with pytest.raises(ValueError) as e:
        cnn.Model.from_config("1\nInput shape=1x28x28\nDense units=ten\n")
    assert str(e.value).startswith("<config text>:3:13: ")
    with pytest.raises(ValueError, match="3 class names for a network with 10 outputs"):
        cnn.Model.from_config(CONFIG, classes=["a", "b", "c"])


def test_bad_shapes_are_value_errors_saying_what_the_network_takes(model, demo):
    (x, y), _, _ = demo
    with pytest.raises(ValueError, match=r"x has shape \(4, 1, 32, 32\); the network takes \[N, 1, 28, 28\]"):
        model.predict(np.zeros((4, 1, 32, 32), np.uint8))
    with pytest.raises(ValueError, match=r"channels last.*x.transpose\(0, 3, 1, 2\)"):
        model.predict(np.zeros((4, 28, 28, 1), np.uint8))
    with pytest.raises(ValueError, match="holds no image"):
        model.predict(np.zeros((0, 1, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="y has 3 labels for 4 images"):
        model.evaluate(x[:4], y[:3])
    with pytest.raises(ValueError, match=r"one-hot\? pass y.argmax\(1\)"):
        model.fit(x[:4], np.eye(10)[y[:4]], progress=False)
    with pytest.raises(ValueError, match=r"y\[1\] is 10; the model has 10 classes, labels 0 to 9"):
        model.fit(x[:3], [0, 10, 2], progress=False)


def test_bad_dtypes_are_refused_or_converted(model, demo):
    (x, y), _, _ = demo
    with pytest.raises(ValueError, match=r"x has dtype complex128; images are uint8 pixels \(0-255\) or float32"):
        model.predict(np.zeros((1, 28, 28), np.complex128))
    with pytest.raises(ValueError, match="float images must be in \\[0, 1\\]"):
        model.predict(x[:2].astype(np.float32))
    with pytest.raises(ValueError, match="x holds NaN at flat index 0; images must be finite"):
        model.predict(np.full((1, 28, 28), np.nan, np.float32))
    with pytest.raises(ValueError, match="from -1 to 3"):
        model.predict(np.array([[[-1] * 28] * 27 + [[3] * 28]]))
    with pytest.raises(ValueError, match="labels are integer class indices"):
        model.evaluate(x[:2], np.array([0.0, 1.0]))
    # Integers 0-255 and float64 in [0, 1] are converted.
    np.testing.assert_array_equal(model.predict(x[:2].astype(np.int64)), model.predict(x[:2]))
    np.testing.assert_allclose(model.predict(x[:2] / 255.0), model.predict(x[:2]), atol=1e-6)


def test_options_are_checked_and_named_by_keyword(model, demo):
    (x, y), _, _ = demo
    with pytest.raises(ValueError, match="^lr must be positive, got -1$"):
        model.fit(x, y, lr=-1, progress=False)
    with pytest.raises(ValueError, match="^batch_size must be at least 1$"):
        model.fit(x, y, batch_size=0, progress=False)
    with pytest.raises(TypeError, match="unexpected keyword argument 'epoch'; did you mean `epochs`"):
        model.fit(x, y, epoch=3)
    with pytest.raises(TypeError, match="'learning_rate'; did you mean `lr`"):
        model.fit(x, y, learning_rate=0.1)
    with pytest.raises(TypeError, match="epochs must be an int, got float"):
        model.fit(x, y, epochs=2.5)
    with pytest.raises(ValueError, match="did you mean `adam`"):
        model.fit(x, y, optimizer="adm")
    with pytest.raises(ValueError, match="gamma applies to schedule='step'"):
        model.fit(x, y, gamma=0.5)
    with pytest.raises(ValueError, match="add val_split=0.1"):
        model.fit(x, y, early_stop="val_loss")
    with pytest.raises(ValueError, match="threads must be at least 1"):
        model.fit(x, y, threads=0)
    with pytest.raises(TypeError, match="validation_split and val_split"):
        model.fit(x, y, validation_split=0.1, val_split=0.1)
    with pytest.raises(ValueError, match="without labels y"):
        model.fit(x)


def test_an_out_folder_holding_a_run_is_refused_without_force(demo, tmp_path):
    (x, y), _, _ = demo
    model = cnn.Model.from_config(CONFIG)
    model.fit(x[:64], y[:64], epochs=1, out=tmp_path, progress=False)
    with pytest.raises(ValueError, match="force"):
        model.fit(x[:64], y[:64], epochs=1, out=tmp_path, progress=False)
    model.fit(x[:64], y[:64], epochs=1, out=tmp_path, force=True, progress=False)


def test_a_diverging_run_raises_floating_point_error(demo):
    (x, y), _, _ = demo
    model = cnn.Model.from_config(CONFIG)
    with pytest.raises(FloatingPointError, match="diverged"):
        model.fit(x, y, epochs=3, lr=1e6, progress=False)
