"""benchmarks/bench_profile.py: every operator's time lands in exactly one category, the right one."""
from __future__ import annotations

import torch

from mossep.models import build_model, preset
from scripts import load_script

bench = load_script("benchmarks/bench_profile.py")


def profile_rows(arch: str) -> tuple[dict, float]:
    torch.manual_seed(0)
    model = build_model(preset("tiny", arch=arch)).eval()
    x = torch.randn(1, 4000) * 0.1
    with torch.inference_mode():
        with bench.labelled(model), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                                           record_shapes=True, with_flops=True) as prof:
            model(x)
    events = [e for e in prof.events() if not e.name.startswith(bench.PREFIX)]
    total = sum(e.self_cpu_time_total for e in events) / 1e6
    return bench.categorise(prof.events()), total


def test_mossformer2_time_is_split_without_loss_and_fsmn_is_seen():
    rows, total = profile_rows("mossformer2")
    assert abs(sum(r["self_s"] for r in rows.values()) - total) <= 1e-6 * max(total, 1)
    for c in ("matmuls", "depthwise convs", "attention", "FSMN", "norms", "encoder/decoder"):
        assert rows[c]["self_s"] > 0, c
    assert rows["matmuls"]["flops"] > 0 and rows["attention"]["flops"] > 0


def test_mossformer_has_no_fsmn_and_the_hooks_are_removed():
    rows, _ = profile_rows("mossformer")
    assert rows["FSMN"]["self_s"] == 0 and rows["attention"]["self_s"] > 0
    from mossep.models import attention
    assert attention.joint_attention_stacked.__name__ == "joint_attention_stacked"
