"""Writes the run options of ``Model.fit`` into the type stubs, from the library's table.

    python tools/stubgen.py          # rewrite python/cnn/_cnn.pyi
    python tools/stubgen.py --check  # exit 1 (and say what differs) when it is not up to date

The options come from ``cnn.fit_options()``, that is from ``OPTIONS`` in src/run/options.rs:
a new option there is a new keyword of ``fit`` with no edit of the extension, and this
script (run by ``tests/test_stubs.py``) keeps the stubs from drifting.
"""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path

STUB = Path(__file__).resolve().parent.parent / "python" / "cnn" / "_cnn.pyi"

# The argument text before the signature's options and in the docstring, written by hand.
DOC_HEAD = """\
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
"""

DOC_TAIL = """\
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


def py_type(o: dict) -> str:
    kind = o["kind"]
    if kind == "number":
        t = "float"
    elif kind == "integer":
        t = "int"
    elif kind == "switch":
        t = "bool"
    elif kind == "path":
        t = "_Path"
    else:
        t = "Literal[" + ", ".join(repr(c) for c in o["choices"]) + "]"
    if o["optional"] or o["default"] is None:
        t = f"Optional[{t}]"
    return t


def signature_lines(options: list[dict]) -> list[str]:
    return [f"        {o['name']}: {py_type(o)} = {o['default']!r}," for o in options]


def doc_lines(options: list[dict]) -> list[str]:
    lines = ['"""Trains the model, as ``cnn train`` does, and returns the history.', ""]
    lines.extend(DOC_HEAD.splitlines())
    lines.append("")
    lines.append("Run options (``cnn train``'s flags, ``--batch-size`` as ``batch_size``; each")
    lines.append("over the config's ``Train`` and ``Augment`` lines, over the default):")
    names = {o["name"] for o in options}
    for o in options:
        head = f"{o['name']} (default {o['default']!r}): "
        # The flags' help names other options by flag: here they are keywords.
        keyword = lambda m: m[1].replace("-", "_") if m[1].replace("-", "_") in names else m[0]
        help = re.sub(r"--([a-z][a-z-]*)", keyword, o["help"])
        text = textwrap.wrap(
            head + help, width=84, subsequent_indent="    ", break_on_hyphens=False
        )
        lines.extend("    " + t for t in text)
    lines.append("")
    lines.extend(DOC_TAIL.splitlines())
    lines.append('"""')
    return [("        " + l).rstrip() for l in lines]


def replace_block(text: str, begin: str, end: str, lines: list[str]) -> str:
    head, rest = text.split(begin + "\n", 1)
    _, tail = rest.split(end, 1)
    indent = head[head.rfind("\n") + 1 :]
    return head + begin + "\n" + "\n".join(lines) + "\n" + indent + end + tail


def generate(text: str, options: list[dict]) -> str:
    text = replace_block(text, "# BEGIN OPTIONS", "# END OPTIONS\n", signature_lines(options))
    return replace_block(text, "# BEGIN OPTIONS DOC", "# END OPTIONS DOC\n", doc_lines(options))


def main() -> int:
    import cnn

    text = STUB.read_text()
    new = generate(text, cnn.fit_options())
    if "--check" in sys.argv:
        if new != text:
            print(f"{STUB} is not up to date: run python tools/stubgen.py", file=sys.stderr)
            return 1
        return 0
    STUB.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
