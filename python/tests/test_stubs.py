"""The type stubs list every option of fit with its default, and the package is typed."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import cnn

PACKAGE = Path(__file__).resolve().parents[1]


def test_the_stubs_are_generated_from_the_option_table():
    spec = importlib.util.spec_from_file_location("stubgen", PACKAGE / "tools" / "stubgen.py")
    stubgen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stubgen)
    text = stubgen.STUB.read_text()
    assert stubgen.generate(text, cnn.fit_options()) == text, (
        "python/cnn/_cnn.pyi is not up to date: run python tools/stubgen.py"
    )


def test_fits_stub_signature_lists_every_option_with_its_default():
    tree = ast.parse((PACKAGE / "python" / "cnn" / "_cnn.pyi").read_text())
    model = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Model")
    fit = next(n for n in model.body if isinstance(n, ast.FunctionDef) and n.name == "fit")
    kwonly = {a.arg: ast.literal_eval(d) for a, d in zip(fit.args.kwonlyargs, fit.args.kw_defaults)}
    options = cnn.fit_options()
    assert len(options) > 25
    for o in options:
        assert o["name"] in kwonly, o["name"]
        assert kwonly[o["name"]] == o["default"], o["name"]
    assert {"validation_data", "validation_split", "out", "force", "threads", "progress"} <= set(kwonly)
    assert ast.get_docstring(fit).count("(default ") == len(options)


def test_version_and_typed_marker():
    assert cnn.__version__ == "0.1.0"
    assert (Path(cnn.__file__).parent / "py.typed").exists()
    assert {o["name"] for o in cnn.fit_options()} >= {"batch_size", "label_smoothing", "val_split", "early_stop"}
