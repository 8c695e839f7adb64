"""Chunk planning, windows, level fitting, talker alignment and overlap-add (pure functions)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from mossep.chunking import (DEFAULT_CHUNK_SECONDS, DEFAULT_OVERLAP_SECONDS, OverlapAdd, chunk_window,
                             choose_permutation, fade, fit_to_mixture, is_quiet, is_regular, plan_chunks, stitch)

SETTINGS = settings(max_examples=60, deadline=None)


def test_defaults_are_sane():
    assert 0 < DEFAULT_OVERLAP_SECONDS < DEFAULT_CHUNK_SECONDS / 2


@SETTINGS
@given(n=st.integers(1, 3000), chunk=st.integers(2, 500), data=st.data())
def test_plan_covers_everything_with_full_chunks(n, chunk, data):
    overlap = data.draw(st.integers(0, chunk - 1))
    plan = plan_chunks(n, chunk, overlap)
    assert plan[0][0] == 0 and plan[-1][1] == n
    if n <= chunk:
        assert plan == [(0, n)]
        return
    for (s0, e0), (s1, e1) in zip(plan, plan[1:]):
        assert e1 - s1 == chunk and e0 - s0 == chunk
        assert s0 < s1 and e0 < e1
        assert e0 - s1 >= overlap  # each chunk overlaps its predecessor by at least `overlap`
    # the streaming rule reproduces the regular chunks of the plan
    regular = [s for s, _ in plan if is_regular(s, chunk, n)]
    assert regular == [s for s, _ in plan[:-1]]


def test_plan_edge_cases():
    assert plan_chunks(0, 10, 2) == []
    assert plan_chunks(7, 0, 0) == [(0, 7)]  # chunk 0 = whole input
    assert plan_chunks(10, 10, 3) == [(0, 10)]
    assert plan_chunks(11, 10, 3) == [(0, 10), (1, 11)]
    assert plan_chunks(24, 10, 2) == [(0, 10), (8, 18), (14, 24)]
    with pytest.raises(ValueError):
        plan_chunks(100, 10, 10)


def test_fade_is_complementary_and_positive():
    f = fade(17)
    assert np.all(f > 0) and np.all(f < 1)
    np.testing.assert_allclose(f + f[::-1], 1.0, atol=1e-12)
    w = chunk_window(10, 4, 4)
    assert np.all(w > 0) and w[4:6].tolist() == [1.0, 1.0]
    assert np.all(chunk_window(5, 8, 8) > 0)  # fades longer than the chunk still give a positive window


@SETTINGS
@given(n=st.integers(16, 1500), chunk=st.integers(16, 400), data=st.data())
def test_identity_model_overlap_add_reproduces_input(n, chunk, data):
    overlap = data.draw(st.integers(0, chunk - 1))
    rng = np.random.default_rng(n * 1000 + chunk)
    mix = rng.standard_normal(n)
    plan = plan_chunks(n, chunk, overlap)
    out, _ = stitch([mix[None, s:e] for s, e in plan], plan, mix, overlap, fit_level=False)
    assert out.shape == (1, n)
    np.testing.assert_allclose(out[0], mix, rtol=1e-5, atol=1e-5)
    # with level fitting (light ridge) it is still the input to within 0.1 %
    out, _ = stitch([3.0 * mix[None, s:e] for s, e in plan], plan, mix, overlap)
    np.testing.assert_allclose(out[0], mix, rtol=1e-3, atol=1e-3)


@SETTINGS
@given(n=st.integers(64, 2000), chunk=st.integers(32, 400), c=st.sampled_from([2, 3]), data=st.data())
def test_shuffled_oracle_is_stitched_back_in_order(n, chunk, c, data):
    overlap = data.draw(st.integers(8, chunk // 2))
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    sources = rng.standard_normal((c, n)) * rng.uniform(0.2, 2.0, (c, 1))
    mix = sources.sum(0)
    plan = plan_chunks(n, chunk, overlap)
    estimates, orders = [], []
    for s, e in plan:  # the true sources, in a random order and at a random level per chunk
        orders.append(rng.permutation(c))
        estimates.append(sources[orders[-1], s:e] * rng.uniform(0.1, 10.0, (c, 1)))
    out, perms = stitch(estimates, plan, mix, overlap)
    assert len(perms) == len(plan)
    # the first chunk's order names the outputs; every later chunk must follow it
    expected = sources[orders[0]]
    np.testing.assert_allclose(out, expected, rtol=2e-3, atol=2e-3 * np.abs(sources).max())


def test_quiet_overlap_keeps_previous_assignment():
    rng = np.random.default_rng(0)
    n, chunk, overlap = 300, 200, 100
    sources = rng.standard_normal((2, n))
    sources[:, 100:200] *= 1e-4  # the overlap of the two chunks is (nearly) silent
    mix = sources.sum(0)
    plan = plan_chunks(n, chunk, overlap)
    assert plan == [(0, 200), (100, 300)]
    estimates = [sources[:, 0:200], sources[::-1, 100:300]]  # the second chunk comes out swapped
    out, perms = stitch(estimates, plan, mix, overlap)
    assert perms == [(0, 1), (0, 1)]  # no guess: the previous permutation is kept
    # with an audible overlap the swap is detected
    loud = rng.standard_normal((2, n))
    estimates = [loud[:, 0:200], loud[::-1, 100:300]]
    _, perms = stitch(estimates, plan, loud.sum(0), overlap)
    assert perms == [(0, 1), (1, 0)]


def test_choose_permutation_and_quiet_threshold():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((3, 50))
    est = a[[2, 0, 1]]
    assert choose_permutation(a, est, a.sum(0), 1.0, (0, 1, 2)) == (1, 2, 0)
    # below -30 dB of the recording's power: keep the previous permutation
    assert choose_permutation(a, est, a.sum(0) * 1e-3, 3.0, (0, 1, 2)) == (0, 1, 2)
    assert is_quiet(np.zeros(10), 1.0) and not is_quiet(np.ones(10), 1.0) and is_quiet(np.zeros(0), 1.0)


def test_fit_to_mixture_least_squares():
    rng = np.random.default_rng(2)
    s = rng.standard_normal((2, 400))
    g = fit_to_mixture(s * np.array([[4.0], [-0.5]]), s.sum(0))
    np.testing.assert_allclose(g, [0.25, -2.0], rtol=1e-3)
    # a silent estimate gets no gain, not an infinite one
    g = fit_to_mixture(np.stack([s[0], np.zeros(400)]), s[0])
    assert np.isfinite(g).all() and abs(g[1]) < 1e-6
    assert fit_to_mixture(np.zeros((2, 10)), np.ones(10)).tolist() == [0.0, 0.0]


def test_overlap_add_streams_in_pieces():
    """Popping finished samples as chunks arrive gives the same result as stitching at once."""
    rng = np.random.default_rng(3)
    n, chunk, overlap = 1000, 160, 40
    src = rng.standard_normal((2, n))
    mix = src.sum(0)
    plan = plan_chunks(n, chunk, overlap)
    whole, _ = stitch([src[:, s:e] for s, e in plan], plan, mix, overlap)
    ola = OverlapAdd(2, overlap)
    parts = []
    for i, (s, e) in enumerate(plan):
        ola.add(s, src[:, s:e], mix[s:e], first=i == 0, last=e == n)
        nxt = plan[i + 1][0] if i + 1 < len(plan) else n
        parts.append(ola.pop(nxt))
        assert ola.den.size <= chunk  # holds at most one chunk
    np.testing.assert_allclose(np.concatenate(parts, axis=1), whole, atol=1e-6)
