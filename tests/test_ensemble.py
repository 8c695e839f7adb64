"""Two-pass separation (mixture and polarity-inverted mixture): merging views, and the Separator option."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from mossep.checkpoints import load_checkpoint
from mossep.ensemble import merge_views, view_signs
from mossep.errors import MossepError
from mossep.separator import Separator, recommended_settings

SETTINGS = settings(max_examples=40, deadline=None)


def _sources(seed: int, c: int = 2, t: int = 400) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((c, t))


@SETTINGS
@given(seed=st.integers(0, 10_000), g1=st.floats(0.1, 10), g2=st.floats(0.1, 10), s1=st.sampled_from([1, -1]),
       s2=st.sampled_from([1, -1]), swap=st.booleans())
def test_views_differing_in_level_sign_and_order_merge_to_the_sources(seed, g1, g2, s1, s2, swap):
    src = _sources(seed)
    mix = src.sum(0)
    other = np.stack([s1 * g1 * src[0], s2 * g2 * src[1]])
    if swap:
        other = other[::-1]
    merged = merge_views([src * 3.0, other], mix)
    np.testing.assert_allclose(merged, src, atol=1e-3 * np.abs(src).max())


@SETTINGS
@given(seed=st.integers(0, 10_000))
def test_merging_averages_the_errors_of_two_views(seed):
    rng = np.random.default_rng(seed)
    src = _sources(seed)
    mix = src.sum(0)
    noise = 0.3 * rng.standard_normal((2, 2, src.shape[1]))
    views = [src + noise[0], src + noise[1]]
    merged = merge_views(views, mix)
    err = lambda e: float(np.sum((e - src) ** 2))  # noqa: E731
    assert err(merged) < min(err(v * 1.0) for v in views)


def test_a_single_view_is_only_level_fitted():
    src = _sources(1)
    out = merge_views([0.5 * src], src.sum(0))
    np.testing.assert_allclose(out, src, atol=1e-3)
    with pytest.raises(ValueError):
        merge_views([], src.sum(0))


def test_view_signs():
    assert view_signs(1) == [1.0]
    assert view_signs(2) == [1.0, -1.0]
    for bad in (0, 3):
        with pytest.raises(ValueError):
            view_signs(bad)


def test_recommended_settings_read_checkpoint_metadata():
    plain = {"passes": 1, "wiener": False, "solo": None, "noisy_model": None, "noisy_below_db": 15.0}
    assert recommended_settings(None) == plain
    assert recommended_settings({}) == plain
    assert recommended_settings({"inference": {"passes": 2, "wiener": True}}) == {**plain, "passes": 2, "wiener": True}
    # invalid values fall back to the plain settings
    assert recommended_settings({"inference": {"passes": 7, "wiener": "yes"}}) == plain
    assert recommended_settings({"inference": {"passes": "2", "wiener": 1}}) == plain
    assert recommended_settings({"inference": {"passes": True}}) == plain


@pytest.fixture()
def tiny(tiny_model_path):
    """The shared random tiny model, with the given metadata."""
    loaded = load_checkpoint(tiny_model_path)
    return lambda metadata=None: replace(loaded, metadata=metadata or {})


def test_separator_two_passes_merges_the_inverted_pass(tiny):
    mix = np.random.default_rng(0).standard_normal(4000).astype(np.float32) * 0.1
    one = Separator(tiny(), device="cpu", passes=1, wiener=False)
    two = Separator(tiny(), device="cpu", passes=2, wiener=False)
    assert (one.passes, two.passes) == (1, 2)
    a = one._forward(mix[None])[0]
    inverted = -one._forward(-mix[None])[0]
    expected = merge_views([a, inverted], mix)
    np.testing.assert_allclose(two._forward(mix[None])[0], expected, rtol=1e-5, atol=1e-7)
    out = two.separate(mix, 8000)
    assert out.shape == (2, len(mix)) and np.isfinite(out).all()


def test_separator_settings_default_from_metadata_and_bad_values(tiny):
    plain = Separator(tiny(), device="cpu")
    assert (plain.passes, plain.wiener) == (1, False)
    rec = Separator(tiny({"inference": {"passes": 2, "wiener": True}}), device="cpu")
    assert (rec.passes, rec.wiener) == (2, True)
    told = Separator(tiny({"inference": {"passes": 2, "wiener": True}}), device="cpu", passes=1, wiener=False)
    assert (told.passes, told.wiener) == (1, False)
    with pytest.raises(MossepError, match="--passes must be 1 or 2"):
        Separator(tiny(), device="cpu", passes=3)
