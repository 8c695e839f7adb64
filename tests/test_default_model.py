"""The shipped checkpoint (weights/default.safetensors) loads and separates real speech.

Floors are a few dB under the values measured when the checkpoint was committed (weights/README.md), so a
broken checkpoint or a regression anywhere in the inference path (loading, resampling, chunking, level,
stitching) fails here.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mossep import Separator
from mossep.checkpoints import default_model_path, load_checkpoint
from mossep.metrics import si_snr_improvement

FIXTURES = Path(__file__).parent / "fixtures" / "libri2mix"
EXAMPLES = Path(__file__).parent.parent / "examples"
# item: (measured SI-SNRi in dB when committed, with the checkpoint's recommended settings; floor used here)
MEASURED = {"item10": (13.17, 10.0), "item28": (11.97, 9.0)}
EXAMPLE_MEASURED = (4.15, 2.5)


@pytest.fixture(scope="module")
def separator() -> Separator:
    return Separator(device="cpu")


def _score(sep: Separator, mix_path: Path, refs: list[Path], rate: int | None = None) -> float:
    mix, sr = sf.read(mix_path, dtype="float32")
    ref = np.stack([sf.read(p, dtype="float32")[0] for p in refs])
    if rate is not None:  # feed the model a different input rate: the resampling path must hold up
        import soxr

        mix = soxr.resample(mix, sr, rate).astype(np.float32)
        est = sep.separate(mix, rate)
        est = np.stack([soxr.resample(e, rate, sr) for e in est])[:, : ref.shape[1]]
    else:
        est = sep.separate(mix, sr)
    return si_snr_improvement(est, ref, mix if rate is None else sf.read(mix_path, dtype="float32")[0])["si_snri"]


def test_default_checkpoint_is_shipped_and_described():
    path = default_model_path()
    loaded = load_checkpoint(None)
    assert path.stat().st_size < 50 * 1024 * 1024
    assert loaded.config.sample_rate == 8000 and loaded.config.num_spks == 2
    meta = loaded.metadata
    assert meta["training"]["steps"] > 0 and "si_snri_db" in meta["validation"]
    # the recommended inference settings are recorded and are what a plain Separator() uses
    sep = Separator(device="cpu")
    assert (sep.passes, sep.wiener) == (meta["inference"]["passes"], meta["inference"]["wiener"]) == (2, True)


@pytest.mark.parametrize("item", sorted(MEASURED))
def test_default_model_separates_real_libri2mix_clips(separator, item):
    measured, floor = MEASURED[item]
    score = _score(separator, FIXTURES / f"{item}_mix.wav", [FIXTURES / f"{item}_source{k}.wav" for k in (1, 2)])
    assert score > floor, f"{item}: SI-SNRi {score:.2f} dB, measured {measured} dB when committed"


def test_default_model_at_16k_input(separator):
    measured, floor = MEASURED["item10"]
    score = _score(separator, FIXTURES / "item10_mix.wav", [FIXTURES / f"item10_source{k}.wav" for k in (1, 2)], 16000)
    assert score > floor - 1.0


def test_quick_start_example_through_the_cli(tmp_path):
    measured, floor = EXAMPLE_MEASURED
    proc = subprocess.run([sys.executable, "-m", "mossep", "separate", str(EXAMPLES / "talkers_mix.wav"), "-o",
                           str(tmp_path), "--quiet"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    est = np.stack([sf.read(tmp_path / f"talkers_mix_spk{k}.wav", dtype="float32")[0] for k in (1, 2)])
    ref = np.stack([sf.read(EXAMPLES / f"talkers_source{k}.wav", dtype="float32")[0] for k in (1, 2)])
    mix = sf.read(EXAMPLES / "talkers_mix.wav", dtype="float32")[0]
    assert si_snr_improvement(est, ref, mix)["si_snri"] > floor
