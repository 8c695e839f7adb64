"""Which network separates a chunk: the clean-speech model, or the model trained for noisy, reverberant rooms.

Speech recorded close and quiet has pauses: between syllables and words its frame energy drops 25 dB and more
below the loud frames. Noise fills those gaps and so does a room's reverberation, so the spread of a chunk's
frame energies tells a clean recording from a noisy or reverberant one without running any network. On the
held-out validation sets (`benchmarks/bench_realistic.py`; 48 mixtures per condition) the 5th-95th percentile
spread was 16.5-53.6 dB for clean mixtures, 8.0-15.5 dB for noisy ones, 9.2-17.6 dB for noisy rooms and 14.1-52.8 dB
for reverberant rooms without noise (benchmarks/README.md, "Choosing the model per chunk"); all 36 Libri2Mix dev clips
lie above 21 dB.

Pure functions on numpy arrays.
"""
from __future__ import annotations

import numpy as np

NOISY_BELOW_DB = 15.0  # a chunk whose energy range is below this goes to the noisy-room model
FRAME_SECONDS = 0.032
SILENT_DBFS = -100.0  # frames quieter than this are digital silence (padding, muted stretches): not counted
MIN_FRAMES = 8  # fewer frames than this (a quarter second) say nothing


def energy_range_db(x: np.ndarray, sample_rate: int) -> float | None:
    """The 5th-to-95th percentile spread (dB) of the frame energies of mono `x` [T] in 32 ms frames, digital
    silence left out; None when fewer than MIN_FRAMES frames are left."""
    n = max(int(round(FRAME_SECONDS * sample_rate)), 1)
    x = np.asarray(x, dtype=np.float64)
    frames = x[: len(x) // n * n].reshape(-1, n)
    level = 10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-20)
    level = level[level > SILENT_DBFS]
    if len(level) < MIN_FRAMES:
        return None
    low, high = np.percentile(level, [5, 95])
    return float(high - low)


def sounds_noisy(x: np.ndarray, sample_rate: int, below_db: float = NOISY_BELOW_DB) -> bool:
    """Whether mono `x` sounds noisy or reverberant: its frame-energy range is below `below_db`."""
    spread = energy_range_db(x, sample_rate)
    return spread is not None and spread < below_db
