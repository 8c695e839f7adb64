"""Shared fixtures: small models built on the fly, so tests need no trained weights."""
from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from mossep.checkpoints import save_native
from mossep.models import build_model, preset


def pytest_configure(config):
    # A test run started in the background (`pytest &`, nohup) inherits SIGINT ignored, and so would every mossep
    # it starts, which then rightly leaves Ctrl-C alone; the signal tests are of a foreground run.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> Path:
    """A randomly initialised 'tiny' MossFormer in mossep's own format (seeded, fast on CPU)."""
    torch.manual_seed(0)
    model = build_model(preset("tiny"))
    path = tmp_path_factory.mktemp("models") / "tiny.safetensors"
    save_native(model, path, {"note": "random weights for tests"})
    return path


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture()
def refuse_writes_in(monkeypatch):
    """Call with a folder to make it unwritable for mossep (permission bits do not stop root, who may run the
    tests): creating a temporary file there raises PermissionError."""
    import errno
    import tempfile

    folders: list[Path] = []
    real = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and any(Path(dir).resolve() == f.resolve() for f in folders):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    return folders.append
