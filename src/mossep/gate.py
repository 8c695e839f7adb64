"""Which network separates a chunk: the clean-speech model, or the model trained for noisy, reverberant rooms.

Two cues that cost no network, both measured on the held-out validation sets (`benchmarks/bench_realistic.py`,
benchmarks/README.md, "Choosing the model per chunk"):

- the energy range: speech recorded close and quiet has pauses, where the frame energy drops 25 dB and more
  below the loud frames; noise fills them. 5th-95th percentile spread of 32 ms frame energies, 5th/95th
  percentile over 48 mixtures: clean 16.5/53.6 dB, noisy 8.0/15.5 dB; below NOISY_BELOW_DB = 15 dB a chunk
  sounds noisy;
- the linear-prediction residual: close speech leaves sparse glottal pulses (heavy-tailed, excess kurtosis
  around 5), a room's echoes smear them towards Gaussian (around 1). A reverberant room without noise keeps
  deep enough pauses for the first cue, not for this one: below REVERB_KURTOSIS_BELOW = 2 a chunk sounds
  reverberant.

Pure functions on numpy arrays.
"""
from __future__ import annotations

import librosa
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

NOISY_BELOW_DB = 15.0  # a chunk whose energy range is below this goes to the noisy-room model
FRAME_SECONDS = 0.032
SILENT_DBFS = -100.0  # frames quieter than this are digital silence (padding, muted stretches): not counted
MIN_FRAMES = 8  # fewer frames than this (a quarter second) say nothing
REVERB_KURTOSIS_BELOW = 2.0  # a chunk whose LP residual is this close to Gaussian goes to the noisy-room model
LP_ORDER = 10  # linear prediction order at 8 kHz (formants)


def _sounding_frames(x: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """(frames [F, n], their energies [F] in dB): `x` in whole 32 ms frames, digital silence left out."""
    n = max(int(round(FRAME_SECONDS * sample_rate)), 1)
    x = np.asarray(x, dtype=np.float64)
    frames = x[: len(x) // n * n].reshape(-1, n)
    level = 10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-20)
    sounding = level > SILENT_DBFS
    return frames[sounding], level[sounding]


def _range_db(level: np.ndarray) -> float | None:
    if len(level) < MIN_FRAMES:
        return None
    low, high = np.percentile(level, [5, 95])
    return float(high - low)


def _residual_kurtosis(frames: np.ndarray, level: np.ndarray, order: int) -> float | None:
    if len(frames) < MIN_FRAMES:
        return None
    loud = frames[level >= np.median(level)]
    window = np.hanning(loud.shape[1])
    a = librosa.lpc(loud * window, order=order, axis=-1)  # [F, order + 1], a[:, 0] = 1
    padded = np.pad(loud, ((0, 0), (order, 0)))
    residual = np.einsum("fnk,fk->fn", sliding_window_view(padded, order + 1, axis=1), a[:, ::-1])
    centred = residual - residual.mean(axis=1, keepdims=True)
    m2 = np.mean(centred ** 2, axis=1)
    kurtosis = np.mean(centred ** 4, axis=1) / np.maximum(m2, 1e-30) ** 2 - 3.0
    return float(np.median(kurtosis))


def energy_range_db(x: np.ndarray, sample_rate: int) -> float | None:
    """The 5th-to-95th percentile spread (dB) of the frame energies of mono `x` [T] in 32 ms frames, digital
    silence left out; None when fewer than MIN_FRAMES frames are left."""
    return _range_db(_sounding_frames(x, sample_rate)[1])


def lp_residual_kurtosis(x: np.ndarray, sample_rate: int, order: int = LP_ORDER) -> float | None:
    """The median excess kurtosis of the linear-prediction residual over the louder half of `x`'s 32 ms frames;
    None when fewer than MIN_FRAMES frames carry sound.

    Voiced speech recorded close leaves a residual of sparse glottal pulses (high kurtosis); a room's echoes and
    noise smear them into something close to Gaussian (kurtosis near 0), a classic cue for reverberation.
    """
    return _residual_kurtosis(*_sounding_frames(x, sample_rate), order)


def sounds_noisy(x: np.ndarray, sample_rate: int, below_db: float = NOISY_BELOW_DB,
                 kurtosis_below: float = REVERB_KURTOSIS_BELOW) -> bool:
    """Whether mono `x` sounds noisy or reverberant: its frame-energy range is below `below_db`, or its
    linear-prediction residual's kurtosis is below `kurtosis_below`."""
    frames, level = _sounding_frames(x, sample_rate)  # once, for both cues
    spread = _range_db(level)
    if spread is None:
        return False
    return spread < below_db or _residual_kurtosis(frames, level, LP_ORDER) < kurtosis_below
