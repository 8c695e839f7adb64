"""The MossFormer block: gated single-head transformer with joint local/global attention."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import FFConvM, OffsetScale, RotaryEmbedding, token_shift


def joint_attention(
    quad_q: torch.Tensor,
    lin_q: torch.Tensor,
    quad_k: torch.Tensor,
    lin_k: torch.Tensor,
    v: torch.Tensor,
    u: torch.Tensor,
    group_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Local quadratic attention inside non-overlapping groups plus global linear attention.

    q/k: [B, L, d]; v, u: [B, L, e]. Returns (att_v, att_u), each [B, L, e].
    """
    B, L, _ = v.shape
    pad = (-L) % group_size
    if pad:
        quad_q, lin_q, quad_k, lin_k, v, u = (F.pad(t, (0, 0, 0, pad)) for t in (quad_q, lin_q, quad_k, lin_k, v, u))
    n = (L + pad) // group_size
    g = group_size

    def groups(t: torch.Tensor) -> torch.Tensor:  # [B, Lp, c] -> [B, n, g, c]
        return t.reshape(B, n, g, t.shape[-1])

    qq, qk_, gv, gu = groups(quad_q), groups(quad_k), groups(v), groups(u)
    # local: A = relu(Q K^T / g)^2 inside each group; zero-padded keys give zero scores
    attn = F.relu(torch.matmul(qq, qk_.transpose(-1, -2)) / g) ** 2  # [B, n, g, g]
    local_v = torch.matmul(attn, gv)
    local_u = torch.matmul(attn, gu)
    # global: Q (K^T V / L), L the unpadded length
    kv = torch.matmul(lin_k.transpose(-1, -2), v) / L  # [B, d, e]
    ku = torch.matmul(lin_k.transpose(-1, -2), u) / L
    glob_v = torch.matmul(lin_q, kv)  # [B, Lp, e]
    glob_u = torch.matmul(lin_q, ku)
    att_v = local_v.reshape(B, n * g, -1) + glob_v
    att_u = local_u.reshape(B, n * g, -1) + glob_u
    return att_v[:, :L], att_u[:, :L]


class MossFormerBlock(nn.Module):
    """Gated attention unit (FLASH layer) of MossFormer. [B, L, D] -> [B, L, D].

    rotary_pos_emb is passed in so that every block of a stack shares one module, as in the
    official checkpoints (its `freqs` key appears once per block, aliasing one tensor).
    """

    def __init__(
        self,
        dim: int,
        rotary_pos_emb: RotaryEmbedding,
        group_size: int = 256,
        query_key_dim: int = 128,
        expansion_factor: float = 4.0,
        dropout: float = 0.1,
        kernel_size: int = 17,
    ):
        super().__init__()
        hidden = int(dim * expansion_factor)
        self.group_size = group_size
        self.rotary_pos_emb = rotary_pos_emb
        self.to_hidden = FFConvM(dim, hidden, kernel_size=kernel_size, dropout=dropout)
        self.to_qk = FFConvM(dim, query_key_dim, kernel_size=kernel_size, dropout=dropout)
        self.qk_offset_scale = OffsetScale(query_key_dim, heads=4)
        self.to_out = FFConvM(hidden // 2, dim, kernel_size=kernel_size, dropout=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shifted = token_shift(x)
        v, u = self.to_hidden(shifted).chunk(2, dim=-1)  # [B, L, hidden/2] each
        z = self.to_qk(shifted)  # [B, L, qk]
        cos, sin = self.rotary_pos_emb.angles(x.shape[1], x.device)
        quad_q, lin_q, quad_k, lin_k = (self.rotary_pos_emb.rotate(t, cos, sin) for t in self.qk_offset_scale(z))
        att_v, att_u = joint_attention(quad_q, lin_q, quad_k, lin_k, v, u, self.group_size)
        gated = (att_u * v) * torch.sigmoid(att_v * u)  # cross-over gating
        return x + self.to_out(gated)
