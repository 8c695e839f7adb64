"""Separation in real-recording conditions: noise, rooms and both, scored against the dry sources (issue 15).

The fixed validation sets of mossep.scenes.fixed_sets: `--count` clean mixtures of held-out speakers
(LibriSpeech test-other and VCTK; never the devset), each also with held-out noise (the last fifth of every
ambient recording, or babble of the other held-out speakers, at -6 to +3 dB against the louder talker, as in
WHAM!), in a held-out room (48 simulated shoebox rooms from a seed the training bank does not use, RT60
0.1-1.0 s, and the measured rooms the training recipe holds out), or both. Noise folders, measured rooms, the
held-out ones and the RT60 range come from the training recipe (`--recipe`), so training and this benchmark
hold out the same things. Every mixture goes through the real Separator path (the checkpoint's recommended
settings unless --passes/--wiener say otherwise); SI-SNRi is against the dry sources (each talker's direct
path, mossep.rooms.direct_path), so in a room the model is asked to dereverberate as well as separate.

    python benchmarks/bench_realistic.py --model weights/default.safetensors --count 48 --threads 2
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from mossep import Separator
from mossep import scenes as sc
from mossep.checkpoints import load_checkpoint
from mossep.gate import REVERB_KURTOSIS_BELOW
from mossep.metrics import si_snr_improvement
from mossep.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "robust-8k.yaml"


def scene_config(recipe: Path, cache: str | None = None, valid_rooms: int = sc.SceneConfig.valid_rooms
                 ) -> tuple[sc.SceneConfig, list[str]]:
    """(SceneConfig, validation speaker folders) of a training config file; relative folders are taken from the
    repository root, as the recipes are run from there."""
    opts = TrainConfig.from_file(recipe)
    here = lambda p: str(p if Path(p).is_absolute() else ROOT / p)  # noqa: E731
    cfg = sc.SceneConfig(noise_dirs=tuple(map(here, opts.get("noise_dirs", []))),
                         rir_dirs=tuple(map(here, opts.get("rir_dirs", []))),
                         held_out_rirs=tuple(opts.get("held_out_rirs", [])),
                         rt60=tuple(opts.get("rt60", sc.SceneConfig.rt60)), valid_rooms=valid_rooms,
                         cache=here(cache or opts.get("data_cache", "data_cache")))
    return cfg, [here(p) for p in opts.get("valid_dirs", [])]


def score(sep: Separator, items, rate: int) -> np.ndarray:
    """[N, 2]: SI-SNRi and output SI-SNR (dB) of each mixture against its dry sources."""
    rows = []
    for mix, ref in items:
        r = si_snr_improvement(sep.separate(mix, rate), ref, mix)
        rows.append((r["si_snri"], r["si_snr"]))
    return np.array(rows)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="checkpoint (default: the default model)")
    p.add_argument("--recipe", type=Path, default=RECIPE, help="training config naming the noise, rooms and speakers")
    p.add_argument("--count", type=int, default=48)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--conditions", nargs="+", default=list(sc.CONDITIONS), choices=sc.CONDITIONS)
    p.add_argument("--passes", type=int, default=None, help="default: the checkpoint's recommendation")
    p.add_argument("--wiener", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--noisy-model", default=None, help="model for chunks that sound noisy or reverberant "
                   "(mossep.gate); `none`: off; default: the checkpoint's recommendation")
    p.add_argument("--seed", type=int, nargs="+", default=[sc.VALID_SET_SEED], help="draw of the sets (default: the "
                   "one training validates on; another seed gives fresh mixtures of the same held-out speakers, noise "
                   "and rooms); several seeds pool their draws (--count mixtures each)")
    p.add_argument("--against", default=None, metavar="MODEL", help="also run MODEL the same way and report the paired "
                   "difference per condition (model - MODEL: mean, its standard error, mixtures better / worse by "
                   "more than 0.1 dB): whether a change is more than the draw's noise")
    p.add_argument("--cache", default=None, help="room bank cache folder (default: the recipe's data_cache)")
    p.add_argument("--valid-rooms", type=int, default=sc.SceneConfig.valid_rooms, help=argparse.SUPPRESS)  # tests
    p.add_argument("--json", type=Path, default=None, help="also write the means here")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)

    torch.set_num_threads(a.threads)
    noisy = False if a.noisy_model == "none" else a.noisy_model
    make = lambda model: Separator(load_checkpoint(model), device="cpu", threads=a.threads,  # noqa: E731
                                   passes=a.passes, wiener=a.wiener, noisy_model=noisy)
    sep = make(a.model)
    other = make(a.against) if a.against else None
    rate = sep.sample_rate
    cfg, valid_dirs = scene_config(a.recipe, a.cache, a.valid_rooms)
    t0 = time.time()
    sets: dict[str, list] = {name: [] for name in a.conditions}
    for seed in a.seed:
        for name, items in sc.fixed_sets(valid_dirs, rate, a.count, cfg, a.seconds, a.conditions, seed=seed).items():
            sets[name] += items
    seeds = ", ".join(map(str, a.seed))
    print(f"{a.count} mixtures of {a.seconds:g} s per condition and seed, seed {seeds} (held-out speakers: "
          f"{', '.join(Path(s).name for s in valid_dirs)}; built in {time.time() - t0:.0f} s); model "
          f"{a.model or 'default'}; {sep.passes} pass(es), Wiener post-filter {'on' if sep.wiener else 'off'}; "
          f"noisy-room model {sep.noisy_loaded.path if sep.noisy_loaded else 'none'} (mossep.gate: energy range below "
          f"{sep.noisy_below_db:g} dB or LP residual kurtosis below {REVERB_KURTOSIS_BELOW:g}); "
          f"{a.threads} thread(s)")
    print("command: python benchmarks/bench_realistic.py " + " ".join(shlex.quote(x) for x in (argv or sys.argv[1:])))
    print()
    if other is None:
        print("| condition | SI-SNRi (dB) | median | output SI-SNR |")
        print("| --- | ---: | ---: | ---: |")
    else:
        print(f"| condition | SI-SNRi (dB) | {a.against} | difference: mean +- standard error | better / worse |")
        print("| --- | ---: | ---: | ---: | ---: |")
    means, diffs, t0 = {}, {}, time.time()
    for name in a.conditions:
        s = score(sep, sets[name], rate)
        means[name] = round(float(s[:, 0].mean()), 3)
        if other is None:
            print(f"| {name} | {s[:, 0].mean():.2f} | {np.median(s[:, 0]):.2f} | {s[:, 1].mean():.2f} |", flush=True)
            continue
        d = paired_difference(s[:, 0], score(other, sets[name], rate)[:, 0])
        diffs[name] = d
        print(f"| {name} | {s[:, 0].mean():.2f} | {s[:, 0].mean() - d['mean']:.2f} | {d['mean']:+.2f} +- "
              f"{d['standard_error']:.2f} | {d['better']} / {d['worse']} |", flush=True)
    print(f"\n{time.time() - t0:.0f} s")
    if a.json:
        a.json.write_text(json.dumps({"model": a.model or "default", "count": a.count, "seeds": a.seed,
                                      "si_snri": means, **({"against": a.against, "difference": diffs} if other else {})},
                                     indent=1))
    return {name: {"si_snri": means[name], **diffs[name]} for name in means} if other else means


def paired_difference(x: np.ndarray, y: np.ndarray, tie_db: float = 0.1) -> dict:
    """x - y per mixture: mean, standard error of the mean, and how many are better / worse by more than tie_db."""
    d = np.asarray(x, np.float64) - np.asarray(y, np.float64)
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
    return {"mean": round(float(d.mean()), 3), "standard_error": round(se, 3),
            "better": int((d > tie_db).sum()), "worse": int((d < -tie_db).sum())}


if __name__ == "__main__":
    main()
