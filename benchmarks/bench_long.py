"""Long-recording quality: does chunked separation keep each talker on one output for a whole minute?

The dev clips are 2.5-10.5 s long, so they barely exercise chunking. This benchmark builds minute-long
two-talker mixtures from held-out validation speakers (never training, never the devset): each talker's
utterances are concatenated with short pauses into one stream, and two streams are mixed at a random
+-2.5 dB. Every chunk/overlap setting separates each mixture; scores are over the WHOLE file with one
permutation, so a talker swap between chunks costs the score, and the fraction of 4 s windows whose best
permutation differs from the file's one ("swapped windows") is printed too.

    python benchmarks/bench_long.py --model weights/default.safetensors --chunks 0 4 6 8 16 --overlaps 0.5 1
    python benchmarks/bench_long.py --seconds 30 --spread 2 --chunks 4 6 8 --overlaps 1     # 26 pairs, 30 s each
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from mossep import Separator
from mossep.checkpoints import load_checkpoint
from mossep.dynamic_mix import load_speaker_folders
from mossep.metrics import si_snr_improvement

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def talker_stream(utts: list[np.ndarray], seconds: float, rate: int, rng: np.random.Generator) -> np.ndarray:
    """A talker's utterances one after another with 0.2-0.8 s pauses, cut to `seconds`, at -25 dBFS RMS."""
    parts, n, need = [], 0, int(seconds * rate)
    i = 0
    while n < need:
        x = utts[i % len(utts)]
        gap = np.zeros(int(rng.uniform(0.2, 0.8) * rate), np.float32)
        parts += [x, gap]
        n += len(x) + len(gap)
        i += 1
    s = np.concatenate(parts)[:need]
    return s / (np.sqrt(np.mean(s ** 2)) + 1e-8) * 10 ** (-25 / 20)


def speaker_pairs(n: int, spread: int) -> list[tuple[int, int]]:
    """Pairs (i, i + d mod n) for d = 1..spread, each unordered pair once; spread 0: disjoint pairs (0,1), (2,3)..."""
    if spread <= 0:
        return [(i, i + 1) for i in range(0, n - 1, 2)]
    pairs = {tuple(sorted((i, (i + d) % n))) for d in range(1, spread + 1) for i in range(n)}
    return sorted(p for p in pairs if p[0] != p[1])


def long_mixtures(roots: list[Path], seconds: float, rate: int, spread: int = 0,
                  seed: int = 7) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Pairs of distinct speakers within each set (see speaker_pairs), one long mixture per pair."""
    rng = np.random.default_rng(seed)
    out = []
    for root in roots:
        speakers = load_speaker_folders([root], rate)
        names = list(speakers)
        for i, j in speaker_pairs(len(names), spread):
            a, b = names[i], names[j]
            src = np.stack([talker_stream(speakers[a], seconds, rate, rng), talker_stream(speakers[b], seconds, rate, rng)])
            src[1] *= 10 ** (rng.uniform(-2.5, 2.5) / 20)
            mix = src.sum(0)
            peak = np.abs(mix).max()
            if peak > 0.99:
                src, mix = src * 0.99 / peak, mix * 0.99 / peak
            out.append((f"{a}+{b.split('/')[-1]}", mix.astype(np.float32), src.astype(np.float32)))
    return out


def swapped_windows(est: np.ndarray, ref: np.ndarray, perm: list[int], rate: int, window: float = 4.0) -> float:
    """Fraction of active windows whose own best permutation differs from the whole file's."""
    n, bad, total = int(window * rate), 0, 0
    for s in range(0, est.shape[-1] - n + 1, n):
        r = ref[:, s:s + n]
        if (np.sqrt((r ** 2).mean(-1)) < 10 ** (-45 / 20)).any():
            continue  # one talker silent: no permutation to speak of
        w = si_snr_improvement(est[:, s:s + n], r, r.sum(0))
        total += 1
        bad += list(w["perm"]) != list(perm)
    return bad / max(total, 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None)
    p.add_argument("--sets", nargs="+", default=[str(CORPUS / "librispeech-test-other"), str(CORPUS / "vctk")])
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--spread", type=int, default=0, help="0: disjoint speaker pairs; d: every speaker with its next d")
    p.add_argument("--chunks", type=float, nargs="+", default=[0, 4, 6, 8, 16])
    p.add_argument("--overlaps", type=float, nargs="+", default=[0.5, 1.0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--fast", action="store_true")
    p.add_argument("--passes", type=int, default=None, help="default: the checkpoint's recommendation")
    p.add_argument("--wiener", action=argparse.BooleanOptionalAction, default=None)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    loaded = load_checkpoint(a.model)  # once, shared by every setting (fast mode converts a copy)
    rate = loaded.config.sample_rate
    items = long_mixtures([Path(s) for s in a.sets], a.seconds, rate, a.spread)
    print(f"model: {a.model or 'default'}{' (fast)' if a.fast else ''}; passes {a.passes or 'default'}, wiener "
          f"{'default' if a.wiener is None else a.wiener}; {len(items)} mixtures of {a.seconds:g} s "
          f"from {', '.join(Path(s).name for s in a.sets)}; threads {a.threads}")
    print("| chunk (s) | overlap (s) | mean SI-SNRi (dB) | worst file (dB) | swapped 4 s windows | wall s per audio s |")
    print("|---|---|---|---|---|---|", flush=True)
    for chunk in a.chunks:
        for overlap in (a.overlaps if chunk else [0.0]):
            if chunk and overlap >= chunk / 2:
                continue
            sep = Separator(loaded, device="cpu", chunk_seconds=chunk, overlap_seconds=overlap,
                            threads=a.threads, fast=a.fast, passes=a.passes, wiener=a.wiener)
            scores, swaps, t0 = [], [], time.perf_counter()
            for _, mix, ref in items:
                est = sep.separate(mix, rate)
                r = si_snr_improvement(est, ref, mix)
                scores.append(r["si_snri"])
                swaps.append(swapped_windows(est, ref, r["perm"], rate))
            wall = (time.perf_counter() - t0) / (len(items) * a.seconds)
            print(f"| {chunk:g} | {overlap:g} | {np.mean(scores):.2f} | {np.min(scores):.2f} | "
                  f"{100 * np.mean(swaps):.1f} % | {wall:.3f} |", flush=True)


if __name__ == "__main__":
    main()
