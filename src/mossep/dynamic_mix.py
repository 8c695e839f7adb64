"""Training mixtures made on the fly from folders of single-speaker recordings (SET/<speaker>/*.flac).

Pure, seeded sampling: the mixture for (seed, step, rank, index) is always the same, so a resumed
run sees exactly the data it would have seen.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from .datasets import read_audio, resample
from .errors import MossepError, reason
from .fsutil import atomic_path, cache_dir  # resampled training audio is kept there

AUDIO_EXTENSIONS = (".flac", ".wav", ".ogg")


@dataclass(frozen=True)
class MixSpec:
    segment_samples: int
    num_spks: int = 2
    gain_db: float = 5.0  # relative gains uniform in [-gain_db, +gain_db]
    speed_perturb: float = 0.0  # speed factors uniform in [1 - p, 1 + p]; 0 disables
    random_polarity: bool = False  # invert each source with probability 1/2


def load_mono(path: Path, sample_rate: int) -> np.ndarray:
    """float32 mono samples of `path` at `sample_rate`; resampled files are cached on disk by (path, size, mtime, rate)."""
    try:
        info = sf.info(str(path))
    except Exception as e:
        raise MossepError(f"{path}: cannot read audio ({reason(e)})") from None
    cached = None
    if info.samplerate != sample_rate:
        st = path.stat()
        key = hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{sample_rate}".encode()).hexdigest()
        cached = cache_dir() / "resampled" / f"{key}.npy"
        if cached.is_file():
            return np.load(cached)
    x, sr = read_audio(path, dtype="float32")
    if cached is not None:
        x = resample(x, sr, sample_rate)
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(cached) as tmp:
                with open(tmp, "wb") as f:
                    np.save(f, x)
        except (OSError, MossepError):
            pass  # caching is an optimisation only
    return x


def load_speaker_folders(roots: list[Path], sample_rate: int, min_speakers: int = 2) -> dict[str, list[np.ndarray]]:
    """{speaker: [utterance, ...]} at `sample_rate`, from every ROOT/<speaker>/*.<audio>.

    Speaker ids are prefixed with the root's name so equal folder names in two sets stay apart. MossepError
    when fewer than `min_speakers` speakers have audio (a mixture of C talkers needs C distinct speakers).
    """
    speakers: dict[str, list[np.ndarray]] = {}
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            raise MossepError(f"{root}: training folder not found")
        for spk_dir in sorted(p for p in root.iterdir() if p.is_dir()):
            utts = []
            for f in sorted(spk_dir.rglob("*")):
                if f.suffix.lower() not in AUDIO_EXTENSIONS:
                    continue
                x = load_mono(f, sample_rate)
                if len(x) and np.isfinite(x).all() and np.abs(x).max() > 0:
                    utts.append(x)
            if utts:
                speakers[f"{root.name}/{spk_dir.name}"] = utts
    if len(speakers) < max(min_speakers, 2):
        raise MossepError(f"need at least {max(min_speakers, 2)} speakers with audio under "
                          f"{', '.join(map(str, roots))}, found {len(speakers)}")
    return speakers


def _crop(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    if len(x) >= n:
        start = int(rng.integers(0, len(x) - n + 1))
        return x[start : start + n]
    out = np.zeros(n, dtype=np.float32)
    start = int(rng.integers(0, n - len(x) + 1))
    out[start : start + len(x)] = x
    return out


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)) + 1e-8)


def make_mixture(speakers: dict[str, list[np.ndarray]], spec: MixSpec, rng: np.random.Generator,
                 sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """One random mixture: (mix [T], sources [C, T]) of C = spec.num_spks distinct speakers, random crops and gains.

    Each source is scaled to a random level around -25 dBFS RMS (+-gain_db/2 each, so relative gains span
    +-gain_db), and inverted with probability 1/2 if spec.random_polarity; the mixture is the sum and is
    rescaled if it would clip.
    """
    names = list(speakers)
    chosen = rng.choice(len(names), size=spec.num_spks, replace=False)
    sources = []
    for i in chosen:
        utts = speakers[names[i]]
        x = utts[int(rng.integers(len(utts)))]
        if spec.speed_perturb > 0:
            factor = float(rng.uniform(1 - spec.speed_perturb, 1 + spec.speed_perturb))
            # play `factor` times faster: resample to sample_rate / factor, keep the nominal rate
            need = int(spec.segment_samples * factor) + 64
            x = _crop(x, min(len(x), need), rng)
            x = resample(x, sample_rate, int(round(sample_rate / factor)))
        x = _crop(x, spec.segment_samples, rng)
        level_db = -25.0 + float(rng.uniform(-spec.gain_db / 2, spec.gain_db / 2))
        sign = -1.0 if spec.random_polarity and rng.random() < 0.5 else 1.0
        sources.append(sign * x / _rms(x) * 10 ** (level_db / 20))
    src = np.stack(sources).astype(np.float32)
    mix = src.sum(0)
    peak = np.abs(mix).max()
    if peak > 0.99:
        src *= 0.99 / peak
        mix = src.sum(0)
    return mix, src


def batch_rng(seed: int, step: int, rank: int = 0) -> np.random.Generator:
    """The generator for one training step of one process."""
    return np.random.default_rng([seed, step, rank])


def validation_mixtures(roots: list[Path], sample_rate: int, count: int, seconds: float = 4.0, num_spks: int = 2,
                        gain_db: float = 5.0) -> list[tuple[np.ndarray, np.ndarray]]:
    """The fixed validation mixtures (fixed_validation_set) of the speakers under `roots`."""
    spec = MixSpec(int(seconds * sample_rate), num_spks, gain_db)
    speakers = load_speaker_folders([Path(r) for r in roots], sample_rate, num_spks)
    return fixed_validation_set(speakers, spec, count, sample_rate)


def fixed_validation_set(speakers, spec: MixSpec, count: int, sample_rate: int, seed: int = 20231) -> list[tuple[np.ndarray, np.ndarray]]:
    """A deterministic list of `count` mixtures (no speed perturbation) for validation."""
    rng = np.random.default_rng(seed)
    plain = MixSpec(spec.segment_samples, spec.num_spks, spec.gain_db, 0.0)
    return [make_mixture(speakers, plain, rng, sample_rate) for _ in range(count)]
