"""Building blocks shared by MossFormer and MossFormer2.

Names follow the papers (Zhao & Ma, ICASSP 2023 / 2024) and the attribute layout of the
official code, so that official state dicts load without renaming.
Shapes: B batch, L frames, D channels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ScaleNorm(nn.Module):
    """x / max(||x||_2 / sqrt(D), eps) * g, over the last dim; one learned scalar gain g."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.scale = dim**-0.5
        self.eps = eps
        self.g = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True) * self.scale  # [B, L, 1]
        return x * (self.g / norm.clamp(min=self.eps))  # one pass over x


class Transpose(nn.Module):
    """[B, L, D] <-> [B, D, L]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2)


class DepthwiseConv1d(nn.Module):
    """Per-channel convolution over time, 'same' padding, no bias. [B, D, L] -> [B, D, L].

    Computed as a 2-D convolution over [B, D, 1, L]: when the input is a transposed [B, L, D] tensor
    (channels last in memory) this takes oneDNN's channels-last depthwise kernel, many times faster
    on a CPU than Conv1d on the same strides, and the output is again a transposed [B, L, D].
    """

    def __init__(self, dim: int, kernel_size: int):
        super().__init__()
        self.conv = nn.Conv1d(dim, dim, kernel_size, padding=(kernel_size - 1) // 2, groups=dim, bias=False)

    def forward(self, x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """`weight` [D, 1, K] replaces the stored one (ConvModule folds its identity path into it)."""
        weight = self.conv.weight if weight is None else weight
        return depthwise_conv(x, weight, self.conv.padding[0])


def depthwise_conv(x: torch.Tensor, weight: torch.Tensor, padding: int) -> torch.Tensor:
    """Per-channel conv over time of x [B, C, L] with weight [C, 1, K], run as a 2-D convolution over
    [B, C, 1, L] (oneDNN's channels-last depthwise kernel when x is a transposed [B, L, C]). [B, C, L'].

    oneDNN's bfloat16 kernel never returns for 2-16 channels and 15 or more taps (torch 2.13, avx512_bf16);
    such narrow convolutions run in float32, also under bf16 autocast (no published model is that narrow)."""
    if 1 < x.shape[1] <= 16 and weight.shape[-1] >= 15 and (x.dtype == torch.bfloat16 or _bf16_autocast(x)):
        with torch.autocast(x.device.type, enabled=False):
            return depthwise_conv(x.float(), weight.float(), padding).to(x.dtype)
    y = F.conv2d(x.unsqueeze(2), weight.unsqueeze(2), padding=(0, padding), groups=x.shape[1])
    return y.squeeze(2)


def _bf16_autocast(x: torch.Tensor) -> bool:
    kind = x.device.type
    return torch.is_autocast_enabled(kind) and torch.get_autocast_dtype(kind) == torch.bfloat16


class ConvModule(nn.Module):
    """Convolution module: y + depthwise_conv(y). [B, L, D] -> [B, L, D].

    The identity path is folded into the kernel (one added to its centre tap), so the whole module is a
    single depthwise convolution; kept as `sequential` (Transpose, DepthwiseConv1d) for the checkpoint keys.
    """

    def __init__(self, dim: int, kernel_size: int = 17):
        super().__init__()
        self.sequential = nn.Sequential(Transpose(), DepthwiseConv1d(dim, kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dwconv: DepthwiseConv1d = self.sequential[1]
        w = dwconv.conv.weight  # [D, 1, K]
        centre = (w.shape[-1] - 1) // 2
        identity = (torch.arange(w.shape[-1], device=w.device) == centre).to(w.dtype)  # [K], one at the centre
        return dwconv(x.transpose(1, 2), w + identity).transpose(1, 2)


class FFConvM(nn.Module):
    """Convolution-augmented projection: Norm -> Linear -> SiLU -> ConvModule -> Dropout.

    [B, L, d_in] -> [B, L, d_out]. `norm` is "scalenorm" (FLASH layers) or "layernorm" (gated FSMN).
    """

    def __init__(self, d_in: int, d_out: int, norm: str = "scalenorm", kernel_size: int = 17, dropout: float = 0.1):
        super().__init__()
        norm_layer = ScaleNorm(d_in) if norm == "scalenorm" else nn.LayerNorm(d_in)
        self.mdl = nn.Sequential(
            norm_layer,
            nn.Linear(d_in, d_out),
            nn.SiLU(inplace=True),  # on the linear layer's fresh output
            ConvModule(d_out, kernel_size),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm, linear, silu, conv_module, dropout = self.mdl  # (fast mode may fuse linear and silu)
        return dropout(conv_module(silu(linear(norm(x)))))


class OffsetScale(nn.Module):
    """Per-dimension affine variants of the shared q/k projection Z: Z * gamma[h] + beta[h].

    [B, L, d] -> heads x [B, L, d]; for MossFormer: (local q, global q, local k, global k).
    """

    def __init__(self, dim: int, heads: int = 4):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(heads, dim))
        self.beta = nn.Parameter(torch.zeros(heads, dim))
        nn.init.normal_(self.gamma, std=0.02)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = x.unsqueeze(-2) * self.gamma + self.beta  # [B, L, H, d]
        return out.unbind(dim=-2)


class RotaryEmbedding(nn.Module):
    """Partial rotary position embedding over interleaved pairs (2j, 2j+1) of the first `dim` dims.

    The frequencies are stored (and loaded) as a frozen parameter `freqs` [dim/2]; angles are formed in
    float32 as position * freq, as the official code does.
    """

    def __init__(self, dim: int = 32, base: float = 10000.0):
        super().__init__()
        self.dim = dim
        freqs = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32)[: dim // 2] / dim))
        self.freqs = nn.Parameter(freqs, requires_grad=False)

    def angles(self, length: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin tables [L, dim] (each angle repeated for its pair)."""
        t = torch.arange(length, device=device, dtype=torch.float32)
        ang = torch.outer(t, self.freqs.float()).repeat_interleave(2, dim=-1)
        return ang.cos(), ang.sin()

    def rotate(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """x [B, L, d] with d >= dim; rotates dims [0, dim)."""
        rot, rest = x[..., : self.dim], x[..., self.dim :]
        pairs = rot.unflatten(-1, (-1, 2))
        half = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
        rot = rot * cos.to(x.dtype) + half * sin.to(x.dtype)
        return torch.cat((rot, rest), dim=-1)


class ScaledSinuEmbedding(nn.Module):
    """Global sinusoidal position table [L, D] = [sin(t f), cos(t f)] * scale (halves concatenated)."""

    def __init__(self, dim: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        inv_freq = 1.0 / (10000 ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
        self.register_buffer("inv_freq", inv_freq)

    def forward(self, length: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        t = torch.arange(length, device=device, dtype=torch.float32)
        ang = torch.outer(t, self.inv_freq.float())
        return (torch.cat((ang.sin(), ang.cos()), dim=-1) * self.scale.float()).to(dtype)


def token_shift(x: torch.Tensor) -> torch.Tensor:
    """Delay the first half of the channels by one frame. [B, L, D] -> [B, L, D]."""
    shifted, kept = x.chunk(2, dim=-1)
    shifted = F.pad(shifted, (0, 0, 1, -1))
    return torch.cat((shifted, kept), dim=-1)
