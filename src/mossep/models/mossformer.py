"""MossFormer (Zhao & Ma, ICASSP 2023): encoder -> mask net -> masked decoder.

Shapes: B batch, T samples, N encoder filters, D block width, L frames, C speakers.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import MossFormerBlock
from .blocks import RotaryEmbedding, ScaledSinuEmbedding
from .config import ModelConfig


class Encoder(nn.Module):
    """Learned filterbank: Conv1d(1 -> N, kernel K, hop S, no bias) + ReLU. [B, T] -> [B, N, L]."""

    def __init__(self, kernel_size: int, stride: int, dim: int):
        super().__init__()
        self.conv1d = nn.Conv1d(1, dim, kernel_size, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv1d(x.unsqueeze(1)))


class Decoder(nn.ConvTranspose1d):
    """Transposed conv N -> 1. [B, N, L] -> [B, (L - 1) * S + K]."""

    def __init__(self, kernel_size: int, stride: int, dim: int, bias: bool = False):
        super().__init__(dim, 1, kernel_size, stride=stride, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x).squeeze(1)


class LayerNormWrapper(nn.Module):
    """LayerNorm held as `.norm` (the official checkpoint key is `...norm.norm.weight`)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


class BlockList(nn.Module):
    """`layers`: the MossFormer blocks, run in order. [B, L, D] -> [B, L, D]."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        rotary = RotaryEmbedding(min(cfg.rotary_dim, cfg.query_key_dim))  # one module shared by all blocks
        self.layers = nn.ModuleList(
            MossFormerBlock(cfg.d_model, rotary, cfg.group_size, cfg.query_key_dim, cfg.expansion_factor,
                            cfg.dropout, cfg.conv_kernel_size)
            for _ in range(cfg.num_blocks)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class MossFormerM(nn.Module):
    """Block stack followed by the final LayerNorm. [B, L, D] -> [B, L, D]."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.mossformerM = BlockList(cfg)
        self.norm = LayerNormWrapper(cfg.d_model, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.mossformerM(x))


class ComputationBlock(nn.Module):
    """Sequence model over all frames, GroupNorm, and the skip around it. [B, D, L] -> [B, D, L]."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.att_mdl = MossFormerM(cfg)
        self.att_norm = nn.GroupNorm(1, cfg.d_model, eps=1e-8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.att_mdl(x.transpose(1, 2)).transpose(1, 2)
        return self.att_norm(y) + x


class MaskNet(nn.Module):
    """Estimates one non-negative mask per speaker from the encoder output.

    [B, N, L] -> masks [C, B, N, L]. `mdl` is the sequence model ([B, D, L] -> [B, D, L]).
    """

    def __init__(self, cfg: ModelConfig, mdl: nn.Module):
        super().__init__()
        N, D, C = cfg.encoder_dim, cfg.d_model, cfg.num_spks
        self.num_spks = C
        self.norm = nn.GroupNorm(1, N, eps=1e-8)
        self.conv1d_encoder = nn.Conv1d(N, D, 1, bias=False)
        self.pos_enc = ScaledSinuEmbedding(D)
        self.mdl = mdl
        self.conv1d_out = nn.Conv1d(D, D * C, 1)
        self.conv1_decoder = nn.Conv1d(D, N, 1, bias=False)
        self.prelu = nn.PReLU()
        self.output = nn.Sequential(nn.Conv1d(D, D, 1), nn.Tanh())
        self.output_gate = nn.Sequential(nn.Conv1d(D, D, 1), nn.Sigmoid())

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        B, _, L = h.shape
        z = self.conv1d_encoder(self.norm(h))  # [B, D, L]
        z = z + self.pos_enc(L, z.device, z.dtype).transpose(0, 1)
        x = self.prelu(self.mdl(z))
        x = self.conv1d_out(x).reshape(B * self.num_spks, -1, L)  # [B*C, D, L]
        x = self.output(x) * self.output_gate(x)
        masks = F.relu(self.conv1_decoder(x))  # [B*C, N, L]
        return masks.reshape(B, self.num_spks, -1, L).transpose(0, 1)


class Separator(nn.Module):
    """Encoder, mask net, decoder. `forward`: mixture [B, T] -> sources [B, C, T]."""

    def __init__(self, cfg: ModelConfig, mdl: nn.Module):
        super().__init__()
        self.config = cfg
        self.encoder = Encoder(cfg.kernel_size, cfg.stride, cfg.encoder_dim)
        self.mask_net = MaskNet(cfg, mdl)
        self.decoder = Decoder(cfg.kernel_size, cfg.stride, cfg.encoder_dim, bias=cfg.decoder_bias)

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        T = mix.shape[-1]
        if T < self.config.kernel_size:
            raise ValueError(f"input has {T} samples; the model needs at least {self.config.kernel_size}")
        h = self.encoder(mix)  # [B, N, L]
        masks = self.mask_net(h)  # [C, B, N, L]
        est = torch.stack([self.decoder(h * m if self.config.mask_encoder else m) for m in masks], dim=1)  # [B, C, T']
        return F.pad(est, (0, T - est.shape[-1]))  # the (T - K) % S samples past the last frame: zeros


class MossFormer(Separator):
    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg, ComputationBlock(cfg))


def build_model(cfg: ModelConfig) -> Separator:
    if cfg.arch == "mossformer":
        return MossFormer(cfg)
    if cfg.arch == "mossformer2":
        from .mossformer2 import MossFormer2

        return MossFormer2(cfg)
    raise ValueError(f"unknown architecture {cfg.arch!r}")
