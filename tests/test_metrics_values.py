"""Metrics beyond the single clip: batched permutation search, the device of its results, input dtypes of the
numpy wrappers, and the SDR filter length reaching BSS-eval."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mossep.metrics import (best_permutation, pit_loss, pit_si_snr_loss, sdr, sdr_improvement, si_snr,
                            si_snr_improvement, silence_loss)


def test_batched_permutation_search_is_per_item(rng):
    ref = torch.from_numpy(rng.standard_normal((4, 3, 500)))
    est = ref + 0.5 * torch.from_numpy(rng.standard_normal((4, 3, 500)))
    orders = [[0, 1, 2], [2, 0, 1], [1, 0, 2], [2, 1, 0]]
    est = torch.stack([e[o] for e, o in zip(est, orders)])
    best, perm = best_permutation(est, ref)
    assert best.shape == (4,) and perm.shape == (4, 3)
    for b in range(4):
        one, p = best_permutation(est[b], ref[b])
        assert float(best[b]) == pytest.approx(float(one), abs=1e-9)
        assert perm[b].tolist() == p.tolist()
        assert perm[b].tolist() == np.argsort(orders[b]).tolist()  # est[perm[i]] is the estimate of ref[i]
    assert float(pit_si_snr_loss(est, ref)) == pytest.approx(-float(best.mean()), abs=1e-9)


def test_permutation_results_live_on_the_inputs_device():
    est = torch.empty(2, 2, 64, device="meta")
    best, perm = best_permutation(est, est)
    assert best.device == est.device and perm.device == est.device and perm.shape == (2, 2)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.int16])
def test_si_snr_improvement_computes_in_float64_whatever_the_input_dtype(rng, dtype):
    ref = rng.standard_normal((2, 4000)) * 0.2
    est = ref[::-1] + 0.05 * rng.standard_normal((2, 4000))
    mix = ref.sum(0)
    cast = (lambda a: (a * 8000).astype(dtype)) if dtype == np.int16 else (lambda a: a.astype(dtype))
    exact = si_snr_improvement(cast(est).astype(np.float64), cast(ref).astype(np.float64),
                               cast(mix).astype(np.float64))
    got = si_snr_improvement(cast(est), cast(ref), cast(mix))
    assert got["si_snri"] == pytest.approx(exact["si_snri"], abs=1e-9)
    assert got["si_snr"] == pytest.approx(exact["si_snr"], abs=1e-9)
    assert got["perm"] == [1, 0]


def test_sdr_improvement_uses_the_filter_length_it_is_given(rng):
    ref = rng.standard_normal((2, 8000))
    kernel = np.array([1.0, 0.6, -0.3, 0.2, 0.1])
    est = np.stack([np.convolve(r, kernel)[:8000] for r in ref]) + 0.1 * rng.standard_normal((2, 8000))
    mix = ref.sum(0)
    for taps in (1, 64):
        got = sdr_improvement(est, ref, mix, filter_length=taps)
        values, _ = sdr(est, ref, taps)
        base, _ = sdr(np.stack([mix, mix]), ref, taps)
        assert got["sdr"] == pytest.approx(values.mean(), abs=1e-9)
        assert got["sdri"] == pytest.approx(values.mean() - base.mean(), abs=1e-9)
    # a filtered estimate is forgiven by a long distortion filter, not by a one-tap one
    assert sdr_improvement(est, ref, mix, filter_length=64)["sdr"] > sdr_improvement(est, ref, mix, filter_length=1)["sdr"] + 3


def _no_warnings():
    import warnings

    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.simplefilter("error")
    return ctx


def test_sdr_undefined_cases_are_nan_for_every_source_without_warnings(rng):
    ref = rng.standard_normal((2, 4000))
    est = ref + 0.1 * rng.standard_normal((2, 4000))
    one_silent = est.copy()
    one_silent[1] = 0.0
    silent_ref = ref.copy()
    silent_ref[0] = 0.0
    inf_est = est.copy()
    inf_est[0, 5] = np.inf
    nan_ref = ref.copy()
    nan_ref[1, 9] = np.nan
    ctx = _no_warnings()
    try:
        for e, r in ((one_silent, ref), (est, silent_ref), (inf_est, ref), (est, nan_ref)):
            values, perm = sdr(e, r)
            assert values.shape == (2,) and np.isnan(values).all() and perm == [0, 1]
        # an estimate that is not silent but vanishingly small: -inf for it, its partner still scored
        tiny = est.copy()
        tiny[0] = 1e-200 * rng.standard_normal(4000)
        values, perm = sdr(tiny, ref)
        assert values[0] == -np.inf and np.isfinite(values[1]) and perm == [0, 1]
    finally:
        ctx.__exit__(None, None, None)
    with pytest.raises(ValueError, match=r"est \(2, 4000\) and ref \(4000,\) must both be \[C, T\]"):
        sdr(est, ref[0])


def test_sdr_computes_in_float64_whatever_the_input_dtype(rng):
    ref = rng.standard_normal((2, 4000))
    est = ref + 0.1 * rng.standard_normal((2, 4000))
    r16 = ref.astype(np.float16)
    got, _ = sdr(est, r16)
    want, _ = sdr(est, r16.astype(np.float64))
    np.testing.assert_allclose(got, want, atol=1e-9)
    res = sdr_improvement(est, ref, ref.sum(0))
    assert set(res) == {"sdr", "sdri", "perm"} and res["perm"] == [0, 1]


def test_si_snr_of_an_orthogonal_estimate_is_very_low_not_nan():
    t = torch.arange(800, dtype=torch.float64) / 800
    value = float(si_snr(torch.cos(2 * np.pi * 5 * t), torch.sin(2 * np.pi * 5 * t)))
    assert np.isfinite(value) and value < -60


def test_sdr_of_a_singular_system_is_nan_and_a_constant_reference_is_scored(rng):
    ref = rng.standard_normal((2, 4000))
    est = ref + 0.1 * rng.standard_normal((2, 4000))
    tiny = ref.copy()
    tiny[1] = 1e-200 * rng.standard_normal(4000)  # not silent, but BSS-eval's system is singular
    values, perm = sdr(est, tiny)
    assert values.shape == (2,) and np.isnan(values).all() and perm == [0, 1]
    constant = ref.copy()
    constant[0] = 1.0  # a constant is not silence
    values, _ = sdr(est, constant)
    assert np.isfinite(values).all()


def test_pit_loss_equals_pit_si_snr_loss_when_every_talker_speaks():
    g = torch.Generator().manual_seed(3)
    ref = torch.randn(5, 3, 800, generator=g, dtype=torch.float64)
    est = ref[:, [2, 0, 1]] + 0.3 * torch.randn(5, 3, 800, generator=g, dtype=torch.float64)
    mix = ref.sum(1)
    assert float(pit_loss(est, ref, mix)) == pytest.approx(float(pit_si_snr_loss(est, ref)), abs=1e-9)


def test_pit_loss_teaches_silence_for_an_absent_talker():
    g = torch.Generator().manual_seed(4)
    talker = torch.randn(1, 800, generator=g, dtype=torch.float64)
    ref = torch.stack([talker, torch.zeros_like(talker)], 1)  # [1, 2, T]: the second talker is absent
    mix = talker
    residue = 0.1 * torch.randn(1, 800, generator=g, dtype=torch.float64)
    loss = {depth: float(pit_loss(torch.stack([talker + 0.01 * residue, depth * residue], 1), ref, mix))
            for depth in (1.0, 0.1, 0.0)}
    assert loss[1.0] > loss[0.1] > loss[0.0]  # quieter other output, lower loss
    # either output order scores alike (permutation invariance with a silent reference)
    swapped = torch.stack([0.1 * residue, talker + 0.01 * residue], 1)
    assert float(pit_loss(swapped, ref, mix)) == pytest.approx(loss[0.1], abs=1e-9)
    # the silent output's term: its level against the mixture in dB, floored at -40 dB
    sil = silence_loss(0.1 * residue, mix)
    ratio = float((0.1 * residue).pow(2).sum() / mix.pow(2).sum())
    assert float(sil) == pytest.approx(10 * math.log10(ratio + 1e-4), abs=1e-9)
    assert float(silence_loss(torch.zeros(800, dtype=torch.float64), mix[0])) == pytest.approx(-40.0, abs=1e-6)
    assert float(silence_loss(torch.zeros(800, dtype=torch.float64), mix[0], depth_db=30.0)) == pytest.approx(-30.0, abs=1e-6)
    # a talker 30 dB down is still a talker (scored by SI-SNR), one 50 dB down counts as silent
    quiet_ref = torch.stack([talker, 10 ** (-30 / 20) * residue / residue.pow(2).mean().sqrt() * talker.pow(2).mean().sqrt()], 1)
    est = torch.stack([talker, quiet_ref[:, 1]], 1)
    assert float(pit_loss(est, quiet_ref, mix)) < -50  # two exact estimates: large SI-SNRs
    faint = quiet_ref.clone()
    faint[:, 1] *= 10 ** (-20 / 20)  # now 50 dB down
    assert float(pit_loss(est, faint, mix)) == pytest.approx(
        0.5 * (float(-si_snr(talker, talker)) + float(silence_loss(faint[:, 1] * 10, mix))), abs=1e-6)
