"""Opt-in fast inference: the sequence model (the block stack, ~all of the compute) in bfloat16.

`make_fast(model)` returns an inference-only version of a model built by `mossep.models.build_model`
(MossFormer or MossFormer2):

- where the device computes bfloat16 natively (CPU: avx512_bf16 or AMX, as oneDNN reports; CUDA), the mask
  net's sequence model `mask_net.mdl` runs under `torch.autocast(bfloat16)`: matrix products and
  convolutions in bf16 with fp32 accumulation, norms and the residual stream in fp32. The encoder,
  the mask head and the decoder stay float32, so input and output keep full precision;
- elsewhere (CPU without bf16), the nn.Linear layers are quantised to int8 with dynamic activation
  quantisation (`torch.ao.quantization.quantize_dynamic`), CPU only.

By default the model passed in is NOT modified: it is deep-copied first (costs one more copy of the
weights in memory). Pass `copy=False` to convert it in place when the exact model is not needed any more.
The returned module's state_dict keys differ from the original's (it is for inference, not for saving).
Output differs slightly from the exact model; benchmarks/README.md lists the measured SI-SNR of fast
against exact output and the speed-up.
"""
from __future__ import annotations

import copy as copy_module
import warnings

import torch
from torch import nn


def bf16_is_native(device: torch.device | str = "cpu") -> bool:
    """Whether bfloat16 matrix products run natively (not emulated) on this device."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


class Autocast(nn.Module):
    """Runs `module` under torch.autocast(dtype) on the input's device; returns float32."""

    def __init__(self, module: nn.Module, dtype: torch.dtype = torch.bfloat16):
        super().__init__()
        self.module = module
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, dtype=self.dtype):
            y = self.module(x)
        return y.float()


def fast_mode_name(model: nn.Module) -> str:
    """What make_fast does for this model on its current device: "bf16" or "int8"."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    return "bf16" if bf16_is_native(device) else "int8"


def make_fast(model: nn.Module, copy: bool = True) -> nn.Module:
    """An inference-only fast version of `model` (see the module docstring); eval mode.

    copy=True (default): `model` is left unchanged. copy=False: `model` itself is converted and returned.
    """
    mode = fast_mode_name(model)
    fast = copy_module.deepcopy(model) if copy else model
    fast.eval()
    if mode == "bf16":
        mask_net = getattr(fast, "mask_net", None)
        if mask_net is not None and isinstance(getattr(mask_net, "mdl", None), nn.Module):
            mask_net.mdl = Autocast(mask_net.mdl)  # the block stack; encoder, mask head, decoder stay fp32
            return fast
        wrapped = Autocast(fast)
        if hasattr(fast, "config"):
            wrapped.config = fast.config
        return wrapped
    if next(fast.parameters()).device.type != "cpu":
        raise ValueError("make_fast: int8 dynamic quantisation needs a CPU model (this device has no native bf16)")
    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
        warnings.simplefilter("ignore", (DeprecationWarning, UserWarning))
        return torch.ao.quantization.quantize_dynamic(fast, {nn.Linear}, dtype=torch.qint8, inplace=True)
