"""mossep.augment and its use in recipes/gpu_default_8k.py's on-device mixer: shapes, determinism, SNR,
RT60, the targets the docstrings promise, and the recipe's default batches left exactly as they were."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mossep import augment as aug
from mossep.checkpoints import load_checkpoint

from scripts import load_script, noise_corpus

RATE = 8000
RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "gpu_default_8k.py"
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _gen(seed: int, device: str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def _all(x: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
    """Every augmentation once on x [B, C, T]."""
    B, C, T = x.shape
    g = _gen(seed, str(x.device.type))
    rir = aug.random_rirs((B, C), RATE, g, x, length=1200)
    return {
        "rir": rir,
        "reverberate": aug.reverberate(x, rir),
        "pink": aug.colored_noise((B, T), "pink", g, x),
        "hum": aug.hum((B, T), RATE, g, x),
        "noisy": aug.random_noise(x.sum(1), RATE, g),
        "eq": aug.equalize(x, aug.random_eq((B, 1), RATE, g, x)),
    }


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_every_augmentation_keeps_shape_dtype_device_and_is_seeded(device, dtype):
    x = (0.1 * torch.randn(3, 2, 4000, generator=_gen(0))).to(device=device, dtype=dtype)
    a, b = _all(x, seed=7), _all(x, seed=7)
    expect = {"rir": (3, 2, 1200), "reverberate": (3, 2, 4000), "pink": (3, 4000), "hum": (3, 4000),
              "noisy": (3, 4000), "eq": (3, 2, 4000)}
    for name, y in a.items():
        assert y.shape == expect[name] and y.dtype == dtype and y.device.type == device, name
        assert torch.isfinite(y.float()).all(), name
        assert torch.equal(y, b[name]), name  # same seed, same tensors
    c = _all(x, seed=8)
    assert not torch.equal(a["rir"], c["rir"]) and not torch.equal(a["noisy"], c["noisy"])


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
    drawn = aug.random_noise(mix.float(), RATE, _gen(4), snr_db=(12.0, 18.0))
    got = 10 * torch.log10(mix.float().pow(2).mean(-1) / (drawn - mix.float()).pow(2).mean(-1))
    assert (got > 11.99).all() and (got < 18.01).all()


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


def _schroeder_rt60(h: np.ndarray) -> float:
    """RT60 from the Schroeder energy decay curve's slope between -5 and -25 dB (T20 x 3)."""
    edc = np.cumsum(h[::-1] ** 2)[::-1]
    db = 10 * np.log10(edc / edc[0])
    i5, i25 = np.argmax(db < -5), np.argmax(db < -25)
    t = np.arange(len(h)) / RATE
    slope = np.polyfit(t[i5:i25], db[i5:i25], 1)[0]
    return -60.0 / slope


@pytest.mark.parametrize("rt60", [0.3, 0.6])
def test_an_rir_decays_at_its_rt60_with_the_requested_direct_to_reverberant_ratio(rt60):
    rt = torch.full((8,), rt60, dtype=torch.float64)
    h = aug.synthetic_rir(rt, int(1.5 * rt60 * RATE), RATE, _gen(9), drr_db=-6.0)
    assert (h[:, 0] == 1).all()  # the direct path
    drr = 10 * torch.log10(h[:, 0] ** 2 / h[:, 1:].pow(2).sum(-1))  # the tail alone (dominated by early energy)
    torch.testing.assert_close(drr, torch.full((8,), -6.0, dtype=torch.float64), atol=1e-6, rtol=0)
    tail = h.clone()
    tail[:, 0] = 0
    est = [_schroeder_rt60(t) for t in tail.numpy()]
    assert abs(np.mean(est) / rt60 - 1) < 0.1 and all(abs(e / rt60 - 1) < 0.25 for e in est), est
    rirs = aug.random_rirs((16, 2), RATE, _gen(10), torch.zeros(1), rt60=(0.25, 0.35))
    assert rirs.shape == (16, 2, int(math.ceil(0.35 * RATE)))


def test_reverberant_targets_are_the_sources_convolved_and_sum_to_the_mixture():
    x = torch.randn(2, 2, 3000, generator=_gen(11), dtype=torch.float64)
    h = aug.random_rirs((2, 2), RATE, _gen(12), x, length=800)
    raw = aug.reverberate(x, h, keep_level=False)
    for b in range(2):
        for c in range(2):
            ref = np.convolve(x[b, c].numpy(), h[b, c].numpy())[:3000]
            np.testing.assert_allclose(raw[b, c].numpy(), ref, atol=1e-9)
    wet = aug.reverberate(x, h)  # level kept: each image at its dry source's RMS
    torch.testing.assert_close(wet.pow(2).mean(-1), x.pow(2).mean(-1), rtol=1e-9, atol=0)
    torch.testing.assert_close(wet / raw, (wet / raw)[..., :1].expand_as(wet))  # only a per-source scale


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


def _recipe():
    return load_script("recipes/gpu_default_8k.py")


def _mixer(mod, speeds=(1.0,)):
    rng = np.random.default_rng(0)
    speakers = {f"s{k}": [(0.1 * rng.standard_normal(3 * RATE)).astype(np.float32)] for k in range(6)}
    return mod.GpuMixer(speakers, RATE, 2 * RATE, list(speeds), torch.device("cpu"))


def test_recipe_mixer_with_augmentations_off_draws_exactly_what_it_drew_before():
    """p=0 draws no random numbers: the same batches and the same generator state as without the options
    (the batches before the options existed were checked against the previous recipe when they were added)."""
    mod = _recipe()
    mixer = _mixer(mod, (0.97, 1.0))
    g1, g2 = _gen(3), _gen(3)
    for _ in range(2):
        a = mixer.batch(8, g1, 5.0, 0.2)
        b = mixer.batch(8, g2, 5.0, 0.2, reverb=0.0, noise=0.0, eq=0.0)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert torch.equal(g1.get_state(), g2.get_state())
    torch.testing.assert_close(a[0], a[1].sum(1))
    g3 = _gen(3)
    for _ in range(2):
        mixer.batch(8, g3, 5.0, 0.2, reverb=0.5)
    assert not torch.equal(g1.get_state(), g3.get_state())  # on, they draw more


def test_recipe_mixer_targets_follow_each_augmentation():
    mod = _recipe()
    mixer = _mixer(mod)
    dry_mix, dry = mixer.batch(16, _gen(4), 5.0, 0.0)
    # noise: targets are the clean sources (up to the shared peak scale), the mixture carries the noise
    mix, src = mixer.batch(16, _gen(4), 5.0, 0.0, noise=1.0, snr_db=(10.0, 10.0))
    scale = src.sum(1).norm(dim=-1) / dry.sum(1).norm(dim=-1)
    torch.testing.assert_close(src, dry * scale[:, None, None])
    snr = 10 * torch.log10(src.sum(1).pow(2).mean(-1) / (mix - src.sum(1)).pow(2).mean(-1))
    torch.testing.assert_close(snr, torch.full((16,), 10.0), atol=1e-3, rtol=0)
    # reverb / eq: the targets are the reverberant or equalised sources, and the mixture is their sum
    for opts in ({"reverb": 1.0}, {"eq": 1.0}):
        mix, src = mixer.batch(16, _gen(4), 5.0, 0.0, **opts)
        torch.testing.assert_close(mix, src.sum(1))
        cos = (src * dry).sum(-1) / (src.norm(dim=-1) * dry.norm(dim=-1))
        assert (cos < 0.999).all() and (cos > 0.05).all(), opts  # changed, still the same talkers
    # p = 0.5: about half the mixtures
    mix, src = mixer.batch(256, _gen(5), 5.0, 0.0, noise=0.5)
    noisy = ((mix - src.sum(1)).abs().amax(-1) > 1e-6).float().mean()
    assert 0.38 < noisy < 0.62


def test_short_cpu_recipe_run_with_augmentations_trains_and_records_them(tmp_path):
    noise_corpus(tmp_path)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(RECIPE), "--preset", "tiny", "--train", str(tmp_path / "train"),
                           "--valid", str(tmp_path / "valid"), "--minutes", "0.1", "--batch", "2",
                           "--segment", "1", "--valid-count", "4", "--device", "cpu", "--out", str(out),
                           "--reverb", "0.5", "--noise", "0.5", "--eq", "0.5", "--rt60", "0.3", "0.6"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    meta = load_checkpoint(out / "best.safetensors").metadata["training"]
    assert meta["steps"] >= 1
    assert meta["augment"]["reverb"] == 0.5 and meta["augment"]["noise"] == 0.5 and meta["augment"]["eq"] == 0.5
    assert meta["augment"]["rt60"] == [0.3, 0.6] and meta["augment"]["snr_db"] == [5.0, 30.0]
    assert "non-finite" not in proc.stdout
    bad = subprocess.run([sys.executable, str(RECIPE), "--noise", "1.5"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--noise is a probability" in bad.stderr


def test_augment_batch_keeps_what_the_mixture_holds_beyond_its_sources():
    g = torch.Generator().manual_seed(0)
    src = 0.1 * torch.randn(3, 2, 4000, generator=g)
    extra = 0.01 * torch.randn(3, 4000, generator=g)
    mix, out = aug.augment_batch(src, torch.Generator().manual_seed(1), RATE, extra=extra)
    assert out is src and torch.equal(mix, src.sum(1) + extra)  # all off: nothing drawn, nothing changed
    mix, out = aug.augment_batch(src, torch.Generator().manual_seed(1), RATE, reverb=1.0, eq=1.0, extra=extra)
    assert not torch.allclose(out, src)
    torch.testing.assert_close(mix - out.sum(1), extra)  # the fixed set's own noise survives, unchanged
    mix, out = aug.augment_batch(src, torch.Generator().manual_seed(1), RATE, noise=1.0, extra=extra)
    assert torch.equal(out, src) and not torch.allclose(mix, src.sum(1) + extra)
