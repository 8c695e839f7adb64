"""Long-recording quality: does chunked separation keep each talker on one output for a whole minute?

The dev clips are 2.5-10.5 s long, so they barely exercise chunking. This benchmark builds minute-long
two-talker mixtures from held-out validation speakers (never training, never the devset): each talker's
utterances are concatenated with short pauses into one stream, and two streams are mixed at a random
+-2.5 dB. Every chunk/overlap setting separates each mixture; scores are over the WHOLE file with one
permutation, so a talker swap between chunks costs the score, and the fraction of 4 s windows whose best
permutation differs from the file's one ("swapped windows") is printed too.

    python benchmarks/bench_long.py --model weights/default.safetensors --chunks 0 4 6 8 16 --overlaps 0.5 1
    python benchmarks/bench_long.py --seconds 30 --spread 2 --chunks 4 6 8 --overlaps 1     # 26 pairs, 30 s each

Speaker tracking (mossep.tracking): `--track off on` stitches the SAME per-chunk estimates both ways (the model
runs once per mixture and setting; `--cache DIR` keeps the estimates on disk for reruns; the wall-time column
then times only stitching and scoring). "wrong chunks": chunks (both talkers present) whose order disagrees
with their oracle order (the best permutation of the chunk's estimates against the true sources, read through
the file's permutation): a swap carried across boundaries shows up there. "overrides": chunks where the
tracker changed the overlap match's order; "healed": that made a wrong chunk right, "broke": the reverse.
The model's own swaps are rare, so `--inject` also stitches every file with one swap put into its real
estimates (inject_swap: inside one chunk, from a random point to the chunk's end), which tests healing on
real voices and real separation errors.

    python benchmarks/bench_long.py --seconds 180 --spread 2 --chunks 16 --overlaps 2 --track off on --inject --cache /tmp/bl
"""
from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

import numpy as np
import torch

from mossep import Separator
from mossep.checkpoints import default_model_path, load_checkpoint
from mossep.chunking import OverlapAdd, fit_to_mixture, plan_chunks
from mossep.dynamic_mix import load_speaker_folders
from mossep.metrics import best_permutation, si_snr_improvement

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


def chunk_estimates(sep: Separator, mix: np.ndarray, cache: Path | None, key: str) -> tuple[list, np.ndarray]:
    """The plan and the per-chunk estimates [K, C, L] (float32) exactly as Separator.separate_stream makes them
    for a mixture already at the model rate (each chunk cleaned by Separator._clean, then the model); cached
    under `cache`."""
    plan = plan_chunks(len(mix), sep.chunk, sep.overlap)
    path = None if cache is None else cache / (hashlib.sha1(key.encode()).hexdigest()[:20] + ".npy")
    if path is not None and path.exists():
        return plan, np.load(path)
    est = []
    for s, e in plan:
        est.append(sep._forward(sep._clean(mix[s:e])[None])[0].astype(np.float32))
    est = np.stack(est)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, est)
    return plan, est


def stitch_like_separator(sep: Separator, plan: list, est: np.ndarray, mix: np.ndarray,
                          track: bool) -> tuple[np.ndarray, OverlapAdd]:
    """Stitch cached chunk estimates the way Separator.separate_stream does (the cleaned chunks as mixture)."""
    n = len(mix)
    ola = OverlapAdd(est.shape[1], sep.overlap, track_speakers=track, sample_rate=sep.sample_rate)
    for (s, e), x in zip(plan, est):
        ola.add(s, x.astype(np.float64), sep._clean(mix[s:e]).astype(np.float64), first=s == 0, last=e == n)
    return ola.pop(n), ola


def inject_swap(sep: Separator, plan: list, est: np.ndarray, mix: np.ndarray,
                rng: np.random.Generator) -> np.ndarray:
    """A copy of the chunk estimates [K, C, L] where, in one random chunk k (not the first or the last two),
    the outputs swap from a random point (30-90 % into the chunk) to its end: what the model does in its rare
    swaps, placed where the real estimates of chunk k + 1 must undo it. Chunk k is level-fitted to its mixture
    first (raw network outputs come at any level and sign, and a swap between them would be a level jump)."""
    out = est.copy()
    if len(est) < 4:
        return out
    k = int(rng.integers(1, len(est) - 2))
    cut = int(rng.uniform(0.3, 0.9) * est.shape[-1])
    s, e = plan[k]
    x = est[k].astype(np.float64) * fit_to_mixture(est[k], sep._clean(mix[s:e]))[:, None]
    out[k] = x
    out[k, :, cut:] = x[::-1, cut:]
    return out


def chunk_oracles(plan: list, est: np.ndarray, ref: np.ndarray) -> list[tuple[int, ...] | None]:
    """Per chunk, the order (est[o[i]] is talker i) that best matches the true sources over the chunk; None
    where a talker is silent over the chunk (no order to speak of)."""
    out = []
    for (s, e), x in zip(plan, est):
        r = ref[:, s:e]
        if (np.sqrt((r.astype(np.float64) ** 2).mean(-1)) < 10 ** (-45 / 20)).any():
            out.append(None)
            continue
        _, perm = best_permutation(torch.from_numpy(x.astype(np.float32)), torch.from_numpy(r))
        out.append(tuple(int(v) for v in perm))
    return out


def decision_counts(ola: OverlapAdd, oracles: list, file_perm: list[int]) -> dict[str, int]:
    """Chunks whose order disagrees with their oracle ("wrong"), and the tracker's overrides of the overlap
    match: how many, how many made a wrong chunk right and how many made a right chunk wrong. Output k carries
    est[p[k]]; the file's permutation says output file_perm[i] is talker i; so chunk order p is right when
    p[file_perm[i]] == oracle[i] for every talker i."""
    def right(p, o):
        return all(p[file_perm[i]] == o[i] for i in range(len(o)))
    out = {"chunks": 0, "wrong": 0, "overrides": 0, "healed": 0, "broke": 0}
    matched = ola.matched or ola.perms
    for p, m, o in zip(ola.perms, matched, oracles):
        if o is None:
            continue
        out["chunks"] += 1
        out["wrong"] += not right(p, o)
        if p != m:
            out["overrides"] += 1
            out["healed"] += right(p, o) and not right(m, o)
            out["broke"] += right(m, o) and not right(p, o)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None)
    p.add_argument("--sets", nargs="+", default=[str(CORPUS / "librispeech-test-other"), str(CORPUS / "vctk")])
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--spread", type=int, default=0, help="0: disjoint speaker pairs; d: every speaker with its next d")
    p.add_argument("--seed", type=int, default=7, help="mixture seed (gaps, gains)")
    p.add_argument("--chunks", type=float, nargs="+", default=[0, 4, 6, 8, 16])
    p.add_argument("--overlaps", type=float, nargs="+", default=[0.5, 1.0])
    p.add_argument("--track", nargs="+", choices=["off", "on"], default=["off"],
                   help="stitch with speaker tracking off and/or on (same chunk estimates)")
    p.add_argument("--inject", action="store_true", help="also stitch every file with one injected swap "
                   "(inject_swap) to measure healing on real voices")
    p.add_argument("--cache", type=Path, default=None, help="folder for the per-chunk estimates (reruns are free)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--fast", action="store_true")
    p.add_argument("--passes", type=int, default=None, help="default: the checkpoint's recommendation")
    p.add_argument("--wiener", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--per-file", action="store_true", help="also print every file's scores")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    loaded = load_checkpoint(a.model)  # once, shared by every setting (fast mode converts a copy)
    rate = loaded.config.sample_rate
    model_id = hashlib.sha1(Path(a.model or default_model_path()).read_bytes()).hexdigest()  # cache key
    items = long_mixtures([Path(s) for s in a.sets], a.seconds, rate, a.spread, a.seed)
    print(f"model: {a.model or 'default'}{' (fast)' if a.fast else ''}; passes {a.passes or 'default'}, wiener "
          f"{'default' if a.wiener is None else a.wiener}; {len(items)} mixtures of {a.seconds:g} s "
          f"from {', '.join(Path(s).name for s in a.sets)} (seed {a.seed}); threads {a.threads}")
    print("| chunk (s) | overlap (s) | tracking | mean SI-SNRi (dB) | worst file (dB) | swapped 4 s windows | "
          "wrong chunks | overrides (healed / broke) | wall s per audio s |")
    print("|---|---|---|---|---|---|---|---|---|", flush=True)
    for chunk in a.chunks:
        for overlap in (a.overlaps if chunk else [0.0]):
            if chunk and overlap >= chunk / 2:
                continue
            sep = Separator(loaded, device="cpu", chunk_seconds=chunk, overlap_seconds=overlap,
                            threads=a.threads, fast=a.fast, passes=a.passes, wiener=a.wiener)
            variants = [(t, inj) for inj in ([False, True] if a.inject else [False]) for t in a.track]
            rows = {v: {"scores": [], "swaps": [], "counts": []} for v in variants}
            t0 = time.perf_counter()
            for f, (name, mix, ref) in enumerate(items):
                key = f"{model_id}|{a.fast}|{sep.passes}|{sep.wiener}|{sep.remove_hum}|{chunk}|{overlap}|{name}|{a.seconds}|{a.spread}|{a.seed}"
                plan, clean = chunk_estimates(sep, mix, a.cache, key)
                injected = inject_swap(sep, plan, clean, mix, np.random.default_rng(1000 + f))
                for t, inj in variants:
                    est = injected if inj else clean
                    oracles = chunk_oracles(plan, est, ref)
                    out, ola = stitch_like_separator(sep, plan, est, mix, t == "on")
                    r = si_snr_improvement(out, ref, mix)
                    row = rows[(t, inj)]
                    row["scores"].append(r["si_snri"])
                    row["swaps"].append(swapped_windows(out, ref, r["perm"], rate))
                    row["counts"].append(decision_counts(ola, oracles, r["perm"]))
                    if a.per_file:
                        c = row["counts"][-1]
                        print(f"  {name} track {t}{' injected' if inj else ''}: {r['si_snri']:.2f} dB, swapped {100 * row['swaps'][-1]:.1f} %, "
                              f"wrong {c['wrong']}/{c['chunks']}, overrides {c['overrides']} "
                              f"({c['healed']}/{c['broke']})", flush=True)
            wall = (time.perf_counter() - t0) / (len(items) * a.seconds)
            for t, inj in variants:
                row = rows[(t, inj)]
                tot = {k: sum(c[k] for c in row["counts"]) for k in row["counts"][0]}
                over = f"{tot['overrides']} ({tot['healed']} / {tot['broke']})" if t == "on" else "-"
                print(f"| {chunk:g} | {overlap:g} | {t}{' + injected swap' if inj else ''} | {np.mean(row['scores']):.2f} | {np.min(row['scores']):.2f} | "
                      f"{100 * np.mean(row['swaps']):.1f} % | {tot['wrong']} / {tot['chunks']} | {over} | "
                      f"{wall:.3f} |", flush=True)


if __name__ == "__main__":
    main()
