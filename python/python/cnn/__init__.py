"""cnn: a convolutional neural network library written from scratch in Rust, from Python.

The engine of the ``cnn`` command line, with NumPy arrays in and out::

    import cnn

    (x, y), (x_test, y_test), classes = cnn.datasets.load("demo")
    model = cnn.Model.from_config("examples/report1-10.cfg", classes=classes)
    history = model.fit(x, y, epochs=5, validation_data=(x_test, y_test))
    print(model.evaluate(x_test, y_test)["accuracy"])
    probabilities = model.predict(x_test[:8])

``cnn.Model`` holds a network and its weights (``from_config``, ``load``, ``save``,
``summary``, ``fit``, ``evaluate``, ``predict``, ``predict_classes``, ``activations``,
``state_dict``, ``load_state_dict``); ``cnn.datasets.load`` reads a dataset as ``cnn train
--data`` does. The same seed, options and data train the same tensors, bit for bit, as
``cnn train``. The GIL is released while the model computes. See python/README.md.
"""

from . import datasets
from ._cnn import Model, __version__
from ._cnn import fit_options as _fit_options

__all__ = ["Model", "datasets", "fit_options", "__version__"]


def fit_options():
    """Every run option ``Model.fit`` takes as a keyword, as ``cnn train`` has it as a flag.

    A list of dicts, one per option, in the table's order: ``name`` (the keyword, the flag
    with underscores: ``batch_size`` for ``--batch-size``), ``kind`` (``"number"``,
    ``"integer"``, ``"switch"``, ``"path"`` or ``"choice"``), ``choices``, ``optional``,
    ``default`` (``None`` for an option that is off or absent by default) and ``help`` (the
    flag's help).
    """
    return _fit_options()
