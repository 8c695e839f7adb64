"""benchmarks/bench_blocks.py: per-module wall times of one block of each kind add up and leave no hooks behind."""
from __future__ import annotations

import pytest
import torch

from mossep.models import build_model, preset
from scripts import load_script

bench = load_script("benchmarks/bench_blocks.py")


@pytest.mark.parametrize("arch, kinds", [("mossformer", ["MossFormerBlock"]),
                                         ("mossformer2", ["MossFormerBlock", "GatedFSMNBlock"])])
def test_block_tables_add_up_and_the_hooks_are_removed(arch, kinds):
    torch.manual_seed(0)
    model = build_model(preset("tiny", arch=arch)).eval()
    blocks = bench.first_blocks(model)
    assert [type(b).__name__ for b in blocks] == kinds
    for block in blocks:
        rows = bench.block_table(block, torch.randn(1, 300, 64), repeats=2)
        name, depth, total, _ = rows[0]
        assert name.startswith("block (") and depth == 0 and total > 0
        # every row's own time is its total less its children's, so the own times add up to the block's total
        assert sum(own for *_, own in rows) == pytest.approx(total, rel=1e-6)
        assert all(d >= 1 for _, d, _, _ in rows[1:])
        names = [r[0] for r in rows]
        if type(block).__name__ == "MossFormerBlock":
            assert "(joint attention) (function)" in names and any(n.startswith("to_hidden (FFConvM)") for n in names)
        else:
            assert any("(DilatedDenseNet)" in n for n in names)
        assert not block._forward_hooks and not block._forward_pre_hooks
    from mossep.models import attention
    assert attention.joint_attention_stacked.__name__ == "joint_attention_stacked"
