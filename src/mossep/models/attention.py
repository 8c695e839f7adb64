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
    att = joint_attention_stacked(quad_q, lin_q, quad_k, lin_k, torch.cat((v, u), dim=-1), group_size)
    return att.chunk(2, dim=-1)


def joint_attention_stacked(
    quad_q: torch.Tensor,
    lin_q: torch.Tensor,
    quad_k: torch.Tensor,
    lin_k: torch.Tensor,
    values: torch.Tensor,
    group_size: int,
) -> torch.Tensor:
    """joint_attention for several value sets stacked along channels (MossFormer: values = [v | u]).

    q/k: [B, L, d]; values: [B, L, c]. Returns [B, L, c]:
        out = Q_lin (K_lin^T V / L)  +  A_g V_g,   A_g = relu(Q_g K_g^T / g)^2 within each group of g frames.
    The last group is shorter when g does not divide L; the reference zero-pads it to g frames, but
    zero keys score relu(0)^2 = 0 and padded queries are discarded, so it is computed unpadded (the
    scale stays 1/g). The local part is accumulated in place into the global part (bmm's backward does
    not need its output), so no [B, L, c] temporary is made beyond the result.
    """
    if exporting():
        return joint_attention_padded(quad_q, lin_q, quad_k, lin_k, values, group_size)
    B, L, c = values.shape
    g = group_size
    n, r = divmod(L, g)  # whole groups, frames in the short last group
    full = n * g

    # global: Q_lin (K_lin^T V / L)
    kv = torch.bmm(lin_k.transpose(1, 2), values) / L  # [B, d, c]
    out = torch.bmm(lin_q, kv)  # [B, L, c]
    values = values.to(out.dtype)  # (autocast may leave values in another dtype)

    def local_scores(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:  # [..., l, d] x2 -> [..., l, l]
        return (F.relu(torch.matmul(q, k.transpose(-1, -2)) / g) ** 2).to(out.dtype)

    if n:  # whole groups: [B, n, g, .]
        attn = local_scores(quad_q[:, :full].unflatten(1, (n, g)), quad_k[:, :full].unflatten(1, (n, g)))  # [B, n, g, g]
        out_groups = out[:, :full].unflatten(1, (n, g))  # a view of out
        for b in range(B):  # baddbmm_ is 3-D: one in-place call per batch item
            out_groups[b].baddbmm_(attn[b], values[b, :full].unflatten(0, (n, g)))
    if r:  # short last group: [B, r, .]
        attn = local_scores(quad_q[:, full:], quad_k[:, full:])  # [B, r, r]
        out[:, full:].baddbmm_(attn, values[:, full:])
    return out


def exporting() -> bool:
    """Whether the model is being traced for ONNX export (mossep.export), where lengths are symbolic."""
    return torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting()


def joint_attention_padded(
    quad_q: torch.Tensor,
    lin_q: torch.Tensor,
    quad_k: torch.Tensor,
    lin_k: torch.Tensor,
    values: torch.Tensor,
    group_size: int,
) -> torch.Tensor:
    """joint_attention_stacked without Python branches or loops on the length or batch size, for export
    with a symbolic length: the last group is zero-padded to g frames (as the reference does; zero keys
    score 0 and the padded queries are cut off), every group attends in one batched matmul."""
    L, g = values.shape[1], group_size
    kv = torch.bmm(lin_k.transpose(1, 2), values) / L  # [B, d, c]
    out = torch.bmm(lin_q, kv)  # [B, L, c]
    pad = (g - L % g) % g

    def groups(t: torch.Tensor) -> torch.Tensor:  # [B, L, .] -> [B, n, g, .]
        return F.pad(t, (0, 0, 0, pad)).unflatten(1, (-1, g))

    attn = F.relu(torch.matmul(groups(quad_q), groups(quad_k).transpose(-1, -2)) / g) ** 2  # [B, n, g, g]
    local = torch.matmul(attn, groups(values)).flatten(1, 2)[:, :L]  # [B, L, c]
    return out + local


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
        hidden = self.to_hidden(shifted)  # [B, L, hidden] = [v | u], each [B, L, hidden/2]
        z = self.to_qk(shifted)  # [B, L, qk]
        cos, sin = self.rotary_pos_emb.angles(x.shape[1], x.device)
        quad_q, lin_q, quad_k, lin_k = (self.rotary_pos_emb.rotate(t, cos, sin) for t in self.qk_offset_scale(z))
        att = joint_attention_stacked(quad_q, lin_q, quad_k, lin_k, hidden, self.group_size)  # [att_v | att_u]
        v, u = hidden.chunk(2, dim=-1)
        att_v, att_u = att.chunk(2, dim=-1)
        gated = (att_u * v).mul_(torch.sigmoid_(att_v * u))  # cross-over gating: (A_u V) * sigmoid(A_v U)
        return x + self.to_out(gated)
