"""Wall-clock time of one FLASH block (and, for MossFormer2, one gated FSMN block), module by module.

    python benchmarks/bench_blocks.py --model paper-l --mode fast --seconds 4 --threads 2
    python benchmarks/bench_blocks.py --model paper-l:mossformer2 --mode fast --seconds 4 --threads 2

No profiler: on this 2-core VM torch.profiler charged small operators about 7 ms a call whatever their size
(benchmarks/README.md, issue 18), so here each module's forward is timed with perf_counter from hooks, and the
joint attention function from a wrapper. The first block of each kind of a seeded random model runs on a random
[1, L, D] input (L frames of the given seconds; bf16 in fast mode) after a warm-up, `--repeats` times; freed memory
is reused as the `mossep` program does. Columns: ms per call including submodules, and "self" (less the rows
below it, i.e. the module's own functional code: for a FLASH block token shift, rotary, gating and residual).
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def timed(block: nn.Module, times: dict[str, list[float]]):
    """Append each module's (and the attention's) wall time per call to times[name] while in the context."""
    from mossep.models import attention

    starts: dict[int, list[float]] = defaultdict(list)
    handles = []
    for name, m in block.named_modules():
        def pre(mod, args):
            starts[id(mod)].append(time.perf_counter())

        def post(mod, args, out, name=name or "block"):
            times[name].append(time.perf_counter() - starts[id(mod)].pop())

        handles += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
    original = attention.joint_attention_stacked

    def attention_timed(*args, **kwargs):
        t = time.perf_counter()
        out = original(*args, **kwargs)
        times["(joint attention)"].append(time.perf_counter() - t)
        return out

    attention.joint_attention_stacked = attention_timed
    try:
        yield
    finally:
        attention.joint_attention_stacked = original
        for h in handles:
            h.remove()


def block_table(block: nn.Module, x: torch.Tensor, repeats: int) -> list[tuple[str, int, float, float]]:
    """(name (class), depth, median ms per block call, self ms) per module that ran, parents before children."""
    times: dict[str, list[float]] = defaultdict(list)
    with torch.inference_mode():
        block(x)  # warm-up (allocator, oneDNN primitives)
        with timed(block, times):
            for _ in range(repeats):
                block(x)
    per_call = {k: statistics.median(v) * 1e3 * len(v) / repeats for k, v in times.items()}  # ms per block call
    parent = {k: _parent(k, per_call) for k in per_call}
    kinds = {name or "block": type(m).__name__ for name, m in block.named_modules()}
    rows = []
    for name in sorted(per_call, key=lambda k: (k != "block", k)):
        depth, p = 0, parent[name]
        while p is not None:
            depth, p = depth + 1, parent[p]
        own = per_call[name] - sum(v for k, v in per_call.items() if parent[k] == name)
        rows.append((f"{name} ({kinds.get(name, 'function')})", depth, per_call[name], own))
    return rows


def _parent(name: str, ran: dict) -> str | None:
    """The nearest enclosing module that ran (Sequentials are only containers); the attention is the block's."""
    if name == "block":
        return None
    while "." in name:
        name = name.rsplit(".", 1)[0]
        if name in ran:
            return name
    return "block"


def first_blocks(model: nn.Module) -> list[nn.Module]:
    from mossep.models.attention import MossFormerBlock
    from mossep.models.fsmn import GatedFSMNBlock

    found = []
    for kind in (MossFormerBlock, GatedFSMNBlock):
        block = next((m for m in model.modules() if isinstance(m, kind)), None)
        if block is not None:
            found.append(block)
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="paper-l", help="size preset, SIZE or SIZE:ARCH (seeded random weights)")
    ap.add_argument("--mode", choices=["exact", "fast"], default="fast")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()

    from mossep.fast import make_fast
    from mossep.memory import reuse_freed_memory
    from mossep.models import build_model, preset

    torch.set_num_threads(args.threads)
    reuse_freed_memory()
    torch.manual_seed(0)
    size, _, arch = args.model.partition(":")
    cfg = preset(size, arch=arch or "mossformer")
    model = build_model(cfg).eval()
    if args.mode == "fast":
        model = make_fast(model)
    frames = (int(args.seconds * cfg.sample_rate) - cfg.kernel_size) // cfg.stride + 1
    for block in first_blocks(model):
        dtype = max((p.dtype for p in block.parameters()), key=lambda d: sum(  # the weights' (not the rotary's)
            p.numel() for p in block.parameters() if p.dtype == d))
        x = torch.randn(1, frames, cfg.d_model, generator=torch.Generator().manual_seed(1)).to(dtype)
        print(f"{type(block).__name__}, {args.model} {args.mode}, [1, {frames}, {cfg.d_model}] {str(dtype)[6:]}, "
              f"{args.threads} threads, median of {args.repeats}")
        print(f"{'module':60} {'ms':>8} {'self ms':>8}")
        for name, depth, ms, self_ms in block_table(block, x, args.repeats):
            print(f"{'  ' * depth + name:60} {ms:8.2f} {self_ms:8.2f}")
        print()


if __name__ == "__main__":
    main()
