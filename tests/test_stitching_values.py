"""Stitching by value: what the overlap-add gives sample by sample where two chunks disagree (the seams a
listener would hear), and the exact windows, gains and decisions behind it."""
from __future__ import annotations

import numpy as np
import pytest

from mossep.chunking import (OverlapAdd, chunk_window, choose_permutation, fade, fit_to_mixture, is_quiet,
                             plan_chunks, stitch)


def test_fade_rises_as_a_raised_cosine():
    f = fade(8)
    assert np.all(np.diff(f) > 0)  # a fade-in rises
    np.testing.assert_allclose(f, np.sin(0.5 * np.pi * (np.arange(8) + 0.5) / 8) ** 2, atol=1e-12)
    assert fade(0).size == 0


def test_chunk_window_fades_in_at_the_start_and_out_at_the_end():
    w = chunk_window(12, 4, 3)
    np.testing.assert_allclose(w[:4], fade(4), atol=1e-12)
    np.testing.assert_allclose(w[-3:], fade(3)[::-1], atol=1e-12)
    assert np.all(w[4:9] == 1.0)
    np.testing.assert_allclose(chunk_window(6, 0, 0), np.ones(6))
    # fades longer than the chunk: truncated, and multiplied where they meet
    short = chunk_window(3, 5, 5)
    np.testing.assert_allclose(short, fade(5)[:3] * fade(5)[::-1][2:], atol=1e-12)


def test_the_seam_is_a_crossfade_from_one_chunk_to_the_next():
    """Two chunks whose estimates disagree over the overlap (constant 1 then constant 3): the output there
    goes from the first chunk's value to the second's along the fade, and is each chunk's own value outside."""
    overlap, L = 6, 16
    ola = OverlapAdd(1, overlap, fit_level=False)
    ones = np.ones((1, L))
    ola.add(0, ones, np.ones(L), first=True, last=False)
    ola.add(L - overlap, 3 * ones, np.ones(L), first=False, last=True)
    out = ola.pop(2 * L - overlap)[0].astype(np.float64)
    assert out.shape == (2 * L - overlap,)
    np.testing.assert_allclose(out[: L - overlap], 1.0, atol=1e-6)
    np.testing.assert_allclose(out[L:], 3.0, atol=1e-6)
    np.testing.assert_allclose(out[L - overlap: L], 1.0 + 2.0 * fade(overlap), atol=1e-6)


def test_the_first_and_last_chunks_are_not_faded_at_the_file_edges():
    ola = OverlapAdd(1, 4, fit_level=False)
    ola.add(0, np.full((1, 10), 2.0), np.ones(10), first=True, last=True)
    np.testing.assert_allclose(ola.pop(10)[0], 2.0, atol=1e-6)


def test_level_fit_scales_each_chunk_to_the_mixture():
    rng = np.random.default_rng(0)
    src = rng.standard_normal((2, 400))
    g = fit_to_mixture(src * np.array([[4.0], [0.25]]), src.sum(0))
    np.testing.assert_allclose(g, [0.25, 4.0], rtol=1e-3)
    ola = OverlapAdd(2, 100)
    ola.add(0, src[:, :250] * 5.0, src.sum(0)[:250], first=True, last=False)
    ola.add(150, src[:, 150:] * 0.1, src.sum(0)[150:], first=False, last=True)
    np.testing.assert_allclose(ola.pop(400), src, atol=1e-3)
    assert fit_to_mixture(np.zeros((2, 50)), np.ones(50)).tolist() == [0.0, 0.0]


def test_quiet_threshold_is_30_db_under_the_mean_power():
    x = np.ones(100)
    assert not is_quiet(x * 10 ** (-29 / 20), 1.0)
    assert is_quiet(x * 10 ** (-31 / 20), 1.0)
    assert is_quiet(np.zeros(0), 1.0)
    # a permutation is decided over an overlap 20 dB down, not over one 40 dB down
    s = np.stack([np.sin(np.arange(200) * 0.3), np.cos(np.arange(200) * 0.11)])
    swapped = s[::-1]
    assert choose_permutation(s, swapped, s.sum(0) * 0.1, 1.0, (0, 1)) == (1, 0)
    assert choose_permutation(s, swapped, s.sum(0) * 0.01, 1.0, (0, 1)) == (0, 1)


def test_stitch_follows_the_plan_and_returns_each_chunks_permutation():
    rng = np.random.default_rng(3)
    n, chunk, overlap = 1000, 300, 60
    src = rng.standard_normal((2, n))
    plan = plan_chunks(n, chunk, overlap)
    est = [src[:, s:e] if i % 2 == 0 else src[::-1, s:e] for i, (s, e) in enumerate(plan)]
    out, perms = stitch(est, plan, src.sum(0), overlap)
    np.testing.assert_allclose(out, src, atol=1e-3)
    assert perms == [(0, 1) if i % 2 == 0 else (1, 0) for i in range(len(plan))]
    empty, none = stitch([], [], np.zeros(5), 2)
    assert empty.shape == (0, 5) and empty.dtype == np.float32 and none == []


def test_stitch_passes_its_quiet_threshold_on():
    """An overlap 20 dB under the recording: decided at the default -30 dB, kept at -10 dB."""
    n, chunk, overlap = 600, 400, 100
    t = np.arange(n)
    src = np.stack([np.sin(t * 0.3), np.cos(t * 0.11)])
    src[:, 200:400] *= 0.1  # the overlap with the last chunk [200, 600) is 20 dB down
    plan = plan_chunks(n, chunk, overlap)
    est = [src[:, s:e] if i == 0 else src[::-1, s:e] for i, (s, e) in enumerate(plan)]
    _, decided = stitch(est, plan, src.sum(0), overlap, fit_level=False)
    _, kept = stitch(est, plan, src.sum(0), overlap, quiet_db=-10.0, fit_level=False)
    assert decided == [(0, 1), (1, 0)] and kept == [(0, 1), (0, 1)]


def test_level_fit_is_computed_in_float64_for_float32_input(rng):
    src = rng.standard_normal((2, 4000))
    est = (src * np.array([[3.0], [0.5]]) + 0.01 * rng.standard_normal((2, 4000))).astype(np.float32)
    mix = src.sum(0).astype(np.float32)
    np.testing.assert_allclose(fit_to_mixture(est, mix), fit_to_mixture(est.astype(np.float64),
                                                                         mix.astype(np.float64)), rtol=1e-12)


def test_level_fit_gains_do_not_depend_on_the_level(rng):
    """A quiet chunk (down to 1e-8 of full scale) gets the gains of a loud one: no estimate is declared
    silent for being quiet, only for being silent next to the others."""
    src = rng.standard_normal((2, 400))
    est = src * np.array([[2.0], [0.3]])
    want = fit_to_mixture(est, src.sum(0))
    for scale in (1e-4, 1e-8):
        np.testing.assert_allclose(fit_to_mixture(est * scale, src.sum(0) * scale), want, rtol=1e-9)
    assert fit_to_mixture(np.zeros((0, 400)), src.sum(0)).shape == (0,)


def test_level_fit_ridge_is_a_light_diagonal_loading(rng):
    """Orthogonal estimates: each gain is the projection of the mixture, divided by 1 + ridge."""
    t = np.arange(800)
    est = np.stack([np.sin(2 * np.pi * 5 * t / 800), np.cos(2 * np.pi * 9 * t / 800)])
    mix = 0.7 * est[0] + 1.9 * est[1]
    np.testing.assert_allclose(fit_to_mixture(est, mix), [0.7 / 1.0001, 1.9 / 1.0001], rtol=1e-9)
    np.testing.assert_allclose(fit_to_mixture(est, mix, ridge=0.5), [0.7 / 1.5, 1.9 / 1.5], rtol=1e-9)


def test_overlap_add_measures_the_recordings_mean_power_once_per_sample():
    """The quiet threshold is relative to the recording's mean power: every sample counted once, however
    the chunks overlap, in float64."""
    rng = np.random.default_rng(5)
    mix = (rng.standard_normal(1000) * np.linspace(0.1, 2.0, 1000)).astype(np.float32)
    ola = OverlapAdd(1, 100)
    for s, e in plan_chunks(1000, 300, 100):
        ola.add(s, mix[None, s:e].astype(np.float64), mix[s:e], first=s == 0, last=e == 1000)
    assert ola.mix_count == 1000
    assert ola.mix_energy == pytest.approx(float(np.sum(np.square(mix.astype(np.float64)))), rel=1e-12)


def test_overlap_add_defaults_and_refusals():
    ola = OverlapAdd(2, 10)
    assert ola.tracker is None and ola.perm == (0, 1)  # no voice tracking unless asked for
    assert OverlapAdd(2, 10, track_speakers=True).tracker.sample_rate == 8000
    ola.add(0, np.ones((2, 20)), np.ones(20), first=True, last=False)
    ola.pop(15)
    with pytest.raises(ValueError, match="^chunk starts before already finished output$"):
        ola.add(5, np.ones((2, 20)), np.ones(20), first=False, last=True)


def test_stitch_gives_the_tracker_the_recordings_rate(monkeypatch):
    import mossep.chunking as chunking

    rates = []

    class Recording(chunking.SpeakerTracker):
        def __init__(self, num_spks, sample_rate, **kw):
            rates.append(sample_rate)
            super().__init__(num_spks, sample_rate, **kw)

    monkeypatch.setattr(chunking, "SpeakerTracker", Recording)
    src = np.random.default_rng(0).standard_normal((2, 900))
    plan = plan_chunks(900, 400, 100)
    for kw, rate in ((dict(sample_rate=16000), 16000), ({}, 8000)):
        stitch([src[:, s:e] for s, e in plan], plan, src.sum(0), 100, track_speakers=True, **kw)
        assert rates.pop() == rate


def test_quiet_is_relative_to_the_reference_at_any_level_and_inclusive():
    x = np.ones(50)
    for level in (1.0, 1e-6, 1e-12):  # a quiet recording's overlaps are judged against its own power
        assert not is_quiet(x * np.sqrt(level) * 10 ** (-29 / 20), level)
        assert is_quiet(x * np.sqrt(level) * 10 ** (-31 / 20), level)
    assert is_quiet(x, 1000.0)  # exactly at the threshold (power 1 = 1000 * 10^-3) counts as quiet


def test_streaming_pops_give_the_stitched_output():
    """Adding chunks and popping what is finished in between (as Separator.separate_stream does) gives what
    stitching the whole plan at once gives, including the permutation decisions, as float32."""
    rng = np.random.default_rng(11)
    n, chunk, overlap = 2000, 500, 120
    src = rng.standard_normal((2, n))
    plan = plan_chunks(n, chunk, overlap)
    est = [src[:, s:e] if i % 2 else src[::-1, s:e] * 2.0 for i, (s, e) in enumerate(plan)]
    whole, perms = stitch(est, plan, src.sum(0), overlap)
    ola = OverlapAdd(2, overlap)
    parts = []
    for i, ((s, e), x) in enumerate(zip(plan, est)):
        ola.add(s, x, src.sum(0)[s:e], first=s == 0, last=e == n)
        parts.append(ola.pop(plan[i + 1][0] if i + 1 < len(plan) else n))
        assert parts[-1].dtype == np.float32
        assert ola.pop(ola.done).shape == (2, 0)  # nothing more is finished yet
    np.testing.assert_allclose(np.concatenate(parts, axis=1), whole, atol=1e-6)
    assert ola.perms == perms and ola.done == n


def test_overlap_longer_than_half_a_chunk_still_reconstructs():
    """Fades that meet multiply, so the window sum drops below 1 there: the normalisation must divide by it."""
    rng = np.random.default_rng(2)
    n, chunk, overlap = 60, 10, 8
    mix = rng.standard_normal(n)
    plan = plan_chunks(n, chunk, overlap)
    out, _ = stitch([mix[None, s:e] for s, e in plan], plan, mix, overlap, fit_level=False)
    np.testing.assert_allclose(out[0], mix, atol=1e-6)


def test_tracking_records_what_the_overlap_matched():
    rng = np.random.default_rng(4)
    src = rng.standard_normal((2, 3000))
    ola = OverlapAdd(2, 200, track_speakers=True)
    for s, e in plan_chunks(3000, 1000, 200):
        x = src[:, s:e] if s % 2 == 0 else src[::-1, s:e]
        ola.add(s, x, src.sum(0)[s:e], first=s == 0, last=e == 3000)
    assert len(ola.matched) == len(ola.perms) and all(isinstance(p, tuple) for p in ola.matched)
    assert ola.matched == ola.perms  # noise has no voice profile: the tracker never overrides


def test_one_sample_fades_and_chunks():
    np.testing.assert_allclose(fade(1), [0.5], atol=1e-12)
    np.testing.assert_allclose(chunk_window(5, 1, 1), [0.5, 1, 1, 1, 0.5], atol=1e-12)
    assert plan_chunks(3, 1, 0) == [(0, 1), (1, 2), (2, 3)]
    with pytest.raises(ValueError, match=r"^overlap \(4\) must be in \[0, chunk\) = \[0, 4\)$"):
        plan_chunks(10, 4, 4)


def test_a_tied_overlap_keeps_the_previous_order():
    """When no order matches the overlap better than the previous one (here the chunk's estimates are
    identical there, so every order ties exactly: integer samples, exact sums), the previous order is kept,
    not the first of the tied ones."""
    rng = np.random.default_rng(6)
    for c, previous in ((2, (1, 0)), (3, (2, 0, 1))):
        stitched = rng.integers(-3, 4, size=(c, 64)).astype(np.float64)
        same = np.repeat(rng.integers(-3, 4, size=(1, 64)).astype(np.float64), c, axis=0)
        assert choose_permutation(stitched, same, stitched.sum(0), 1.0, previous) == previous
        # the same overlap with distinct estimates is decided by the match
        assert choose_permutation(stitched, stitched, stitched.sum(0), 1.0, previous) == tuple(range(c))


def test_a_custom_quiet_threshold_also_decides_which_outputs_pause():
    """Three talkers: outputs 1 and 2 are 23 dB under the recording over the overlap, output 0 talks. At
    quiet_db=-10 they count as pausing and keep their previous estimates although the overlap's faint match
    says swap them; at the default -30 dB they are live and the match decides."""
    t = np.arange(400)
    a, b, c = np.sin(t * 0.3), np.cos(t * 0.11), np.sin(t * 0.05 + 1.0)
    stitched = np.stack([a, 0.1 * b, 0.1 * c])
    est = np.stack([a, 0.1 * c, 0.1 * b])
    mix = stitched.sum(0)
    assert choose_permutation(stitched, est, mix, 1.0, (0, 1, 2), quiet_db=-10.0) == (0, 1, 2)
    assert choose_permutation(stitched, est, mix, 1.0, (0, 1, 2)) == (0, 2, 1)


def test_the_overlap_match_counts_every_sample_of_the_stitched_output_alike():
    """The new chunk is matched to the stitched output itself (the overlap-add divided by its window sum),
    not to the window-weighted sum: over the first half of the overlap its estimates agree with the kept
    order, over the second half (where the previous chunk fades out) they agree, 1.5 times louder, with the
    swapped order. Unweighted that is a clear swap; weighted by the fading window it would not be."""
    overlap, L, split = 100, 300, 50
    first = np.stack([np.sin(np.arange(L) * 0.3), np.cos(np.arange(L) * 0.11)])
    s = np.arange(L - overlap, 2 * L - overlap)
    m0, m1 = np.sin(s * 0.3), np.cos(s * 0.11)
    j = np.arange(L)
    second = np.stack([np.where(j < split, m0, 1.5 * m1), np.where(j < split, m1, 1.5 * m0)])
    ola = OverlapAdd(2, overlap, fit_level=False)
    ola.add(0, first, first.sum(0), first=True, last=False)
    assert ola.add(L - overlap, second, second.sum(0), first=False, last=True) == (1, 0)


def test_a_chunk_that_does_not_overlap_keeps_the_previous_order():
    """An empty overlap cannot decide (is_quiet): a chunk that starts where the stitched output ends keeps the
    order the previous chunk was given, here a swap decided over the overlap before it, not the model's."""
    t = np.arange(800)
    src = np.stack([np.sin(t * 0.3), np.cos(t * 0.11)])
    ola = OverlapAdd(2, 100, fit_level=False)
    assert ola.add(0, src[:, :300], src.sum(0)[:300], first=True, last=False) == (0, 1)
    assert ola.add(200, src[::-1, 200:500], src.sum(0)[200:500], first=False, last=False) == (1, 0)
    assert ola.add(500, src[::-1, 500:], src.sum(0)[500:], first=False, last=True) == (1, 0)
    np.testing.assert_allclose(ola.pop(800), src, atol=1e-6)


def test_a_gap_between_chunks_comes_out_as_silence():
    """Samples no chunk covers (window sum 0) are popped as zeros, not divided by zero."""
    ola = OverlapAdd(1, 0, fit_level=False)
    ola.add(0, np.full((1, 10), 2.0), np.ones(10), first=True, last=False)
    ola.add(20, np.full((1, 10), 3.0), np.ones(10), first=False, last=True)
    out = ola.pop(30)[0]
    assert np.all(np.isfinite(out))
    np.testing.assert_array_equal(out, np.r_[np.full(10, 2.0), np.zeros(10), np.full(10, 3.0)].astype(np.float32))
