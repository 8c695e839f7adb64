"""mossep.augment: shapes, determinism, SNR, the targets the docstrings promise (rooms and real noise: see
test_scenes.py), turn-taking, and what a fixed mixture set holds beyond its sources kept."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mossep import augment as aug


RATE = 8000
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _gen(seed: int, device: str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def _all(x: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
    """Every augmentation once on x [B, C, T]."""
    B, C, T = x.shape
    g = _gen(seed, str(x.device.type))
    h = torch.zeros(B, C, 300, device=x.device, dtype=x.dtype)
    h[..., 10] = 1.0
    h[..., 11:] = 0.1 * torch.randn(B, C, 289, generator=g, device=x.device).to(x.dtype)
    wet, dry = aug.reverberate(x, h, h[..., :20])
    return {
        "wet": wet, "dry": dry,
        "pink": aug.colored_noise((B, T), "pink", g, x),
        "hum": aug.hum((B, T), RATE, g, x),
        "synthetic": aug.synthetic_noise((B, T), RATE, g, x),
        "eq": aug.equalize(x, aug.random_eq((B, 1), RATE, g, x)),
        "turns": aug.turn_taking(x, g, 0.5),
        "solo": aug.one_talker(x, g, 0.5),
        "sequential": aug.sequential_turns(x, g, 0.5),
    }


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_every_augmentation_keeps_shape_dtype_device_and_is_seeded(device, dtype):
    x = (0.1 * torch.randn(3, 2, 4000, generator=_gen(0))).to(device=device, dtype=dtype)
    a, b = _all(x, seed=7), _all(x, seed=7)
    expect = {"wet": (3, 2, 4000), "dry": (3, 2, 4000), "pink": (3, 4000), "hum": (3, 4000),
              "synthetic": (3, 4000), "eq": (3, 2, 4000), "turns": (3, 2, 4000),
              "solo": (3, 2, 4000), "sequential": (3, 2, 4000)}
    for name, y in a.items():
        assert y.shape == expect[name] and y.dtype == dtype and y.device.type == device, name
        assert torch.isfinite(y.float()).all(), name
        assert torch.equal(y, b[name]), name  # same seed, same tensors
    c = _all(x, seed=8)
    assert not torch.equal(a["wet"], c["wet"]) and not torch.equal(a["synthetic"], c["synthetic"])


@pytest.mark.parametrize("snr", [-5.0, 10.0, 30.0])
def test_noise_lands_at_the_requested_snr(snr):
    mix = 0.05 * torch.randn(4, 8000, generator=_gen(1), dtype=torch.float64)
    for color in aug.NOISE_COLORS:
        noise = aug.colored_noise((4, 8000), color, _gen(2), mix)
        noisy = aug.add_noise(mix, noise, snr)
        got = 10 * torch.log10(mix.pow(2).mean(-1) / (noisy - mix).pow(2).mean(-1))
        torch.testing.assert_close(got, torch.full((4,), snr, dtype=torch.float64), atol=1e-6, rtol=0)
    per_item = aug.add_noise(mix, aug.hum((4, 8000), RATE, _gen(3), mix), torch.tensor([0.0, 5.0, 10.0, 20.0]))
    got = 10 * torch.log10(mix.pow(2).mean(-1) / (per_item - mix).pow(2).mean(-1))
    torch.testing.assert_close(got, torch.tensor([0.0, 5.0, 10.0, 20.0], dtype=torch.float64), atol=1e-6, rtol=0)


def test_noise_colours_have_their_spectral_slopes_and_hum_sits_on_mains_harmonics():
    like = torch.zeros(1, dtype=torch.float64)
    for color, slope_db_per_octave in (("white", 0.0), ("pink", -3.0), ("brown", -6.0)):
        x = aug.colored_noise((64, 8192), color, _gen(5), like)
        power = torch.fft.rfft(x).abs().pow(2).mean(0)
        f = torch.fft.rfftfreq(8192, 1 / RATE, dtype=torch.float64)
        band = lambda lo: power[(f >= lo) & (f < 2 * lo)].mean()  # noqa: E731
        per_octave = 10 * torch.log10(band(1000.0) / band(125.0)) / 3
        assert abs(float(per_octave) - slope_db_per_octave) < 0.6, color
        torch.testing.assert_close(x.pow(2).mean(-1), torch.ones(64, dtype=torch.float64), rtol=1e-6, atol=0)
    h = aug.hum((8, RATE), RATE, _gen(6), like, mains=(50.0,), jitter=0.0)
    spec = torch.fft.rfft(h).abs().pow(2)  # 1 Hz bins over 1 s
    on = spec[:, 50:450:50].sum(-1)
    assert (on / spec.sum(-1) > 0.999).all()  # all the energy at 50, 100, ..., 400 Hz


def test_reverberate_convolves_and_scales_image_and_target_alike():
    x = torch.randn(2, 2, 3000, generator=_gen(11), dtype=torch.float64)
    h = 0.1 * torch.randn(2, 2, 800, generator=_gen(12), dtype=torch.float64)
    h[..., 5] = 1.0
    wet, dry = aug.reverberate(x, h, h[..., :25])
    torch.testing.assert_close(dry.pow(2).mean(-1), x.pow(2).mean(-1), rtol=1e-9, atol=0)  # the target's level
    for b in range(2):
        for c in range(2):
            ref = np.convolve(x[b, c].numpy(), h[b, c].numpy())[:3000]
            scale = wet[b, c].numpy() / ref
            np.testing.assert_allclose(scale, scale[0], rtol=1e-6)  # the image: the convolution, scaled
            ref_dry = np.convolve(x[b, c].numpy(), h[b, c, :25].numpy())[:3000]
            np.testing.assert_allclose(dry[b, c].numpy(), ref_dry * scale[0], rtol=1e-6, atol=1e-12)


def test_eq_is_one_linear_channel_per_mixture_and_unity_gain_is_the_identity():
    x = torch.randn(4, 2, 4000, generator=_gen(13), dtype=torch.float64)
    torch.testing.assert_close(aug.equalize(x, torch.ones(4, 1, 257, dtype=torch.float64)), x)
    curve = aug.random_eq((4, 1), RATE, _gen(14), x)
    db = 20 * torch.log10(curve)
    assert db.abs().max() < 3 * 3.0 + 3 * 6.0 and db.std() > 0.5  # bounded, not flat
    y = aug.equalize(x, curve)
    torch.testing.assert_close(y.sum(1), aug.equalize(x.sum(1, keepdim=True), curve).squeeze(1))  # mix = sum
    # a single sine comes out scaled by the curve's gain at its frequency
    t = torch.arange(8000, dtype=torch.float64) / RATE
    tone = torch.sin(2 * math.pi * 1000 * t)
    out = aug.equalize(tone, curve[0, 0])
    gain = float(curve[0, 0, round(1000 / 4000 * 256)])
    assert abs(float(out[1000:-1000].pow(2).mean().sqrt() / tone[1000:-1000].pow(2).mean().sqrt()) - gain) < 0.02 * gain


def test_turn_taking_silences_part_of_one_talker_never_all():
    t = torch.arange(2 * RATE) / RATE
    src = torch.stack([1.0 + 0.5 * torch.sin(2 * math.pi * (200 + 100 * k) * t) for k in range(2)])
    src = src.expand(512, 2, -1).clone()
    out = aug.turn_taking(src, _gen(1), 0.5)
    quiet = (out.abs() < 1e-6).float().mean(-1)  # silent fraction of each source (the signals never cross 0)
    cut = quiet.max(1).values
    assert 0.35 < (cut > 0).float().mean() < 0.65  # about half the mixtures, as asked
    assert cut.max() < 0.65 and cut[cut > 0].min() > 0.05  # 10-60 % silent (40-90 % kept, minus the fade)
    assert (quiet.min(1).values == 0).all()  # only one talker is cut
    short = src.clone()
    short[:, 0, RATE // 4:] = 0  # mostly silence already: a cut could leave nothing
    out = aug.turn_taking(short, _gen(2), 1.0)
    assert (out.pow(2).mean(-1) > 0).all()  # never a silent target


@pytest.mark.parametrize("talkers", [2, 3])
def test_sequential_turns_never_overlap_and_keep_both_voices(talkers):
    src = 0.1 * torch.randn(400, talkers, 4000, generator=_gen(8)) + 0.2  # never exactly 0
    out = aug.sequential_turns(src, _gen(9), 0.5)
    cut = (out.abs() < 1e-9).any(-1)  # [B, C]: sources silenced somewhere
    turned = cut.any(1)
    assert 0.4 < turned.float().mean() < 0.6  # about half the mixtures, as asked
    assert torch.equal(out[~turned], src[~turned])
    assert (cut[turned].sum(1) == 2).all()  # exactly two talkers take turns; a third stays whole
    for b in torch.nonzero(turned).flatten().tolist():
        i, j = torch.nonzero(cut[b]).flatten().tolist()
        a, c = out[b, i].abs() > 0, out[b, j].abs() > 0
        assert not (a & c).any()  # never at once
        first, second = (a, c) if a[0] else (c, a)
        assert first[0] and not first[-1] and second[-1] and not second[0]  # one, then the other
        assert 0.28 < first.float().mean() < 0.61 and 0.24 < second.float().mean() < 0.71  # 30-60 %, rest - pause
    short = src.clone()
    short[:, 0, 400:] = 0  # a talker whose speech the cut could remove entirely is kept whole
    out = aug.sequential_turns(short, _gen(10), 1.0)
    assert (out.pow(2).mean(-1) > 0).all()


@pytest.mark.parametrize("talkers", [2, 3])
def test_one_talker_leaves_one_voice_untouched_and_silences_the_rest(talkers):
    src = 0.1 * torch.randn(400, talkers, 800, generator=_gen(5)) + 0.2  # never exactly 0
    out = aug.one_talker(src, _gen(6), 0.5)
    alive = out.abs().amax(-1) > 0  # [B, C]
    alone = alive.sum(1) == 1
    assert 0.4 < alone.float().mean() < 0.6  # about half the mixtures, as asked
    assert torch.equal(out[~alone], src[~alone])  # the others keep every talker, unchanged
    kept = out[alone][alive[alone]]  # the one voice left, untouched
    assert torch.equal(kept, src[alone][alive[alone]])
    counts = alive[alone].float().sum(0)  # which talker is kept: any of them
    assert (counts > 0.2 * alone.sum() / talkers).all()
    assert torch.equal(aug.one_talker(src, _gen(6), 0.0), src)
    assert (aug.one_talker(src, _gen(7), 1.0).abs().amax(-1).gt(0).sum(1) == 1).all()


def test_augment_batch_keeps_what_the_mixture_holds_beyond_its_sources():
    g = torch.Generator().manual_seed(0)
    src = 0.1 * torch.randn(3, 2, 4000, generator=g)
    extra = 0.01 * torch.randn(3, 4000, generator=g)
    mix, out = aug.augment_batch(src, torch.Generator().manual_seed(1), RATE, extra=extra)
    assert out is src and torch.equal(mix, src.sum(1) + extra)  # all off: nothing drawn, nothing changed
    mix, out = aug.augment_batch(src, torch.Generator().manual_seed(1), RATE, eq=1.0, extra=extra)
    assert not torch.allclose(out, src)
    torch.testing.assert_close(mix - out.sum(1), extra)  # the fixed set's own noise survives, unchanged
    mix, out = aug.augment_batch(src, torch.Generator().manual_seed(1), RATE, noise=1.0, extra=extra,
                                 noise_kinds={"synthetic": 1.0})
    assert torch.equal(out, src) and not torch.allclose(mix, src.sum(1) + extra)
    with pytest.raises(ValueError, match="room bank"):
        aug.augment_batch(src, torch.Generator().manual_seed(1), RATE, reverb=1.0)
