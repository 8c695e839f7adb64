"""Chunked separation of long recordings: plan overlapping chunks, weight them, keep each talker on the
same output across chunks, and overlap-add.

Pure functions on numpy arrays, plus `OverlapAdd`, a small streaming accumulator built from them so that
memory does not grow with the recording length. Shapes: C speakers, T samples; estimates are [C, T].

Stitching one chunk:
1. `fit_to_mixture`: a separation model's output level is arbitrary (SI-SNR training), so each chunk's
   estimates get the per-speaker gains whose weighted sum best matches the chunk's mixture (least squares).
2. `choose_permutation`: the order of the chunk's outputs is arbitrary, so it is matched to what is already
   stitched over the overlap (the permutation with the least squared error, among all C! orders); when the
   overlap is too quiet to tell, the previous chunk's permutation is kept (with three or more talkers, also
   for the outputs that are quiet there while others talk).
3. optionally (`track_speakers`), `mossep.tracking.SpeakerTracker` checks that order against running voice
   profiles of the outputs and overrides it when the profiles clearly say the talkers were swapped inside an
   earlier chunk (which the overlap match alone would carry to the end of the recording).
4. `OverlapAdd.add`: weighted overlap-add, normalised by the sum of the windows (exact for any overlap).
"""
from __future__ import annotations

import itertools
from typing import Iterable, Sequence

import numpy as np

from .tracking import SpeakerTracker

# Chosen by measurement on long recordings (benchmarks/README.md, "Long recordings"; benchmarks/bench_long.py):
# minute-long two-talker mixtures of held-out speakers, scored over the whole file so that a talker swap between
# chunks counts. With the default model, 16 s chunks / 2 s overlap scored 6.65 dB (30 s files) and 6.36 dB (60 s
# files) with 2 % of windows swapped; 4 s / 1 s only 5.40 and 4.26 dB with 7-16 % swapped: in short chunks a
# talker is often silent for a while and the model re-orders its outputs inside a chunk, which no stitching can
# undo, while more context keeps the order. The overlap costs 16/14 = 1.14x compute; activations grow with the
# chunk (paper-l: about 1.2 GB peak at 16 s). Clips up to 16 s are separated whole.
DEFAULT_CHUNK_SECONDS = 16.0
DEFAULT_OVERLAP_SECONDS = 2.0
# An overlap whose mixture power is this far below the recording's mean power is "too quiet to decide".
QUIET_DB = -30.0

Chunk = tuple[int, int]  # [start, end) in samples


def plan_chunks(n: int, chunk: int, overlap: int) -> list[Chunk]:
    """Overlapping chunks covering [0, n).

    Chunks of `chunk` samples start every `chunk - overlap` samples while they end before n; the last chunk
    is a full chunk ending exactly at n (so it overlaps its predecessor by at least `overlap`). A recording
    no longer than one chunk (or chunk <= 0: "whole file") is a single chunk [0, n).
    """
    if n <= 0:
        return []
    if chunk <= 0 or n <= chunk:
        return [(0, n)]
    if not 0 <= overlap < chunk:
        raise ValueError(f"overlap ({overlap}) must be in [0, chunk) = [0, {chunk})")
    hop = chunk - overlap
    out = []
    start = 0
    while start + chunk < n:
        out.append((start, start + chunk))
        start += hop
    out.append((n - chunk, n))
    return out


def is_regular(start: int, chunk: int, n_known: int) -> bool:
    """Whether a chunk starting at `start` is certainly a regular (non-final) chunk once `n_known` samples
    are available (the streaming form of plan_chunks' loop condition)."""
    return start + chunk < n_known


def fade(length: int) -> np.ndarray:
    """Raised-cosine fade-in of `length` samples, strictly inside (0, 1); fade(L) + fade(L)[::-1] == 1."""
    t = (np.arange(length, dtype=np.float64) + 0.5) / max(length, 1)
    return np.sin(0.5 * np.pi * t) ** 2


def chunk_window(length: int, fade_in: int, fade_out: int) -> np.ndarray:
    """Window for one chunk: fades of the given lengths at each end, 1 elsewhere; always > 0.

    Fades longer than the chunk are truncated; if they meet, they multiply.
    """
    w = np.ones(length, dtype=np.float64)
    fi, fo = min(fade_in, length), min(fade_out, length)
    if fi > 0:
        w[:fi] *= fade(fade_in)[:fi]
    if fo > 0:
        w[length - fo:] *= fade(fade_out)[::-1][fade_out - fo:]
    return w


def fit_to_mixture(est: np.ndarray, mix: np.ndarray, ridge: float = 1e-4) -> np.ndarray:
    """Per-speaker gains g [C] minimising ||mix - sum_k g_k est_k||^2 (least squares).

    est [C, T], mix [T]. The normal equations get a light diagonal loading relative to each estimate's
    energy, which keeps the gains finite when estimates are (nearly) identical; silent estimates get gain 0.
    The fitted sum is a projection of the mixture, so it is never louder than the mixture.
    """
    e = np.asarray(est, dtype=np.float64)
    m = np.asarray(mix, dtype=np.float64)
    energy = np.einsum("ct,ct->c", e, e)
    live = energy > 1e-12 * max(float(energy.max(initial=0.0)), 1e-30)
    gains = np.zeros(len(e))
    if not live.any():
        return gains
    el = e[live]
    gram = el @ el.T
    gram[np.diag_indices_from(gram)] *= 1.0 + ridge
    gains[live] = np.linalg.solve(gram, el @ m)
    return gains


def permutations(c: int) -> list[tuple[int, ...]]:
    return list(itertools.permutations(range(c)))


def is_quiet(mix_overlap: np.ndarray, reference_power: float, quiet_db: float = QUIET_DB) -> bool:
    """True when the mixture over the overlap is too quiet (relative to `reference_power`, the recording's
    mean power) to decide a permutation, or the overlap is empty."""
    if mix_overlap.size == 0:
        return True
    power = float(np.mean(np.square(mix_overlap, dtype=np.float64)))
    floor = max(float(reference_power), 1e-20) * 10 ** (quiet_db / 10)
    return power <= floor


def choose_permutation(stitched: np.ndarray, est: np.ndarray, mix_overlap: np.ndarray, reference_power: float,
                       previous: Sequence[int], quiet_db: float = QUIET_DB) -> tuple[int, ...]:
    """Order of this chunk's estimates that continues the stitched outputs.

    stitched, est: [C, L] over the overlap (est already level-fitted); returns perm with est[perm[i]] going to
    output i. Picks the permutation with the least squared error (equivalently the largest sum of inner
    products) among all C! orders; keeps `previous` when the overlap is quiet or no permutation is better than
    it. With three or more talkers, the outputs that are quiet over the overlap while others are not (talkers
    who pause there) cannot be told apart by it, so they keep their previous order (keep_quiet_outputs).
    """
    prev = tuple(int(p) for p in previous)
    if is_quiet(mix_overlap, reference_power, quiet_db):
        return prev
    s = np.asarray(stitched, dtype=np.float64)
    e = np.asarray(est, dtype=np.float64)
    inner = s @ e.T  # [C_out, C_est]
    idx = np.arange(len(s))
    scores = {p: float(inner[idx, list(p)].sum()) for p in permutations(len(s))}
    best = max(scores, key=lambda p: scores[p])
    chosen = best if scores[best] > scores[prev] else prev
    quiet = [is_quiet(out, reference_power, quiet_db) for out in s]
    return keep_quiet_outputs(chosen, prev, quiet)


def keep_quiet_outputs(chosen: Sequence[int], previous: Sequence[int], quiet: Sequence[bool]) -> tuple[int, ...]:
    """`chosen` with the estimates it gives the quiet outputs re-dealt among them as `previous` had them.

    Applies when at least two outputs are quiet and at least one is not (so never for two talkers): the live
    outputs keep the estimates the overlap matched to them; each quiet output takes its previous estimate if
    that one is left for the quiet outputs, the others take what remains in `chosen`'s order.
    """
    chosen = tuple(int(p) for p in chosen)
    quiet_idx = [i for i, q in enumerate(quiet) if q]
    if len(quiet_idx) < 2 or len(quiet_idx) == len(chosen):
        return chosen
    pool = [chosen[i] for i in quiet_idx]
    out = list(chosen)
    free = []
    for i in quiet_idx:
        if int(previous[i]) in pool:
            out[i] = int(previous[i])
        else:
            free.append(i)
    rest = [p for p in pool if p not in {out[i] for i in quiet_idx if i not in free}]
    for i, p in zip(free, rest):
        out[i] = p
    return tuple(out)


class OverlapAdd:
    """Streaming weighted overlap-add of aligned chunk estimates.

    Chunks must be added in increasing start order; `pop(upto)` returns the finished output [C, upto - done]
    once no later chunk can start before `upto`. Holds only the samples not yet popped.
    """

    def __init__(self, num_spks: int, overlap: int, quiet_db: float = QUIET_DB, fit_level: bool = True,
                 track_speakers: bool = False, sample_rate: int = 8000):
        """track_speakers: also order chunks by voice profiles (mossep.tracking; needs the true sample_rate)."""
        self.C = num_spks
        self.fit_level = fit_level
        self.overlap = overlap
        self.quiet_db = quiet_db
        self.done = 0  # samples already popped
        self.num = np.zeros((num_spks, 0))
        self.den = np.zeros(0)
        self.end = 0  # end of the furthest chunk added
        self.perm: tuple[int, ...] = tuple(range(num_spks))
        self.mix_energy = 0.0
        self.mix_count = 0
        self.perms: list[tuple[int, ...]] = []  # the permutation chosen for every chunk (for inspection)
        self.tracker = SpeakerTracker(num_spks, sample_rate) if track_speakers else None
        self.matched: list[tuple[int, ...]] = []  # with tracking: the overlap match's choice for every chunk

    def _grow(self, end: int) -> None:
        extra = end - (self.done + self.den.size)
        if extra > 0:
            self.num = np.concatenate([self.num, np.zeros((self.C, extra))], axis=1)
            self.den = np.concatenate([self.den, np.zeros(extra)])

    def add(self, start: int, est: np.ndarray, mix: np.ndarray, first: bool, last: bool) -> tuple[int, ...]:
        """Level-fit, align and accumulate one chunk's estimates est [C, L] for mixture mix [L] at `start`.

        first/last: whether the chunk begins/ends the recording (no fade there). Returns the permutation used.
        """
        if start < self.done:
            raise ValueError("chunk starts before already finished output")
        L = est.shape[-1]
        if self.fit_level:
            est = est * fit_to_mixture(est, mix)[:, None]
        # running mean power of the mixture, counting each new sample once
        new_from = max(self.end - start, 0)
        self.mix_energy += float(np.sum(np.square(mix[new_from:], dtype=np.float64)))
        self.mix_count += max(L - new_from, 0)
        ref_power = self.mix_energy / max(self.mix_count, 1)
        ov_end = min(self.end, start + L)
        if first or ov_end <= start:
            perm = self.perm if not first else tuple(range(self.C))
        else:
            a, b = start - self.done, ov_end - self.done
            stitched = self.num[:, a:b] / self.den[a:b]
            perm = choose_permutation(stitched, est[:, : ov_end - start], mix[: ov_end - start], ref_power,
                                      self.perm, self.quiet_db)
        if self.tracker is not None:
            self.matched.append(perm)
            perm = self.tracker.step(est, perm, new_from, ref_power, first=first)
        self.perm = perm
        self.perms.append(perm)
        est = est[list(perm)]
        fade_in = 0 if first else min(self.overlap, max(self.end - start, 0))
        w = chunk_window(L, fade_in, 0 if last else self.overlap)
        self._grow(start + L)
        a = start - self.done
        self.num[:, a:a + L] += est * w
        self.den[a:a + L] += w
        self.end = max(self.end, start + L)
        return perm

    def pop(self, upto: int) -> np.ndarray:
        """Finished output from `done` to `upto` (clipped to what has been added), float32 [C, t]."""
        upto = min(upto, self.end)
        k = max(upto - self.done, 0)
        out = (self.num[:, :k] / np.where(self.den[:k] > 0, self.den[:k], 1.0)).astype(np.float32)
        self.num, self.den = self.num[:, k:], self.den[k:]
        self.done += k
        return out


def stitch(estimates: Iterable[np.ndarray], plan: Sequence[Chunk], mix: np.ndarray, overlap: int,
           quiet_db: float = QUIET_DB, fit_level: bool = True, track_speakers: bool = False,
           sample_rate: int = 8000) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """Stitch per-chunk estimates [C, end - start] (in `plan` order) of the mixture `mix` [n] into [C, n].

    Returns (output, permutation chosen for each chunk). track_speakers, sample_rate: see OverlapAdd."""
    n = len(mix)
    ola = None
    for i, ((s, e), est) in enumerate(zip(plan, estimates)):
        if ola is None:
            ola = OverlapAdd(est.shape[0], overlap, quiet_db=quiet_db, fit_level=fit_level,
                             track_speakers=track_speakers, sample_rate=sample_rate)
        ola.add(s, np.asarray(est, dtype=np.float64), np.asarray(mix[s:e], dtype=np.float64),
                first=(s == 0), last=(e == n))
    if ola is None:
        return np.zeros((0, n), dtype=np.float32), []
    return ola.pop(n), ola.perms
