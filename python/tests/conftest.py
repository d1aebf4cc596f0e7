"""Shared fixtures: the repository, the `cnn` command line built from it, the demo set."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

import cnn

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "examples" / "report1-10.cfg"


def cli_binary() -> Path:
    """The `cnn` binary of this checkout ($CNN_BIN, else target/release/cnn, built if
    missing), to compare the package with."""
    if os.environ.get("CNN_BIN"):
        return Path(os.environ["CNN_BIN"])
    binary = ROOT / "target" / "release" / "cnn"
    if not binary.exists():
        subprocess.run(
            ["cargo", "build", "--release", "--bin", "cnn"], cwd=ROOT, check=True
        )
    return binary


@pytest.fixture(scope="session")
def cli():
    binary = cli_binary()

    def run(*args: str, cwd: Path = ROOT) -> str:
        done = subprocess.run(
            [str(binary), *args], cwd=cwd, capture_output=True, text=True
        )
        assert done.returncode == 0, f"cnn {' '.join(args)}: {done.stderr}"
        return done.stdout

    return run


@pytest.fixture(scope="session")
def demo():
    """((x, y), (x_test, y_test), classes) of the built-in demo set."""
    return cnn.datasets.load("demo")


@pytest.fixture
def config() -> Path:
    return CONFIG
