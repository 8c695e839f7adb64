"""torch.compile (inductor, CPU) of the mask net against eager, one fixed input length, in one process.

    TORCHINDUCTOR_CACHE_DIR=~/.cache/mossep/inductor python benchmarks/bench_compile.py --size paper-l --mode fast
    TORCHINDUCTOR_CACHE_DIR=~/.cache/mossep/inductor python benchmarks/bench_compile.py --size paper-l --mode exact --freezing

--size: a preset, or PRESET:ARCH (paper-l:mossformer2); seeded random weights. --mode: exact (float32) or fast
(mossep.fast.make_fast). The mask net of one copy is compiled with a static shape (dynamic=False); the first call
(trace + compile, or a hit in the inductor cache named by TORCHINDUCTOR_CACHE_DIR: run twice to see both) is
timed, then eager and compiled forwards alternate `--repeats` times (both see the same load). Reports wall and
process-CPU seconds per audio second, their eager/compiled ratios (above 1: compiling pays), and the SI-SNR of
both against the float32 eager output. Inductor's C++ compile runs in worker processes, so the first call's
process CPU time undercounts it; its wall time is what a user waits.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_model import build  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="cpu-base")
    ap.add_argument("--mode", choices=["exact", "fast"], default="fast")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--freezing", action="store_true", help="inductor freezing (weights folded and prepacked)")
    args = ap.parse_args()

    import torch._inductor.config as inductor_config

    from mossep.metrics import si_snr

    torch.set_num_threads(args.threads)
    inductor_config.freezing = args.freezing
    eager, compiled, reference = build(args.size, args.mode), build(args.size, args.mode), build(args.size, "exact")
    compiled.mask_net = torch.compile(compiled.mask_net, dynamic=False)
    x = torch.randn(1, int(args.seconds * 8000), generator=torch.Generator().manual_seed(1)) * 0.1
    with torch.inference_mode():
        w0, c0 = time.perf_counter(), time.process_time()
        y_compiled = compiled(x)
        print(f"first compiled call: wall {time.perf_counter() - w0:.1f} s, process CPU {time.process_time() - c0:.1f} s",
              flush=True)
        y_eager, y_ref = eager(x), reference(x)
        print(f"SI-SNR against float32 eager (min over sources): eager {si_snr(y_eager, y_ref).min():.1f} dB, "
              f"compiled {si_snr(y_compiled, y_ref).min():.1f} dB", flush=True)
        wall: dict[str, list[float]] = {"eager": [], "compiled": []}
        cpu: dict[str, list[float]] = {"eager": [], "compiled": []}
        for _ in range(args.repeats):
            for name, model in (("eager", eager), ("compiled", compiled)):
                w0, c0 = time.perf_counter(), time.process_time()
                model(x)
                wall[name].append((time.perf_counter() - w0) / args.seconds)
                cpu[name].append((time.process_time() - c0) / args.seconds)
    for name in wall:
        print(f"{name:9} wall s/s {' '.join(f'{v:.3f}' for v in wall[name])}; cpu s/s {' '.join(f'{v:.3f}' for v in cpu[name])}")
    print(f"eager / compiled: wall {statistics.median(wall['eager']) / statistics.median(wall['compiled']):.2f}x, "
          f"cpu {statistics.median(cpu['eager']) / statistics.median(cpu['compiled']):.2f}x")


if __name__ == "__main__":
    main()
