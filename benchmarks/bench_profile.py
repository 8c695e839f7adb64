"""Where a forward pass spends its time, by kind of work, against what this CPU can do.

    nice python benchmarks/bench_profile.py --model random:paper-l --seconds 4 --threads 2
    nice python benchmarks/bench_profile.py --model random:paper-l:mossformer2 --seconds 4 --threads 2

One warm-up forward, then one forward under torch.profiler (CPU, shapes, FLOPs). Every operator's self time goes
to exactly one category, by the innermost module (or function) it ran in, else by its name:
  matmuls          nn.Linear and 1x1 convolutions (the projections of FLASH, FSMN, the mask head)
  depthwise convs  the depthwise convolution of every FFConvM (ConvModule)
  attention        joint local/global attention (QK^T, relu^2, AV, K^T V), mossep.models.attention
  FSMN             the dilated dense memory convolutions of MossFormer2 (DilatedDenseNet, less its norms)
  norms            LayerNorm, ScaleNorm, GroupNorm, InstanceNorm
  encoder/decoder  the learned filterbank and its transpose
  data movement    copies, concatenation, padding, contiguous/transposes, casts
  gating & other elementwise   sigmoid/silu/tanh/relu/PReLU, the gating products, residual adds, rotary
Rates: GFLOP/s from the profiler's FLOP counts (matmul-like operators), GB/s as 4 bytes x (inputs + one output of
the first input's size) per operator, a rough lower bound of the traffic. Peaks are measured here first: a
2048^3 float32 and bfloat16 matmul and a 256 MiB copy, on the same threads.
"""
from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from contextlib import contextmanager

import torch
from torch import nn

CATEGORIES = ("matmuls", "depthwise convs", "attention", "FSMN", "norms", "encoder/decoder", "data movement",
              "gating & other elementwise")
MOVEMENT = ("copy", "cat", "pad", "contiguous", "clone", "stack", "to", "_to_copy", "transpose", "permute",
            "constant_pad_nd", "index", "slice", "select", "repeat", "expand", "unflatten", "flatten", "reshape",
            "view", "chunk", "split", "unbind", "narrow", "empty", "zeros", "zeros_like", "fill_", "as_strided",
            "t", "squeeze", "unsqueeze", "_unsafe_view", "resolve_conj", "detach", "alias", "lift_fresh")
PREFIX = "mossep/"
MATMUL_LIKE = ("mm", "addmm", "bmm", "baddbmm", "matmul", "conv1d", "conv2d", "conv_transpose1d")


def measure_peaks(threads: int) -> dict:
    torch.set_num_threads(threads)
    out = {}
    for dtype in (torch.float32, torch.bfloat16):
        a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
        torch.mm(a, b)
        t = time.perf_counter()
        n = 5
        for _ in range(n):
            torch.mm(a, b)
        out[f"gemm_{str(dtype).split('.')[-1]}_gflops"] = 2 * 2048**3 * n / (time.perf_counter() - t) / 1e9
    x = torch.empty(64 * 2**20)
    x.fill_(1.0)
    y = x.clone()
    t = time.perf_counter()
    for _ in range(5):
        y.copy_(x)
    out["copy_gbps"] = 2 * x.numel() * 4 * 5 / (time.perf_counter() - t) / 1e9
    return out


def category_of_module(m: nn.Module) -> str | None:
    from mossep.models.blocks import ConvModule, DepthwiseConv1d, ScaleNorm
    from mossep.models.fsmn import DilatedDenseNet
    from mossep.models.mossformer import Decoder, Encoder

    if isinstance(m, (nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm2d, ScaleNorm)):
        return "norms"
    if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv1d) and m.kernel_size == (1,) and m.groups == 1):
        return "matmuls"
    if isinstance(m, (ConvModule, DepthwiseConv1d)):
        return "depthwise convs"
    if isinstance(m, DilatedDenseNet):
        return "FSMN"
    if isinstance(m, (Encoder, Decoder)):
        return "encoder/decoder"
    return None


@contextmanager
def labelled(model: nn.Module):
    """record_function ranges around the modules (and the attention function) that decide a category."""
    from mossep.models import attention

    ranges: dict[int, list] = defaultdict(list)
    handles = []
    for m in model.modules():
        cat = category_of_module(m)
        if cat is None:
            continue

        def pre(mod, args, cat=cat):
            r = torch.profiler.record_function(PREFIX + cat)
            r.__enter__()
            ranges[id(mod)].append(r)

        def post(mod, args, out):
            ranges[id(mod)].pop().__exit__(None, None, None)

        handles += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
    original = attention.joint_attention_stacked

    def timed(*args, **kwargs):
        with torch.profiler.record_function(PREFIX + "attention"):
            return original(*args, **kwargs)

    attention.joint_attention_stacked = timed
    try:
        yield
    finally:
        attention.joint_attention_stacked = original
        for h in handles:
            h.remove()


def categorise(events) -> dict:
    rows = {c: {"self_s": 0.0, "flops": 0.0, "bytes": 0.0} for c in CATEGORIES}
    for e in events:
        if e.name.startswith(PREFIX) or e.name.startswith("ProfilerStep"):
            continue
        cat, p = None, e.cpu_parent
        while p is not None and cat is None:
            if p.name.startswith(PREFIX):
                cat = p.name[len(PREFIX):]
            p = p.cpu_parent
        op = e.name.split("::")[-1]
        if cat is None or (cat not in ("attention",) and op in MOVEMENT and cat != "FSMN"):
            cat = "data movement" if op in MOVEMENT else (cat or "gating & other elementwise")
        row = rows[cat]
        row["self_s"] += e.self_cpu_time_total / 1e6
        if op in MATMUL_LIKE:
            row["flops"] += float(getattr(e, "flops", 0) or 0)
        shapes = [s for s in (e.input_shapes or []) if isinstance(s, (list, tuple)) and s and all(
            isinstance(d, int) for d in s)]
        if shapes and not e.cpu_children:
            numel = [int(torch.Size(s).numel()) for s in shapes]
            row["bytes"] += 4.0 * (sum(numel) + numel[0])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="random:paper-l", help="random:SIZE[:ARCH] or a checkpoint / name")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="also write the table here")
    args = ap.parse_args()

    from bench_onnx import load

    peaks = measure_peaks(args.threads)
    loaded = load(args.model)
    model = loaded.model.eval()
    sr = loaded.config.sample_rate
    x = torch.randn(1, int(args.seconds * sr), generator=torch.Generator().manual_seed(1)) * 0.1
    with torch.inference_mode():
        model(x)  # warm-up
        with labelled(model), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                                     record_shapes=True, with_flops=True) as prof:
            t = time.perf_counter()
            model(x)
            wall = time.perf_counter() - t
    rows = categorise(prof.events())
    total = sum(r["self_s"] for r in rows.values())
    params = sum(p.numel() for p in model.parameters())
    print(f"{args.model}: {params / 1e6:.1f} M parameters, {args.seconds:g} s of audio, {args.threads} threads, "
          f"wall {wall:.2f} s under the profiler ({wall / args.seconds:.2f} s per audio second), "
          f"operator self time {total:.2f} s")
    print(f"peaks measured here: float32 matmul {peaks['gemm_float32_gflops']:.0f} GFLOP/s, bfloat16 matmul "
          f"{peaks['gemm_bfloat16_gflops']:.0f} GFLOP/s, copy {peaks['copy_gbps']:.1f} GB/s")
    print("| category | self s | share | GFLOP/s | of fp32 matmul peak | GB/s (est.) | of copy bandwidth |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    fp32, copy_bw = peaks["gemm_float32_gflops"], peaks["copy_gbps"]
    for c in CATEGORIES:
        r = rows[c]
        s = r["self_s"]
        gf = r["flops"] / s / 1e9 if s and r["flops"] else None
        gb = r["bytes"] / s / 1e9 if s and r["bytes"] else None
        cells = [c, f"{s:.2f}", f"{100 * s / total:.0f} %",
                 "" if gf is None else f"{gf:.0f}", "" if gf is None else f"{100 * gf / fp32:.0f} %",
                 "" if gb is None else f"{gb:.1f}", "" if gb is None else f"{100 * gb / copy_bw:.0f} %"]
        print("| " + " | ".join(cells) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": args.model, "seconds": args.seconds, "threads": args.threads, "wall_s": wall,
                       "peaks": peaks, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
