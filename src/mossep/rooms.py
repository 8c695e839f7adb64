"""Room impulse responses for training and validation: simulated shoebox rooms (pyroomacoustics' image-source
method, as WHAMR! made its reverberation) and measured rooms, kept as seeded banks cached on disk.

A bank holds, per room, the impulse responses from `positions` source positions to one microphone ("wet",
the full response) and their direct paths ("dry"). The dry response is the wet one up to `direct_ms` after its
direct peak (the strongest sample), faded out over the last `fade_ms` with a half cosine: the sound that
arrives along the direct path, with the propagation delay and the 1/r level that the microphone sees, and no
reflection, unless a source and the microphone are both close to one surface (then its first reflection
may fall inside the window, as it can in WHAMR!'s direct-path targets). Convolving a source with the dry response gives the training target: the talker as the
microphone would have heard it in free field, time-aligned with its reverberant image in the mixture.

Simulation is CPU-expensive (up to a second per room), so banks are computed once per (seed, count, ranges,
rate, measured files) and kept as compressed .npz under a cache folder (`cached_bank`); everything here is a
pure function of its seed. Responses are stored compactly, and are exactly what is stored (also when just
simulated): each ends where its remaining energy falls TAIL_DB below its total, in float16 precision.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import MossepError
from .fsutil import atomic_path

BANK_VERSION = 2
TAIL_DB = 60.0  # responses end where their remaining energy is this far below their total


@dataclass(frozen=True)
class RoomSpec:
    """How simulated rooms are drawn (uniform ranges)."""

    rt60: tuple[float, float] = (0.1, 1.0)  # realised RT60 (Schroeder T30 of the first position's response), s
    size: tuple[tuple[float, float], ...] = ((3.0, 10.0), (3.0, 8.0), (2.4, 4.0))  # length, width, height, m
    distance: tuple[float, float] = (0.5, 3.0)  # source to microphone, m
    wall_gap: float = 0.5  # the microphone and the sources stay this far from every surface, m
    max_order: int = 60  # image-source order cap (speed); the realised RT60 is measured, not assumed
    length_seconds: float = 1.0  # responses are cut (and zero-padded) to this length


@dataclass
class RoomBank:
    """wet [R, P, L] and dry [R, P, D] impulse responses, rt60 [R] (seconds), names [R] (measured room's file
    stem, or "sim")."""

    wet: np.ndarray
    dry: np.ndarray
    rt60: np.ndarray
    names: list[str]

    def __len__(self) -> int:
        return len(self.wet)

    @classmethod
    def concat(cls, banks: list["RoomBank"]) -> "RoomBank":
        banks = [b for b in banks if len(b)]
        L = max(b.wet.shape[-1] for b in banks)
        D = max(b.dry.shape[-1] for b in banks)
        P = banks[0].wet.shape[1]
        pad = lambda x, n: np.pad(x, ((0, 0), (0, 0), (0, n - x.shape[-1])))  # noqa: E731
        for b in banks:
            if b.wet.shape[1] != P:
                raise MossepError(f"room banks with {P} and {b.wet.shape[1]} positions cannot be joined")
        return cls(np.concatenate([pad(b.wet, L) for b in banks]), np.concatenate([pad(b.dry, D) for b in banks]),
                   np.concatenate([b.rt60 for b in banks]), [n for b in banks for n in b.names])


def direct_path(rir: np.ndarray, sample_rate: int, direct_ms: float = 2.5, fade_ms: float = 1.0) -> np.ndarray:
    """The direct path of responses rir [..., L]: each response up to `direct_ms` after its strongest sample,
    the last `fade_ms` faded out with a half cosine; [..., D] with D just long enough for all of them."""
    peak = np.abs(rir).argmax(-1)
    keep = int(round(direct_ms * sample_rate / 1000))
    fade = max(1, int(round(fade_ms * sample_rate / 1000)))
    D = min(rir.shape[-1], int(peak.max()) + keep + 1)
    n = np.arange(D)
    end = (peak + keep)[..., None]  # the last kept sample
    w = np.clip((end - n) / fade, 0.0, 1.0)  # 1 up to end - fade, then down to 0 at end
    w = 0.5 - 0.5 * np.cos(np.pi * w)
    return (rir[..., :D] * w).astype(np.float32)


def _pra():
    try:
        import pyroomacoustics
    except ImportError:
        raise MossepError("simulating rooms needs pyroomacoustics: pip install 'mossep[train]'") from None
    return pyroomacoustics


def measured_rt60(rir: np.ndarray, sample_rate: int) -> float:
    """Schroeder T30 of one response (seconds), via pyroomacoustics."""
    pra = _pra()
    return float(pra.experimental.measure_rt60(rir.astype(np.float64), fs=sample_rate, decay_db=30))


def _inside(rng: np.random.Generator, dims: np.ndarray, gap: float) -> np.ndarray:
    return rng.uniform(gap, dims - gap)


def simulate_room(rng: np.random.Generator, sample_rate: int, positions: int, spec: RoomSpec = RoomSpec(),
                  tries: int = 50) -> tuple[np.ndarray, float]:
    """One random shoebox room: (responses [positions, L] from `positions` sources to one microphone, RT60).

    Size uniform in spec.size; an RT60 uniform in spec.rt60 sets the walls' absorption (Sabine's formula); the
    microphone anywhere at least spec.wall_gap from the surfaces (height 0.8-1.8 m); each source at a distance
    uniform in spec.distance in a random direction, also spec.wall_gap from the surfaces. Sabine's formula is
    only a guide for image-source rooms, so the realised RT60 is measured and the room drawn again until it
    lies in spec.rt60."""
    pra = _pra()

    L = int(round(spec.length_seconds * sample_rate))
    for _ in range(tries):
        dims = np.array([rng.uniform(*r) for r in spec.size])
        target = rng.uniform(*spec.rt60)
        try:
            absorption, order = pra.inverse_sabine(target, dims)
        except ValueError:  # too large a room for so short an RT60
            continue
        mic = _inside(rng, dims, spec.wall_gap)
        mic[2] = rng.uniform(0.8, min(1.8, dims[2] - spec.wall_gap))
        sources = []
        while len(sources) < positions:
            d = rng.uniform(*spec.distance)
            v = rng.standard_normal(3)
            v[2] *= 0.2  # mostly horizontal
            p = mic + d * v / np.linalg.norm(v)
            if np.all(p >= spec.wall_gap) and np.all(p <= dims - spec.wall_gap):
                sources.append(p)
            elif rng.random() < 0.02:  # a small room: fall back to any point inside
                sources.append(_inside(rng, dims, spec.wall_gap))
        room = pra.ShoeBox(dims, fs=sample_rate, materials=pra.Material(absorption),
                           max_order=min(order, spec.max_order))
        for p in sources:
            room.add_source(p)
        room.add_microphone(mic)
        room.compute_rir()
        rirs = np.zeros((positions, L), np.float32)
        for k in range(positions):
            h = np.asarray(room.rir[0][k], dtype=np.float32)[:L]
            rirs[k, : len(h)] = h
        rt60 = measured_rt60(rirs[0], sample_rate)
        if spec.rt60[0] <= rt60 <= spec.rt60[1]:
            return rirs, rt60
    raise MossepError(f"no room with RT60 in {spec.rt60} s after {tries} draws")


def _trim(rirs: np.ndarray, sample_rate: int, lead_ms: float = 2.0) -> np.ndarray:
    """Drop what comes before lead_ms ahead of the earliest direct peak of a room (its sources keep their
    relative delays), so that the mixture is not delayed more than the geometry needs."""
    start = max(0, int(np.abs(rirs).argmax(-1).min()) - int(round(lead_ms * sample_rate / 1000)))
    out = np.zeros_like(rirs)
    out[:, : rirs.shape[-1] - start] = rirs[:, start:]
    return out


def _room(seed: int, i: int, sample_rate: int, positions: int, spec: RoomSpec) -> tuple[np.ndarray, float]:
    rirs, rt60 = simulate_room(np.random.default_rng([seed, i]), sample_rate, positions, spec)
    rirs = _trim(rirs, sample_rate)
    return rirs / np.abs(rirs[0]).max(), rt60


def simulated_bank(seed: int, count: int, sample_rate: int, positions: int = 4, spec: RoomSpec = RoomSpec(),
                   direct_ms: float = 2.5, workers: int = 1) -> RoomBank:
    """`count` rooms, room i drawn from np.random.default_rng([seed, i]) (so the bank does not depend on
    `workers`, the number of processes simulating it); responses scaled so that the first position's
    direct path has unit peak."""
    args = [(seed, i, sample_rate, positions, spec) for i in range(count)]
    if workers > 1 and count > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(workers, count)) as pool:
            rooms = list(pool.map(_room, *zip(*args), chunksize=4))
    else:
        rooms = [_room(*a) for a in args]
    wet, rt = [r[0] for r in rooms], [r[1] for r in rooms]
    wet_a = compact(np.stack(wet))
    return RoomBank(wet_a, compact(direct_path(wet_a, sample_rate, direct_ms)), np.array(rt, np.float32),
                    ["sim"] * count)


def measured_bank(files: list[Path], sample_rate: int, positions: int = 4, length_seconds: float = 1.0,
                  direct_ms: float = 2.5) -> RoomBank:
    """Measured responses (one position each, used for every position of its room), resampled, trimmed and cut
    to length_seconds, unit peak."""
    from .dynamic_mix import load_mono

    L = int(round(length_seconds * sample_rate))
    wet, rt, names = [], [], []
    for f in files:
        h = load_mono(Path(f), sample_rate)
        rt.append(measured_rt60(h, sample_rate))
        h = _trim(h[None], sample_rate)[0][:L]
        h = np.pad(h, (0, L - len(h))) / np.abs(h).max()
        wet.append(np.repeat(h[None], positions, 0))
        names.append(Path(f).stem)
    if not wet:
        return RoomBank(np.zeros((0, positions, L), np.float32), np.zeros((0, positions, 1), np.float32),
                        np.zeros(0, np.float32), [])
    wet_a = compact(np.stack(wet))
    return RoomBank(wet_a, compact(direct_path(wet_a, sample_rate, direct_ms)), np.array(rt, np.float32), names)


def compact(rirs: np.ndarray) -> np.ndarray:
    """rirs [..., L] with every sample after the point where the remaining energy is TAIL_DB below the total set
    to 0, rounded to float16 precision (float32 array): what a bank stores, in a few MB."""
    x = rirs.astype(np.float64)
    remaining = np.cumsum((x**2)[..., ::-1], -1)[..., ::-1]
    x = np.where(remaining > remaining[..., :1] * 10 ** (-TAIL_DB / 10), x, 0.0)
    return x.astype(np.float16).astype(np.float32)


def bank_path(cache: Path, **key) -> Path:
    """Where a bank with these parameters is cached."""
    text = json.dumps({"version": BANK_VERSION, **key}, sort_keys=True, default=str)
    return Path(cache) / "rooms" / f"{hashlib.sha1(text.encode()).hexdigest()[:16]}.npz"


def save_bank(path: Path, bank: RoomBank) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, wet=bank.wet.astype(np.float16), dry=bank.dry.astype(np.float16),
                                rt60=bank.rt60, names=np.array(bank.names))
    except OSError as e:
        raise MossepError(f"{path}: cannot write room bank ({e.strerror})") from None


def load_bank(path: Path) -> RoomBank:
    try:
        with np.load(path) as z:
            return RoomBank(z["wet"].astype(np.float32), z["dry"].astype(np.float32), z["rt60"],
                            [str(n) for n in z["names"]])
    except (OSError, ValueError, KeyError) as e:
        raise MossepError(f"{path}: cannot read room bank ({e})") from None
