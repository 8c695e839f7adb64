"""Speaker tracking across chunks (mossep.tracking) and its use in stitching."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from mossep.chunking import plan_chunks, stitch
from mossep.tracking import (N_BANDS, SpeakerTracker, counted_frames, decide, distinctness_db, frame_features,
                             mel_filterbank, permutation_scores)

SR = 8000
FPS = 1 / 0.016  # frames per second at the default hop


def voice(seconds: float, f0: float, tilt: float, period: float, duty: float, phase: float, seed: int) -> np.ndarray:
    """A synthetic talker: a harmonic series (amplitude k^-tilt) on a wobbling f0, switched on for `duty` of
    every `period` seconds (speech and pauses), with 20 ms ramps."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    f = f0 * (1 + 0.05 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6)))
    ph = 2 * np.pi * np.cumsum(f) / SR
    x = sum(k ** -tilt * np.sin(k * ph + rng.uniform(0, 6)) for k in range(1, int(3900 / (1.05 * f0))))
    on = (((t / period) + phase) % 1.0) < duty
    ramp = np.convolve(on.astype(float), np.ones(160) / 160, mode="same")
    x = x * ramp
    return x / np.sqrt(np.mean(x ** 2) + 1e-12) * 0.05


def two_voices(seconds: float = 60.0) -> np.ndarray:
    low = voice(seconds, 110.0, 1.6, 3.0, 0.55, 0.0, 1)  # a low, dark voice
    high = voice(seconds, 230.0, 0.6, 3.0, 0.55, 0.5, 2)  # a high, bright one, taking turns with some overlap
    return np.stack([low, high])


def test_mel_filterbank_covers_every_band():
    fb = mel_filterbank(256, SR)
    assert fb.shape == (N_BANDS, 129)
    assert np.all(fb.sum(1) > 0) and np.all(fb >= 0)
    centres = (fb * np.arange(129)).sum(1) / fb.sum(1)
    assert np.all(np.diff(centres) > 0)  # bands go up in frequency


def test_frame_features_are_level_free():
    src = two_voices(4.0)
    shape1, level1 = frame_features(src, SR)
    shape2, level2 = frame_features(src * 10.0, SR)
    live = level1 > -40  # (silent frames and bands sit at the floor EPS)
    assert live.mean() > 0.4
    np.testing.assert_allclose(shape1[live], shape2[live], atol=1e-2)
    np.testing.assert_allclose((level2 - level1)[live], 20.0, atol=1e-6)
    s, lv = frame_features(np.zeros((2, 100)), SR)  # shorter than a frame: no frames
    assert s.shape == (2, 0, N_BANDS) and lv.shape == (2, 0)


def test_counted_frames_need_activity_and_dominance():
    level = np.array([[-10.0, -10.0, -50.0, -10.0],
                      [-30.0, -12.0, -60.0, -60.0]])
    m = counted_frames(level, floor_db=-40.0, dominant_db=6.0)
    assert m.tolist() == [[True, False, False, True], [False, False, False, False]]


@settings(max_examples=50, deadline=None)
@given(c=st.integers(2, 3), seed=st.integers(0, 10_000))
def test_identical_profiles_never_override(c, seed):
    rng = np.random.default_rng(seed)
    profiles = rng.normal(0, 3, (c, N_BANDS))
    matched = tuple(rng.permutation(c).tolist())
    counts = np.full(c, 1e6)
    # the chunk's outputs all have the same voice: no order is better than another
    same = np.repeat(rng.normal(0, 3, (1, N_BANDS)), c, axis=0)
    assert decide(matched, profiles, counts, same, counts, FPS) == matched
    # the running profiles are all the same: the tracker has nothing to go by
    assert decide(matched, same, counts, profiles, counts, FPS) == matched
    # the chunk agrees with the profiles in the matched order: kept
    assert decide(matched, profiles, counts, profiles[np.argsort(matched)], counts, FPS) == matched


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 10_000), noise=st.floats(0.0, 0.3))
def test_clearly_swapped_chunk_is_overridden(seed, noise):
    rng = np.random.default_rng(seed)
    profiles = rng.normal(0, 3, (2, N_BANDS))
    chunk = profiles[::-1] + noise * rng.normal(0, 3, (2, N_BANDS))  # model order (1, 0) is the right one
    counts = np.full(2, 1e6)
    assert decide((0, 1), profiles, counts, chunk, counts, FPS) == (1, 0)
    scores = permutation_scores(profiles, chunk)
    assert scores[(1, 0)] == pytest.approx(-scores[(0, 1)])  # two talkers: the swap scores the negative
    # ... but not with too little evidence on either side
    few = np.array([1e6, 0.5 * FPS])
    assert decide((0, 1), profiles, few, chunk, counts, FPS) == (0, 1)
    assert decide((0, 1), profiles, counts, chunk, few, FPS) == (0, 1)


def test_distinctness():
    p = np.zeros((2, N_BANDS))
    assert distinctness_db(p) == 0.0
    p[0], p[1] = 1.0, -1.0
    assert distinctness_db(p) == pytest.approx(1.0)


def swapped_estimates(src: np.ndarray, plan, k: int, at: float) -> list[np.ndarray]:
    """Oracle chunk estimates, except that inside chunk k the model swaps its outputs from fraction `at` on
    (as a real model does where a talker pauses)."""
    out = []
    for i, (s, e) in enumerate(plan):
        est = src[:, s:e].copy()
        if i == k:
            cut = int(at * (e - s))
            est[:, cut:] = est[::-1, cut:]
        out.append(est)
    return out


def test_swap_inside_a_chunk_is_healed_at_the_next_chunk():
    src = two_voices(60.0)
    mix = src.sum(0)
    chunk, overlap = 8 * SR, 1 * SR
    plan = plan_chunks(len(mix), chunk, overlap)
    k = 3
    est = swapped_estimates(src, plan, k, at=0.7)
    plain, plain_perms = stitch(est, plan, mix, overlap)
    tracked, perms = stitch(est, plan, mix, overlap, track_speakers=True, sample_rate=SR)
    after = plan[k + 1][0] + overlap  # from the end of the next chunk's fade-in on
    # without tracking the swap lasts to the end of the file...
    np.testing.assert_allclose(plain[:, after:], src[::-1, after:], atol=1e-3)
    assert all(p == (1, 0) for p in plain_perms[k + 1:])
    # ... with it, the next chunk is put back and everything after it is right
    np.testing.assert_allclose(tracked[:, after:], src[:, after:], atol=1e-3)
    assert perms[:k + 1] == plain_perms[:k + 1]  # no decision before the swap changed
    assert all(p == (0, 1) for p in perms[k + 1:])


def test_no_swap_no_override():
    src = two_voices(60.0)
    mix = src.sum(0)
    plan = plan_chunks(len(mix), 8 * SR, 1 * SR)
    est = [src[::-1, s:e] if i % 2 else src[:, s:e] for i, (s, e) in enumerate(plan)]  # arbitrary model order
    plain, p0 = stitch(est, plan, mix, SR)
    tracked, p1 = stitch(est, plan, mix, SR, track_speakers=True, sample_rate=SR)
    assert p0 == p1
    np.testing.assert_allclose(tracked, plain, atol=1e-6)


def test_silent_output_never_triggers_an_override():
    src = two_voices(60.0)
    src[1] = 0.0  # one talker never speaks: the second output is silent
    mix = src.sum(0)
    plan = plan_chunks(len(mix), 8 * SR, 1 * SR)
    tr = SpeakerTracker(2, SR)
    ref_power = float(np.mean(mix ** 2))
    for i, (s, e) in enumerate(plan):
        est = src[::-1, s:e] if i >= 3 else src[:, s:e]  # the model "swaps" from chunk 3 on
        matched = (0, 1) if i < 3 else (1, 0)
        new_from = 0 if i == 0 else plan[i - 1][1] - s
        assert tr.step(est, matched, new_from, ref_power, first=i == 0) == matched
    assert tr.counts[1] == 0


@pytest.mark.parametrize("track", [False, True])
def test_separator_heals_a_swap_only_when_tracking(tiny_model_path, monkeypatch, track):
    from mossep.separator import Separator

    src = two_voices(60.0)
    sep = Separator(tiny_model_path, device="cpu", chunk_seconds=8.0, overlap_seconds=1.0, track_speakers=track)
    assert sep.sample_rate == SR and sep.track_speakers is track
    plan = plan_chunks(src.shape[1], sep.chunk, sep.overlap)
    chunks = iter(swapped_estimates(src, plan, 3, at=0.7))  # the "model": the sources, swapped inside chunk 3
    monkeypatch.setattr(sep, "_forward", lambda audios: np.stack([next(chunks) for _ in audios]))
    est = sep.separate(src.sum(0).astype(np.float32), SR)
    tail = slice(plan[4][0] + sep.overlap, None)
    err_kept = np.abs(est[:, tail] - src[:, tail]).max()
    err_swapped = np.abs(est[:, tail] - src[::-1, tail]).max()
    assert (err_kept < 1e-3) if track else (err_swapped < 1e-3)


@pytest.mark.parametrize("min_agreement", [0.0, None])
def test_doubtful_chunk_stays_out_of_the_profiles(min_agreement):
    src = two_voices(40.0)
    ref_power = float(np.mean(src.sum(0) ** 2))
    # margin 3 > 2: no override ever, so a swapped chunk is kept as the overlap matched it
    tr = SpeakerTracker(2, SR, min_agreement=min_agreement, margin=3.0)
    n = 8 * SR
    for i in range(4):
        tr.step(src[:, i * n:(i + 1) * n], (0, 1), 0, ref_power, first=i == 0)
    before = tr.counts.copy()
    assert np.all(before >= 6.0 * FPS)  # reliable profiles
    assert tr.step(src[::-1, 4 * n:5 * n], (0, 1), 0, ref_power) == (0, 1)  # looks swapped, not overridden
    learned = not np.array_equal(tr.counts, before)
    assert learned == (min_agreement is None)
