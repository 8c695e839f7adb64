"""Training augmentations that make clean read speech look like real recordings: rooms, noise, hum, channels.

Pure torch functions, batched over the leading axes, on any device and dtype: each takes its device and dtype
from the tensors it is given (or from the `like` tensor) and draws its random numbers from the caller's
torch.Generator (on the same device), so a seeded generator gives the same result every time.

What the model is asked to output (the training target) under each, for mixtures made by summing sources:

- reverberation (`random_rirs`, `reverberate`): every source is convolved with its own room impulse response
  (same room, different positions); the mixture is the sum of these reverberant images and the **targets are
  the reverberant images**, so the model learns to separate, not to dereverberate.
- additive noise (`colored_noise`, `hum`, `add_noise`): the noise is added to the mixture only; the **targets
  stay the clean sources**, so the model learns to leave the noise out of every output.
- equalisation (`random_eq`, `equalize`): one random smooth gain curve per mixture (a microphone or channel)
  is applied to every source alike; the mixture is their sum and the **targets are the equalised sources**
  (the model cannot know the talker's true spectrum; it is asked to separate, not to restore it).
"""
from __future__ import annotations

import math

import torch

NOISE_COLORS = ("white", "pink", "brown")
_DECAY_60DB = 3.0 * math.log(10.0)  # an amplitude envelope exp(-_DECAY_60DB * t / RT60) falls 60 dB at RT60


def _fft_dtype(dtype: torch.dtype) -> torch.dtype:
    """FFTs run in float32 for half-precision inputs (torch has no bf16 FFT), else in the input's dtype."""
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def _uniform(shape, lo: float, hi: float, gen: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=gen, device=like.device, dtype=_fft_dtype(like.dtype))


def rms(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Root mean square over the last axis, kept as a length-1 axis."""
    return (x.to(_fft_dtype(x.dtype)).pow(2).mean(-1, keepdim=True) + eps).sqrt().to(x.dtype)


def synthetic_rir(rt60: torch.Tensor, length: int, sample_rate: int, gen: torch.Generator,
                  drr_db: torch.Tensor | float = 0.0, predelay: float = 0.002) -> torch.Tensor:
    """Room impulse responses [..., length] for RT60s [...] (seconds; their device and dtype are used).

    Each is a direct path (a unit impulse at sample 0) plus a reverberant tail of Gaussian noise starting
    `predelay` seconds later, whose amplitude decays as exp(-3 ln10 t / RT60) (energy 60 dB down at RT60).
    The tail's energy is set so that direct-to-reverberant energy ratio is `drr_db` (dB, scalar or [...]).
    """
    shape = rt60.shape
    dev, dt = rt60.device, _fft_dtype(rt60.dtype)
    t = torch.arange(length, device=dev, dtype=dt) / sample_rate
    env = torch.exp(-_DECAY_60DB * t / rt60.to(dt).unsqueeze(-1).clamp(min=1e-3))  # [..., L]
    start = max(1, int(round(predelay * sample_rate)))
    env = env * (torch.arange(length, device=dev) >= start)
    tail = torch.randn(*shape, length, generator=gen, device=dev, dtype=dt) * env
    target = 10 ** (-torch.as_tensor(drr_db, device=dev, dtype=dt) / 10)  # tail energy; the direct path has 1
    if target.dim():
        target = target.unsqueeze(-1)
    tail = tail * (target / tail.pow(2).sum(-1, keepdim=True).clamp(min=1e-12)).sqrt()
    tail[..., 0] = 1.0  # the direct path
    return tail.to(rt60.dtype)


def random_rirs(shape: tuple[int, ...], sample_rate: int, gen: torch.Generator, like: torch.Tensor,
                rt60: tuple[float, float] = (0.2, 0.8), drr_db: tuple[float, float] = (-3.0, 9.0),
                length: int | None = None) -> torch.Tensor:
    """Random room impulse responses [*shape, L] on like's device/dtype; shape's last axis is the source axis.

    One room per mixture: an RT60 uniform in `rt60` (seconds) shared by all sources of a mixture (the last axis
    of `shape`), and a direct-to-reverberant ratio uniform in `drr_db` for each source (its own position).
    L defaults to the longest RT60 in samples (the tail is then 60 dB down).
    """
    length = length or int(math.ceil(rt60[1] * sample_rate))
    room = _uniform(shape[:-1], rt60[0], rt60[1], gen, like).unsqueeze(-1).expand(shape)
    drr = _uniform(shape, drr_db[0], drr_db[1], gen, like)
    return synthetic_rir(room.contiguous(), length, sample_rate, gen, drr).to(like.dtype)


def fft_convolve(x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Causal linear convolution of x [..., T] with h [..., L] (broadcast), cut to the first T samples."""
    T, L = x.shape[-1], h.shape[-1]
    n = 1 << (T + L - 1 - 1).bit_length()
    dt = _fft_dtype(x.dtype)
    y = torch.fft.irfft(torch.fft.rfft(x.to(dt), n) * torch.fft.rfft(h.to(dt), n), n)
    return y[..., :T].to(x.dtype)


def reverberate(sources: torch.Tensor, rirs: torch.Tensor, keep_level: bool = True) -> torch.Tensor:
    """The reverberant images of sources [..., C, T] through rirs [..., C, L]: the training targets under
    reverberation (their sum is the mixture). keep_level: scale each image to its dry source's RMS, so the
    level distribution the mixer drew is kept."""
    wet = fft_convolve(sources, rirs)
    if keep_level:
        wet = wet * (rms(sources) / rms(wet))
    return wet


def colored_noise(shape: tuple[int, ...], color: str | torch.Tensor, gen: torch.Generator,
                  like: torch.Tensor) -> torch.Tensor:
    """Unit-RMS noise [*shape] (last axis = time) on like's device/dtype.

    color: "white" (flat), "pink" (power ~ 1/f), "brown" (power ~ 1/f^2), or a tensor of spectral exponents
    [*shape[:-1]] (0 = white, 1 = pink, 2 = brown) to mix colours within a batch.
    """
    T, dt = shape[-1], _fft_dtype(like.dtype)
    if isinstance(color, str):
        if color not in NOISE_COLORS:
            raise ValueError(f"noise colour must be one of {NOISE_COLORS}, got {color!r}")
        color = torch.full(shape[:-1], float(NOISE_COLORS.index(color)), device=like.device, dtype=dt)
    white = torch.randn(shape, generator=gen, device=like.device, dtype=dt)
    f = torch.arange(T // 2 + 1, device=like.device, dtype=dt).clamp(min=1.0)  # bin 0 gets bin 1's gain
    gain = f.pow(-color.to(dt).unsqueeze(-1) / 2)  # amplitude ~ f^(-exponent/2)
    x = torch.fft.irfft(torch.fft.rfft(white) * gain, T)
    x = x - x.mean(-1, keepdim=True)
    return (x / rms(x)).to(like.dtype)


def hum(shape: tuple[int, ...], sample_rate: int, gen: torch.Generator, like: torch.Tensor,
        mains: tuple[float, ...] = (50.0, 60.0), harmonics: int = 8, jitter: float = 0.01) -> torch.Tensor:
    """Unit-RMS mains hum [*shape]: a fundamental drawn from `mains` (+-jitter relative) and its harmonics
    below Nyquist, amplitudes 1/k with random phases (and random extra weight on the odd harmonics)."""
    dev, dt = like.device, _fft_dtype(like.dtype)
    lead = shape[:-1]
    pick = torch.randint(0, len(mains), lead, generator=gen, device=dev)
    wobble = 2 * torch.rand(lead, generator=gen, device=dev, dtype=dt) - 1
    f0 = torch.tensor(mains, device=dev, dtype=dt)[pick] * (1 + jitter * wobble)
    k = torch.arange(1, harmonics + 1, device=dev, dtype=dt)
    freq = f0.unsqueeze(-1) * k  # [..., K]
    odd = 1 + 2 * torch.rand(*lead, 1, generator=gen, device=dev, dtype=dt) * (k % 2 == 1)
    amp = odd / k * (freq < sample_rate / 2)
    phase = 2 * math.pi * torch.rand(*lead, harmonics, generator=gen, device=dev, dtype=dt)
    t = torch.arange(shape[-1], device=dev, dtype=dt) / sample_rate
    x = (amp.unsqueeze(-1) * torch.sin(2 * math.pi * freq.unsqueeze(-1) * t + phase.unsqueeze(-1))).sum(-2)
    return (x / rms(x)).to(like.dtype)


def add_noise(mix: torch.Tensor, noise: torch.Tensor, snr_db: torch.Tensor | float) -> torch.Tensor:
    """mix [..., T] plus noise [..., T] scaled so that the mixture-to-noise power ratio is snr_db (dB, scalar
    or [...]). The targets stay the clean sources: only the mixture carries the noise."""
    snr = torch.as_tensor(snr_db, device=mix.device, dtype=_fft_dtype(mix.dtype))
    scale = rms(mix).float() / rms(noise).float() * 10 ** (-snr.float() / 20).reshape(*snr.shape, 1)
    return (mix + noise * scale.to(mix.dtype)).to(mix.dtype)


def random_noise(mix: torch.Tensor, sample_rate: int, gen: torch.Generator, snr_db: tuple[float, float] = (5.0, 30.0),
                 hum_share: float = 0.25) -> torch.Tensor:
    """Noise for mixtures [B, T] at an SNR uniform in `snr_db`: hum in `hum_share` of them, else white, pink or
    brown (equally likely). Returns the noisy mixtures; the targets stay the clean sources."""
    B, T = mix.shape
    color = torch.randint(0, len(NOISE_COLORS), (B,), generator=gen, device=mix.device).to(_fft_dtype(mix.dtype))
    broadband = colored_noise((B, T), color, gen, mix)
    mains = hum((B, T), sample_rate, gen, mix)
    is_hum = torch.rand(B, 1, generator=gen, device=mix.device) < hum_share
    snr = _uniform((B,), snr_db[0], snr_db[1], gen, mix)
    return add_noise(mix, torch.where(is_hum, mains, broadband), snr)


def random_eq(shape: tuple[int, ...], sample_rate: int, gen: torch.Generator, like: torch.Tensor,
              tilt_db: float = 3.0, bumps: int = 3, bump_db: float = 6.0, bins: int = 257) -> torch.Tensor:
    """Random smooth gain curves [*shape, bins] (linear amplitude, on `bins` frequencies evenly spaced from 0 to
    Nyquist) on like's device/dtype: a spectral tilt uniform in +-tilt_db per octave around 1 kHz, plus `bumps`
    bell curves in log frequency (each up to +-bump_db, half an octave to two octaves wide at half height) at
    random centres between 100 Hz and Nyquist. Below 50 Hz the curve is flat at its 50 Hz value."""
    dev, dt = like.device, _fft_dtype(like.dtype)
    f = torch.linspace(0, sample_rate / 2, bins, device=dev, dtype=dt).clamp(min=50.0)
    octave = torch.log2(f / 1000.0)  # [F]
    db = _uniform((*shape, 1), -tilt_db, tilt_db, gen, like) * octave
    lo, hi = math.log2(100 / 1000), math.log2(sample_rate / 2 / 1000)
    centre = _uniform((*shape, bumps, 1), lo, hi, gen, like)
    width = _uniform((*shape, bumps, 1), 0.5, 2.0, gen, like) / 2.355  # full width at half height -> std
    height = _uniform((*shape, bumps, 1), -bump_db, bump_db, gen, like)
    db = db + (height * torch.exp(-0.5 * ((octave - centre) / width) ** 2)).sum(-2)
    return (10 ** (db / 20)).to(like.dtype)


def equalize(x: torch.Tensor, gain: torch.Tensor, pad: int = 256) -> torch.Tensor:
    """x [..., T] through zero-phase gain curves gain [..., F] (0 to Nyquist, broadcast over the leading axes,
    linearly interpolated to the FFT's bins), with `pad` samples of reflection padding each side against
    wrap-around. The same curve on every source of a mixture keeps the mixture their sum."""
    dt = _fft_dtype(x.dtype)
    T = x.shape[-1]
    pad = min(pad, T - 1)
    lead = x.shape[:-1]
    xp = torch.nn.functional.pad(x.to(dt).reshape(-1, 1, T), (pad, pad), mode="reflect").reshape(*lead, T + 2 * pad)
    n = xp.shape[-1]
    g = gain.to(dt)
    g = torch.nn.functional.interpolate(g.reshape(-1, 1, g.shape[-1]), size=n // 2 + 1, mode="linear",
                                        align_corners=True).reshape(*g.shape[:-1], n // 2 + 1)
    y = torch.fft.irfft(torch.fft.rfft(xp) * g, n)
    return y[..., pad:pad + T].to(x.dtype)


def augment_batch(src: torch.Tensor, gen: torch.Generator, sample_rate: int, reverb: float = 0.0, eq: float = 0.0,
                  noise: float = 0.0, rt60: tuple[float, float] = (0.2, 0.8),
                  snr_db: tuple[float, float] = (5.0, 30.0),
                  extra: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(mixture [B, T], targets [B, C, T]) for a batch of sources [B, C, T], each augmentation applied to a
    mixture with its probability, in this order (targets as in the module docstring):

    - reverb: every source through its own room (`random_rirs`, one RT60 uniform in `rt60` s per mixture);
    - eq: one random channel curve per mixture, on all its sources;
    - noise: white/pink/brown noise or hum added to the mixture only, at an SNR uniform in `snr_db` (dB).

    extra [B, T]: what the mixture holds beyond its sources (e.g. a fixed mixture set's own noise), added back
    before the noise. With all three probabilities 0 no random numbers are drawn: the result is the sources'
    sum (plus extra) and the sources themselves.
    """
    B, C = src.shape[:2]
    if reverb > 0:
        wet = reverberate(src, random_rirs((B, C), sample_rate, gen, src, rt60))
        src = torch.where((torch.rand(B, device=src.device, generator=gen) < reverb)[:, None, None], wet, src)
    if eq > 0:
        curve = random_eq((B, 1), sample_rate, gen, src)  # one channel per mixture, shared by its sources
        src = torch.where((torch.rand(B, device=src.device, generator=gen) < eq)[:, None, None],
                          equalize(src, curve), src)
    mix = src.sum(1) if extra is None else src.sum(1) + extra
    if noise > 0:
        noisy = random_noise(mix, sample_rate, gen, snr_db)
        mix = torch.where((torch.rand(B, device=src.device, generator=gen) < noise)[:, None], noisy, mix)
    return mix, src
