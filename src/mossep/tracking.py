"""Speaker tracking across chunks: keep each talker on the same output for a whole recording.

`mossep.chunking` orders each chunk's outputs by matching them to the already-stitched output over the
overlap. That is exact at the boundary, but when the model itself swaps two outputs *inside* a chunk
(it does in about 0.5-1 % of 4 s windows, usually where one talker pauses), the overlap match faithfully
carries the swap to the end of the file. This module keeps a cheap running profile of each output's voice
and, at each chunk boundary, checks the overlap's choice against it, so that a swap made inside chunk k is
undone at chunk k + 1 instead of lasting to the end.

The profile of a voice is its long-term average spectral shape: the mean, over the frames where that output is
active and clearly louder than every other output, of the frame's log-mel spectrum minus its own mean (so
level does not count, only the spectral envelope: formants, tilt, the pitch region). A chunk is scored by how
well the centred chunk profiles line up with the centred running profiles under each permutation (a
cosine, see `permutation_scores`); the tracker overrides the overlap match only when the profiles are
reliable (enough frames on both sides, voices distinct enough) and favour another order by a wide margin
(`decide`). Memory is a [C, bands] sum and a [C] count: flat in the recording length.

Pure functions on numpy arrays plus `SpeakerTracker`, the small stateful piece used by
`mossep.chunking.OverlapAdd`. Shapes: C outputs, T samples, N frames, B mel bands.
"""
from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np

FRAME_SECONDS = 0.032  # analysis frame (256 samples at 8 kHz): resolves the spectral envelope
HOP_SECONDS = 0.016  # frame step
N_BANDS = 24  # mel bands between F_MIN and the Nyquist frequency
F_MIN = 80.0  # Hz: below this, mostly hum and nothing voice-specific
ACTIVE_DB = -20.0  # a frame counts when its output is at most this far below the recording's mean mixture power
DOMINANT_DB = 6.0  # ... and at least this much louder than every other output (one talker at a time)
MIN_PROFILE_SECONDS = 6.0  # counted speech each running profile needs before it may override anything (about
#                            the first one or two 16 s chunks; earlier swaps cannot be undone)
MIN_CHUNK_SECONDS = 1.5  # counted speech each output of a chunk needs to take part in a decision
# The running profiles must differ by this much (RMS over outputs and bands, centred, dB). Measured with the
# default model on 180 s mixtures of the validation speakers (benchmarks/bench_long.py --inject): profiles of
# the pairs differ by 0.8-4.9 dB; 1.0 left 2 of 26 injected swaps unhealed (profiles blurred by the swap fell
# below 1 dB), 0.5 healed all 26.
MIN_DISTINCT_DB = 0.5
# Score lead (cosine units; for two talkers the swapped order scores the negative of the kept one, so 1.2 means
# the kept order scores -0.6 or less) needed to override, for two talkers. In the same measurement (clean and
# injected-swap files), 532 correctly ordered chunks with reliable profiles scored -0.31 at worst (1 % below
# +0.39, median +0.95); chunks with a swap carried into them mostly -0.67 to -0.99. With C talkers the lead a
# swap of two voices gives is smaller (see override_margin), so the margin shrinks with it; for three talkers
# that is derived, not measured on a 3-talker model's outputs (benchmarks/bench_track3.py: on oracle estimates
# of real voices with the other talkers at -10/-15 dB in each output it broke no right chunk and healed most
# injected rotations, few swaps of two: each talker is seldom alone and clearly louder for 1.5 s per chunk).
OVERRIDE_MARGIN = 1.2
# Once the profiles are reliable, a chunk whose chosen order scores below this (it looks swapped, but not
# clearly enough to override) is left out of the profiles, so that a swap not undone does not blur them.
MIN_AGREEMENT = 0.0
EPS = 1e-12
# Whether mossep tracks speakers by default (Separator(track_speakers=None), CLI --track/--no-track). Off: with
# the default model it healed every swap put into real estimates but changed nothing on the files as they are
# (the model's own swaps across 16 s chunks were too rare and, where they happened, between similar voices the
# profiles cannot tell apart); benchmarks/README.md, "Long recordings".
TRACK_SPEAKERS = False


def mel_filterbank(n_fft: int, sample_rate: int, n_bands: int = N_BANDS, f_min: float = F_MIN) -> np.ndarray:
    """Triangular filters [B, n_fft // 2 + 1] equally spaced on the mel scale from f_min to sample_rate / 2."""
    def mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)

    def hz(m):
        return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)

    edges = hz(np.linspace(mel(f_min), mel(sample_rate / 2), n_bands + 2))
    freqs = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rise = (freqs - lo) / np.maximum(mid - lo, EPS)
    fall = (hi - freqs) / np.maximum(hi - mid, EPS)
    fb = np.clip(np.minimum(rise, fall), 0.0, None)
    # a band narrower than one FFT bin would be empty: give it its nearest bin
    for b in np.flatnonzero(fb.sum(1) == 0):
        fb[b, np.argmin(np.abs(freqs - mid[b, 0]))] = 1.0
    return fb


def frame_features(x: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame (spectral shape [C, N, B], level [C, N]) of signals x [C, T], both in dB.

    level: the frame's mean power; shape: the log-mel spectrum minus its mean over bands (level-free).
    Hann-windowed frames of FRAME_SECONDS every HOP_SECONDS; N = 0 when x is shorter than one frame.
    """
    x = np.asarray(x, dtype=np.float64)
    frame = max(int(round(FRAME_SECONDS * sample_rate)), 16)
    hop = max(int(round(HOP_SECONDS * sample_rate)), 1)
    C = x.shape[0]
    if x.shape[-1] < frame:
        return np.zeros((C, 0, N_BANDS)), np.zeros((C, 0))
    frames = np.lib.stride_tricks.sliding_window_view(x, frame, axis=-1)[:, ::hop]  # [C, N, frame]
    level = 10 * np.log10(np.mean(frames ** 2, axis=-1) + EPS)
    power = np.abs(np.fft.rfft(frames * np.hanning(frame), axis=-1)) ** 2
    logmel = 10 * np.log10(power @ mel_filterbank(frame, sample_rate).T + EPS)
    return logmel - logmel.mean(-1, keepdims=True), level


def counted_frames(level: np.ndarray, floor_db: float, dominant_db: float = DOMINANT_DB) -> np.ndarray:
    """Mask [C, N] of the frames that count for each output's profile: the output is active (level above
    floor_db) and louder than every other output by dominant_db (so the frame is one talker, not a mix)."""
    level = np.asarray(level, dtype=np.float64)
    C = level.shape[0]
    if C == 1:
        return level > floor_db
    others = np.stack([np.delete(level, i, axis=0).max(0) for i in range(C)])
    return (level > floor_db) & (level >= others + dominant_db)


def profile_sums(shape: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sum of the counted frames' shapes [C, B], number of counted frames [C])."""
    m = np.asarray(mask, dtype=np.float64)
    return np.einsum("cn,cnb->cb", m, shape), m.sum(-1)


def profile_means(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The profiles [C, B]: mean shape per output (zeros where nothing was counted)."""
    return sums / np.maximum(counts, 1.0)[:, None]


def distinctness_db(profiles: np.ndarray) -> float:
    """How different the outputs' profiles are: RMS (over outputs and bands) of the profiles minus their mean
    over outputs, in dB; 0 when all profiles are equal."""
    p = np.asarray(profiles, dtype=np.float64)
    return float(np.sqrt(np.mean((p - p.mean(0)) ** 2)))


def permutation_scores(profiles: np.ndarray, chunk: np.ndarray) -> dict[tuple[int, ...], float]:
    """For every permutation p (chunk output p[i] -> running output i), the cosine between the centred running
    profiles and the centred chunk profiles put in that order: sum_i <P_i - mean P, Q_p[i] - mean Q> / (|P'| |Q'|).

    1 = the chunk's voices differ exactly as the running ones do, in this order; for two talkers the swapped
    order scores the negative of the kept one (for C talkers the scores of the C! orders sum to 0). All zero when
    either side has no differences.
    """
    P = np.asarray(profiles, dtype=np.float64)
    Q = np.asarray(chunk, dtype=np.float64)
    P, Q = P - P.mean(0), Q - Q.mean(0)
    norm = np.linalg.norm(P) * np.linalg.norm(Q)
    out = {}
    for p in itertools.permutations(range(len(P))):
        out[p] = float(np.sum(P * Q[list(p)]) / norm) if norm > EPS else 0.0
    return out


def override_margin(num_spks: int) -> float:
    """The score lead needed to override the overlap match with `num_spks` outputs: OVERRIDE_MARGIN (set for two
    talkers) times the lead of the right order over a swap of two voices among num_spks equally distinct ones
    with exact profiles, relative to two talkers. That lead is 2 / (C - 1) (swapping voices i and j costs
    |P_i - P_j|^2 / |P|^2 in permutation_scores): 2 for two talkers, 1 for three, so 1.2 becomes 0.6."""
    return OVERRIDE_MARGIN / max(int(num_spks) - 1, 1)


def decide(matched: Sequence[int], profiles: np.ndarray, profile_counts: np.ndarray, chunk: np.ndarray,
           chunk_counts: np.ndarray, frames_per_second: float, min_profile_seconds: float = MIN_PROFILE_SECONDS,
           min_chunk_seconds: float = MIN_CHUNK_SECONDS, min_distinct_db: float = MIN_DISTINCT_DB,
           margin: float | None = None) -> tuple[int, ...]:
    """The chunk's order from the overlap match `matched` and the profiles: `matched` unless every running
    profile and every chunk output has enough counted speech, the running profiles are distinct, and another
    of the C! orders beats `matched` by at least `margin` (None: override_margin(C)) in permutation_scores; then
    the best-scoring order."""
    matched = tuple(int(v) for v in matched)
    margin = override_margin(len(matched)) if margin is None else margin
    if np.min(profile_counts) < min_profile_seconds * frames_per_second:
        return matched  # profiles not yet reliable (start of the recording, or one talker silent so far)
    if np.min(chunk_counts) < min_chunk_seconds * frames_per_second:
        return matched  # a talker (nearly) silent in this chunk: nothing to compare
    if distinctness_db(profiles) < min_distinct_db:
        return matched  # the voices are too alike to tell apart by their spectra
    scores = permutation_scores(profiles, chunk)
    best = max(scores, key=lambda p: scores[p])
    return best if scores[best] - scores[matched] >= margin else matched


class SpeakerTracker:
    """Running voice profiles of the stitched outputs, and the chunk decision (see the module docstring).

    Call `step` once per chunk, in order, with the chunk's level-fitted estimates in the model's order.
    """

    def __init__(self, num_spks: int, sample_rate: int, min_agreement: float | None = MIN_AGREEMENT, **thresholds):
        """min_agreement: see MIN_AGREEMENT (None: every chunk goes into the profiles); thresholds: keyword
        arguments of decide() to use instead of its defaults (tests, benchmarks)."""
        self.C = num_spks
        self.sample_rate = int(sample_rate)
        self.min_agreement = min_agreement
        self.thresholds = thresholds
        self.min_profile_frames = thresholds.get("min_profile_seconds", MIN_PROFILE_SECONDS) * \
            self._frames_per_second(sample_rate)
        self.sums = np.zeros((num_spks, N_BANDS))
        self.counts = np.zeros(num_spks)
        self.frames_per_second = self._frames_per_second(sample_rate)

    @staticmethod
    def _frames_per_second(sample_rate: int) -> float:
        return sample_rate / max(int(round(HOP_SECONDS * sample_rate)), 1)

    @property
    def profiles(self) -> np.ndarray:
        return profile_means(self.sums, self.counts)

    def step(self, est: np.ndarray, matched: Sequence[int], new_from: int, reference_power: float,
             first: bool = False) -> tuple[int, ...]:
        """Decide the order of this chunk (est [C, L], model order; `matched` from the overlap match) and add
        its samples from `new_from` on (those not in any earlier chunk), in the chosen order, to the profiles.

        reference_power: the recording's mean mixture power so far (sets the activity floor, ACTIVE_DB).
        first: the recording's first chunk (no decision, the profiles start here). Returns the order.
        """
        shape, level = frame_features(est, self.sample_rate)
        floor_db = 10 * np.log10(max(float(reference_power), EPS)) + ACTIVE_DB
        mask = counted_frames(level, floor_db)
        perm = tuple(int(v) for v in matched)
        if not first:
            q_sums, q_counts = profile_sums(shape, mask)
            chunk = profile_means(q_sums, q_counts)
            perm = decide(perm, self.profiles, self.counts, chunk, q_counts, self.frames_per_second,
                          **self.thresholds)
            reliable = np.min(self.counts) >= self.min_profile_frames
            if reliable and self.min_agreement is not None and \
                    permutation_scores(self.profiles, chunk)[perm] < self.min_agreement:
                return perm  # doubtful: keep it out of the profiles
        hop = max(int(round(HOP_SECONDS * self.sample_rate)), 1)
        new = np.arange(shape.shape[1]) * hop >= new_from
        sums, counts = profile_sums(shape[:, new], mask[:, new])
        self.sums += sums[list(perm)]
        self.counts += counts[list(perm)]
        return perm
