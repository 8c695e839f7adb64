"""A deeper MossFormer from a trained one (mossep.models.grow): same function at first, then it learns."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mossep.checkpoints import load_checkpoint, save_native
from mossep.errors import MossepError
from mossep.models import build_model, preset
from mossep.models.grow import deepen, insert_positions
from mossep.train import Trainer

from test_train import _cfg, speaker_sets  # noqa: F401  (the fixture)


@given(st.integers(1, 12), st.integers(0, 12))
def test_old_blocks_keep_their_order_and_the_new_ones_fall_between(old, extra):
    pos = insert_positions(old, old + extra)
    assert len(pos) == old and pos == sorted(set(pos))  # every old block once, in order
    assert pos[0] == 0 and pos[-1] < old + extra
    if extra == 0:
        assert pos == list(range(old))
    if old >= 2:  # the new blocks sit between old ones: none after the last
        assert pos[-1] == old + extra - 1
        gaps = [b - a - 1 for a, b in zip(pos, pos[1:])]  # new blocks in each gap: spread, not piled up
        assert max(gaps) - min(gaps) <= (extra + old - 2) // (old - 1)


def test_growing_to_fewer_blocks_is_refused():
    with pytest.raises(ValueError):
        insert_positions(6, 5)


def _tiny(seed=0):
    torch.manual_seed(seed)
    return build_model(preset("tiny")).eval()


def test_a_deepened_model_computes_the_same_and_then_learns():
    model = _tiny()
    grown = deepen(model, model.config.num_blocks + 3, seed=1).eval()
    assert grown.config.num_blocks == model.config.num_blocks + 3
    assert sum(p.numel() for p in grown.parameters()) > sum(p.numel() for p in model.parameters())
    x = torch.randn(2, 4000)
    with torch.no_grad():
        torch.testing.assert_close(grown(x), model(x), rtol=0, atol=1e-6)
    # the new blocks are trainable: one step moves the output
    grown.train()
    opt = torch.optim.SGD(grown.parameters(), lr=0.1)
    loss = grown(x).pow(2).mean()
    loss.backward()
    new = [grown.mask_net.mdl.att_mdl.mossformerM.layers[i] for i in range(grown.config.num_blocks)
           if i not in insert_positions(model.config.num_blocks, grown.config.num_blocks)]
    assert all(layer.to_out.mdl[1].weight.grad.abs().sum() > 0 for layer in new)
    opt.step()
    with torch.no_grad():
        assert not torch.allclose(grown.eval()(x), model(x), atol=1e-4)


def test_mossformer2_is_not_deepened():
    cfg = preset("tiny", arch="mossformer2")
    with pytest.raises(ValueError, match="MossFormer"):
        deepen(build_model(cfg), cfg.num_blocks + 1)


def test_training_deepens_an_init_checkpoint_and_refuses_other_model_changes(tmp_path, speaker_sets):  # noqa: F811
    model = _tiny()
    init = tmp_path / "small.safetensors"
    save_native(model, init)
    blocks = model.config.num_blocks + 2
    trainer = Trainer(_cfg(tmp_path, speaker_sets, init=str(init), model={"num_blocks": blocks}, steps=2,
                           valid_every=100, checkpoint_every=2))
    assert trainer.model.config.num_blocks == blocks and "deepened" in trainer.init_note
    trainer.fit()
    assert load_checkpoint(tmp_path / "run" / "best.safetensors").config.num_blocks == blocks
    # resuming rebuilds the same deeper model and continues it exactly
    resumed = Trainer(_cfg(tmp_path, speaker_sets, init=str(init), model={"num_blocks": blocks}, steps=3,
                           valid_every=100))
    resumed.resume()
    assert resumed.step == 2
    for (k, a), b in zip(trainer.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k

    with pytest.raises(MossepError, match="only num_blocks"):
        Trainer(_cfg(tmp_path / "b", speaker_sets, init=str(init), model={"d_model": 64}))
    with pytest.raises(MossepError, match="num_blocks"):
        Trainer(_cfg(tmp_path / "c", speaker_sets, init=str(init), model={"num_blocks": 1}))
