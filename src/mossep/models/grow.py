"""A deeper MossFormer from a trained one: the new blocks start as the identity.

Every MossFormer block is residual, x + to_out(...), and to_out ends in Linear -> SiLU -> ConvModule, where
the convolution module maps zero to zero. A block whose to_out linear layer has zero weight and bias therefore
returns its input, so blocks inserted that way leave the network's function unchanged, and fine-tuning starts
from the trained model's quality with more capacity to learn (the zeroed layer gets gradients at once; the rest
of the new block once it is non-zero).
"""
from __future__ import annotations

import dataclasses

import torch

from .mossformer import MossFormer, build_model


def insert_positions(old: int, new: int) -> list[int]:
    """Where the old blocks go in a stack of `new`: the new blocks are spread evenly between them (none before
    the first old block). 6 -> 9: [0, 2, 3, 5, 7, 8] (new blocks at 1, 4 and 6). Pure, for tests.
    """
    if not 0 < old <= new:
        raise ValueError(f"cannot grow {old} blocks into {new}")
    extra = new - old
    before = [max(1, ((k + 1) * old) // (extra + 1)) for k in range(extra)]  # old blocks ahead of each new one
    return [i + sum(b <= i for b in before) for i in range(old)]


def deepen(model: MossFormer, num_blocks: int, seed: int = 0) -> MossFormer:
    """`model` with `num_blocks` MossFormer blocks: its own in order, identity blocks spread between them.

    The new blocks' other weights get the usual random initialisation (seeded); the result computes exactly
    what `model` computes until it is trained.
    """
    cfg = model.config
    if cfg.arch != "mossformer":
        raise ValueError(f"only MossFormer models can be deepened, not {cfg.arch}")
    torch.manual_seed(seed)
    grown = build_model(dataclasses.replace(cfg, num_blocks=num_blocks))
    old_layers = model.mask_net.mdl.att_mdl.mossformerM.layers
    new_layers = grown.mask_net.mdl.att_mdl.mossformerM.layers
    keep = insert_positions(len(old_layers), num_blocks)
    state = {k: v for k, v in model.state_dict().items() if ".mossformerM.layers." not in k}
    grown.load_state_dict(state, strict=False)
    with torch.no_grad():
        for i, layer in enumerate(new_layers):
            if i in keep:
                layer.load_state_dict(old_layers[keep.index(i)].state_dict())
            else:
                out_linear = layer.to_out.mdl[1]
                out_linear.weight.zero_()
                out_linear.bias.zero_()
    return grown.to(next(model.parameters()).device)
