"""Robustness of separation to what real recordings add: synthetic noise, mains hum, a telephone channel, a DC
offset and odd levels. Real noise and rooms (against the dry sources): benchmarks/bench_realistic.py.

Each disturbance is applied to the training recipe's validation mixtures (mossep.dynamic_mix's fixed set of the
held-out LibriSpeech test-other and VCTK speakers, seed 20231; never the devset), the result is separated
through the real Separator path (the checkpoint's recommended settings unless --passes/--wiener say
otherwise) and scored by SI-SNRi against the references that condition calls for:

- noise (white, pink) and hum: the clean sources (the noise should be left out of every output);
- telephone band: the sources band-passed alike (the lost band cannot be restored);
- DC offset, level: the clean sources (SI-SNR ignores scale; the offset must not reach the outputs).

SI-SNRi is measured against the disturbed mixture, so a lower input SI-SNR (noise) also moves the baseline:
the table shows the input's and the outputs' SI-SNR as well. Every disturbance is a pure function of
(mixture, sources, sample rate, seed); the seed depends only on the mixture's index, so e.g. the three white
noise SNRs share one noise draw.

    python benchmarks/bench_robustness.py --model weights/default.safetensors --count 48 --threads 2
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from scipy.signal import butter, sosfilt

from mossep import Separator
from mossep import augment as aug
from mossep import dynamic_mix as dm
from mossep.checkpoints import load_checkpoint
from mossep.metrics import si_snr_improvement

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"

Pair = tuple[np.ndarray, np.ndarray]  # (mixture [T], references [C, T]), float32
Disturbance = Callable[[np.ndarray, np.ndarray, int, int], Pair]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))


def _f32(mix, ref) -> Pair:
    return np.asarray(mix, dtype=np.float32), np.asarray(ref, dtype=np.float32)


def clean(mix: np.ndarray, src: np.ndarray, rate: int, seed: int) -> Pair:
    return _f32(mix, src)


def noise(mix: np.ndarray, src: np.ndarray, rate: int, seed: int, color: str, snr_db: float) -> Pair:
    """Coloured noise at snr_db against the mixture; references: the clean sources."""
    m = _t(mix)
    n = aug.colored_noise(m.shape, color, _gen(seed), m)
    return _f32(aug.add_noise(m, n, snr_db).numpy(), src)


def hum(mix: np.ndarray, src: np.ndarray, rate: int, seed: int, mains: float = 50.0, level_dbfs: float = -30.0) -> Pair:
    """Mains hum (the fundamental and its harmonics, random phases) at level_dbfs RMS; references: clean."""
    m = _t(mix)
    h = aug.hum(m.shape, rate, _gen(seed), m, mains=(mains,), jitter=0.0) * 10 ** (level_dbfs / 20)
    return _f32((m + h).numpy(), src)


def telephone(mix: np.ndarray, src: np.ndarray, rate: int, seed: int, lo: float = 300.0, hi: float = 3400.0,
              order: int = 4) -> Pair:
    """A causal Butterworth band-pass lo-hi Hz on the mixture and on each reference alike."""
    sos = butter(order, [lo, min(hi, 0.45 * rate)], btype="bandpass", fs=rate, output="sos")
    return _f32(sosfilt(sos, mix.astype(np.float64)), sosfilt(sos, src.astype(np.float64), axis=-1))


def dc_offset(mix: np.ndarray, src: np.ndarray, rate: int, seed: int, offset: float) -> Pair:
    return _f32(mix.astype(np.float64) + offset, src)


def level(mix: np.ndarray, src: np.ndarray, rate: int, seed: int, gain_db: float, clip: bool = False) -> Pair:
    """The mixture scaled by gain_db (then hard-clipped at +-1 if clip); references: the clean sources."""
    m = mix.astype(np.float64) * 10 ** (gain_db / 20)
    return _f32(np.clip(m, -1.0, 1.0) if clip else m, src)


CONDITIONS: dict[str, tuple[str, Disturbance]] = {
    "clean": ("clean", clean),
    **{f"white noise {s} dB SNR": ("clean", partial(noise, color="white", snr_db=s)) for s in (20, 10, 5)},
    **{f"pink noise {s} dB SNR": ("clean", partial(noise, color="pink", snr_db=s)) for s in (20, 10, 5)},
    "50 Hz hum + harmonics, -30 dBFS": ("clean", hum),
    "60 Hz hum + harmonics, -30 dBFS": ("clean", partial(hum, mains=60.0)),
    "telephone band 300-3400 Hz": ("band-passed alike", telephone),
    "DC offset -0.2": ("clean", partial(dc_offset, offset=-0.2)),
    "level -40 dB": ("clean", partial(level, gain_db=-40.0)),
    "level +12 dB, clipped at +-1": ("clean", partial(level, gain_db=12.0, clip=True)),
}


def score(sep: Separator, items: list[Pair], rate: int, disturb: Disturbance, seed: int) -> np.ndarray:
    """[N, 3]: SI-SNRi, output SI-SNR and input SI-SNR (dB) of each disturbed mixture."""
    rows = []
    for i, (mix, src) in enumerate(items):
        m, ref = disturb(mix, src, rate, seed * 100_003 + i)
        r = si_snr_improvement(sep.separate(m, rate), ref, m)
        rows.append((r["si_snri"], r["si_snr"], r["si_snr"] - r["si_snri"]))
    return np.array(rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="checkpoint (default: the default model)")
    p.add_argument("--sets", nargs="+", default=[str(CORPUS / "librispeech-test-other"), str(CORPUS / "vctk")])
    p.add_argument("--count", type=int, default=48)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--conditions", nargs="+", default=None, metavar="SUBSTRING",
                   help="only the conditions whose name contains one of these (clean is always run)")
    p.add_argument("--passes", type=int, default=None, help="default: the checkpoint's recommendation")
    p.add_argument("--wiener", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep-hum", action="store_true", help="Separator(remove_hum=False): no mains hum removal")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)

    torch.set_num_threads(a.threads)
    sep = Separator(load_checkpoint(a.model), device="cpu", threads=a.threads, passes=a.passes, wiener=a.wiener,
                    remove_hum=not a.keep_hum)
    rate = sep.sample_rate
    items = dm.validation_mixtures(a.sets, rate, a.count, a.seconds)
    names = [n for n in CONDITIONS if n == "clean" or a.conditions is None or any(c in n for c in a.conditions)]
    print(f"{len(items)} validation mixtures of {a.seconds:g} s (held-out speakers: "
          f"{', '.join(Path(s).name for s in a.sets)}); model {a.model or 'default'}; {sep.passes} pass(es), "
          f"Wiener post-filter {'on' if sep.wiener else 'off'}; hum removal {'on' if sep.remove_hum else 'off'}; "
          f"{a.threads} thread(s)")
    print("command: python benchmarks/bench_robustness.py " + " ".join(shlex.quote(x) for x in (argv or sys.argv[1:])))
    print()
    print("| condition | references | SI-SNRi (dB) | median | vs clean | input SI-SNR | output SI-SNR |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    base, t0 = None, time.time()
    for name in names:
        refs, fn = CONDITIONS[name]
        s = score(sep, items, rate, fn, a.seed)
        mean = float(s[:, 0].mean())
        base = mean if base is None else base
        drop = "" if name == "clean" else f"{mean - base:+.2f}"
        print(f"| {name} | {refs} | {mean:.2f} | {np.median(s[:, 0]):.2f} | {drop} | {s[:, 2].mean():.2f} "
              f"| {s[:, 1].mean():.2f} |", flush=True)
    print(f"\n{time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
