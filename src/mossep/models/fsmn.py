"""The gated FSMN block of MossFormer2 (Zhao et al., ICASSP 2024): a recurrent-free memory module
that complements the FLASH layer's attention with fine-grained local patterns.

Names follow the official attribute layout so ClearerVoice state dicts load without renaming.
Shapes: B batch, L frames, D block width, H inner (FSMN) width.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import FFConvM, depthwise_conv


def _depthwise_same(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Undilated per-channel conv over time with 'same' zero padding. x [B, C, L], weight [C, 1, K] (K odd).

    Run as a 2-D convolution over channels-last [B, C, 1, L] (a transposed [B, L, C], copied into that layout
    only if it is not already): oneDNN's fast depthwise kernel on a CPU. The output is channels-last too.
    """
    if x.stride(1) != 1 and x.shape[1] > 1:
        x = x.transpose(1, 2).contiguous().transpose(1, 2)
    return depthwise_conv(x, weight, (weight.shape[-1] - 1) // 2)


def grouped_time_conv(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """What `conv` (groups = out channels, window (K, 1), dilation (d, 1), 'same' padding, no bias) computes
    on x [B, C_in, L] viewed as [B, C_in, L, 1], but fast: [B, C_out, L] (channels-last in memory).

    Output channel g sums n = C_in / C_out per-channel convolutions of input channels n*g ... n*g + n - 1,
    so it is one depthwise convolution over all C_in channels followed by a sum over each group (n strided
    adds: a sum over a size-n dim of a channels-last tensor is many times slower). A dilation d is a kernel
    of (K - 1) d + 1 taps with d - 1 zeros between the stored ones (oneDNN's dilated depthwise kernel is
    some 50x slower than its undilated one on a CPU; the zeros cost d times the few multiplies).
    """
    c_out, n, K, _ = conv.weight.shape
    d = conv.dilation[0]
    weight = conv.weight.reshape(-1, 1, K)  # [C_in, 1, K]
    if d > 1:  # [C_in, 1, K, d] with zeros after each tap, cut after the last one
        weight = F.pad(weight.unsqueeze(-1), (0, d - 1)).flatten(-2)[..., : (K - 1) * d + 1]
    y = _depthwise_same(x, weight)  # [B, C_in, L]
    out = y[:, 0::n]  # [B, C_out, L]: the first channel of every group
    for k in range(1, n):
        out = out + y[:, k::n]
    return out


def instance_norm(x: torch.Tensor, norm: nn.InstanceNorm2d) -> torch.Tensor:
    """Per-item, per-channel normalisation over time. With a single frame, x - mean is 0, so the result
    is the affine shift (torch refuses that case, but a 16-sample input has exactly one frame)."""
    if x.shape[2] * x.shape[3] > 1:
        return norm(x)
    return torch.zeros_like(x) + norm.bias.view(1, -1, 1, 1)


class DilatedDenseNet(nn.Module):
    """Dense dilated memory D: `depth` grouped convolutions over time, each reading all earlier outputs.

    Layer i (dilation 2**i, kernel 2*lorder-1, 'same' zero padding, one group per output channel) sees
    the concatenation [o_{i-1}; ...; o_1; q], so group g reads concatenated channels (i+1)g ... (i+1)g+i.
    Each layer: conv -> InstanceNorm (affine) -> PReLU (one slope per channel). Returns the last output.
    The convolutions are stored as 2-D ones with a (kernel, 1) window over [B, H, L, 1].
    [B, H, L] -> [B, H, L].
    """

    def __init__(self, channels: int, lorder: int, depth: int = 2):
        super().__init__()
        self.depth = depth
        for i in range(depth):
            dilation = 2**i
            self.add_module(f"conv{i + 1}", nn.Conv2d(
                channels * (i + 1), channels, kernel_size=(2 * lorder - 1, 1), dilation=(dilation, 1),
                padding=(dilation * (lorder - 1), 0), groups=channels, bias=False))
            self.add_module(f"norm{i + 1}", nn.InstanceNorm2d(channels, affine=True))
            self.add_module(f"prelu{i + 1}", nn.PReLU(channels))

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        skip = q  # [B, H, L]
        for i in range(1, self.depth + 1):
            out = grouped_time_conv(skip, getattr(self, f"conv{i}")).unsqueeze(-1)  # [B, H, L, 1]
            out = getattr(self, f"prelu{i}")(instance_norm(out, getattr(self, f"norm{i}"))).squeeze(-1)
            skip = torch.cat((out.transpose(1, 2), skip.transpose(1, 2)), dim=2).transpose(1, 2)  # channels-last
        return out


class DilatedFSMN(nn.Module):
    """FSMN memory: u' = u + D(project(relu(linear(u)))). [B, L, H] -> [B, L, H]."""

    def __init__(self, dim: int, lorder: int, depth: int = 2):
        super().__init__()
        self.linear = nn.Linear(dim, dim)
        self.project = nn.Linear(dim, dim, bias=False)
        self.conv = DilatedDenseNet(dim, lorder, depth)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        q = self.project(F.relu(self.linear(u)))
        return u + self.conv(q.transpose(1, 2)).transpose(1, 2)


class GatedFSMN(nn.Module):
    """Gated memory: s = to_v(a) * fsmn(to_u(a)) + a. [B, L, H] -> [B, L, H]."""

    def __init__(self, dim: int, lorder: int, kernel_size: int = 17, dropout: float = 0.1):
        super().__init__()
        self.to_u = FFConvM(dim, dim, norm="layernorm", kernel_size=kernel_size, dropout=dropout)
        self.to_v = FFConvM(dim, dim, norm="layernorm", kernel_size=kernel_size, dropout=dropout)
        self.fsmn = DilatedFSMN(dim, lorder)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.to_v(a) * self.fsmn(self.to_u(a)) + a


class GatedFSMNBlock(nn.Module):
    """Bottleneck around the gated memory, with a residual. [B, L, D] -> [B, L, D].

    a = LayerNorm(PReLU(1x1 conv D -> H)); z + 1x1 conv H -> D (LayerNorm(GatedFSMN(a))).
    """

    def __init__(self, dim: int, inner_dim: int = 256, lorder: int = 20, kernel_size: int = 17,
                 dropout: float = 0.1):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv1d(dim, inner_dim, 1), nn.PReLU())
        self.norm1 = nn.LayerNorm(inner_dim)  # over channels
        self.gated_fsmn = GatedFSMN(inner_dim, lorder, kernel_size, dropout)
        self.norm2 = nn.LayerNorm(inner_dim)
        self.conv2 = nn.Conv1d(inner_dim, dim, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        conv1, prelu = self.conv1
        a = self.norm1(prelu(pointwise(conv1, z)))  # [B, L, H]
        s = self.norm2(self.gated_fsmn(a))
        return z + pointwise(self.conv2, s)


def pointwise(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A 1x1 Conv1d over the channels of x [B, L, C_in] -> [B, L, C_out], as the linear layer it is (no transposes:
    2-3x faster on a CPU than convolving the transposed tensor). Other layers (fast mode's) are called on x."""
    if isinstance(layer, nn.Conv1d):
        return F.linear(x, layer.weight.squeeze(-1), layer.bias)
    return layer(x)
