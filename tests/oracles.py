"""Stand-in models whose right answer is known, for tests that check the audio (not only shapes)."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from mossep.checkpoints import LoadedModel

CUT_HZ = 800.0


class BandSplit(torch.nn.Module):
    """A 'network' at 8 kHz: output 1 = the input below CUT_HZ, output 2 = the rest (FFT of each item)."""

    def __init__(self):
        super().__init__()
        self.config = SimpleNamespace(sample_rate=8000, num_spks=2, min_samples=16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spec = torch.fft.rfft(x.double(), dim=-1)
        freqs = torch.fft.rfftfreq(x.shape[-1], 1 / self.config.sample_rate)
        low = torch.fft.irfft(spec * (freqs < CUT_HZ), n=x.shape[-1], dim=-1)
        return torch.stack([low, x.double() - low], dim=1).to(x.dtype)


def oracle_model() -> LoadedModel:
    return LoadedModel(BandSplit(), "oracle", Path("band-split"))


def talkers(rate: int, seconds: float = 3.0) -> np.ndarray:
    """Two 'talkers' [2, T] at `rate` that BandSplit separates: a low one (150-450 Hz) and a high one
    (1.2-2.6 kHz), each gliding and switching on and off at a syllable rate, so that a time-scaled, shifted or
    misplaced output cannot match."""
    t = np.arange(int(seconds * rate)) / rate
    low = np.sin(2 * np.pi * (150 * t + 50 * t ** 2)) * (np.sin(2 * np.pi * 1.7 * t) > -0.3)
    high = np.sin(2 * np.pi * (1200 * t + 230 * t ** 2)) * (np.sin(2 * np.pi * 2.3 * t + 1) > 0)
    return np.stack([0.2 * low, 0.15 * high]).astype(np.float32)


def si_snrs(est: np.ndarray, ref: np.ndarray) -> list[float]:
    """SI-SNR in dB of each output against its reference, in the given order."""
    from mossep.metrics import si_snr

    return [float(si_snr(torch.from_numpy(np.asarray(e, np.float64)), torch.from_numpy(np.asarray(r, np.float64))))
            for e, r in zip(est, ref)]
