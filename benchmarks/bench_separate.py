"""Separation benchmarks: speed and memory on long recordings, and chunk/overlap quality on the dev clips.

    # real-time factor and peak RSS for 1, 10 and 60 minutes of 16 kHz audio, exact and fast mode,
    # each (length, mode) in a fresh process
    python benchmarks/bench_separate.py speed --model weights/default.safetensors --minutes 1 10 60 --threads 2
    python benchmarks/bench_separate.py speed --preset paper-l --minutes 1 --threads 2
    python benchmarks/bench_separate.py speed --preset tiny --minutes 1 --fast      # fast mode only
    python benchmarks/bench_separate.py speed --preset paper-l:mossformer2 --minutes 1 --modes fast onnx

    # SI-SNRi of chunked separation (several chunk/overlap settings) against whole-clip separation
    python benchmarks/bench_separate.py sweep --model weights/default.safetensors \
        --devset /work/shared/devset/libri2mix --chunks 0 2 3 4 6 8 --overlaps 0.5 1
    python benchmarks/bench_separate.py sweep --model weights/default.safetensors --chunks 4 8 --overlaps 0.5 1 --fast

speed columns: "x real time" = audio seconds / wall seconds of separating (above 1: faster than real time;
model loading excluded, printed separately); CPU RTF = CPU seconds spent separating / audio seconds (lower is
faster; on a busy machine this is steadier than wall time). Peak RSS is the child process's
resource.getrusage maxrss: after loading the model, and at the end; the last lines compare the longest
recording's peak with the shortest's, per mode. Both modes use the chunk defaults (mossep.chunking) unless
--chunk-seconds/--overlap-seconds are given.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def synth(path: Path, minutes: float, rate: int, seed: int = 0) -> None:
    """Two tone-and-noise 'talkers' with syllable-like envelopes, written in 10 s blocks."""
    rng = np.random.default_rng(seed)
    block = 10 * rate
    total = int(minutes * 60 * rate)
    with sf.SoundFile(path, "w", rate, 1, "PCM_16") as f:
        for start in range(0, total, block):
            n = min(block, total - start)
            t = (start + np.arange(n)) / rate
            a = 0.25 * np.sin(2 * np.pi * (180 + 20 * np.sin(2 * np.pi * 0.3 * t)) * t) * (np.sin(2 * np.pi * 3 * t) > 0)
            b = 0.05 * rng.standard_normal(n) * (np.sin(2 * np.pi * 2.3 * t + 1) > -0.2)
            f.write(a + b)


def child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    from mossep.memory import reuse_freed_memory
    from mossep.separator import Separator

    if not args.plain_malloc:  # as the `mossep` program does
        reuse_freed_memory()

    t0 = time.perf_counter()
    sep = Separator(args.model, device=args.device, chunk_seconds=args.chunk_seconds,
                    overlap_seconds=args.overlap_seconds, threads=args.threads, fast=args.fast,
                    backend=args.backend)
    t1, c1 = time.perf_counter(), time.process_time()
    rss_load = rss_mb()
    sep.separate_file(args.input, args.out, overwrite=True, note=lambda m: print(m, file=sys.stderr))
    t2, c2 = time.perf_counter(), time.process_time()
    print(json.dumps({"load_s": t1 - t0, "separate_s": t2 - t1, "cpu_s": c2 - c1, "rss_load_mb": rss_load,
                      "rss_peak_mb": rss_mb(),
                      "chunk": sep.chunk_seconds, "overlap": sep.overlap_seconds}))


def make_model(preset_name: str, directory: Path) -> Path:
    import torch

    from mossep.checkpoints import save_native
    from mossep.models import build_model, preset

    torch.manual_seed(0)
    path = directory / f"{preset_name.replace(':', '_')}.safetensors"
    save_native(build_model(preset(preset_name)), path,  # SIZE or SIZE:ARCH (e.g. paper-l:mossformer2)
                {"note": "random weights (benchmark)"})
    return path


def modes(args: argparse.Namespace) -> list[str]:
    """--fast is short for --modes fast."""
    return ["fast"] if args.fast else list(dict.fromkeys(args.modes))


def speed(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="mossep-bench-") as tmp:
        tmp = Path(tmp)
        model = Path(args.model) if args.model else make_model(args.preset, tmp)
        label = args.model or f"{args.preset} (random weights)"
        print(f"model: {label}; input {args.rate} Hz mono; device {args.device}; threads {args.threads}")
        print("| audio | mode | chunk/overlap (s) | load (s) | wall (s) | x real time | CPU RTF | "
              "RSS after load (MB) | peak RSS (MB) |")
        print("|---|---|---|---|---|---|---|---|---|", flush=True)
        peaks: dict[str, list[tuple[float, float]]] = {}
        for minutes in args.minutes:
            wav = tmp / f"in_{minutes}min.wav"
            synth(wav, minutes, args.rate)
            for mode in modes(args):
                cmd = [sys.executable, __file__, "_child", "--model", str(model), "--input", str(wav), "--out",
                       str(tmp / "out"), "--threads", str(args.threads), "--device", args.device]
                if mode == "fast":
                    cmd.append("--fast")
                if mode == "onnx":
                    cmd += ["--backend", "onnx"]
                if args.plain_malloc:
                    cmd.append("--plain-malloc")
                if args.chunk_seconds is not None:
                    cmd += ["--chunk-seconds", str(args.chunk_seconds)]
                if args.overlap_seconds is not None:
                    cmd += ["--overlap-seconds", str(args.overlap_seconds)]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode:
                    sys.exit(f"child failed for {minutes} min, {mode} mode:\n{proc.stderr}")
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                audio_s = minutes * 60
                peaks.setdefault(mode, []).append((minutes, r["rss_peak_mb"]))
                print(f"| {minutes:g} min | {mode} | {r['chunk']:g}/{r['overlap']:g} | {r['load_s']:.1f} | "
                      f"{r['separate_s']:.1f} | {audio_s / r['separate_s']:.2f} | {r['cpu_s'] / audio_s:.3f} | "
                      f"{r['rss_load_mb']:.0f} | {r['rss_peak_mb']:.0f} |", flush=True)
            wav.unlink()
        for mode, pk in peaks.items():
            if len(pk) > 1:
                (m0, p0), (m1, p1) = min(pk), max(pk)
                print(f"{mode}: peak RSS {m1:g} min / {m0:g} min = {p1 / p0:.2f}x")


def sweep(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    from mossep.metrics import si_snr_improvement
    from mossep.separator import Separator

    dev = Path(args.devset)
    items = sorted(dev.glob("*_mix.wav"))[: args.limit or None]
    clips = []
    for mix_path in items:
        stem = mix_path.name[: -len("_mix.wav")]
        mix, rate = sf.read(mix_path, dtype="float32")
        refs = np.stack([sf.read(dev / f"{stem}_source{k}.wav", dtype="float32")[0] for k in (1, 2)])
        clips.append((mix, refs, rate))
    print(f"model: {args.model}; {len(clips)} clips, {sum(len(c[0]) / c[2] for c in clips):.0f} s")
    print("| mode | chunk (s) | overlap (s) | mean SI-SNRi (dB) | worst clip (dB) | seconds |")
    print("|---|---|---|---|---|---|")
    for mode in modes(args):
        for chunk in args.chunks:
            for overlap in (args.overlaps if chunk else [0.0]):
                if chunk and overlap >= chunk / 2:
                    continue
                sep = Separator(args.model, device=args.device, chunk_seconds=chunk, overlap_seconds=overlap,
                                fast=mode == "fast")
                t0 = time.perf_counter()
                scores = [si_snr_improvement(sep.separate(m, r), refs, m)["si_snri"] for m, refs, r in clips]
                print(f"| {mode} | {chunk:g} | {overlap:g} | {np.mean(scores):.2f} | {np.min(scores):.2f} | "
                      f"{time.perf_counter() - t0:.0f} |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("speed", help="RTF and peak RSS on synthetic recordings")
    s.add_argument("--preset", default="tiny")
    s.add_argument("--model", default=None, help="a checkpoint instead of a random preset")
    s.add_argument("--minutes", type=float, nargs="+", default=[1, 10, 60])
    s.add_argument("--rate", type=int, default=16000, help="input sample rate (resampled to the model's)")
    s.add_argument("--chunk-seconds", type=float, default=None)
    s.add_argument("--overlap-seconds", type=float, default=None)
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--device", default="cpu")
    s.add_argument("--modes", nargs="+", choices=["exact", "fast", "onnx"], default=["exact", "fast"],
                   help="onnx: exact network in onnxruntime (--backend onnx; the first use exports into the cache)")
    s.add_argument("--fast", action="store_true", help="fast mode only (= --modes fast)")
    s.add_argument("--plain-malloc", action="store_true",
                   help="leave glibc's malloc as it is (the `mossep` program calls mossep.memory.reuse_freed_memory)")
    w = sub.add_parser("sweep", help="SI-SNRi of chunk/overlap settings on dev clips")
    w.add_argument("--model", required=True)
    w.add_argument("--devset", default="/work/shared/devset/libri2mix")
    w.add_argument("--chunks", type=float, nargs="+", default=[0, 2, 3, 4, 6, 8])
    w.add_argument("--overlaps", type=float, nargs="+", default=[0.5, 1.0])
    w.add_argument("--limit", type=int, default=0, help="use only the first N clips")
    w.add_argument("--threads", type=int, default=1)
    w.add_argument("--device", default="cpu")
    w.add_argument("--modes", nargs="+", choices=["exact", "fast"], default=["exact"])
    w.add_argument("--fast", action="store_true", help="fast mode only (= --modes fast)")
    c = sub.add_parser("_child")
    c.add_argument("--model", required=True)
    c.add_argument("--input", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--chunk-seconds", type=float, default=None)
    c.add_argument("--overlap-seconds", type=float, default=None)
    c.add_argument("--threads", type=int, default=1)
    c.add_argument("--device", default="cpu")
    c.add_argument("--fast", action="store_true")
    c.add_argument("--backend", default="torch")
    c.add_argument("--plain-malloc", action="store_true")
    args = p.parse_args()
    {"speed": speed, "sweep": sweep, "_child": child}[args.cmd](args)


if __name__ == "__main__":
    main()
