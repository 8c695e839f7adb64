"""Helpers shared by the tests of the repository's scripts (recipes/, benchmarks/), which are not a package."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]


def load_script(relpath: str) -> ModuleType:
    """Import a script of the repository (e.g. "benchmarks/bench_realistic.py") as a module, without running main."""
    path = ROOT / relpath
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def noise_corpus(root: Path, seed: int = 0, rate: int = 8000) -> None:
    """root/train: 4 speakers, root/valid: 3, one 3 s noise utterance each (speaker folders of FLAC files)."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", 4), ("valid", 3)):
        for k in range(n):
            d = root / split / f"spk{k}"
            d.mkdir(parents=True)
            sf.write(d / "u.flac", (0.1 * rng.standard_normal(3 * rate)).astype(np.float32), rate)
