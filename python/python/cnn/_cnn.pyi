"""Type stubs of the extension module ``cnn._cnn`` (re-exported by ``cnn``).

The run options of ``Model.fit`` between the OPTIONS markers are generated from the option
table of the library (``cnn.fit_options()``) by ``python tools/stubgen.py``;
``tests/test_stubs.py`` fails when they differ.
"""

import os
from typing import Any, Literal, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

_Path = Union[str, "os.PathLike[str]"]

class Model:
    """A convolutional network with its weights, class names and input normalisation: what
    a model file (``model.safetensors``) holds.

    Make one with ``Model.from_config`` or ``Model.load``; train it with ``fit``; use it
    with ``predict``, ``predict_classes``, ``evaluate`` and ``activations``; read or set its
    weights with ``state_dict`` and ``load_state_dict``. Not for use by several threads at
    once (a concurrent call raises ``RuntimeError``).
    """

    @staticmethod
    def from_config(config: _Path, classes: Optional[Sequence[str]] = None) -> "Model":
        """A model of the network a config describes (a path, or the config's text), with
        the weights ``cnn train`` would start from (the config's ``Train`` line's ``seed``
        and ``init``, else 0 and ``normal``). ``classes`` names the outputs (default
        ``"0"``, ``"1"``, ...). ``ValueError`` for a config error, ``OSError`` for a file
        that cannot be read."""
    @staticmethod
    def load(path: _Path) -> "Model":
        """The model in a model file or checkpoint written by ``cnn train`` or ``save``."""
    def save(self, path: _Path) -> None:
        """Writes the model file (safetensors), atomically."""
    def summary(self, explain: bool = False) -> str:
        """The network's table, as ``cnn summary`` prints it."""
    @property
    def config(self) -> str:
        """The network config's text."""
    @property
    def classes(self) -> list[str]:
        """The class names, indexed by output (settable: as many names as outputs)."""
    @classes.setter
    def classes(self, classes: Sequence[str]) -> None: ...
    @property
    def input_shape(self) -> Tuple[int, int, int]:
        """``(C, H, W)`` of one input image."""
    @property
    def normalization(self) -> dict[str, list[float]]:
        """``{"mean": [...], "std": [...]}`` per input channel."""
    @property
    def layers(self) -> list[str]:
        """Each layer's config line as the summary labels it; layer ``i`` is
        ``layers.{i}`` in ``state_dict`` and ``activations(x)[i]``."""
    def predict(self, x: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Class probabilities ``[N, classes]`` of images ``x`` (``[N, C, H, W]`` or
        ``[N, H, W]``; ``uint8`` pixels 0-255 or ``float32`` in [0, 1])."""
    def predict_classes(self, x: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """The most probable class of each image, ``[N]``."""
    def evaluate(
        self, x: npt.ArrayLike, y: npt.ArrayLike, batch_size: int = 256
    ) -> dict[str, Any]:
        """``accuracy``, ``loss``, ``confusion_matrix`` ``[K, K]`` (rows: true class),
        ``precision``, ``recall``, ``f1``, ``support`` (``[K]`` each), ``classes`` and
        ``images``, as ``cnn evaluate`` computes them."""
    def activations(self, x: npt.ArrayLike) -> list[npt.NDArray[np.float32]]:
        """Every layer's output for images ``x``, one array per layer of the config (the
        last as probabilities when the network ends with a softmax)."""
    def state_dict(self) -> dict[str, npt.NDArray[Any]]:
        """The weights and buffers under the model file's (PyTorch's) names,
        ``layers.{i}.weight`` ...; copies."""
    def load_state_dict(self, state_dict: Mapping[str, npt.ArrayLike], strict: bool = True) -> None:
        """Sets the weights from a mapping of those names to arrays (or CPU torch tensors);
        nothing changes when it raises ``ValueError``."""
    def fit(
        self,
        x: Union[npt.ArrayLike, _Path, None] = None,
        y: Optional[npt.ArrayLike] = None,
        *,
        validation_data: Union[Tuple[npt.ArrayLike, npt.ArrayLike], _Path, None] = None,
        validation_split: Optional[float] = None,
        out: Optional[_Path] = None,
        force: bool = False,
        threads: Optional[int] = None,
        progress: bool = True,
        # BEGIN OPTIONS
        data: Optional[_Path] = None,
        test_data: Optional[_Path] = None,
        val_split: Optional[float] = None,
        epochs: int = 10,
        lr: float = 0.01,
        batch_size: int = 32,
        optimizer: Literal['sgd', 'momentum', 'nesterov', 'adam', 'adamw'] = 'sgd',
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        label_smoothing: float = 0.0,
        schedule: Literal['constant', 'step', 'cosine'] = 'constant',
        step_size: int = 10,
        gamma: float = 0.1,
        min_lr: float = 0.0,
        warmup: int = 0,
        init_scheme: Literal['normal', 'he', 'glorot'] = 'normal',
        init: Optional[_Path] = None,
        seed: int = 0,
        no_shuffle: bool = False,
        normalize: bool = False,
        resize: bool = False,
        shift: int = 0,
        flip: bool = False,
        erase: float = 0.0,
        eval_every: int = 1,
        early_stop: Optional[Literal['val_loss', 'val_accuracy']] = None,
        patience: int = 5,
        min_delta: float = 0.0,
        restore_best: bool = False,
        reduce: Literal['exact', 'allreduce'] = 'exact',
        clip_grad_norm: Optional[float] = None,
        # END OPTIONS
    ) -> dict[str, list[float]]:
        # BEGIN OPTIONS DOC
        """Trains the model, as ``cnn train`` does, and returns the history.

        The data: images ``x`` (``[N, C, H, W]``, or ``[N, H, W]`` for one channel; ``uint8``
        pixels 0-255, or ``float32`` that are pixels / 255) with labels ``y`` (integer class
        indices); or a dataset path, or ``"demo"``, as ``x`` (or ``data=``), as ``cnn train --data``
        takes it; or nothing: the built-in demo set, as ``cnn train`` without ``--data``.

        A model fresh from ``from_config`` starts from the weights ``seed`` and ``init_scheme``
        draw, so that ``fit`` trains the tensors ``cnn train`` trains, bit for bit, for the same
        data and options; a model that has weights (trained, loaded, set) goes on from them, as
        ``cnn train --init`` would, with a new optimiser.

        Args:
            validation_data: ``(x_val, y_val)`` arrays (or a dataset path), evaluated after each
                epoch (``val_loss``, ``val_accuracy``); ``cnn train --test-data``.
            validation_split: Keras's name of ``val_split``.
            out: the run folder to write, as ``cnn train --out`` (checkpoints, metrics, plots,
                ``model.safetensors``, ``report.md``); ``None``: nothing is written.
            force: write into an ``out`` that holds a run already.
            threads: worker threads (default: every core); the result does not depend on it.
            progress: a progress bar in a terminal and one line per epoch; ``False``: silent.

        Run options (``cnn train``'s flags, ``--batch-size`` as ``batch_size``; each
        over the config's ``Train`` and ``Augment`` lines, over the default):
            data (default None): Training data: an IDX folder or file, a CIFAR-10 folder or .bin
                file, a folder with labels.txt, or a folder per class. Default: the built-in
                Fashion-MNIST demo set.
            test_data (default None): Test data, evaluated after each epoch (with val_split:
                once, after training). Default: the test split of the training data (an IDX
                folder's t10k files, a CIFAR-10 folder's test_batch.bin, the demo set's), if it
                has one.
            val_split (default None): Hold out this share of the training data (stratified),
                evaluated after each epoch instead of the test set (a test_data is then
                evaluated once, at the end).
            epochs (default 10): Passes over the training data (with --resume: the epoch to
                reach).
            lr (default 0.01): Learning rate (may change on --resume).
            batch_size (default 32): Images per gradient step.
            optimizer (default 'sgd'): The optimiser.
            momentum (default 0.9): Momentum factor of SGD, as PyTorch's SGD(momentum):
                optimizer sgd momentum 0.5 is SGD with momentum 0.5, as optimizer momentum
                momentum 0.5 is; optimizer momentum and nesterov default to 0.9.
            weight_decay (default 0.0): L2 weight decay, added to the gradient (PyTorch's
                convention).
            label_smoothing (default 0.0): Label smoothing eps: the loss's target is (1 - eps)
                one-hot + eps / classes, as PyTorch's CrossEntropyLoss(label_smoothing).
            schedule (default 'constant'): Learning-rate schedule, by epoch.
            step_size (default 10): Epochs between two multiplications by gamma (schedule step).
            gamma (default 0.1): The factor of schedule step.
            min_lr (default 0.0): The rate schedule cosine ends at.
            warmup (default 0): Epochs of warm-up before the schedule: the rate climbs step by
                step, linearly, from lr / (the warm-up's steps) to lr at its last step.
            init_scheme (default 'normal'): Weight initialisation.
            init (default None): Start from the weights of this model file (e.g. exported from
                PyTorch).
            seed (default 0): Seed of every random stream (initialisation, shuffling, the
                validation split); the same seed gives the same model, byte for byte, for any
                --threads.
            no_shuffle (default False): Keep the data in file order every epoch.
            normalize (default False): Normalise each input channel by the training data's mean
                and standard deviation (stored in the model, so evaluate and predict do the
                same).
            resize (default False): Resize images whose size differs from the config's input
                instead of refusing them.
            shift (default 0): Shift each training image by up to this many pixels along each
                axis, at random, with zero fill.
            flip (default False): Flip half the training images left to right, at random (right
                for clothes, wrong for digits).
            erase (default 0.0): Erase a random rectangle (2% to 33% of the image, height /
                width 0.3 to 3.3) of each training image with this probability, as torchvision's
                RandomErasing after Normalize: its pixels become 0 after normalisation.
            eval_every (default 1): Evaluate the held-out set (test or validation) after every
                N-th epoch and after the last, instead of after every epoch (Keras's
                validation_freq).
            early_stop (default None): Stop when this figure of the validation split (val_split;
                never the test set) has not improved for patience epochs, as Keras's
                EarlyStopping.
            patience (default 5): Epochs without improvement before early_stop stops.
            min_delta (default 0.0): The least change that counts as an improvement for
                early_stop.
            restore_best (default False): When early_stop stops the run, end it with the best
                epoch's weights (kept in the run folder's best.safetensors) instead of the last
                epoch's, as Keras's restore_best_weights. Off by default, as in Keras.
            reduce (default 'exact'): Under mpirun: how the processes combine gradients. exact:
                the model of one process, byte for byte; allreduce: one MPI all-reduce, equal up
                to rounding.
            clip_grad_norm (default None): Clip the global gradient L2 norm to this before each
                optimiser step, as PyTorch's clip_grad_norm_. Default: off.

        Returns:
            The history, as Keras's ``History.history``: ``loss``, ``accuracy``, ``val_loss`` and
            ``val_accuracy`` (with a held-out set), ``lr`` and ``seconds``, one value per epoch.

        Raises:
            ValueError: an option out of range or out of place, bad arrays (named by keyword).
            TypeError: an unknown keyword, or a value of the wrong type.
            OSError: a file that cannot be read or written.
            FloatingPointError: the run diverged (the model keeps the weights of its last step).
            KeyboardInterrupt: Ctrl-C; training stops after the step in progress, the model keeps
                the weights of that step and, with ``out``, the checkpoint is written.
        """
        # END OPTIONS DOC

def fit_options() -> list[dict[str, Any]]:
    """Every run option ``Model.fit`` takes as a keyword."""

def load_dataset(
    path: _Path,
    channels: Optional[int] = None,
    size: Optional[Tuple[int, int]] = None,
    resize: bool = False,
) -> Tuple[
    Tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]],
    Tuple[Optional[npt.NDArray[np.uint8]], Optional[npt.NDArray[np.int64]]],
    list[str],
]: ...
