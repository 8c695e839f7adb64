"""Training and fine-tuning: PIT with negative SI-SNR, Adam with warm-up, decay on plateau, clipping.

Runs on CPU or CUDA (bf16 autocast where the device computes bf16 natively), single process or
DistributedDataParallel under torchrun.
Every step's data comes from a seeded generator (dynamic_mix.batch_rng), and every step seeds the
dropout RNG from (seed, step, rank), so `resume` continues exactly where the run stopped.
Outputs in OUT_DIR: last.pt (full training state), best.safetensors (best validation SI-SNRi,
mossep format with metadata), log.csv, config.yaml (the effective configuration).
"""
from __future__ import annotations

import csv
import math
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
import yaml

from . import augment as aug
from . import dynamic_mix as dm
from . import scenes
from . import train_data as td
from .checkpoints import load_checkpoint, save_native
from .checkpoints.common import torch_load_tensors
from .device_mix import DeviceMixer
from .errors import MossepError, reason
from .fast import bf16_is_native
from .fsutil import atomic_path
from .metrics import best_permutation, pit_loss, si_snr
from .models import ModelConfig, build_model, preset
from .models.grow import deepen


@dataclass
class TrainConfig:
    out_dir: str = "runs/train"
    arch: str = "mossformer"
    size: str = "cpu-small"  # preset name (models.config.PRESETS)
    model: dict[str, Any] = field(default_factory=dict)  # overrides of the preset's ModelConfig fields
    num_spks: int | None = None  # talkers per mixture = model outputs (None: model.num_spks, the preset's 2, or --init's)
    init: str | None = None  # fine-tune from this checkpoint (any format mossep loads)
    sample_rate: int = 8000
    train_dirs: list[str] = field(default_factory=list)  # SET/<speaker>/*.flac folders for dynamic mixing
    train_sets: list[str] = field(default_factory=list)  # fixed mixture sets (LibriMix, itemN_mix, CSV manifest)
    valid_dirs: list[str] = field(default_factory=list)  # held-out speakers, mixed deterministically
    segment_seconds: float = 4.0
    gain_db: float = 5.0
    speed_perturb: float = 0.05
    random_polarity: bool = True  # invert each source with probability 1/2 (recording polarity is arbitrary)
    # make mixtures sound like real recordings (mossep.augment.augment_batch; probability per mixture, 0 = off):
    reverb: float = 0.0  # a room per mixture (mossep.rooms bank); the targets are the dry sources (direct path)
    noise: float = 0.0  # ambient noise, babble or synthetic noise in the mixture only; the targets stay clean
    eq: float = 0.0  # a random channel curve on all the mixture's sources; the targets are the equalised sources
    rt60: list[float] = field(default_factory=lambda: [0.1, 1.0])  # simulated rooms' RT60 range, seconds
    snr_db: list[float] = field(default_factory=lambda: [-6.0, 3.0])  # noise level against the louder talker, dB
    noise_dirs: list[str] = field(default_factory=list)  # ambient recordings; the last fifth of each is held out
    rir_dirs: list[str] = field(default_factory=list)  # measured room responses (besides the simulated rooms)
    held_out_rirs: list[str] = field(default_factory=list)  # stems of measured responses kept for validation
    rooms: int = 400  # simulated training rooms (a seeded bank, cached under data_cache)
    noise_kinds: dict[str, float] = field(default_factory=lambda: {"ambient": 0.5, "babble": 0.3, "synthetic": 0.2})
    data_cache: str = "data_cache"  # where simulated room banks are kept
    valid_conditions: list[str] = field(default_factory=lambda: ["clean"])  # mossep.scenes.CONDITIONS; best = mean
    partial: float = 0.0  # share of mixtures where one talker speaks over only part of the segment (turn-taking)
    solo: float = 0.0  # share of mixtures where one talker speaks alone: the other targets are silence
    sequential: float = 0.0  # share of mixtures where two talkers speak one after the other, without overlap
    mixing: str = "cpu"  # "device": mix on the training device (mossep.device_mix; train_dirs only), for GPUs
    speeds: list[float] = field(default_factory=lambda: [0.94, 0.97, 1.0, 1.03, 1.06])  # device mixing's speed copies
    schedule: str = "plateau"  # "cosine": after warm-up, a cosine to final_lr * lr over max_minutes (else over steps)
    final_lr: float = 0.02
    compile: bool = False  # torch.compile the training forward (eager again if the first compiled step fails)
    batch_size: int = 4
    steps: int = 10000
    lr: float = 1e-3
    warmup_steps: int = 500
    weight_decay: float = 0.0
    clip_grad: float = 5.0
    plateau_patience: int = 3  # validations without improvement before halving the lr
    plateau_factor: float = 0.5
    min_lr: float = 1e-5
    valid_every: int = 500
    valid_count: int = 64
    valid_seconds: float = 4.0
    checkpoint_every: int = 100
    seed: int = 0
    threads: int | None = None
    device: str = "auto"
    bf16: bool = True  # autocast where the device computes bf16 natively (CUDA; CPUs with avx512_bf16 or AMX)
    max_minutes: float | None = None  # stop (with a checkpoint) after this much wall time
    quiet: bool = False

    @classmethod
    def from_file(cls, path: str | Path) -> dict[str, Any]:
        """Options from a YAML or TOML file (as a dict, to be merged with CLI overrides)."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as e:
            raise MossepError(f"{path}: cannot read config ({e.strerror})") from None
        try:
            if path.suffix == ".toml":
                import tomllib

                data = tomllib.loads(text)
            else:
                data = yaml.safe_load(text) or {}
        except Exception as e:
            raise MossepError(f"{path}: invalid config ({reason(e)})") from None
        if not isinstance(data, dict):
            raise MossepError(f"{path}: config must be a mapping of option: value")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise MossepError(f"{path}: unknown options {unknown}")
        return data


# option -> (kind, lower bound, lower bound allowed?); options that may be None are in _OPTIONAL
_NUMBERS = {
    "sample_rate": (int, 0, False), "batch_size": (int, 0, False), "steps": (int, 0, False),
    "warmup_steps": (int, 0, True), "plateau_patience": (int, 0, False), "valid_every": (int, 0, False),
    "valid_count": (int, 0, False), "checkpoint_every": (int, 0, False), "seed": (int, None, True),
    "threads": (int, 0, False), "segment_seconds": (float, 0, False), "gain_db": (float, 0, True),
    "speed_perturb": (float, 0, True), "lr": (float, 0, False), "weight_decay": (float, 0, True),
    "clip_grad": (float, 0, True), "plateau_factor": (float, 0, False), "min_lr": (float, 0, True),
    "valid_seconds": (float, 0, False), "max_minutes": (float, 0, False),
    "reverb": (float, 0, True), "noise": (float, 0, True), "eq": (float, 0, True), "num_spks": (int, 2, True),
    "rooms": (int, 0, True), "partial": (float, 0, True), "final_lr": (float, 0, True),
    "solo": (float, 0, True), "sequential": (float, 0, True),
}
_OPTIONAL = ("init", "threads", "max_minutes", "num_spks")
_LISTS = ("train_dirs", "train_sets", "valid_dirs", "noise_dirs", "rir_dirs", "held_out_rirs")


def checked_config(cfg: TrainConfig) -> TrainConfig:
    """`cfg` with its values checked (MossepError naming the option otherwise) and a single folder given as a
    string turned into a one-item list (a string used to be iterated letter by letter: "/data" read "/")."""
    def bad(name: str, what: str) -> MossepError:
        return MossepError(f"training option {name}: {what}, got {getattr(cfg, name)!r}")

    values = {}
    for name in _LISTS:
        v = getattr(cfg, name)
        v = [v] if isinstance(v, (str, Path)) else v
        if not isinstance(v, (list, tuple)) or not all(isinstance(p, (str, Path)) for p in v):
            raise bad(name, "expected a folder or a list of folders")
        values[name] = [str(p) for p in v]
    for name, (kind, low, inclusive) in _NUMBERS.items():
        v = getattr(cfg, name)
        if v is None and name in _OPTIONAL:
            continue
        if isinstance(v, str):  # YAML reads 1e-3 (no dot) as text
            try:
                v = values[name] = kind(v)
            except ValueError:
                pass
        if isinstance(v, bool) or not isinstance(v, (int, float) if kind is float else int) or not math.isfinite(v):
            raise bad(name, "expected a whole number" if kind is int else "expected a number")
        if low is not None and (v < low or (v == low and not inclusive)):
            raise bad(name, f"must be {'at least' if inclusive else 'greater than'} {low}")
    if values.get("speed_perturb", cfg.speed_perturb) >= 1:
        raise bad("speed_perturb", "must be below 1")
    if values.get("plateau_factor", cfg.plateau_factor) > 1:
        raise bad("plateau_factor", "must be at most 1")
    for name in ("reverb", "noise", "eq"):
        if values.get(name, getattr(cfg, name)) > 1:
            raise bad(name, "is a probability, must be at most 1")
    for name, low in (("rt60", 0.0), ("snr_db", None)):
        v = getattr(cfg, name)
        ok = isinstance(v, (list, tuple)) and len(v) == 2 and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)
        if not ok or v[0] > v[1] or (low is not None and v[0] <= low):
            raise bad(name, "expected two numbers LOW, HIGH with LOW <= HIGH" + (" and LOW > 0" if low is not None else ""))
        values[name] = [float(x) for x in v]
    conditions = [cfg.valid_conditions] if isinstance(cfg.valid_conditions, str) else cfg.valid_conditions
    if not isinstance(conditions, (list, tuple)) or not conditions or set(conditions) - set(scenes.CONDITIONS):
        raise bad("valid_conditions", f"expected some of {', '.join(scenes.CONDITIONS)}")
    values["valid_conditions"] = list(conditions)
    if cfg.mixing not in ("cpu", "device"):
        raise bad("mixing", "expected cpu or device")
    if cfg.mixing == "device" and (cfg.train_sets or not cfg.train_dirs):
        raise bad("mixing", "device mixing draws from train_dirs only (no fixed train_sets)")
    if cfg.schedule not in ("plateau", "cosine"):
        raise bad("schedule", "expected plateau or cosine")
    if not (isinstance(cfg.speeds, (list, tuple)) and cfg.speeds and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and 0.5 <= x <= 2 for x in cfg.speeds)):
        raise bad("speeds", "expected a list of speed factors between 0.5 and 2")
    values["speeds"] = [float(x) for x in cfg.speeds]
    kinds = cfg.noise_kinds
    if not isinstance(kinds, dict) or set(kinds) - set(aug.NOISE_KINDS) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in kinds.values()):
        raise bad("noise_kinds", f"expected weights of {', '.join(aug.NOISE_KINDS)}")
    if values.get("reverb", cfg.reverb) > 0 and cfg.rooms == 0 and not values.get("rir_dirs", cfg.rir_dirs):
        raise bad("rooms", "reverb needs rooms: simulated (rooms > 0) or measured (rir_dirs)")
    for name in ("out_dir", "arch", "size", "device", "data_cache") + (("init",) if cfg.init is not None else ()):
        if not isinstance(getattr(cfg, name), str):
            raise bad(name, "expected text")
    if cfg.device not in ("auto", "cpu", "cuda"):
        raise bad("device", "expected auto, cpu or cuda")
    if not isinstance(cfg.model, dict):
        raise bad("model", "expected a mapping of model settings (e.g. d_model: 192)")
    unknown = sorted(set(cfg.model) - {f.name for f in fields(ModelConfig)})
    if unknown:
        raise MossepError(f"training option model: unknown model settings {unknown}")
    for name in ("partial", "solo", "sequential", "final_lr"):
        if values.get(name, getattr(cfg, name)) > 1:
            raise bad(name, "must be at most 1")
    for name in ("bf16", "quiet", "random_polarity", "compile"):
        if not isinstance(getattr(cfg, name), bool):
            raise bad(name, "expected true or false")
    out = replace(cfg, **values)
    if cfg.init and set(cfg.model) - {"num_blocks"}:
        raise bad("model", "with init the model is the checkpoint's; only num_blocks may be given (to deepen it)")
    if not cfg.init:
        try:
            model_config(out)
        except (TypeError, ValueError) as e:
            raise MossepError(f"training options size/arch/model: {e}") from None
    if not (out.train_dirs or out.train_sets):
        raise MossepError("no training data: give --train-dir (SET/<speaker>/*.flac) or --train-set (mixture set)")
    return out


def model_config(cfg: TrainConfig) -> ModelConfig:
    talkers = {} if cfg.num_spks is None else {"num_spks": cfg.num_spks}
    return preset(cfg.size, arch=cfg.arch, sample_rate=cfg.sample_rate, **{**cfg.model, **talkers})


def lr_at(step: int, base: float, warmup: int) -> float:
    """Linear warm-up to `base`, then constant (plateau decay is applied on top)."""
    return base * min(1.0, (step + 1) / max(1, warmup))


def _dist_info() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return world, int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))


def _device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise MossepError("--device cuda: no CUDA device is available")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


@torch.no_grad()
def si_snri_per_mixture(model: torch.nn.Module, mix: torch.Tensor, ref: torch.Tensor,
                        batch_size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Best-permutation SI-SNR and SI-SNRi of every mixture, in eval mode (the model is left in train mode).

    mix [N, T], ref [N, C, T] on the model's device -> two [N] tensors on the CPU."""
    model.eval()
    scores, improvements = [], []
    for i in range(0, len(mix), batch_size):
        m, r = mix[i : i + batch_size], ref[i : i + batch_size]
        best, _ = best_permutation(model(m).float(), r)
        base = si_snr(m.unsqueeze(1).expand_as(r), r).mean(-1)
        scores.append(best.cpu())
        improvements.append((best - base).cpu())
    model.train()
    return torch.cat(scores), torch.cat(improvements)


@torch.no_grad()
def silence_depth(model: torch.nn.Module, talker: torch.Tensor, batch_size: int = 8, cap_db: float = 60.0) -> float:
    """Mean depth (dB, capped at cap_db) of the quietest output below the loudest one for lone talkers
    talker [N, T] on the model's device, in eval mode (the model is left in train mode)."""
    model.eval()
    depths = []
    for i in range(0, len(talker), batch_size):
        power = model(talker[i : i + batch_size]).float().pow(2).mean(-1)  # [n, C]
        ratio = power.amax(-1) / power.amin(-1).clamp_min(1e-20)
        depths.append((10 * torch.log10(ratio)).clamp(max=cap_db).cpu())
    model.train()
    return float(torch.cat(depths).double().mean())


class ValidationStopped(Exception):
    """A stop was asked for during a validation: it is left unfinished and run again on resume."""


def validate(model: torch.nn.Module, items: list[tuple[np.ndarray, np.ndarray]], device: torch.device,
             batch_size: int = 8, stop: Callable[[], bool] | None = None) -> dict[str, float]:
    """Mean SI-SNR and SI-SNRi (best permutation) over fixed validation mixtures. stop: asked before each
    batch; when it says yes, ValidationStopped is raised (a validation on the CPU can take a minute)."""
    mix = torch.from_numpy(np.stack([m for m, _ in items])).to(device)
    ref = torch.from_numpy(np.stack([s for _, s in items])).to(device)
    scores, improvements = [], []
    for i in range(0, len(mix), batch_size):
        if stop is not None and stop():
            raise ValidationStopped
        s, d = si_snri_per_mixture(model, mix[i : i + batch_size], ref[i : i + batch_size], batch_size)
        scores.append(s)
        improvements.append(d)
    return {"si_snr": float(torch.cat(scores).double().mean()), "si_snri": float(torch.cat(improvements).double().mean())}


RUN_FILES = ("best.safetensors", "last.pt", "log.csv", "config.yaml")  # what a run writes into OUT_DIR


def check_run_folder(out_dir: str | Path, resume: bool, overwrite: bool) -> None:
    """Before anything is built or created: a folder holding an earlier run is continued only with `resume`
    and replaced only with `overwrite` (never silently: its best checkpoint would be lost to any first
    validation); `resume` needs that run's last.pt."""
    out = Path(out_dir)
    if resume and overwrite:
        raise MossepError("--resume continues the run in OUT_DIR and --overwrite replaces it: give one of them")
    if resume:
        if not (out / "last.pt").is_file():
            raise MossepError(f"{out / 'last.pt'}: no training state to resume from")
        return
    found = [n for n in RUN_FILES if (out / n).exists()]
    if found and not overwrite:
        raise MossepError(f"{out}: holds an earlier run ({', '.join(found)}); use --resume to continue it, "
                          "--overwrite to replace it, or another -o folder")


def clear_run_folder(out_dir: str | Path) -> None:
    """--overwrite: remove an earlier run's files, once the new run is known to start (options, model, data)."""
    for n in RUN_FILES:
        (Path(out_dir) / n).unlink(missing_ok=True)


class Trainer:
    def __init__(self, cfg: TrainConfig, progress: Callable[[dict[str, Any]], None] | None = None):
        self.cfg = cfg = checked_config(cfg)
        self.world, self.rank, local = _dist_info()
        if self.world > 1 and not dist.is_initialized():
            backend = "nccl" if cfg.device in ("cuda", "auto") and torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend)
        self.device = _device(cfg.device, local)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.out = Path(cfg.out_dir)
        self.progress = progress
        self.main = self.rank == 0

        if cfg.init:
            loaded = load_checkpoint(cfg.init)
            if cfg.num_spks is not None and cfg.num_spks != loaded.config.num_spks:
                raise MossepError(f"{cfg.init}: separates {loaded.config.num_spks} talkers, not --num-spks {cfg.num_spks}")
            self.model = loaded.model
            self.init_note = f"fine-tuned from {cfg.init} ({loaded.source})"
            blocks = cfg.model.get("num_blocks", loaded.config.num_blocks)
            if blocks != loaded.config.num_blocks:
                try:
                    self.model = deepen(loaded.model, blocks, seed=cfg.seed)
                except (TypeError, ValueError) as e:
                    raise MossepError(f"{cfg.init}: training option model.num_blocks: {e}") from None
                self.init_note += f", deepened from {loaded.config.num_blocks} to {blocks} blocks (new ones start as the identity)"
        else:
            torch.manual_seed(cfg.seed)
            self.model = build_model(model_config(cfg))
            self.init_note = "trained from scratch"
        self.mcfg: ModelConfig = self.model.config
        self.model.to(self.device).train()
        self.net = self.model
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

        sr = self.mcfg.sample_rate
        segment = int(cfg.segment_seconds * sr)
        self.data: list = []
        if cfg.train_dirs:
            speakers = dm.load_speaker_folders([Path(p) for p in cfg.train_dirs], sr, self.mcfg.num_spks)
            spec = dm.MixSpec(segment, self.mcfg.num_spks, cfg.gain_db, cfg.speed_perturb, cfg.random_polarity)
            self.data.append(td.DynamicMixing(speakers, spec, sr))
        if cfg.train_sets:
            self.data.append(td.FixedMixtures.load([Path(p) for p in cfg.train_sets], sr, self.mcfg.num_spks, segment))
        self.mixer = None
        if cfg.mixing == "device":
            self.mixer = DeviceMixer(self.data[0].speakers, sr, segment, cfg.speeds, self.device)
        self.forward = torch.compile(self.net) if cfg.compile else self.net
        self._compiling = cfg.compile
        self._fit_start = time.monotonic()
        self.scene_cfg = scenes.SceneConfig(
            noise_dirs=tuple(cfg.noise_dirs), rir_dirs=tuple(cfg.rir_dirs), held_out_rirs=tuple(cfg.held_out_rirs),
            rooms=cfg.rooms, rt60=tuple(cfg.rt60), cache=cfg.data_cache, workers=cfg.threads or os.cpu_count() or 1)
        self.scenes = None
        if cfg.reverb or cfg.noise:
            babble_speakers = next((d.speakers for d in self.data if isinstance(d, td.DynamicMixing)), None)
            self.scenes = scenes.training_scenes(self.scene_cfg, sr, babble_speakers, self.device,
                                                 rooms=cfg.reverb > 0, seed=cfg.seed)
        self.valid_sets: dict[str, list] = {}  # the conditions other than clean (mossep.scenes.fixed_sets)
        if cfg.valid_dirs and self.main and set(cfg.valid_conditions) - {"clean"}:
            self.valid_sets = scenes.fixed_sets(cfg.valid_dirs, sr, cfg.valid_count, self.scene_cfg, cfg.valid_seconds,
                                                [c for c in cfg.valid_conditions if c != "clean"],
                                                self.mcfg.num_spks, cfg.gain_db)
        self.valid_items: list = []
        if cfg.valid_dirs and self.main and "clean" in cfg.valid_conditions:
            self.valid_items = dm.validation_mixtures(cfg.valid_dirs, sr, cfg.valid_count, cfg.valid_seconds,
                                                      self.mcfg.num_spks, cfg.gain_db)
        self.solo_talkers = None  # with solo mixtures: each validation mixture's first talker alone [N, T]
        if cfg.valid_dirs and self.main and cfg.solo:
            items = self.valid_items or dm.validation_mixtures(cfg.valid_dirs, sr, cfg.valid_count, cfg.valid_seconds,
                                                               self.mcfg.num_spks, cfg.gain_db)
            self.solo_talkers = torch.from_numpy(np.stack([s[0] for _, s in items])).to(self.device)

        self.step = 0
        self.lr_scale = 1.0  # plateau decay
        self.best = -math.inf
        self.bad_validations = 0
        self.history: list[dict[str, Any]] = []
        self.train_seconds = 0.0
        self.cpu_seconds = 0.0  # process CPU time of the training steps, all threads, across resumes
        # bf16 autocast where the device multiplies bf16 natively: CUDA, CPUs with avx512_bf16 or AMX (on the
        # 2-core dev CPU a step of the robust recipe took 1.14-1.20 s against 1.99-2.07 in float32, 1 thread)
        self.bf16_native = bf16_is_native(self.device)
        self.pending_validation = False  # a validation a stop left unfinished: run first on resume
        self._stop = False  # asked to stop after the current step (first SIGINT/SIGTERM)
        self._stop_now = False  # asked twice: stopped at once, the last saved state kept as it is
        if self.main:  # only once the options, model and data are known to be good
            try:
                self.out.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise MossepError(f"{self.out}: cannot create output folder ({e.strerror})") from None

    # ---- state -------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(), "optimizer": self.opt.state_dict(), "step": self.step,
            "lr_scale": self.lr_scale, "best": self.best, "bad_validations": self.bad_validations,
            "train_seconds": self.train_seconds, "cpu_seconds": self.cpu_seconds, "model_config": self.mcfg.to_dict(), "history": self.history,
            "pending_validation": self.pending_validation,
        }

    def save_state(self) -> None:
        if not self.main:
            return
        with atomic_path(self.out / "last.pt") as tmp:
            torch.save(self.state(), tmp)

    def resume(self, path: Path | None = None) -> None:
        path = Path(path) if path else self.out / "last.pt"
        if not path.is_file():
            raise MossepError(f"{path}: no training state to resume from")
        st = torch_load_tensors(path)  # weights_only: a pickle that asks for code is refused, never run
        if not isinstance(st, dict) or "model_config" not in st:
            raise MossepError(f"{path}: not a mossep training state (no model_config)")
        if st["model_config"] != self.mcfg.to_dict():
            raise MossepError(f"{path}: saved model configuration differs from this run's")
        try:
            self.model.load_state_dict(st["model"])
            self.opt.load_state_dict(st["optimizer"])
            self.step, self.lr_scale, self.best = int(st["step"]), float(st["lr_scale"]), float(st["best"])
            self.bad_validations, self.train_seconds = int(st["bad_validations"]), float(st["train_seconds"])
            self.cpu_seconds = float(st.get("cpu_seconds", 0.0))
            self.history = list(st.get("history", []))
            self.pending_validation = bool(st.get("pending_validation", False))
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
            raise MossepError(f"{path}: training state is incomplete or damaged ({reason(e)})") from None

    def metadata(self, scores: dict[str, float]) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "sample_rate": self.mcfg.sample_rate, "num_spks": self.mcfg.num_spks,
            "training": {
                "how": self.init_note, "train_dirs": cfg.train_dirs, "train_sets": cfg.train_sets, "valid_dirs": cfg.valid_dirs,
                "steps": self.step, "batch_size": cfg.batch_size * self.world, "segment_seconds": cfg.segment_seconds,
                "train_hours": round(self.train_seconds / 3600, 3),
                "cpu_hours": round(self.cpu_seconds / 3600, 3), "device": self.device.type,
                "dynamic_mixing": {"gain_db": cfg.gain_db, "speed_perturb": cfg.speed_perturb,
                                   "random_polarity": cfg.random_polarity, "partial": cfg.partial,
                                   "solo": cfg.solo, "sequential": cfg.sequential,
                                   "mixing": cfg.mixing, **({"speeds": cfg.speeds} if cfg.mixing == "device" else {})},
                "schedule": cfg.schedule,
                "hardware": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu",
                "augment": {"reverb": cfg.reverb, "noise": cfg.noise, "eq": cfg.eq, "rt60": cfg.rt60,
                            "snr_db": cfg.snr_db, "noise_dirs": cfg.noise_dirs, "rir_dirs": cfg.rir_dirs,
                            "held_out_rirs": cfg.held_out_rirs, "rooms": cfg.rooms, "noise_kinds": cfg.noise_kinds},
            },
            "validation": {"si_snri_db": round(scores["si_snri"], 3), "si_snr_db": round(scores["si_snr"], 3),
                           "mixtures": len(self.valid_items) + sum(map(len, self.valid_sets.values())),
                           "seconds": cfg.valid_seconds, "conditions": cfg.valid_conditions,
                           **{f"{c}_si_snri_db": round(scores[c], 3) for c in cfg.valid_conditions if c in scores},
                           **({"solo_depth_db": round(scores["solo_db"], 2)} if "solo_db" in scores else {})},
        }

    # ---- loop --------------------------------------------------------------------------------
    LOG_COLUMNS = ["step", "hours", "cpu_hours", "loss", "lr", "valid_si_snri", "valid_si_snr",
                   "valid_clean", "valid_noisy", "valid_reverb", "valid_both", "valid_solo_db"]

    def _prepare_log(self) -> None:
        """Once per run: a log.csv from an older version is rewritten with the current columns."""
        path = self.out / "log.csv"
        if not (self.main and path.exists()):
            return
        with open(path, newline="") as f:
            header = next(csv.reader(f), [])
        if header == self.LOG_COLUMNS:
            return
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.LOG_COLUMNS)
            w.writeheader()
            w.writerows({k: r.get(k, "") for k in self.LOG_COLUMNS} for r in rows)

    def _log(self, row: dict[str, Any]) -> None:
        if not self.main:
            return
        path = self.out / "log.csv"
        new = not path.exists()
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.LOG_COLUMNS)
            if new:
                w.writeheader()
            w.writerow({k: row.get(k, "") for k in self.LOG_COLUMNS})

    def _validate_and_keep_best(self) -> dict[str, float] | None:
        if not (self.main and (self.valid_items or self.valid_sets)):
            return None
        sets = {**({"clean": self.valid_items} if self.valid_items else {}), **self.valid_sets}
        per = {c: validate(self.model, items, self.device, stop=lambda: self._stop) for c, items in sets.items()}
        # one condition: its scores; several: their means (the checkpoint choice), and each one's SI-SNRi
        scores = {k: float(np.mean([v[k] for v in per.values()])) for k in ("si_snri", "si_snr")}
        if len(per) > 1:
            scores.update({c: v["si_snri"] for c, v in per.items()})
        if self.solo_talkers is not None:  # reported; the checkpoint choice stays the SI-SNRi above
            scores["solo_db"] = silence_depth(self.model, self.solo_talkers)
        self.history.append({"step": self.step, "hours": self.train_seconds / 3600,
                             "cpu_hours": self.cpu_seconds / 3600, **scores})
        if scores["si_snri"] > self.best:
            self.best = scores["si_snri"]
            self.bad_validations = 0
            save_native(self.model, self.out / "best.safetensors", self.metadata(scores))
        else:
            self.bad_validations += 1
            if self.bad_validations >= self.cfg.plateau_patience:
                self.lr_scale *= self.cfg.plateau_factor
                self.bad_validations = 0
        return scores

    def _sync_lr_scale(self) -> None:
        if self.world > 1:
            t = torch.tensor([self.lr_scale], dtype=torch.float64)
            dist.broadcast(t, 0)
            self.lr_scale = float(t)

    def train_step(self) -> float:
        cfg = self.cfg
        # every random draw is seeded by (seed, step, rank), so resume is exact
        gen = torch.Generator(device=self.device)
        gen.manual_seed(hash((cfg.seed, self.step, self.rank, 1)) % (2**31))
        if self.mixer is not None:
            src_t = self.mixer.sources(cfg.batch_size, gen, cfg.gain_db, self.mcfg.num_spks, cfg.random_polarity)
            mix_t, extra = src_t.sum(1), None
        else:
            mix, src = td.make_batch(self.data, cfg.batch_size, cfg.seed, self.step, self.rank)
            mix_t, src_t = torch.from_numpy(mix).to(self.device), torch.from_numpy(src).to(self.device)
            extra = mix_t - src_t.sum(1)
        torch.manual_seed(hash((cfg.seed, self.step, self.rank)) % (2**31))
        if cfg.partial:
            src_t = aug.turn_taking(src_t, gen, cfg.partial)
        if cfg.sequential:
            src_t = aug.sequential_turns(src_t, gen, cfg.sequential)
        if cfg.solo:
            src_t = aug.one_talker(src_t, gen, cfg.solo)
        if cfg.reverb or cfg.noise or cfg.eq or cfg.partial or cfg.solo or cfg.sequential:
            mix_t, src_t = aug.augment_batch(src_t, gen, self.mcfg.sample_rate, cfg.reverb, cfg.eq, cfg.noise,
                                             tuple(cfg.snr_db), noise_kinds=cfg.noise_kinds, extra=extra,
                                             **self.scenes_kwargs())
        lr = lr_at(self.step, cfg.lr, cfg.warmup_steps)
        if cfg.schedule == "cosine":
            done = ((time.monotonic() - self._fit_start) / (cfg.max_minutes * 60) if cfg.max_minutes
                    else self.step / cfg.steps)
            lr *= cfg.final_lr + (1 - cfg.final_lr) * 0.5 * (1 + math.cos(math.pi * min(1.0, done)))
        else:
            lr *= self.lr_scale
        lr = max(cfg.min_lr, lr)
        for g in self.opt.param_groups:
            g["lr"] = lr
        self.opt.zero_grad(set_to_none=True)
        loss = self._loss_and_backward(mix_t, src_t)
        params = [p for p in self.model.parameters() if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad if cfg.clip_grad > 0 else math.inf)
        bad = ~torch.isfinite(norm)  # a non-finite step changes nothing (no host sync: stays on the device)
        for p in params:
            p.grad.masked_fill_(bad, 0.0)
        self.opt.step()
        self.step += 1
        return float(loss.detach())

    def _loss_and_backward(self, mix: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
        use_bf16 = self.cfg.bf16 and self.bf16_native
        try:
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_bf16):
                est = self.forward(mix)
            loss = pit_loss(est.float(), src, mix.float())
            loss.backward()
        except Exception as e:  # noqa: BLE001 - a compiler failure on the first compiled step: train on eagerly
            if not self._compiling:
                raise
            if self.main:
                print(f"torch.compile failed ({type(e).__name__}: {str(e)[:200]}); training eagerly", flush=True)
            self.forward, self._compiling = self.net, False
            self.opt.zero_grad(set_to_none=True)
            return self._loss_and_backward(mix, src)
        self._compiling = False
        return loss

    def scenes_kwargs(self) -> dict[str, Any]:
        return self.scenes.kwargs() if self.scenes else {}

    def _request_stop(self, signum: int, frame: Any) -> None:
        """First SIGINT/SIGTERM: finish the current step (a validation under way is left for the resume), save
        the state and return. A second one: stop at once, keeping the state saved last (at most
        checkpoint_every steps old), through the handler that was there before (the CLI's: one line, 128 +
        signal), else as KeyboardInterrupt."""
        if not self._stop:
            self._stop = True
            if self.main:
                print("stopping after this step and saving the training state (send the signal again to stop at "
                      "once: the state saved last is kept)", file=sys.stderr, flush=True)
            return
        self._stop_now = True
        old = self._old_handlers.get(signum)
        if callable(old):
            old(signum, frame)
        raise KeyboardInterrupt

    def _validate_or_leave_pending(self) -> dict[str, float] | None:
        try:
            scores = self._validate_and_keep_best()
            self.pending_validation = False
        except ValidationStopped:
            self.pending_validation, scores = True, None
        self._sync_lr_scale()
        return scores

    def _validation_row(self, scores: dict[str, float] | None) -> dict[str, Any]:
        if not scores:
            return {}
        row = {"valid_si_snri": round(scores["si_snri"], 3), "valid_si_snr": round(scores["si_snr"], 3)}
        row.update({f"valid_{c}": round(scores[c], 3) for c in scenes.CONDITIONS if c in scores})
        if "solo_db" in scores:
            row["valid_solo_db"] = round(scores["solo_db"], 2)
        return row

    def fit(self) -> dict[str, Any]:
        cfg = self.cfg
        if self.main:
            with atomic_path(self.out / "config.yaml") as tmp:
                tmp.write_text(yaml.safe_dump({**asdict(cfg), "model_config": self.mcfg.to_dict()}, sort_keys=False))
        self._prepare_log()
        # stop cleanly on SIGINT/SIGTERM, unless they are ignored (a background job, nohup): then they stay so
        self._old_handlers = {sig: old for sig in (signal.SIGINT, signal.SIGTERM)
                              if (old := signal.getsignal(sig)) not in (signal.SIG_IGN, None)}
        for sig in self._old_handlers:
            signal.signal(sig, self._request_stop)
        start = self._fit_start = time.monotonic()
        losses: list[float] = []
        try:
            if self.pending_validation:  # the validation of this step, left unfinished by a stop
                row = self._validation_row(self._validate_or_leave_pending())
                if row:
                    self._log({"step": self.step, "hours": round(self.train_seconds / 3600, 4),
                               "cpu_hours": round(self.cpu_seconds / 3600, 4), **row})
            while self.step < cfg.steps and not self._stop:
                t0, c0 = time.monotonic(), time.process_time()
                loss = self.train_step()
                self.train_seconds += time.monotonic() - t0
                self.cpu_seconds += time.process_time() - c0
                losses.append(loss)
                row: dict[str, Any] = {"step": self.step, "loss": loss, "lr": self.opt.param_groups[0]["lr"],
                                       "hours": round(self.train_seconds / 3600, 4),
                                       "cpu_hours": round(self.cpu_seconds / 3600, 4)}
                if self.step % cfg.valid_every == 0 or self.step == cfg.steps:
                    row.update(self._validation_row(self._validate_or_leave_pending()))
                if self.step % 10 == 0 or "valid_si_snri" in row:
                    row["loss"] = float(np.mean(losses[-10:]))
                    self._log(row)
                if self.progress:
                    self.progress(row)
                if self.step % cfg.checkpoint_every == 0:
                    self.save_state()
                if cfg.max_minutes and time.monotonic() - start > cfg.max_minutes * 60:
                    break
        finally:
            for sig, old in self._old_handlers.items():
                signal.signal(sig, old)
            if not self._stop_now:  # stopped at once: mid-step, so the state saved last is the one to keep
                self.save_state()
        return {"step": self.step, "best_si_snri": self.best, "interrupted": self._stop,
                "last_loss": float(np.mean(losses[-10:])) if losses else None}
