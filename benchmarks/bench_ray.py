"""`mossep batch --ray` against local `batch`: throughput (audio hours per hour) and Ray's overhead per file.

    python benchmarks/bench_ray.py                          # default model, 8 x 20 s files; tiny model, 40 x 0.5 s
    python benchmarks/bench_ray.py --files 8 --seconds 20 --small-files 40 --address 127.0.0.1:6379

Throughput: the same files (modulated tones in noise, 8 kHz) through local `batch` (--threads 1 and 2) and
`--ray` with 1 and 2 workers (one CPU, one torch thread each), each run a fresh process. Two figures per run:
"end to end" = audio hours / wall hours of the whole command (Ray's start-up and the workers' model loading
included), "steady" = audio hours / wall hours of the separating phase only (for --ray the driver's own
measure, printed as `mossep: ray: N workers: ... in W s`; for local batch the command minus a run on an
empty tree, i.e. minus start-up). Overhead per file: tiny model on many short files with 1 worker: (the
phase's wall time - the worker's busy time) / files, i.e. the round trip driver -> worker -> driver per file.
Without --address each --ray run starts its own local Ray (as `--ray` alone does).
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent


def make_files(folder: Path, count: int, seconds: float) -> float:
    rng = np.random.default_rng(0)
    for i in range(count):
        t = np.arange(int(8000 * seconds)) / 8000
        x = 0.1 * np.sin(2 * np.pi * (150 + 20 * i) * t) * (1 + np.sin(2 * np.pi * 3 * t)) \
            + 0.05 * rng.standard_normal(len(t))
        sf.write(folder / f"f{i:03d}.wav", x, 8000)
    return count * seconds


def mossep(args: list, env: dict | None = None) -> tuple[float, str]:
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "mossep", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})
    wall = time.monotonic() - start
    if done.returncode != 0:
        sys.exit(f"failed: mossep {' '.join(map(str, args))}\n{done.stderr}")
    return wall, done.stderr


def phase(stderr: str) -> tuple[float, list[float]]:
    """(the --ray run phase's wall seconds, each worker's busy seconds) from the driver's lines."""
    total = float(re.search(r"workers: [\d.]+ h of audio in ([\d.]+) s", stderr).group(1))
    busy = [float(m) for m in re.findall(r"h of audio in ([\d.]+) s, [\d.]+ audio hours per hour", stderr)][:-1]
    return total, busy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "weights" / "default.safetensors"))
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--small-files", type=int, default=40)
    ap.add_argument("--address", default="local", help="--ray ADDRESS (default: a local Ray per run)")
    a = ap.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "in").mkdir()
        (tmp / "empty").mkdir()
        sf.write(tmp / "empty" / "x.wav", np.zeros(800), 8000)  # one 0.1 s file: the command's fixed cost
        audio = make_files(tmp / "in", a.files, a.seconds)
        common = ["--model", a.model, "--device", "cpu", "--quiet"]
        print(f"\nthroughput: {a.files} files x {a.seconds:g} s = {audio / 3600:.3f} h of audio, {Path(a.model).name}")
        print(f"{'run':34s} {'wall s':>8s} {'end to end':>11s} {'steady':>8s}   (audio hours per hour)")
        for threads in (1, 2):
            base, _ = mossep(["batch", tmp / "empty", "-o", tmp / f"e{threads}", "--threads", threads, *common])
            wall, _ = mossep(["batch", tmp / "in", "-o", tmp / f"local{threads}", "--threads", threads, *common])
            print(f"{'local batch --threads ' + str(threads):34s} {wall:8.1f} {audio / wall:11.1f} "
                  f"{audio / max(wall - base, 1e-9):8.1f}")
        for workers in (1, 2):
            wall, err = mossep(["batch", tmp / "in", "-o", tmp / f"ray{workers}", "--ray", a.address,
                                "--ray-workers", workers, *common[:-1]])
            run, _ = phase(err)
            print(f"{'--ray --ray-workers ' + str(workers):34s} {wall:8.1f} {audio / wall:11.1f} {audio / run:8.1f}")

        (tmp / "small").mkdir()
        tiny = tmp / "tiny.safetensors"
        subprocess.run([sys.executable, "-c", "import torch; from mossep.checkpoints import save_native; "
                        "from mossep.models import build_model, preset; torch.manual_seed(0); "
                        f"save_native(build_model(preset('tiny')), {str(tiny)!r}, {{}})"], check=True)
        make_files(tmp / "small", a.small_files, 0.5)
        wall, err = mossep(["batch", tmp / "small", "-o", tmp / "small-ray", "--ray", a.address, "--ray-workers", 1,
                            "--model", tiny, "--device", "cpu"])
        run, busy = phase(err)
        lwall, _ = mossep(["batch", tmp / "small", "-o", tmp / "small-local", "--threads", 1, "--model", tiny,
                           "--device", "cpu", "--quiet"])
        print(f"\noverhead per file ({a.small_files} files x 0.5 s, tiny model, 1 worker): "
              f"{(run - sum(busy)) / a.small_files * 1000:.0f} ms (phase {run:.1f} s, busy {sum(busy):.1f} s); "
              f"start-up of the --ray command {wall - run:.1f} s (local batch of the same files: {lwall:.1f} s "
              "end to end)")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
