"""Metrics against values known in closed form."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mossep.metrics import (best_permutation, pit_si_snr_loss, sdr, sdr_improvement, si_snr,
                            si_snr_improvement)

T = 16000


def _speech_like(rng: np.random.Generator, n: int = 2, length: int = T) -> np.ndarray:
    """Distinct coloured, amplitude-modulated noises (BSS-eval needs non-white, independent sources)."""
    out = []
    for k in range(n):
        x = rng.standard_normal(length)
        x = np.convolve(x, rng.standard_normal(24) * np.exp(-np.arange(24) / (4 + 3 * k)), mode="same")
        env = 0.5 + 0.5 * np.sin(2 * np.pi * (1.5 + k) * np.arange(length) / 8000 + k)
        out.append(x * env)
    return np.stack(out)


def _noise_at_snr(s: np.ndarray, snr_db: float, rng: np.random.Generator, orthogonal: bool) -> np.ndarray:
    """Zero-mean noise whose energy is exactly |s - mean|^2 / 10^(snr/10); optionally orthogonal to s."""
    s0 = s - s.mean()
    n = rng.standard_normal(s.shape)
    n -= n.mean()
    if orthogonal:
        n -= (n @ s0) / (s0 @ s0) * s0
    return n * np.sqrt((s0 @ s0) / (n @ n) / 10 ** (snr_db / 10))


def test_perfect_estimate_is_very_high(rng):
    ref = torch.as_tensor(_speech_like(rng))
    assert (si_snr(ref, ref) > 80).all()


def test_si_snr_is_scale_and_offset_invariant(rng):
    ref = _speech_like(rng, 1)[0]
    est = ref + _noise_at_snr(ref, 5.0, rng, orthogonal=False)
    base = float(si_snr(torch.as_tensor(est), torch.as_tensor(ref)))
    for scale, offset in ((0.01, 0.0), (7.0, 0.0), (1.0, 0.3)):
        v = float(si_snr(torch.as_tensor(scale * est + offset), torch.as_tensor(ref)))
        assert v == pytest.approx(base, abs=1e-6)


def test_known_snr_mixture_gives_that_si_snr(rng):
    ref = _speech_like(rng, 1)[0]
    exact = ref + _noise_at_snr(ref, 10.0, rng, orthogonal=True)
    assert float(si_snr(torch.as_tensor(exact), torch.as_tensor(ref))) == pytest.approx(10.0, abs=1e-4)
    rough = ref + _noise_at_snr(ref, 10.0, rng, orthogonal=False)  # random noise: ~10 dB
    assert float(si_snr(torch.as_tensor(rough), torch.as_tensor(ref))) == pytest.approx(10.0, abs=0.3)


def test_swapped_speakers_found_by_permutation(rng):
    ref = _speech_like(rng)
    est = ref + np.stack([_noise_at_snr(r, 12.0, rng, orthogonal=True) for r in ref])
    straight = si_snr_improvement(est, ref, ref.sum(0))
    swapped = si_snr_improvement(est[::-1], ref, ref.sum(0))
    assert straight["perm"] == [0, 1] and swapped["perm"] == [1, 0]
    assert swapped["si_snr"] == pytest.approx(straight["si_snr"], abs=1e-9)
    assert straight["si_snr"] == pytest.approx(12.0, abs=1e-3)


def test_three_speaker_permutation(rng):
    ref = torch.as_tensor(_speech_like(rng, 3))
    best, perm = best_permutation(ref[[2, 0, 1]], ref)
    assert perm.tolist() == [1, 2, 0]  # est[perm[i]] is ref[i]
    assert float(best) > 80


def test_mixture_as_estimate_improves_nothing(rng):
    ref = _speech_like(rng)
    mix = ref.sum(0)
    res = si_snr_improvement(np.stack([mix, mix]), ref, mix)
    assert res["si_snri"] == pytest.approx(0.0, abs=1e-9)
    assert res["si_snr"] < 3  # two comparable talkers: about 0 dB


def test_pit_loss_is_negative_best_mean(rng):
    ref = torch.as_tensor(_speech_like(rng), dtype=torch.float32)[None]
    est = (ref + 0.1 * torch.randn_like(ref)).flip(1).requires_grad_()
    loss = pit_si_snr_loss(est, ref)
    assert float(loss.detach()) == pytest.approx(-float(best_permutation(est.detach(), ref)[0]), abs=1e-5)
    loss.backward()
    assert torch.isfinite(est.grad).all()


# ---------------------------------------------------------------- SDR (BSS-eval, 512 taps)
def test_sdr_known_snr(rng):
    ref = _speech_like(rng, 2, 32000)
    est = ref + np.stack([_noise_at_snr(r, 10.0, rng, orthogonal=False) for r in ref])
    values, perm = sdr(est, ref)
    assert perm == [0, 1]
    # the 512-tap filter absorbs a little white noise (about 512 / 32000 of it): slightly above 10 dB
    assert values == pytest.approx([10.0, 10.0], abs=0.5)
    assert (values >= 9.9).all()


def test_sdr_forgives_filtering_that_si_snr_punishes(rng):
    ref = _speech_like(rng)
    h = np.array([0.0, 0.0, 0.0, 0.6, -0.3, 0.2])  # a delay and a short filter
    est = np.stack([np.convolve(r, h)[:T] for r in ref]) + 1e-3 * rng.standard_normal(ref.shape)
    assert sdr(est, ref)[0].min() > 40
    assert si_snr_improvement(est, ref, ref.sum(0))["si_snr"] < 5


def test_sdr_swapped_and_scaled(rng):
    ref = _speech_like(rng)
    est = ref + np.stack([_noise_at_snr(r, 15.0, rng, orthogonal=False) for r in ref])
    straight, p0 = sdr(est, ref)
    swapped, p1 = sdr(np.stack([0.2 * est[1], 5 * est[0]]), ref)
    assert p0 == [0, 1] and p1 == [1, 0]
    np.testing.assert_allclose(swapped, straight, atol=1e-6)  # values in reference order


def test_sdr_improvement_of_mixture_is_zero_and_silence_is_nan(rng):
    ref = _speech_like(rng)
    mix = ref.sum(0)
    res = sdr_improvement(np.stack([mix, mix]), ref, mix)
    assert res["sdri"] == pytest.approx(0.0, abs=1e-9)
    silent = sdr_improvement(np.zeros_like(ref), ref, mix)
    assert np.isnan(silent["sdr"]) and np.isnan(silent["sdri"])
    with pytest.raises(ValueError):
        sdr(ref[:1], ref)
