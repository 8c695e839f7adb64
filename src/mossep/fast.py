"""Opt-in fast inference on a CPU: int8 dynamic quantisation of the linear layers.

`make_fast(model)` returns a NEW module for inference only; the model passed in is not modified
(it is deep-copied first), so callers may keep using it as the exact model.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


def make_fast(model: nn.Module) -> nn.Module:
    """An inference-only copy of `model` whose nn.Linear layers run in int8 (dynamic quantisation).

    Works for any model built by `mossep.models.build_model` (MossFormer, MossFormer2). CPU only;
    the returned module is in eval mode and cannot be trained. Outputs differ slightly from the
    exact model (see benchmarks/README.md for the measured SI-SNR of fast against exact output).
    """
    fast = copy.deepcopy(model).cpu().float().eval()
    fast = torch.ao.quantization.quantize_dynamic(fast, {nn.Linear}, dtype=torch.qint8)
    if hasattr(model, "config"):
        fast.config = model.config
    return fast
