"""Quickstart, notebook style: train report 1's network on the built-in demo set from NumPy
arrays, score it, and (with matplotlib installed) plot the first layer's filters and the
confusion matrix.

    pip install ./python matplotlib
    python python/examples/quickstart.py [OUT_DIR]

Writes filters.png and confusion.png into OUT_DIR (default: the current folder).
"""

import sys
from pathlib import Path

import numpy as np

import cnn

out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")

# %% The data: 2,000 training and 500 test images of Fashion-MNIST, uint8 [N, 1, 28, 28].
(x_train, y_train), (x_test, y_test), classes = cnn.datasets.load("demo")
print(f"cnn {cnn.__version__}: {len(x_train)} training images {x_train.shape[1:]}, "
      f"{len(x_test)} test images, classes {classes}")

# %% The network: report 1's, with 10 outputs (examples/report1-10.cfg).
model = cnn.Model.from_config(
    """5
Input shape=1x28x28
Conv2D filters=16 kernel=3x3 stride=1 padding=same activation=relu
MaxPool2D pool=2x2 stride=2
Dense units=128 activation=relu
Dense units=10 activation=softmax
""",
    classes=classes,
)
print(model.summary())

# %% Training: the options of `cnn train`, by name; a dict of lists back, as Keras's History.
history = model.fit(
    x_train, y_train, epochs=10, lr=0.05, optimizer="momentum",
    validation_data=(x_test, y_test),
)

# %% Scores, as `cnn evaluate` gives them.
scores = model.evaluate(x_test, y_test)
print(f"test accuracy {scores['accuracy']:.2%}, loss {scores['loss']:.4f}")
worst = int(np.argmin(scores["f1"]))
print(f"hardest class: {classes[worst]} (F1 {scores['f1'][worst]:.2f})")
print("first test images:", [classes[i] for i in model.predict_classes(x_test[:5])])

# %% Pictures, when matplotlib is there.
try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    print("matplotlib is not installed: no plots")
    sys.exit(0)

filters = model.state_dict()["layers.0.weight"]  # [16, 1, 3, 3], as torch.nn.Conv2d's
fig, axes = plt.subplots(2, 8, figsize=(8, 2.4))
for k, ax in enumerate(axes.flat):
    ax.imshow(filters[k, 0], cmap="gray")
    ax.set_title(f"filter {k}", fontsize=7)
    ax.axis("off")
fig.suptitle("First layer's 3x3 filters")
fig.savefig(out / "filters.png", dpi=120, bbox_inches="tight")

cm = scores["confusion_matrix"]
fig, ax = plt.subplots(figsize=(6.5, 5.5))
im = ax.imshow(cm, cmap="Blues")
ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right", fontsize=8)
ax.set_yticks(range(len(classes)), classes, fontsize=8)
for i in range(len(classes)):
    for j in range(len(classes)):
        ax.text(j, i, cm[i, j], ha="center", va="center", fontsize=7,
                color="white" if cm[i, j] > cm.max() / 2 else "black")
ax.set_xlabel("predicted")
ax.set_ylabel("true")
ax.set_title(f"Confusion matrix, test accuracy {scores['accuracy']:.1%}")
fig.colorbar(im)
fig.savefig(out / "confusion.png", dpi=120, bbox_inches="tight")
print(f"wrote {out / 'filters.png'} and {out / 'confusion.png'}")
