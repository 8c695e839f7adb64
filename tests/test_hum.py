"""mossep.hum: a steady mains hum is found and taken out; speech alone is left as it is."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mossep import augment as aug
from mossep.hum import detect_hum, remove_hum, without_hum

RATE = 8000


def _voice(seconds: float, seed: int) -> np.ndarray:
    """A speech-like signal: harmonics of a pitch gliding between 90 and 220 Hz, syllable-rate bursts."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    pitch = 150 + 60 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6)) + 10 * np.sin(2 * np.pi * 3.1 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / RATE
    x = sum(np.sin(k * phase) / k for k in range(1, 20) if k * pitch.max() < RATE / 2)
    env = np.clip(np.sin(2 * np.pi * 4 * t + rng.uniform(0, 6)), 0, None)
    x = x * env + 0.01 * rng.standard_normal(len(t))
    return 0.05 * x / np.sqrt(np.mean(x ** 2))


def _hum(n: int, mains: float, seed: int, dbfs: float = -30.0) -> np.ndarray:
    h = aug.hum((n,), RATE, torch.Generator().manual_seed(seed), torch.zeros(1, dtype=torch.float64),
                mains=(mains,), jitter=0.01)
    return h.numpy() * 10 ** (dbfs / 20)


@pytest.mark.parametrize("mains", [50.0, 60.0])
def test_hum_under_a_voice_is_found_and_mostly_removed(mains):
    x = _voice(6.0, seed=1)
    h = _hum(len(x), mains, seed=2)
    found = detect_hum(x + h, RATE)
    assert found is not None
    f0, harmonics = found
    assert abs(f0 - mains) < 0.02 * mains and 1 in harmonics
    y = without_hum(x + h, RATE)
    left = 10 * np.log10(np.mean((y - x) ** 2) / np.mean(h ** 2))
    assert left < -10  # at least 10 dB of the hum is gone
    # the removal is linear, so what it takes of the voice is what it takes of the voice alone: about 1 % of
    # its energy here, where the voice's pitch glides right across the 2nd and 3rd harmonics (the price of
    # removing them; on real validation mixtures without hum the score moved by 0.01 dB)
    taken = x - remove_hum(x, RATE, f0, harmonics)
    assert 10 * np.log10(np.mean(taken ** 2) / np.mean(x ** 2)) < -18


def test_a_voice_alone_is_left_untouched():
    for seed in range(4):
        x = _voice(8.0, seed=seed)
        assert detect_hum(x, RATE) is None
        assert np.array_equal(without_hum(x, RATE), x)
    assert detect_hum(np.zeros(RATE), RATE) is None and detect_hum(np.ones(100), RATE) is None


def test_removal_follows_a_hum_whose_level_changes():
    n = 10 * RATE
    h = _hum(n, 50.0, seed=3) * np.linspace(0.3, 1.5, n)
    x = _voice(10.0, seed=5)
    y = remove_hum(x + h, RATE, *detect_hum(x + h, RATE))
    assert 10 * np.log10(np.mean((y - x) ** 2) / np.mean(h ** 2)) < -10


def test_separator_takes_hum_out_before_separating(tiny_model_path):
    from mossep import Separator

    x = (_voice(3.0, seed=7) + _voice(3.0, seed=8)).astype(np.float32)
    h = _hum(len(x), 50.0, seed=9).astype(np.float32)
    # solo=False: mossep.solo's one-voice decisions on the tiny model's outputs are not what this is about
    on = Separator(tiny_model_path, device="cpu", solo=False)
    off = Separator(tiny_model_path, device="cpu", remove_hum=False, solo=False)
    np.testing.assert_allclose(on.separate(x + h, RATE), on.separate(x, RATE) if detect_hum(x, RATE) else
                               off.separate(x, RATE), atol=0.02)
    assert not np.allclose(off.separate(x + h, RATE), off.separate(x, RATE), atol=0.02)
