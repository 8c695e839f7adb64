"""Mains hum removal: find a steady 50 or 60 Hz hum and its harmonics in a chunk and subtract it.

Hum belongs to no talker, and a network trained on clean speech handles it badly (50 Hz hum with harmonics
at -30 dBFS cost the default model 3.2 dB SI-SNRi; benchmarks/README.md, "Robustness of the input path").
Speech has no steady narrow lines: its harmonics follow the voice's pitch, which moves, so over a chunk
(seconds) they smear into a broad spectrum, while mains hum stays a comb of lines at exact multiples of one
frequency. So:

1. `detect_hum`: the chunk's averaged power spectrum (0.5 Hz bins) is searched for peaks near k * 50 Hz and
   k * 60 Hz, each measured by its prominence: how far it stands above the median of its +-15 Hz
   neighbourhood. Hum is declared when the fundamental stands FUNDAMENTAL_DB out (speech has next to nothing
   steady at 50-60 Hz; hum's fundamental stood 46-52 dB out of 4 s of speech at -30 dBFS), or at least
   MIN_HARMONICS harmonics stand PROMINENCE_DB out. The harmonics removed are those standing REMOVE_DB out
   (the higher ones are often buried in the voices), and the fundamental is refined from their peaks.
2. `remove_hum`: in overlapping 1 s blocks (hop 0.5 s, Hann weights summing to one), the sinusoids at the
   detected harmonics are fitted by least squares and subtracted, so a slowly drifting phase or level is
   followed; a sinusoid over a second projects almost nothing of speech.

Pure functions on numpy arrays; x is [T] at `sample_rate`.
"""
from __future__ import annotations

import numpy as np

MAINS = (50.0, 60.0)
FUNDAMENTAL_DB = 30.0  # prominence of the fundamental alone that declares hum
PROMINENCE_DB = 20.0  # ... or this prominence on at least MIN_HARMONICS harmonics
MIN_HARMONICS = 3
AGREEMENT = 0.002  # relative: the fundamentals that the strong harmonics' peaks point at must agree this well
REMOVE_DB = 6.0  # once hum is declared, the harmonics standing this far out are removed
MIN_SHARE_DB = -45.0  # and only lines holding at least this share of the chunk's power count at all (a
#                       noiseless signal has no floor, so the faint skirt of any pure tone would stand out)
MAX_FREQ = 2000.0  # Hz: harmonics searched and removed up to here (hum above it is weak)
TOLERANCE = 0.01  # relative deviation of the mains frequency allowed (grids run 49.5-50.5 Hz)
SPECTRUM_SECONDS = 2.0  # Welch window: 0.5 Hz bins
BLOCK_SECONDS = 1.0  # removal block (hop: half of it)


def _power_spectrum(x: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Welch average (Hann, 50 % overlap) of |FFT|^2: (frequencies [F], power [F])."""
    n = int(SPECTRUM_SECONDS * sample_rate)
    if len(x) < n:
        n = len(x)
    hop = max(n // 2, 1)
    win = np.hanning(n)
    frames = np.lib.stride_tricks.sliding_window_view(x, n)[::hop] * win
    power = np.mean(np.abs(np.fft.rfft(frames, axis=-1)) ** 2, axis=0)
    return np.fft.rfftfreq(n, 1.0 / sample_rate), power


def detect_hum(x: np.ndarray, sample_rate: int) -> tuple[float, list[int]] | None:
    """(fundamental in Hz, the harmonic numbers that stand out) of a mains hum in x, or None when there is
    none (or x is shorter than half a second)."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) < sample_rate // 2 or not np.any(x):
        return None
    freqs, power = _power_spectrum(x - x.mean(), sample_rate)
    df = freqs[1] - freqs[0]
    least = float(power.sum()) * 10 ** (MIN_SHARE_DB / 10)
    best = None
    for mains in MAINS:
        prominent = {}  # harmonic number -> (prominence in dB, refined fundamental)
        for k in range(1, int(min(MAX_FREQ, sample_rate / 2 - 20) // mains) + 1):
            f = k * mains
            near = (freqs >= f * (1 - TOLERANCE) - df) & (freqs <= f * (1 + TOLERANCE) + df)
            hood = (np.abs(freqs - f) <= 15.0) & (np.abs(freqs - f) > 2.0 + f * TOLERANCE)
            if not near.any() or hood.sum() < 8:
                continue
            i = np.flatnonzero(near)[np.argmax(power[near])]
            db = 10 * np.log10(power[i] / max(float(np.median(power[hood])), 1e-30))
            if db < REMOVE_DB or power[i] < least:
                continue
            # parabolic interpolation of the peak on a log scale, for a finer frequency
            shift = 0.0
            if 0 < i < len(power) - 1:
                a, b, c = np.log(power[i - 1:i + 2] + 1e-30)
                if a - 2 * b + c < 0:
                    shift = 0.5 * (a - c) / (a - 2 * b + c)
            prominent[k] = (db, (freqs[i] + shift * df) / k)
        strong = [k for k, (db, _) in prominent.items() if db >= PROMINENCE_DB]
        if not strong:
            continue
        # hum's lines sit at exact multiples of one frequency; other lines that merely fall near the
        # multiples (a modulated tone's sidebands, say) point at scattered fundamentals
        f0 = prominent[1][1] if prominent.get(1, (0.0,))[0] >= FUNDAMENTAL_DB else \
            float(np.median([prominent[k][1] for k in strong]))
        strong = [k for k in strong if abs(prominent[k][1] - f0) <= AGREEMENT * f0]
        if prominent.get(1, (0.0,))[0] < FUNDAMENTAL_DB and len(strong) < MIN_HARMONICS:
            continue
        found = sorted(k for k in prominent if abs(prominent[k][1] - f0) <= AGREEMENT * f0 or
                       k in strong or prominent[k][0] < PROMINENCE_DB)
        if best is None or sum(prominent[k][0] for k in found) > best[2]:
            best = (f0, found, sum(prominent[k][0] for k in found))
    return None if best is None else (best[0], best[1])


def remove_hum(x: np.ndarray, sample_rate: int, fundamental: float, harmonics: list[int]) -> np.ndarray:
    """x without the sinusoids at fundamental * k (k in harmonics), fitted by least squares in overlapping
    blocks. Returns float64 [T]."""
    x = np.asarray(x, dtype=np.float64)
    T = len(x)
    n = min(int(BLOCK_SECONDS * sample_rate), T)
    hop = max(n // 2, 1)
    starts = list(range(0, max(T - n, 0) + 1, hop))
    if starts[-1] + n < T:
        starts.append(T - n)
    t = np.arange(T) / sample_rate
    freqs = fundamental * np.asarray(harmonics, dtype=np.float64)
    hum = np.zeros(T)
    weight = np.zeros(T)
    win = np.hanning(n + 2)[1:-1] if len(starts) > 1 else np.ones(n)  # strictly positive weights
    for s in starts:
        ts = t[s:s + n, None]
        basis = np.concatenate([np.cos(2 * np.pi * freqs * ts), np.sin(2 * np.pi * freqs * ts)], axis=1)
        coef, *_ = np.linalg.lstsq(basis, x[s:s + n], rcond=None)
        hum[s:s + n] += win * (basis @ coef)
        weight[s:s + n] += win
    return x - hum / np.maximum(weight, 1e-12)


def without_hum(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """x with any mains hum removed (x itself, as float64, when none is found)."""
    found = detect_hum(x, sample_rate)
    x = np.asarray(x, dtype=np.float64)
    return x if found is None else remove_hum(x, sample_rate, *found)
