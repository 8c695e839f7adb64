"""Real-recording conditions for training and validation: which noise and rooms train and which are held out,
babble, and the fixed noisy / reverberant validation sets.

- Ambient noise (folders of recordings): the first (1 - held_out) of every file is for training, the last
  `held_out` (default a fifth) for validation only, so every kind of noise is seen in both and no sample in both.
- Rooms: simulated shoebox rooms (mossep.rooms), the training bank and the validation bank drawn from different
  seeds; measured responses (folders of impulse responses) split by name: `held_out_rirs` are validation only.
- Babble: sums of 3 to 6 utterances of other speakers (training speakers in training; in validation the
  held-out speakers other than the mixture's talkers).
- Validation sets (`fixed_sets`): the same clean mixtures of held-out speakers in four conditions (clean, noisy,
  reverberant, both), built from the held-out noise and rooms, every item a pure function of (seed, index).
  Targets: the dry sources (mossep.augment).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import augment as aug
from . import dynamic_mix as dm
from . import rooms as rm
from .errors import MossepError

CONDITIONS = ("clean", "noisy", "reverb", "both")
TRAIN_ROOM_SEED = 1
VALID_ROOM_SEED = 90001
VALID_SET_SEED = 20231
VALID_NOISE_KINDS = {"ambient": 2.0, "babble": 1.0}  # validation noise: real recordings and babble only


@dataclass(frozen=True)
class SceneConfig:
    noise_dirs: tuple[str, ...] = ()  # folders of ambient noise recordings
    rir_dirs: tuple[str, ...] = ()  # folders of measured room impulse responses
    held_out_rirs: tuple[str, ...] = ()  # file stems of measured responses kept for validation
    held_out: float = 0.2  # the last fraction of every noise file kept for validation
    rooms: int = 400  # simulated training rooms
    valid_rooms: int = 48  # simulated validation rooms
    rt60: tuple[float, float] = (0.1, 1.0)
    direct_ms: float = 2.5
    positions: int = 4  # source positions per room: the talkers and one for babble
    babble_clips: int = 200
    babble_seconds: float = 6.0
    cache: str | None = "data_cache"  # where simulated room banks are kept (None: not kept)
    workers: int = 1  # processes simulating a bank that is not cached yet (the bank does not depend on it)
    room_spec_overrides: dict = field(default_factory=dict, hash=False, compare=False)

    def room_spec(self) -> rm.RoomSpec:
        return rm.RoomSpec(rt60=tuple(self.rt60), **self.room_spec_overrides)


def _audio_files(dirs) -> list[Path]:
    files = []
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            raise MossepError(f"{d}: folder not found")
        files += sorted(f for f in d.rglob("*") if f.suffix.lower() in dm.AUDIO_EXTENSIONS)
    return files


def ambient_split(dirs, sample_rate: int, held_out: float = 0.2) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(training parts, validation parts) of every noise recording under `dirs`: the first 1 - held_out of each
    file trains, the rest validates."""
    train, valid = [], []
    for f in _audio_files(dirs):
        x = dm.load_mono(f, sample_rate).astype(np.float32)
        cut = int(round(len(x) * (1 - held_out)))
        train.append(x[:cut])
        valid.append(x[cut:])
    return train, valid


def rir_split(dirs, held_out_names) -> tuple[list[Path], list[Path]]:
    """(training, validation) measured response files: those whose stem is in held_out_names validate."""
    files = _audio_files(dirs)
    held = set(held_out_names)
    unknown = held - {f.stem for f in files}
    if unknown:
        raise MossepError(f"held-out room responses {sorted(unknown)} not found under {', '.join(map(str, dirs))}")
    return [f for f in files if f.stem not in held], [f for f in files if f.stem in held]


def babble_clip(speakers: dict[str, list[np.ndarray]], names: list[str], rng: np.random.Generator, samples: int,
                talkers: tuple[int, int] = (3, 6), gain_db: float = 5.0) -> np.ndarray:
    """The sum of 3-6 (talkers) random crops of utterances of distinct speakers from `names`, each at a random
    level within +-gain_db/2; unit RMS."""
    k = min(len(names), int(rng.integers(talkers[0], talkers[1] + 1)))
    out = np.zeros(samples, np.float32)
    for i in rng.choice(len(names), size=k, replace=False):
        utts = speakers[names[int(i)]]
        x = dm._crop(utts[int(rng.integers(len(utts)))], samples, rng)
        out += x / (np.sqrt(np.mean(x**2)) + 1e-8) * 10 ** (rng.uniform(-gain_db / 2, gain_db / 2) / 20)
    return (out / (np.sqrt(np.mean(out**2)) + 1e-8)).astype(np.float32)


def babble_clips(speakers: dict[str, list[np.ndarray]], count: int, seconds: float, sample_rate: int,
                 seed: int) -> list[np.ndarray]:
    """`count` babble clips of the given speakers, clip i from np.random.default_rng([seed, i])."""
    names = sorted(speakers)
    n = int(seconds * sample_rate)
    return [babble_clip(speakers, names, np.random.default_rng([seed, 7, i]), n) for i in range(count)]


def room_bank(cfg: SceneConfig, sample_rate: int, split: str) -> rm.RoomBank:
    """The simulated rooms of `split` ("train" or "valid") plus its measured ones; kept under cfg.cache (keyed
    by everything they depend on), so that a cached bank needs no simulation (nor pyroomacoustics)."""
    train_rirs, valid_rirs = rir_split(cfg.rir_dirs, cfg.held_out_rirs) if cfg.rir_dirs else ([], [])
    seed, count, files = ((TRAIN_ROOM_SEED, cfg.rooms, train_rirs) if split == "train"
                          else (VALID_ROOM_SEED, cfg.valid_rooms, valid_rirs))
    spec = cfg.room_spec()
    path = rm.bank_path(Path(cfg.cache), seed=seed, count=count, rate=sample_rate, positions=cfg.positions,
                        spec=spec, direct_ms=cfg.direct_ms,
                        measured=[(f.name, f.stat().st_size) for f in files]) if cfg.cache else None
    if path is not None and path.is_file():
        return rm.load_bank(path)
    banks = [rm.simulated_bank(seed, count, sample_rate, cfg.positions, spec, cfg.direct_ms, cfg.workers)] if count else []
    banks.append(rm.measured_bank(files, sample_rate, cfg.positions, spec.length_seconds, cfg.direct_ms))
    bank = rm.RoomBank.concat(banks)
    if path is not None:
        rm.save_bank(path, bank)
    return bank


@dataclass
class Scenes:
    """What augment_batch draws from, on a device."""

    rooms: aug.Rooms | None
    ambient: aug.Clips | None
    babble: aug.Clips | None

    def kwargs(self) -> dict:
        return {"rooms": self.rooms, "ambient": self.ambient, "babble": self.babble}


def training_scenes(cfg: SceneConfig, sample_rate: int, speakers: dict[str, list[np.ndarray]] | None,
                    device: torch.device | str = "cpu", rooms: bool = True, seed: int = 0) -> Scenes:
    """The training rooms (if `rooms`), the training part of the ambient noise and babble of `speakers`."""
    bank = room_bank(cfg, sample_rate, "train") if rooms else None
    ambient = ambient_split(cfg.noise_dirs, sample_rate, cfg.held_out)[0] if cfg.noise_dirs else []
    babble = babble_clips(speakers, cfg.babble_clips, cfg.babble_seconds, sample_rate, seed) if speakers and len(speakers) > 3 else []
    return Scenes(aug.Rooms.from_bank(bank, device) if bank is not None and len(bank) else None,
                  aug.Clips.from_arrays(ambient, device) if ambient else None,
                  aug.Clips.from_arrays(babble, device) if babble else None)


def fixed_sets(valid_dirs, sample_rate: int, count: int, cfg: SceneConfig, seconds: float = 4.0,
               conditions=CONDITIONS, num_spks: int = 2, gain_db: float = 5.0,
               seed: int = VALID_SET_SEED) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """{condition: [(mixture [T], dry targets [C, T]), ...]}: `count` clean mixtures of the held-out speakers
    under `valid_dirs` (item i from np.random.default_rng([seed, i]): `num_spks` distinct talkers, crops and
    levels as in training), each in every condition: as is, with held-out noise (ambient or babble of the other
    held-out speakers, WHAM!-like levels), in a held-out room, or both."""
    unknown = set(conditions) - set(CONDITIONS)
    if unknown:
        raise MossepError(f"unknown validation conditions {sorted(unknown)}; known: {', '.join(CONDITIONS)}")
    speakers = dm.load_speaker_folders([Path(d) for d in valid_dirs], sample_rate)
    names = sorted(speakers)
    if len(names) < num_spks:
        raise MossepError(f"need at least {num_spks} validation speakers, found {len(names)}")
    needs_rooms = any(c in ("reverb", "both") for c in conditions)
    needs_noise = any(c in ("noisy", "both") for c in conditions)
    rooms = aug.Rooms.from_bank(room_bank(cfg, sample_rate, "valid")) if needs_rooms else None
    ambient_parts = ambient_split(cfg.noise_dirs, sample_rate, cfg.held_out)[1] if cfg.noise_dirs and needs_noise else []
    ambient = aug.Clips.from_arrays(ambient_parts) if ambient_parts else None
    spec = dm.MixSpec(int(seconds * sample_rate), num_spks, gain_db)
    out: dict[str, list] = {c: [] for c in conditions}
    for i in range(count):
        rng = np.random.default_rng([seed, i])
        talkers = sorted(rng.choice(len(names), size=num_spks, replace=False).tolist())
        mix, src = dm.make_mixture({names[t]: speakers[names[t]] for t in talkers}, spec, rng, sample_rate)
        others = [n for j, n in enumerate(names) if j not in talkers]
        babble = (aug.Clips.from_arrays([babble_clip(speakers, others, rng, spec.segment_samples)])
                  if needs_noise and others else None)
        s = torch.from_numpy(src)[None]
        for c in conditions:
            if c == "clean":
                out[c].append((mix, src))
                continue
            gen = torch.Generator().manual_seed(int(np.random.default_rng([seed, i, 1]).integers(2**62)))
            m, t = aug.augment_batch(s, gen, sample_rate, reverb=float(c in ("reverb", "both")),
                                     noise=float(c in ("noisy", "both")), rooms=rooms, ambient=ambient,
                                     babble=babble, noise_kinds=VALID_NOISE_KINDS)
            out[c].append((m[0].numpy().astype(np.float32), t[0].numpy().astype(np.float32)))
    return out
