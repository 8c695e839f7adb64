"""Model forward speed and memory on a CPU: seconds of compute per audio second, per size preset and mode.

    python benchmarks/bench_model.py --sizes tiny cpu-small cpu-base paper-l --modes exact fast \
        --seconds 4 --threads 1 --repeats 3

Each (size, mode, seconds) runs in a fresh subprocess so that its peak RSS is its own. Random weights
(speed does not depend on them). Columns:
  cpu s/s   process CPU time per audio second (all threads; = compute, robust to other jobs on the machine)
  wall s/s  wall-clock time per audio second (median); RTF = wall s/s (below 1: faster than real time)
  peak MiB  peak resident set size of the process after the forwards (model + activations)
Modes: exact (the model as built), fast (mossep.fast.make_fast), baseline (the model code of another
source tree: --baseline-src DIR holding a copy of the package named mossep_baseline).

Exact against fast in ONE process, alternating forwards (fair on a shared machine: both see the same load),
several repeats, medians and the ratio; and where fast mode's time goes (torch.profiler, one forward):
    python benchmarks/bench_model.py --interleave paper-l --seconds 4 --threads 2 --repeats 7
    python benchmarks/bench_model.py --profile paper-l fast --seconds 4 --threads 2

Fidelity of fast mode (SI-SNR of the fast output against the exact output, per source, on real mixtures):
    python benchmarks/bench_model.py --fidelity CHECKPOINT|random:SIZE ... --mixtures DIR/item*_mix.wav
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

SIZES = ("tiny", "cpu-small", "cpu-base", "paper-l")


def measure(size: str, mode: str, seconds: float, threads: int, repeats: int, baseline_src: str | None) -> dict:
    import torch

    torch.set_num_threads(threads)
    if mode == "baseline":
        sys.path.insert(0, baseline_src)
        from mossep_baseline.models import build_model, preset  # type: ignore[import-not-found]

        torch.manual_seed(0)
        model = build_model(preset(size)).eval()
    else:
        model = build(size, mode)
    sr = 8000
    x = torch.randn(1, int(seconds * sr), generator=torch.Generator().manual_seed(1)) * 0.1
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cpu, wall = [], []
    with torch.inference_mode():
        model(x[:, : min(x.shape[1], sr)])  # warm-up: one-time initialisation, on at most 1 s
        for _ in range(repeats):
            c0, w0 = time.process_time(), time.perf_counter()
            model(x)
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - w0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"size": size, "mode": mode, "seconds": seconds, "threads": threads,
            "cpu_s_per_s": statistics.median(cpu) / seconds, "wall_s_per_s": statistics.median(wall) / seconds,
            "peak_mib": peak, "rss_before_forward_mib": rss_before,
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6 if mode != "fast" else None}


def build(size: str, mode: str):
    import torch

    from mossep.models import build_model, preset

    torch.manual_seed(0)
    model = build_model(preset(size)).eval()  # SIZE or SIZE:ARCH (e.g. paper-l:mossformer2)
    if mode == "fast":
        from mossep.fast import make_fast

        model = make_fast(model)
    return model


def interleave(size: str, seconds: float, threads: int, repeats: int) -> None:
    """Exact and fast forwards alternating in one process; per-mode median wall and CPU s per audio second."""
    import torch

    torch.set_num_threads(threads)
    models = {mode: build(size, mode) for mode in ("exact", "fast")}
    x = torch.randn(1, int(seconds * 8000), generator=torch.Generator().manual_seed(1)) * 0.1
    wall: dict[str, list[float]] = {m: [] for m in models}
    cpu: dict[str, list[float]] = {m: [] for m in models}
    with torch.inference_mode():
        for model in models.values():
            model(x)  # warm-up at the measured length (allocator, oneDNN kernels)
        for _ in range(repeats):
            for mode, model in models.items():
                c0, w0 = time.process_time(), time.perf_counter()
                model(x)
                wall[mode].append((time.perf_counter() - w0) / seconds)
                cpu[mode].append((time.process_time() - c0) / seconds)
    print(f"{size}, {seconds:g} s input, {threads} threads, {repeats} interleaved repeats (s per audio second)")
    print(f"{'mode':6} {'wall median':>11} {'wall min':>9} {'cpu median':>10}  all wall")
    for mode in models:
        print(f"{mode:6} {statistics.median(wall[mode]):11.3f} {min(wall[mode]):9.3f} "
              f"{statistics.median(cpu[mode]):10.3f}  {' '.join(f'{w:.2f}' for w in wall[mode])}")
    ratio = [e / f for e, f in zip(wall["exact"], wall["fast"])]  # per round: both saw about the same load
    print(f"fast vs exact: {statistics.median(wall['exact']) / statistics.median(wall['fast']):.2f}x (medians), "
          f"per-round ratios median {statistics.median(ratio):.2f}x, "
          f"cpu {statistics.median(cpu['exact']) / statistics.median(cpu['fast']):.2f}x")


def profile(size: str, mode: str, seconds: float, threads: int, rows: int = 25) -> None:
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    torch.set_num_threads(threads)
    model = build(size, mode)
    x = torch.randn(1, int(seconds * 8000), generator=torch.Generator().manual_seed(1)) * 0.1
    with torch.inference_mode():
        model(x)
        with torch_profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            model(x)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))
    print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=rows))


def fidelity(models: list[str], mixtures: list[str], threads: int, max_seconds: float) -> None:
    import soundfile as sf
    import torch

    from mossep.checkpoints import load_checkpoint
    from mossep.fast import fast_mode_name, make_fast
    from mossep.metrics import si_snr
    from mossep.models import build_model, preset

    torch.set_num_threads(threads)
    print(f"{'model':40} {'fast':5} {'items':>5} {'min dB':>7} {'median dB':>9}")
    for name in models:
        if name.startswith("random:"):
            torch.manual_seed(0)
            model = build_model(preset(name.split(":", 1)[1])).eval()
        else:
            model = load_checkpoint(name).model
        fast = make_fast(model)
        scores = []
        with torch.inference_mode():
            for path in mixtures:
                audio, sr = sf.read(path, dtype="float32")
                x = torch.from_numpy(audio[: int(max_seconds * sr)])[None]
                exact, approx = model(x)[0], fast(x)[0]  # [C, T]
                scores += si_snr(approx, exact).tolist()
        print(f"{name:40} {fast_mode_name(model):5} {len(mixtures):5d} {min(scores):7.1f} {statistics.median(scores):9.1f}",
              flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=list(SIZES))
    ap.add_argument("--modes", nargs="+", default=["exact", "fast"], choices=["exact", "fast", "baseline"])
    ap.add_argument("--seconds", nargs="+", type=float, default=[4.0], help="input length(s) in seconds (the chunk length)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--baseline-src", help="folder holding the package copy `mossep_baseline` (for --modes baseline)")
    ap.add_argument("--fidelity", nargs="+", metavar="MODEL", help="checkpoints or random:SIZE to compare fast vs exact")
    ap.add_argument("--mixtures", nargs="+", default=[], help="mixture WAVs for --fidelity")
    ap.add_argument("--max-seconds", type=float, default=8.0, help="--fidelity: use at most this much of each mixture")
    ap.add_argument("--interleave", metavar="SIZE", help="exact vs fast alternating in one process")
    ap.add_argument("--profile", nargs=2, metavar=("SIZE", "MODE"), help="torch.profiler tables of one forward")
    ap.add_argument("--one", nargs=3, metavar=("SIZE", "MODE", "SECONDS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        size, mode, secs = args.one
        print(json.dumps(measure(size, mode, float(secs), args.threads, args.repeats, args.baseline_src)))
        return
    if args.interleave:
        interleave(args.interleave, args.seconds[0], args.threads, args.repeats)
        return
    if args.profile:
        profile(args.profile[0], args.profile[1], args.seconds[0], args.threads)
        return
    if args.fidelity:
        fidelity(args.fidelity, args.mixtures, args.threads, args.max_seconds)
        return
    if "baseline" in args.modes and not args.baseline_src:
        ap.error("--modes baseline needs --baseline-src")
    print(f"{'size':10} {'mode':8} {'secs':>5} {'thr':>3} {'cpu s/s':>8} {'wall s/s':>8} {'peak MiB':>9}")
    for size in args.sizes:
        for secs in args.seconds:
            for mode in args.modes:
                cmd = [sys.executable, __file__, "--one", size, mode, str(secs), "--threads", str(args.threads),
                       "--repeats", str(args.repeats)]
                if args.baseline_src:
                    cmd += ["--baseline-src", args.baseline_src]
                out = subprocess.run(cmd, capture_output=True, text=True)
                if out.returncode:
                    print(f"{size:10} {mode:8} failed: {out.stderr.strip().splitlines()[-1]}")
                    continue
                r = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"{size:10} {mode:8} {secs:5.1f} {args.threads:3d} {r['cpu_s_per_s']:8.3f} {r['wall_s_per_s']:8.3f} "
                      f"{r['peak_mib']:9.0f}", flush=True)


if __name__ == "__main__":
    main()
