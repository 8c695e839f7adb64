"""MossFormer2 (Zhao et al., ICASSP 2024): MossFormer with a gated FSMN memory block after every FLASH layer.

Same encoder, mask net and decoder as MossFormer; only the sequence model inside the mask net differs.
Module names follow the ClearerVoice-Studio layout (`mdl.intra_mdl.mossformerM.{layers,fsmn}`,
`mdl.intra_mdl.norm`, `mdl.intra_norm`), so its state dicts load after mapping `enc.`/`dec.` to
`encoder.`/`decoder.` (see checkpoints/clearvoice.py).
Shapes: B batch, L frames, D block width.
"""
from __future__ import annotations

import torch
from torch import nn

from .attention import MossFormerBlock
from .blocks import RotaryEmbedding
from .config import ModelConfig
from .fsmn import GatedFSMNBlock
from .mossformer import Separator


class FlashFSMNStack(nn.Module):
    """Alternating stack: FLASH layer i, then gated-FSMN block i, for i = 0..n-1. [B, L, D] -> [B, L, D].

    `fsmn` is registered before `layers` to reproduce the official state-dict order.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        rotary = RotaryEmbedding(min(cfg.rotary_dim, cfg.query_key_dim))  # one module shared by all layers
        self.fsmn = nn.ModuleList(
            GatedFSMNBlock(cfg.d_model, cfg.fsmn_dim, cfg.fsmn_lorder, cfg.conv_kernel_size, cfg.dropout)
            for _ in range(cfg.num_blocks)
        )
        self.layers = nn.ModuleList(
            MossFormerBlock(cfg.d_model, rotary, cfg.group_size, cfg.query_key_dim, cfg.expansion_factor,
                            cfg.dropout, cfg.conv_kernel_size)
            for _ in range(cfg.num_blocks)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for flash, memory in zip(self.layers, self.fsmn):
            x = memory(flash(x))
        return x


class MossFormer2M(nn.Module):
    """Block stack followed by LayerNorm (eps 1e-6). [B, L, D] -> [B, L, D]."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.mossformerM = FlashFSMNStack(cfg)
        self.norm = nn.LayerNorm(cfg.d_model, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.mossformerM(x))


class IntraComputationBlock(nn.Module):
    """Sequence model over all frames, GroupNorm, and the skip around it. [B, D, L] -> [B, D, L]."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.intra_mdl = MossFormer2M(cfg)
        self.intra_norm = nn.GroupNorm(1, cfg.d_model, eps=1e-8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.intra_mdl(x.transpose(1, 2)).transpose(1, 2)
        return self.intra_norm(y) + x


class MossFormer2(Separator):
    """Encoder -> mask net (FLASH + gated FSMN stack) -> decoder. mixture [B, T] -> sources [B, C, T]."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg, IntraComputationBlock(cfg))
