"""Training augmentations that make clean read speech look like real recordings: rooms, noise, hum, channels.

Pure torch functions, batched over the leading axes, on any device and dtype: each takes its device and dtype
from the tensors it is given (or from the `like` tensor) and draws its random numbers from the caller's
torch.Generator (on the same device), so a seeded generator gives the same result every time.

What the model is asked to output (the training target) under each, for mixtures made by summing sources:

- rooms (`Rooms`, `reverberate`): every source is convolved with its own impulse response of one room (a bank
  of simulated and measured rooms, mossep.rooms); the mixture is the sum of these reverberant images and the
  **targets are the dry sources** (each source through its response's direct path, time-aligned with its
  image): the model learns to separate *and* dereverberate, as WHAMR! scores it.
- additive noise (`Clips` of real ambient sound or of babble, `colored_noise`, `hum`, `add_noise`): the noise
  is added to the mixture only, at a level relative to the louder talker as WHAM! draws it; the **targets stay
  the noise-free sources**, so the model learns to leave the noise out of every output. Babble in a room is
  convolved with a further position of the same room.
- equalisation (`random_eq`, `equalize`): one random smooth gain curve per mixture (a microphone or channel)
  is applied to every source alike; the mixture is their sum and the **targets are the equalised sources**
  (the model cannot know the talker's true spectrum; it is asked to separate, not to restore it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

NOISE_COLORS = ("white", "pink", "brown")
NOISE_KINDS = ("ambient", "babble", "synthetic")


def _fft_dtype(dtype: torch.dtype) -> torch.dtype:
    """FFTs run in float32 for half-precision inputs (torch has no bf16 FFT), else in the input's dtype."""
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def _uniform(shape, lo: float, hi: float, gen: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=gen, device=like.device, dtype=_fft_dtype(like.dtype))


def rms(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Root mean square over the last axis, kept as a length-1 axis."""
    return (x.to(_fft_dtype(x.dtype)).pow(2).mean(-1, keepdim=True) + eps).sqrt().to(x.dtype)


def fft_convolve(x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Causal linear convolution of x [..., T] with h [..., L] (broadcast), cut to the first T samples."""
    T, L = x.shape[-1], h.shape[-1]
    n = 1 << (T + L - 1 - 1).bit_length()
    dt = _fft_dtype(x.dtype)
    y = torch.fft.irfft(torch.fft.rfft(x.to(dt), n) * torch.fft.rfft(h.to(dt), n), n)
    return y[..., :T].to(x.dtype)


def reverberate(sources: torch.Tensor, wet: torch.Tensor, dry: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(reverberant images, dry targets) of sources [..., C, T] through room responses wet [..., C, L] and their
    direct paths dry [..., C, D] (mossep.rooms). Both are scaled alike so that each dry target keeps its
    source's RMS: the level the mixer drew is the talker's direct-path level, and the images' sum (the
    mixture) is louder by the room's reverberation."""
    images, targets = fft_convolve(sources, wet), fft_convolve(sources, dry)
    g = rms(sources) / rms(targets)
    return images * g, targets * g


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


def synthetic_noise(shape: tuple[int, int], sample_rate: int, gen: torch.Generator, like: torch.Tensor,
                    hum_share: float = 0.25) -> torch.Tensor:
    """Unit-RMS noise [B, T]: mains hum in `hum_share` of the rows, else white, pink or brown (equally likely)."""
    B, T = shape
    color = torch.randint(0, len(NOISE_COLORS), (B,), generator=gen, device=like.device).to(_fft_dtype(like.dtype))
    broadband = colored_noise((B, T), color, gen, like)
    mains = hum((B, T), sample_rate, gen, like)
    is_hum = torch.rand(B, 1, generator=gen, device=like.device) < hum_share
    return torch.where(is_hum, mains, broadband)


def _cut_where_heard(src: torch.Tensor, masked: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
    """`masked` for the mixtures in `which` [B] whose sources all keep more than 1 % of their energy (a cut that
    would leave a short padded utterance silent is not made), `src` elsewhere. [B, C, T]."""
    alive = (masked.pow(2).mean(-1) > 1e-2 * src.pow(2).mean(-1)).all(-1)
    return torch.where((which & alive)[:, None, None], masked, src)


def turn_taking(src: torch.Tensor, gen: torch.Generator, share: float) -> torch.Tensor:
    """Sources [B, C, T] where, in `share` of the mixtures, one talker speaks over only part of the segment
    (40-90 % of it, starting late or stopping early with a 50 ms fade), as in real conversations. A source
    that the cut would leave (nearly) silent, e.g. a short padded utterance, is kept whole."""
    B, C, T = src.shape
    d = src.device
    which = torch.rand(B, device=d, generator=gen) < share
    keep = 0.4 + 0.5 * torch.rand(B, 1, device=d, generator=gen)  # fraction of the segment kept
    t = torch.arange(T, device=d) / T
    ramp = ((keep - t) * T / 400).clamp(0, 1)  # 50 ms fade at 8 kHz
    late = torch.rand(B, 1, device=d, generator=gen) < 0.5
    env = torch.where(late, ramp.flip(-1), ramp)
    c = torch.randint(0, C, (B,), device=d, generator=gen)
    mask = torch.ones(B, C, T, device=d, dtype=src.dtype)
    mask[torch.arange(B, device=d), c] = env.to(src.dtype)
    return _cut_where_heard(src, src * mask, which)


def sequential_turns(src: torch.Tensor, gen: torch.Generator, share: float) -> torch.Tensor:
    """Sources [B, C, T] where, in `share` of the mixtures, two talkers (drawn at random) speak one after the
    other without overlap: the first over 30-60 % of the segment, then a pause of 0-15 % of it, then the second to
    the end (50 ms fades); any other talker is left whole. So that the model learns to keep each voice on its own
    output across a change of speaker, not only where they overlap. A source that its cut would leave (nearly)
    silent is kept whole."""
    B, C, T = src.shape
    d = src.device
    which = torch.rand(B, device=d, generator=gen) < share
    first_end = 0.3 + 0.3 * torch.rand(B, 1, device=d, generator=gen)  # fraction of the segment
    second_start = first_end + 0.15 * torch.rand(B, 1, device=d, generator=gen)
    t = torch.arange(T, device=d) / T
    first = ((first_end - t) * T / 400).clamp(0, 1)  # 50 ms fades at 8 kHz
    second = ((t - second_start) * T / 400).clamp(0, 1)
    order = torch.rand(B, C, device=d, generator=gen).argsort(-1)  # a random pair of talkers per mixture
    mask = torch.ones(B, C, T, device=d, dtype=src.dtype)
    rows = torch.arange(B, device=d)
    mask[rows, order[:, 0]] = first.to(src.dtype)
    mask[rows, order[:, 1]] = second.to(src.dtype)
    return _cut_where_heard(src, src * mask, which)


def one_talker(src: torch.Tensor, gen: torch.Generator, share: float) -> torch.Tensor:
    """Sources [B, C, T] where, in `share` of the mixtures, one talker (drawn at random) speaks alone: every
    other source is silenced, so that its target is silence (scored by mossep.metrics.pit_loss)."""
    B, C, _ = src.shape
    d = src.device
    which = torch.rand(B, device=d, generator=gen) < share
    keep = torch.randint(0, C, (B,), device=d, generator=gen)
    alone = (torch.arange(C, device=d) == keep[:, None]) | ~which[:, None]  # [B, C]: sources that stay
    return src * alone[:, :, None].to(src.dtype)


@dataclass
class Clips:
    """Noise recordings (or babble) on a device, for random crops: every clip's samples back to back."""

    flat: torch.Tensor  # [N]
    starts: torch.Tensor  # [K] long
    lengths: torch.Tensor  # [K] long

    @classmethod
    def from_arrays(cls, clips: list[np.ndarray], device: torch.device | str = "cpu",
                    dtype: torch.dtype = torch.float32) -> "Clips":
        clips = [np.asarray(c, dtype=np.float32) for c in clips if len(c)]
        if not clips:
            raise ValueError("no noise clips")
        lengths = torch.tensor([len(c) for c in clips], device=device)
        starts = torch.cumsum(lengths, 0) - lengths
        return cls(torch.from_numpy(np.concatenate(clips)).to(device=device, dtype=dtype), starts, lengths)

    def __len__(self) -> int:
        return len(self.lengths)

    def crops(self, n: int, length: int, gen: torch.Generator) -> torch.Tensor:
        """[n, length] unit-RMS crops: a clip chosen uniformly, a start uniform in it; a clip shorter than
        `length` is looped."""
        d = self.flat.device
        k = torch.randint(0, len(self), (n,), generator=gen, device=d)
        start = (torch.rand(n, generator=gen, device=d) * self.lengths[k]).long()
        pos = (start[:, None] + torch.arange(length, device=d)) % self.lengths[k][:, None]
        x = self.flat[self.starts[k][:, None] + pos]
        x = x - x.mean(-1, keepdim=True)
        return x / rms(x)


@dataclass
class Rooms:
    """A room bank (mossep.rooms.RoomBank) on a device: wet [R, P, L], dry [R, P, D], and the probability of
    drawing each room (weights [R])."""

    wet: torch.Tensor
    dry: torch.Tensor
    weights: torch.Tensor

    @classmethod
    def from_bank(cls, bank, device: torch.device | str = "cpu", measured_share: float = 0.2,
                  dtype: torch.dtype = torch.float32) -> "Rooms":
        """Measured rooms (bank.names other than "sim") share `measured_share` of the draws, simulated ones
        the rest (each kind uniformly); with only one kind it takes every draw."""
        measured = torch.tensor([n != "sim" for n in bank.names])
        w = torch.where(measured, measured_share / max(1, int(measured.sum())),
                        (1 - measured_share) / max(1, int((~measured).sum())))
        if measured.all() or (~measured).all():
            w = torch.ones(len(bank.names))
        return cls(torch.from_numpy(bank.wet).to(device=device, dtype=dtype),
                   torch.from_numpy(bank.dry).to(device=device, dtype=dtype), (w / w.sum()).to(device))

    @property
    def positions(self) -> int:
        return self.wet.shape[1]


def augment_batch(src: torch.Tensor, gen: torch.Generator, sample_rate: int, reverb: float = 0.0, eq: float = 0.0,
                  noise: float = 0.0, snr_db: tuple[float, float] = (-6.0, 3.0), rooms: Rooms | None = None,
                  ambient: Clips | None = None, babble: Clips | None = None,
                  noise_kinds: dict[str, float] | None = None,
                  extra: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(mixture [B, T], targets [B, C, T]) for a batch of sources [B, C, T], each augmentation applied to a
    mixture with its probability, in this order (targets as in the module docstring):

    - reverb: the sources through C positions of one room drawn from `rooms`; targets: the dry sources;
    - eq: one random channel curve per mixture, on all its sources (images and targets alike);
    - noise: one kind per mixture drawn with the weights `noise_kinds` (default ambient 0.5, babble 0.3,
      synthetic 0.2; a kind without clips is left out): a crop of `ambient`, a crop of `babble` (through the
      room's last position when the mixture is in a room), or white/pink/brown noise or hum; added to the
      mixture only at a level uniform in `snr_db` dB below the louder target (WHAM!: -6 to +3 dB).

    extra [B, T]: what the mixture holds beyond its sources (e.g. a fixed mixture set's own noise), added back
    before the noise. With all three probabilities 0 no random numbers are drawn: the result is the sources'
    sum (plus extra) and the sources themselves. The random numbers drawn do not depend on the probabilities'
    values, only on which are non-zero.
    """
    B, C, T = src.shape
    dev = src.device
    images = targets = src
    room = None
    if reverb > 0:
        if rooms is None:
            raise ValueError("reverb needs a room bank")
        if rooms.positions < C:
            raise ValueError(f"the room bank has {rooms.positions} positions, the mixtures {C} sources")
        room = torch.multinomial(rooms.weights, B, replacement=True, generator=gen)
        wet, dry = reverberate(src, rooms.wet[room, :C], rooms.dry[room, :C])
        room = torch.where(torch.rand(B, device=dev, generator=gen) < reverb, room, -1)
        inside = (room >= 0)[:, None, None]
        images, targets = torch.where(inside, wet, src), torch.where(inside, dry, src)
    if eq > 0:
        curve = random_eq((B, 1), sample_rate, gen, src)  # one channel per mixture, shared by its sources
        on = (torch.rand(B, device=dev, generator=gen) < eq)[:, None, None]
        images, targets = torch.where(on, equalize(images, curve), images), torch.where(on, equalize(targets, curve), targets)
    mix = images.sum(1) if extra is None else images.sum(1) + extra
    if noise > 0:
        weights = dict(noise_kinds or {"ambient": 0.5, "babble": 0.3, "synthetic": 0.2})
        unknown = set(weights) - set(NOISE_KINDS)
        if unknown:
            raise ValueError(f"unknown noise kinds {sorted(unknown)}; known: {NOISE_KINDS}")
        have = {"ambient": ambient is not None, "babble": babble is not None, "synthetic": True}
        w = torch.tensor([float(weights.get(k, 0.0)) * have[k] for k in NOISE_KINDS], device=dev)
        if not float(w.sum()) > 0:
            raise ValueError("noise: no kind of noise with a positive weight is available")
        kind = torch.multinomial(w / w.sum(), B, replacement=True, generator=gen)
        n = synthetic_noise((B, T), sample_rate, gen, mix)
        if ambient is not None:
            n = torch.where((kind == 0)[:, None], ambient.crops(B, T, gen).to(mix.dtype), n)
        if babble is not None:
            b = babble.crops(B, T, gen).to(mix.dtype)
            if room is not None:  # babble in the room: from its last position
                far = fft_convolve(b, rooms.wet[room.clamp(min=0), -1])
                b = torch.where((room >= 0)[:, None], far / rms(far), b)
            n = torch.where((kind == 1)[:, None], b, n)
        snr = _uniform((B, 1), snr_db[0], snr_db[1], gen, mix)
        level = rms(targets).amax(1) * 10 ** (-snr / 20)  # [B, 1]
        on = (torch.rand(B, device=dev, generator=gen) < noise)[:, None]
        mix = torch.where(on, mix + n * level.to(mix.dtype), mix)
    if reverb > 0 or noise > 0 or eq > 0:  # a loud room or noise must not push the mixture past full scale
        peak = (mix.abs().amax(-1, keepdim=True) / 0.99).clamp(min=1.0)
        mix, targets = mix / peak, targets / peak[:, :, None]
    return mix, targets
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
