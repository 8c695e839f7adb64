"""The level the network sees: each chunk is brought to the level of the training mixtures and the estimates
are brought back.

Separation networks trained with a scale-invariant loss (SI-SNR) do not care about the input level in
principle, but in floating point they do: a chunk far louder than training speech overflows float32 inside
the network (a single sample of 1e22 turned every output into NaN), and a very quiet one sinks towards the
epsilons of its normalisations. Pure functions on numpy arrays.
"""
from __future__ import annotations

import numpy as np

MODEL_INPUT_DBFS = -22.0  # RMS of a training mixture: two talkers at -25 dBFS each (mossep.dynamic_mix)


def training_level_dbfs(num_spks: int) -> float:
    """RMS of a training mixture of `num_spks` talkers at -25 dBFS each: MODEL_INPUT_DBFS for two, and 10 log10
    of the talker count relative to that (independent talkers' powers add): about -20.2 dBFS for three."""
    return MODEL_INPUT_DBFS + 10.0 * float(np.log10(max(int(num_spks), 1) / 2.0))


def level_gains(audios: np.ndarray, dbfs: float = MODEL_INPUT_DBFS) -> np.ndarray:
    """Per-row gains [B] that bring each row of audios [B, L] to an RMS of `dbfs` (computed in float64, so
    no finite input overflows); 1 for silent rows."""
    a = np.asarray(audios, dtype=np.float64)
    rms = np.sqrt(np.mean(np.square(a), axis=-1))
    target = 10.0 ** (dbfs / 20.0)
    with np.errstate(divide="ignore"):
        gains = np.where(rms > 0, target / np.where(rms > 0, rms, 1.0), 1.0)
    return gains


def to_model_level(audios: np.ndarray, dbfs: float = MODEL_INPUT_DBFS) -> tuple[np.ndarray, np.ndarray]:
    """(audios [B, L] scaled to `dbfs` RMS per row as float32, the gains used); divide the estimates made from
    them by the gains to return to the input's level."""
    gains = level_gains(audios, dbfs)
    scaled = (np.asarray(audios, dtype=np.float64) * gains[:, None]).astype(np.float32)
    return scaled, gains
