"""Opt-in fast inference: the mask net (the block stack and the mask head, ~all of the compute) in bfloat16.

`make_fast(model)` returns an inference-only version of a model built by `mossep.models.build_model`
(MossFormer or MossFormer2):

- where the device computes bfloat16 natively (CPU: avx512_bf16 or AMX, as oneDNN reports; CUDA), the mask
  net's weights are stored in bfloat16 and it runs on a bfloat16 copy of the encoder output: every matrix
  product, convolution and elementwise step reads and writes half as many bytes, with no per-call casts
  (torch.autocast would cast the weights and re-cast activations around every op: measured 1.6x faster than
  float32 at the published size, against 2.5x for the stored bf16 weights). Norms accumulate in float32 inside
  their kernels. The position tables (rotary `freqs`, sinusoidal `inv_freq`) stay float32, so positions
  thousands of frames in are still exact angles. The encoder and the decoder stay float32: the input is
  analysed and the output synthesised at full precision, only the masks are bf16. On a CPU each linear
  layer of the mask net is one oneDNN call on a prepacked weight, with its bias and FFConvM's SiLU fused
  (`OneDNNLinear`);
- elsewhere (CPU without bf16), the nn.Linear layers are quantised to int8 with dynamic activation
  quantisation (`torch.ao.quantization.quantize_dynamic`), CPU only.

By default the model passed in is NOT modified: it is deep-copied first (costs one more copy of the
weights in memory). Pass `copy=False` to convert it in place when the exact model is not needed any more.
The returned module's state_dict keys differ from the original's (it is for inference, not for saving).
Output differs slightly from the exact model; benchmarks/README.md lists the measured speed-up and the
devset SI-SNRi of both modes.
"""
from __future__ import annotations

import copy as copy_module
import warnings

import torch
from torch import nn

from .models.blocks import FFConvM, RotaryEmbedding, ScaledSinuEmbedding
from .models.fsmn import GatedFSMNBlock

# Modules whose tensors are position tables: kept float32 (a bf16 frequency is off by up to 2^-9, i.e. whole
# radians after a few thousand frames).
KEEP_FLOAT32 = (RotaryEmbedding, ScaledSinuEmbedding)


def bf16_is_native(device: torch.device | str = "cpu") -> bool:
    """Whether bfloat16 matrix products run natively (not emulated) on this device."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def convert_floats(module: nn.Module, dtype: torch.dtype, keep: tuple[type, ...] = KEEP_FLOAT32) -> nn.Module:
    """Store the floating-point parameters and buffers of `module` (and its children) in `dtype`, in place,
    except those of modules of the `keep` types. Parameters come out frozen (requires_grad=False)."""
    for mod in module.modules():
        if isinstance(mod, keep):
            continue
        for name, p in mod.named_parameters(recurse=False):
            if p.is_floating_point():
                setattr(mod, name, nn.Parameter(p.detach().to(dtype), requires_grad=False))
        for name, b in mod.named_buffers(recurse=False):
            if b.is_floating_point():
                setattr(mod, name, b.to(dtype))
    return module


class OneDNNLinear(nn.Module):
    """An nn.Linear, optionally with the SiLU after it, as one oneDNN call on a CPU, with its weight prepacked in
    oneDNN's blocked layout: bias and activation are applied to the float32 accumulators before the single
    bf16 rounding (torch.ops.mkldnn._linear_pointwise and _reorder_linear_weight, the kernels torch.compile's
    CPU backend emits for a linear layer). F.linear re-lays the weight out on every call, adds the bias in a
    separate pass over the output, and SiLU makes another: this is 15-30 % faster for the published sizes'
    projections on 2 threads (benchmarks/README.md). [..., d_in] -> [..., d_out].

    Only the packed weight is kept (an opaque oneDNN tensor: not in state_dict; keeping the plain one as well
    cost 140 MB of peak memory at the published size); a copy goes through the plain layout and packs again.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, activation: str = "none"):
        super().__init__()
        self.bias = bias
        self.activation = activation  # "none" or "swish" (= SiLU)
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), None)  # [d_out, d_in]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "packed": self.packed.to_dense()}

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self.packed = torch.ops.mkldnn._reorder_linear_weight(self.packed, None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, self.activation, [], "")


def onednn_linear_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def fuse_linears(module: nn.Module) -> nn.Module:
    """In place: every nn.Linear of `module` (CPU) becomes a OneDNNLinear, with FFConvM's SiLU folded in; so do
    the gated FSMN blocks' 1x1 convolutions (which they apply as linear layers)."""
    for mod in module.modules():
        if isinstance(mod, FFConvM) and isinstance(mod.mdl[1], nn.Linear) and isinstance(mod.mdl[2], nn.SiLU):
            mod.mdl[1], mod.mdl[2] = OneDNNLinear(mod.mdl[1].weight, mod.mdl[1].bias, "swish"), nn.Identity()
        if isinstance(mod, GatedFSMNBlock):
            conv1, conv2 = mod.conv1[0], mod.conv2
            mod.conv1[0] = OneDNNLinear(conv1.weight.squeeze(-1), conv1.bias)
            mod.conv2 = OneDNNLinear(conv2.weight.squeeze(-1), conv2.bias)
    for mod in list(module.modules()):
        for name, child in mod.named_children():
            if type(child) is nn.Linear:
                setattr(mod, name, OneDNNLinear(child.weight, child.bias))
    return module


def pack_linears(model: nn.Module, copy: bool = True) -> nn.Module:
    """The float32 `model` with every linear layer as a prepacked oneDNN call (`fuse_linears`), for CPU inference.

    Exact mode's speed-up: the same float32 arithmetic up to the order of the sums (SI-SNR against the plain
    model above 120 dB at the published size), 1.1-1.2x faster there on 2 threads (benchmarks/README.md, issue
    18). Eval mode, frozen; copy=True leaves `model` unchanged; a model without linear layers is returned as it
    is. Needs `onednn_linear_available()`.
    """
    if not any(isinstance(m, nn.Linear) for m in model.modules()):
        return model
    packed = copy_module.deepcopy(model) if copy else model
    return fuse_linears(packed.eval().requires_grad_(False))


class InDtype(nn.Module):
    """Runs `module`, whose weights are stored in `dtype`, on its input cast to `dtype`; returns float32."""

    def __init__(self, module: nn.Module, dtype: torch.dtype = torch.bfloat16):
        super().__init__()
        self.module = convert_floats(module, dtype)
        self.dtype = dtype
        param = next(self.module.parameters(), None)
        if param is not None and param.device.type == "cpu" and onednn_linear_available():
            fuse_linears(self.module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x.to(self.dtype)).float()


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
    fast.eval().requires_grad_(False)
    if mode == "bf16":
        if isinstance(getattr(fast, "mask_net", None), nn.Module):
            fast.mask_net = InDtype(fast.mask_net)  # encoder and decoder stay float32
            return fast
        wrapped = InDtype(fast)
        if hasattr(fast, "config"):
            wrapped.config = fast.config
        return wrapped
    if next(fast.parameters()).device.type != "cpu":
        raise ValueError("make_fast: int8 dynamic quantisation needs a CPU model (this device has no native bf16)")
    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
        warnings.simplefilter("ignore", (DeprecationWarning, UserWarning))
        return torch.ao.quantization.quantize_dynamic(fast, {nn.Linear}, dtype=torch.qint8, inplace=True)
