"""A talker alone (mossep.solo): the residue of a lone voice in the other output(s), and what the step does to
two talkers, measured through the real Separator path with the step on and off (Separator(solo=...)).

Inputs, all from the training recipe's validation speakers (mossep.dynamic_mix's fixed set of the held-out
LibriSpeech test-other and VCTK speakers, seed 20231; never the devset):

- two talkers: the validation mixtures (--seconds long); scored by SI-SNRi (on and off must agree);
- one talker: each mixture's first source alone, as is and with light real noise (the ambient recordings of
  ../shared/noise at --snr dB below the talker, a different one per item); scored by how far the quieter output
  lies below the louder one (dB; the issue asks for at least 30) and the louder one's SI-SNR against the talker;
- turn-taking: 8 s mixtures of two validation speakers where talker A speaks in [0, 5) s and B in [3, 8) s (2 s
  of overlap), and "pause": A in [0, 3.5) s, B in [4.5, 8) s (a second of silence, no overlap); scored by
  SI-SNRi and by the residue: the energy, where only one talker speaks, in the output that is not that
  talker's, relative to the talker's own output there (dB);
- a short turn: the same 8 s mixtures where A speaks in [0, 3.5) s and again from 0.2 s after B's word, and B
  says one word in A's pause: its loudest 0.6 s (odd items 0.9 s) from 3.7 s on; scored the same way (a second
  talker's "yes" must stay on its own output).

    python benchmarks/bench_solo.py --count 256 --threads 2
    python benchmarks/bench_solo.py --count 64 --turns 8 --seed 779   # fresh mixtures (not those tuned on)
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from mossep import Separator
from mossep import dynamic_mix as dm
from mossep.checkpoints import load_checkpoint
from mossep.datasets import read_audio, resample
from mossep.metrics import si_snr, si_snr_improvement

SHARED = Path(__file__).resolve().parents[2] / "shared"
NOISES = ("rain", "city", "coffee-shop", "waves", "wind", "fireplace")


FLOOR_DB = -100.0  # silence: levels and residues are reported down to this (an exact zero would be -inf)


def db(x: float) -> float:
    return float(max(10 * np.log10(max(x, 1e-30)), FLOOR_DB))


def noise_like(x: np.ndarray, index: int, snr_db: float, rate: int) -> np.ndarray:
    """A crop of a real ambient recording, scaled to snr_db below x."""
    name = NOISES[index % len(NOISES)]
    n, r = read_audio(SHARED / "noise" / "ambient" / f"{name}.flac")
    n = resample(n, r, rate).reshape(-1)
    start = int(np.random.default_rng(index).integers(0, max(len(n) - len(x), 1)))
    n = np.resize(n[start:start + len(x)], len(x))
    return n * np.sqrt(np.mean(x ** 2) / (np.mean(n ** 2) + 1e-20)) * 10 ** (-snr_db / 20)


def turns(mix_src: tuple[np.ndarray, np.ndarray], rate: int, a_end: float, b_start: float) -> tuple:
    """(mixture, sources) with talker A cut off after a_end seconds and B starting at b_start (10 ms fades)."""
    _, src = mix_src
    t = np.arange(src.shape[1]) / rate
    ga, gb = np.clip((a_end - t) / 0.01, 0, 1), np.clip((t - b_start) / 0.01, 0, 1)
    s = np.stack([src[0] * ga, src[1] * gb]).astype(np.float32)
    return s.sum(0), s


def short_turn(mix_src: tuple[np.ndarray, np.ndarray], rate: int, index: int, start: float = 3.7) -> tuple:
    """(mixture, sources): talker A with a pause in which talker B says one word (its loudest 0.6 s, 0.9 s for odd
    items, from `start` s); A stops 0.2 s before the word and resumes 0.2 s after it (10 ms fades)."""
    _, src = mix_src
    t = np.arange(src.shape[1]) / rate
    n = int((0.6, 0.9)[index % 2] * rate)
    energy = np.convolve(src[1].astype(np.float64) ** 2, np.ones(n), "valid")
    k, s0 = int(np.argmax(energy)), int(start * rate)
    word = np.zeros_like(src[1])
    word[s0:s0 + n] = src[1][k:k + n] * np.clip(np.minimum(np.arange(n), n - 1 - np.arange(n)) / (0.01 * rate), 0, 1)
    ga = np.clip((start - 0.2 - t) / 0.01, 0, 1) + np.clip((t - start - n / rate - 0.2) / 0.01, 0, 1)
    s = np.stack([src[0] * ga, word]).astype(np.float32)
    return s.sum(0), s


def other_output_db(est: np.ndarray) -> float:
    """How far the quietest output lies below the loudest (dB, <= 0)."""
    e = np.sum(np.square(est, dtype=np.float64), axis=1)
    return max(db(e.min() / max(e.max(), 1e-30)), FLOOR_DB)


def one_output_for_both(est: np.ndarray, src: np.ndarray) -> bool:
    """Whether the parts where each talker speaks alone are both loudest in the same output (two voices taken
    for one)."""
    loudest = []
    for k in range(2):
        alone = (src[k] != 0) & (src[1 - k] == 0)
        loudest.append(int(np.argmax(np.sum(est[:, alone].astype(np.float64) ** 2, axis=1))))
    return loudest[0] == loudest[1]


def turn_residue_db(est: np.ndarray, src: np.ndarray) -> float:
    """Where only one talker speaks: energy in the other output(s) relative to the talker's output (dB)."""
    est = est.astype(np.float64)
    perm = [0, 1] if est[0] @ src[0] + est[1] @ src[1] >= est[1] @ src[0] + est[0] @ src[1] else [1, 0]
    est = est[perm]
    wrong = right = 0.0
    for k in range(2):
        alone = (src[k] != 0) & (src[1 - k] == 0)
        right += float(np.sum(est[k][alone] ** 2))
        wrong += float(np.sum(est[1 - k][alone] ** 2))
    return db(wrong / max(right, 1e-30))


def stats(v) -> str:
    v = np.asarray(v, dtype=np.float64)
    return f"{v.mean():.2f} / {np.median(v):.2f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None)
    p.add_argument("--sets", nargs="+", default=[str(SHARED / "corpus" / "librispeech-test-other"),
                                                 str(SHARED / "corpus" / "vctk")])
    p.add_argument("--count", type=int, default=256, help="two-talker mixtures (and single talkers)")
    p.add_argument("--turns", type=int, default=None, help="turn-taking mixtures (default count / 4)")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--snr", type=float, default=20.0, help="SNR of the light noise added to single talkers")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=20231, help="seed of the mixtures (default: the training recipe's "
                   "fixed validation set; another seed draws fresh mixtures of the same speakers)")
    a = p.parse_args()

    loaded = load_checkpoint(a.model)
    seps = {on: Separator(loaded, device="cpu", threads=a.threads, solo=on) for on in (False, True)}
    rate = seps[True].sample_rate
    speakers = dm.load_speaker_folders([Path(r) for r in a.sets], rate, 2)
    mixtures = dm.fixed_validation_set(speakers, dm.MixSpec(int(a.seconds * rate), 2), a.count, rate, a.seed)
    long = dm.fixed_validation_set(speakers, dm.MixSpec(int(8.0 * rate), 2), a.turns or max(a.count // 4, 1), rate,
                                   a.seed)
    alone = [src[0] for _, src in mixtures]
    noisy = [(s + noise_like(s, i, a.snr, rate)).astype(np.float32) for i, s in enumerate(alone)]
    print(f"model {a.model or 'default'}; {len(mixtures)} two-talker mixtures of {a.seconds:g} s and their first "
          f"talkers alone (clean, and with real noise at {a.snr:g} dB SNR); {len(long)} x 3 turn-taking mixtures of "
          f"8 s; validation speakers, seed {a.seed}")
    rows = {}
    for on, sep in seps.items():
        t0 = time.time()
        r = rows[on] = {}
        r["two"] = [si_snr_improvement(sep.separate(m, rate), s, m)["si_snri"] for m, s in mixtures]
        for name, inputs in (("alone", alone), ("noisy", noisy)):
            outs = [sep.separate(x, rate) for x in inputs]
            r[name] = [other_output_db(o) for o in outs]
            r[name + "_snr"] = [float(si_snr(torch.from_numpy(o.astype(np.float64)), torch.from_numpy(
                s[None].astype(np.float64))).max()) for o, s in zip(outs, alone)]
        for name, make in (("overlap", lambda ms, i: turns(ms, rate, 5.0, 3.0)),
                           ("pause", lambda ms, i: turns(ms, rate, 3.5, 4.5)),
                           ("short", lambda ms, i: short_turn(ms, rate, i))):
            items = [make(ms, i) for i, ms in enumerate(long)]
            outs = [sep.separate(m, rate) for m, _ in items]
            r[name] = [si_snr_improvement(o, s, m)["si_snri"] for o, (m, s) in zip(outs, items)]
            r[name + "_res"] = [turn_residue_db(o, s) for o, (_, s) in zip(outs, items)]
            r[name + "_merged"] = [one_output_for_both(o, s) for o, (_, s) in zip(outs, items)]
        r["seconds"] = time.time() - t0
    print("| input | measure | step off: mean / median | step on: mean / median | on: worst | on: share at 30 dB |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for key, what, label in (("alone", "other output below the talker's (dB)", "one talker"),
                             ("noisy", "other output below the talker's (dB)", f"one talker + noise {a.snr:g} dB"),
                             ("overlap_res", "residue where one talks (dB)", "turns, 2 s overlap"),
                             ("pause_res", "residue where one talks (dB)", "turns, 1 s pause"),
                             ("short_res", "residue where one talks (dB)", "a 0.6-0.9 s word in a pause")):
        off, on = np.array(rows[False][key]), np.array(rows[True][key])
        print(f"| {label} | {what} | {stats(off)} | {stats(on)} | {on.max():.1f} | {np.mean(on <= -30):.0%} |")
    for key, label in (("two", "two talkers"), ("overlap", "turns, 2 s overlap"), ("pause", "turns, 1 s pause"),
                       ("short", "a 0.6-0.9 s word in a pause"),
                       ("alone_snr", "one talker (SI-SNR of its output)"),
                       ("noisy_snr", "one talker + noise (SI-SNR against the clean talker)")):
        off, on = np.array(rows[False][key]), np.array(rows[True][key])
        d = on - off
        print(f"| {label} | SI-SNR{'i' if 'snr' not in key else ''} (dB) | {stats(off)} | {stats(on)} | "
              f"{on.min():.2f} | on - off: {d.mean():+.3f} (worst {d.min():+.2f}) |")
    for key, label in (("overlap", "turns, 2 s overlap"), ("pause", "turns, 1 s pause"),
                       ("short", "a 0.6-0.9 s word in a pause")):
        off, on = (int(np.sum(rows[k][key + "_merged"])) for k in (False, True))
        print(f"{label}: both talkers' lone parts loudest in one output in {off} (step off) / {on} (step on) "
              f"of {len(long)} mixtures")
    print(f"seconds: off {rows[False]['seconds']:.0f}, on {rows[True]['seconds']:.0f}")


if __name__ == "__main__":
    main()
