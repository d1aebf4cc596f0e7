"""state_dict / load_state_dict: round trips, checks, and an equivalent PyTorch module."""

from __future__ import annotations

import numpy as np
import pytest

import cnn
from conftest import CONFIG

BN_CONFIG = """4
Input shape=1x28x28
Conv2D filters=4 kernel=3x3 stride=1 padding=same
BatchNorm2D
ReLU
Dense units=10 activation=softmax
"""


def test_state_dict_has_the_model_files_names_and_layouts():
    sd = cnn.Model.from_config(CONFIG).state_dict()
    assert list(sd) == [
        "layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.2.bias",
        "layers.3.weight", "layers.3.bias",
    ]
    assert sd["layers.0.weight"].shape == (16, 1, 3, 3)
    assert sd["layers.2.weight"].shape == (128, 3136)
    assert all(v.dtype == np.float32 for v in sd.values())
    bn = cnn.Model.from_config(BN_CONFIG).state_dict()
    assert list(bn)[2:7] == [
        "layers.1.weight", "layers.1.bias", "layers.1.running_mean", "layers.1.running_var",
        "layers.1.num_batches_tracked",
    ]
    assert bn["layers.1.num_batches_tracked"].dtype == np.int64
    assert bn["layers.1.num_batches_tracked"].shape == ()


def test_state_dict_round_trips(demo):
    (x, y), (xt, _), _ = demo
    a = cnn.Model.from_config(BN_CONFIG)
    a.fit(x, y, epochs=1, progress=False)
    b = cnn.Model.from_config(BN_CONFIG)
    b.load_state_dict(a.state_dict())
    for k, v in a.state_dict().items():
        assert v.tobytes() == b.state_dict()[k].tobytes(), k
    assert int(b.state_dict()["layers.1.num_batches_tracked"]) == 63
    assert b.predict(xt).tobytes() == a.predict(xt).tobytes()
    # A loaded state dict makes fit go on from it, as from a trained model.
    with pytest.raises(ValueError, match="init_scheme"):
        b.fit(x, y, epochs=1, init_scheme="he", progress=False)


def test_load_state_dict_checks_everything_before_it_changes_anything():
    model = cnn.Model.from_config(CONFIG)
    before = model.state_dict()
    sd = model.state_dict()
    bad = dict(sd, **{"layers.2.weight": np.zeros((128, 3137), np.float32)})
    with pytest.raises(ValueError, match=r"`layers.2.weight` has shape \[128, 3137\], the config needs \[128, 3136\]"):
        model.load_state_dict(bad)
    nan = dict(sd, **{"layers.3.bias": np.full(10, np.nan, np.float32)})
    with pytest.raises(ValueError, match="`layers.3.bias` holds NaN"):
        model.load_state_dict(nan)
    with pytest.raises(ValueError, match="unknown tensor `layers.1.weight`"):
        model.load_state_dict(dict(sd, **{"layers.1.weight": np.zeros(1, np.float32)}))
    missing = {k: v for k, v in sd.items() if k != "layers.0.bias"}
    with pytest.raises(ValueError, match="tensor `layers.0.bias` is missing"):
        model.load_state_dict(missing)
    after = model.state_dict()
    assert all(before[k].tobytes() == after[k].tobytes() for k in before)
    # strict=False: what is there is set.
    zeros = {"layers.0.bias": np.ones(16), "other": np.zeros(3)}
    model.load_state_dict(zeros, strict=False)
    assert (model.state_dict()["layers.0.bias"] == 1).all()


def test_a_pytorch_module_with_the_documented_names_loads_the_state_dict(demo):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    (x, y), (xt, _), _ = demo
    model = cnn.Model.from_config(CONFIG)
    model.fit(x, y, epochs=1, progress=False)

    class Report1(nn.Module):
        """Report 1's network, its modules at the config's layer indices."""

        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList(
                [nn.Conv2d(1, 16, 3, padding=1), nn.MaxPool2d(2, 2), nn.Linear(3136, 128),
                 nn.Linear(128, 10)]
            )

        def forward(self, x):
            x = self.layers[1](torch.relu(self.layers[0](x)))
            x = torch.relu(self.layers[2](x.flatten(1)))
            return torch.softmax(self.layers[3](x), dim=1)

    net = Report1()
    net.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    with torch.no_grad():
        p = net(torch.from_numpy(xt[:100].astype(np.float32) / 255)).numpy()
    np.testing.assert_allclose(p, model.predict(xt[:100]), atol=1e-5)
    # And back: PyTorch's state dict (tensors) loads as it is.
    other = cnn.Model.from_config(CONFIG)
    other.load_state_dict(net.state_dict())
    assert other.predict(xt[:10]).tobytes() == model.predict(xt[:10]).tobytes()
