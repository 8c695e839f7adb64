"""onnxruntime against PyTorch on one chunk: the network forward of the same model, exported by mossep.export.

    nice python benchmarks/bench_onnx.py --model default --seconds 16 --threads 2 --repeats 5
    nice python benchmarks/bench_onnx.py --model random:paper-l --seconds 16 --threads 2 --repeats 3
    nice python benchmarks/bench_onnx.py --model random:paper-l:mossformer2 --seconds 16 --threads 2 --repeats 3

--model: a checkpoint or name (as for --model), or random:SIZE[:ARCH] (a preset of mossep.models.config with seeded
random weights; speed does not depend on them). The two engines run alternately in one process (both see the same
load on a shared machine), each with `--threads` intra-op threads, after one warm-up forward each; the report gives
median wall and process-CPU seconds per audio second, their ratio, and the output difference (max |d| / RMS).
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def load(spec: str):
    from mossep.checkpoints import LoadedModel, load_checkpoint
    from mossep.models import build_model, preset

    if spec.startswith("random:"):
        torch.manual_seed(0)
        model = build_model(preset(spec.split(":", 1)[1])).eval()
        return LoadedModel(model, "mossep", Path(spec.replace(":", "_")), {})
    return load_checkpoint(None if spec == "default" else spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--seconds", type=float, default=16.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--onnx", help="an exported file to use instead of exporting (must be of --model)")
    args = ap.parse_args()

    from mossep.export import export_onnx, onnx_difference, open_session

    torch.set_num_threads(args.threads)
    loaded = load(args.model)
    sr = loaded.config.sample_rate
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.onnx) if args.onnx else Path(tmp) / "model.onnx"
        t0 = time.perf_counter()
        if not args.onnx:
            export_onnx(loaded, path)
        export_s = time.perf_counter() - t0
        session = open_session(path, threads=args.threads)
        x = (np.random.default_rng(1).standard_normal((1, int(args.seconds * sr))) * 0.1).astype(np.float32)
        xt = torch.from_numpy(x)
        engines = {"torch": lambda: loaded.model(xt), "onnxruntime": lambda: session.run(None, {"mix": x})}
        wall: dict[str, list[float]] = {k: [] for k in engines}
        cpu: dict[str, list[float]] = {k: [] for k in engines}
        with torch.inference_mode():
            for run in engines.values():
                run()  # warm-up
            for _ in range(args.repeats):
                for name, run in engines.items():
                    c0, w0 = time.process_time(), time.perf_counter()
                    run()
                    cpu[name].append(time.process_time() - c0)
                    wall[name].append(time.perf_counter() - w0)
        diff = onnx_difference(session, loaded.model, x)
    med = {k: statistics.median(v) / args.seconds for k, v in wall.items()}
    medc = {k: statistics.median(v) / args.seconds for k, v in cpu.items()}
    print(json.dumps({"model": args.model, "seconds": args.seconds, "threads": args.threads, "repeats": args.repeats,
                      "export_s": round(export_s, 1),
                      "wall_s_per_s": {k: round(v, 4) for k, v in med.items()},
                      "cpu_s_per_s": {k: round(v, 4) for k, v in medc.items()},
                      "onnxruntime_over_torch_wall": round(med["onnxruntime"] / med["torch"], 3),
                      "onnxruntime_over_torch_cpu": round(medc["onnxruntime"] / medc["torch"], 3),
                      "max_rel_difference": diff, "all_wall_s": wall}))


if __name__ == "__main__":
    main()
