"""MossFormer against the ModelScope conformance kit (tests/fixtures/mossformer_8k, see its README).

Criterion per case: max|ours - ref| / rms(ref) <= 1e-4 over the whole [2, T] array.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mossep.checkpoints import load_checkpoint
from mossep.checkpoints.modelscope import config_from_modelscope
from mossep.models import build_model
from mossep.official_pipelines import modelscope_pcm16

KIT = Path(__file__).parent / "fixtures" / "mossformer_8k"
CASES = KIT / "cases"
INDEX = json.loads((CASES / "index.json").read_text())
TOL = INDEX["tolerance"]["threshold"]


def rel_err(ours: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(ours - ref).max() / np.sqrt(np.mean(ref.astype(np.float64) ** 2)))


@pytest.fixture(scope="module")
def model():
    loaded = load_checkpoint(KIT / "tiny_checkpoint")
    assert loaded.source == "modelscope" and loaded.config.num_blocks == 1
    return loaded.model.eval()


def separate(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x).reshape(1, -1))[0].numpy()


@pytest.mark.parametrize("case", sorted(INDEX["cases"]))
def test_case_output(model, case):
    meta = INDEX["cases"][case]
    x = np.load(CASES / meta["input"])
    ref = np.load(CASES / meta["output"])
    ours = separate(model, x)
    assert ours.shape == ref.shape == tuple(meta["output_shape"])
    assert rel_err(ours, ref) <= TOL


def test_case0_intermediates(model):
    """Stage-by-stage activations of the 0.3 s debug case, captured with forward hooks."""
    got: dict[str, torch.Tensor] = {}
    mn = model.mask_net
    block0 = mn.mdl.att_mdl.mossformerM.layers[0]
    hooks = [
        model.encoder.register_forward_hook(lambda m, i, o: got.__setitem__("encoder_out", o)),
        mn.norm.register_forward_hook(lambda m, i, o: got.__setitem__("masknet_norm_out", o)),
        mn.mdl.register_forward_pre_hook(lambda m, i: got.__setitem__("masknet_after_posenc", i[0])),
        block0.to_qk.register_forward_hook(lambda m, i, o: got.__setitem__("block0_to_qk_out", o)),
        block0.register_forward_hook(lambda m, i, o: got.__setitem__("block0_out", o)),
        mn.mdl.att_mdl.register_forward_hook(lambda m, i, o: got.__setitem__("mossformerM_out_after_final_ln", o)),
        mn.register_forward_hook(lambda m, i, o: got.__setitem__("masks", o)),
    ]
    try:
        separate(model, np.load(CASES / "case0_debug_input.npy"))
    finally:
        for h in hooks:
            h.remove()
    for name, shape in INDEX["debug_intermediates"].items():
        key = name.removeprefix("case0_debug_").removesuffix(".npy")
        ref = np.load(CASES / name)
        ours = got[key].numpy()
        assert ours.shape == tuple(shape) == ref.shape, key
        assert rel_err(ours, ref) <= TOL, key


def test_pipeline_pcm16_conversion():
    ref = np.load(CASES / "case2_pipeline_pcm16.npy")
    ours = modelscope_pcm16(np.load(CASES / "case2_output.npy"))
    assert ours.dtype == np.int16 and ours.shape == ref.shape
    assert np.abs(ours.astype(np.int32) - ref).max() <= 1
    assert np.abs(ours).max() == 16384  # peak 0.5 of full scale, per speaker


def test_published_config_keys_and_shapes():
    """The full 24-block model has exactly the manifest's keys, in order, with its shapes, per file."""
    manifest = json.loads((KIT / "state_dict_manifest.json").read_text())
    cfg = config_from_modelscope(manifest["model_config"])
    model = build_model(cfg)
    parts = {"encoder.bin": model.encoder, "decoder.bin": model.decoder, "masknet.bin": model.mask_net}
    for fname, spec in manifest["files"].items():
        state = parts[fname].state_dict()
        assert [(k, list(v.shape)) for k, v in state.items()] == [(e["name"], e["shape"]) for e in spec["keys"]], fname
        assert all(v.dtype == torch.float32 for v in state.values())
    params = list(model.parameters())
    assert sum(p.numel() for p in params if p.requires_grad) == 42_101_834
    assert sum(p.numel() for p in params) == 42_101_850
