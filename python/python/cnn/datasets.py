"""Datasets as ``cnn train --data`` reads them, as NumPy arrays."""

from __future__ import annotations

import os
from typing import List, Optional, Tuple, Union

import numpy as np

from . import _cnn

__all__ = ["load"]


def load(
    path: Union[str, "os.PathLike[str]"] = "demo",
    *,
    channels: Optional[int] = None,
    size: Optional[Tuple[int, int]] = None,
    resize: bool = False,
) -> Tuple[
    Tuple[np.ndarray, np.ndarray],
    Tuple[Optional[np.ndarray], Optional[np.ndarray]],
    List[str],
]:
    """Loads a dataset: ``(x_train, y_train), (x_test, y_test), classes``.

    ``path`` is what ``cnn train --data`` takes: ``"demo"`` (the built-in Fashion-MNIST
    subset, 2,000 training and 500 test images), an IDX folder (MNIST's four files) or
    images file, a CIFAR-10 folder (its ``.bin`` batch files) or batch file, a folder with
    ``labels.txt``, or a folder per class.

    Images are ``uint8`` arrays ``[N, C, H, W]`` (pixels 0-255, as the files hold them),
    labels ``int64`` arrays ``[N]`` indexing ``classes``. The test pair is ``(None, None)``
    for data without a test split (only IDX and CIFAR-10 folders and the demo set have
    one); a test set's labels are matched to the training set's classes by name, as
    ``cnn train`` does.

    ``channels`` (1 or 3) and ``size`` (``(height, width)``) convert the images, as a
    network's ``Input`` line makes ``cnn train`` do; ``resize=True`` scales images of
    another size instead of refusing them.

    Raises ``OSError`` (``FileNotFoundError``, ...) for data that cannot be read or is
    malformed, with the command line's message.
    """
    return _cnn.load_dataset(path, channels, size, resize)
