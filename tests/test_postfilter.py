"""The Wiener post-filter (pure function): outputs sum to the mixture, artefacts not in the mixture go away."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from mossep.checkpoints import load_checkpoint
from mossep.chunking import fit_to_mixture
from mossep.postfilter import post_filter, stft_size, wiener_filter
from mossep.separator import Separator

SR = 8000


def _tones(n: int = 8000) -> np.ndarray:
    t = np.arange(n) / SR
    return np.stack([0.3 * np.sin(2 * np.pi * 300 * t), 0.2 * np.sin(2 * np.pi * 1900 * t + 1.0)])


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(40, 6000), c=st.integers(2, 3))
def test_outputs_sum_to_the_mixture(seed, n, c):
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal(n)
    est = rng.standard_normal((c, n))
    out = wiener_filter(est, mix, SR)
    assert out.shape == (c, n)
    np.testing.assert_allclose(out.sum(0), mix, atol=1e-8 * max(1.0, np.abs(mix).max()))


def test_removes_an_artefact_that_is_not_in_the_mixture():
    src = _tones()
    mix = src.sum(0)
    noisy = src + 0.05 * np.random.default_rng(0).standard_normal(src.shape)  # broadband artefacts
    out = wiener_filter(noisy, mix, SR)
    err = lambda e: float(np.mean((e - src)[:, 1000:-1000] ** 2))  # noqa: E731  (away from the edges)
    assert err(out) < 0.05 * err(noisy)


def test_silent_estimates_share_the_mixture_and_short_signals_pass_through():
    mix = np.random.default_rng(1).standard_normal(3000)
    out = wiener_filter(np.zeros((2, 3000)), mix, SR)
    np.testing.assert_allclose(out, np.stack([mix, mix]) / 2, atol=1e-9)
    short = np.ones((2, 20))
    assert np.array_equal(wiener_filter(short, np.ones(20), SR), short)


@pytest.mark.parametrize("n, rate, expected", [(10**6, 8000, 1024), (10**6, 16000, 2048), (1500, 8000, 512),
                                               (40, 8000, 16), (20, 8000, 0)])
def test_stft_size(n, rate, expected):
    assert stft_size(n, rate) == expected


def test_separator_applies_the_filter_when_asked(tiny_model_path):
    loaded = load_checkpoint(tiny_model_path)
    mix = (0.1 * np.random.default_rng(0).standard_normal(4000)).astype(np.float32)
    raw = Separator(loaded, device="cpu", wiener=False)._forward(mix[None])[0]
    filtered = Separator(loaded, device="cpu", wiener=True)._forward(mix[None])[0]
    np.testing.assert_allclose(filtered, post_filter(raw, mix, SR), atol=1e-7)
    assert not np.allclose(filtered, raw, atol=1e-4)


def test_post_filter_is_the_mean_of_filtered_and_estimate_and_still_removes_artefacts():
    src = _tones()
    mix = src.sum(0)
    noisy = src + 0.05 * np.random.default_rng(2).standard_normal(src.shape)
    out = post_filter(noisy, mix, SR)
    fitted = noisy * fit_to_mixture(noisy, mix)[:, None]
    np.testing.assert_allclose(out, 0.5 * wiener_filter(fitted, mix, SR) + 0.5 * fitted, atol=1e-12)
    np.testing.assert_allclose(post_filter(noisy, mix, SR, share=1.0), wiener_filter(fitted, mix, SR), atol=1e-12)
    err = lambda e: float(np.mean((e - src)[:, 1000:-1000] ** 2))  # noqa: E731
    assert err(out) < 0.3 * err(noisy)


def test_post_filter_undoes_the_level_and_sign_of_raw_outputs():
    """A network trained with a scale-invariant loss may emit a speaker louder, quieter or inverted: blending
    such an output with the mixture-based filter output must not cancel it."""
    src = _tones()
    mix = src.sum(0)
    noisy = src + 0.05 * np.random.default_rng(3).standard_normal(src.shape)
    raw = noisy * np.array([[-3.0], [0.2]])
    np.testing.assert_allclose(post_filter(raw, mix, SR), post_filter(noisy, mix, SR), atol=1e-9)
