"""MossFormer2 against the ClearerVoice conformance kit (tests/fixtures/mossformer2_8k, see its README).

Criterion: for every case and speaker row k, max_t |y[k] - ref[k]| / rms(ref[k]) <= 1e-4. No permutation.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from mossep.checkpoints import load_checkpoint
from mossep.checkpoints.clearvoice import STACK, official_state_dict
from mossep.models import ModelConfig, build_model
from mossep.official_pipelines import audio_norm, clearvoice_decode, train_decode

KIT = Path(__file__).parent / "fixtures" / "mossformer2_8k"
INDEX = json.loads((KIT / "cases" / "index.json").read_text())
TOL = INDEX["tolerance"]["threshold"]
CASES = {c["name"]: c for c in INDEX["cases"]}


def row_err(ours: np.ndarray, ref: np.ndarray) -> np.ndarray:
    ref64 = ref.astype(np.float64)
    return np.abs(ours - ref64).max(axis=-1) / np.sqrt(np.mean(ref64**2, axis=-1))


def load_case(name: str) -> tuple[np.ndarray, np.ndarray]:
    c = CASES[name]
    x, ref = np.load(KIT / c["input"]), np.load(KIT / c["output"])
    assert x.shape == tuple(c["input_shape"]) and ref.shape == tuple(c["output_shape"])
    return x, ref


@pytest.fixture(scope="module")
def model():
    loaded = load_checkpoint(KIT / "tiny_checkpoint.pt")
    assert loaded.source == "clearvoice" and loaded.config.arch == "mossformer2"
    assert loaded.config.num_blocks == 1 and loaded.config.sample_rate == INDEX["sampling_rate"]
    return loaded.model.eval()


@pytest.fixture(scope="module")
def derived2(model):
    """The kit's 2-block model: every layers.1 / fsmn.1 tensor a copy of the block-0 tensor."""
    big = build_model(ModelConfig(**{**model.config.to_dict(), "num_blocks": 2})).eval()
    state = model.state_dict()
    for k, v in model.state_dict().items():
        for part in ("layers", "fsmn"):
            p0 = f"mask_net.mdl.intra_mdl.mossformerM.{part}.0."
            if k.startswith(p0):
                state[k.replace(p0, p0[:-2] + "1.")] = v
    big.load_state_dict(state, strict=True)
    return big


def separate(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x))[0].numpy()


@pytest.mark.parametrize("name", ["noise_1s", "mix_4s", "noise_odd_4005"])
def test_raw_forward(model, name):
    x, ref = load_case(name)
    assert (row_err(separate(model, x), ref) <= TOL).all()


def test_odd_length_tail_is_zero(model):
    x, ref = load_case("noise_odd_4005")
    ours = separate(model, x)
    assert (ours[:, -5:] == 0).all() and (ref[:, -5:] == 0).all()


def test_derived_two_block_model(derived2):
    x, ref = load_case("derived2_noise_1s")
    assert (row_err(separate(derived2, x), ref) <= TOL).all()


@pytest.mark.parametrize("name", ["pipe_train_default_noise_1s", "pipe_train_segmented_mix_4s"])
def test_train_decode_pipeline(model, name):
    c = CASES[name]
    x, ref = load_case(name)
    ours = train_decode(model, x[0], INDEX["sampling_rate"], c["decode_window"], c["one_time_decode_length"])
    assert ours.shape == ref.shape
    assert (row_err(ours, ref) <= TOL).all()
    if name.endswith("segmented_mix_4s"):
        assert (ours[:, 31000:] == 0).all()  # nothing written after the last window's W - G point


def test_clearvoice_decode_pipeline(model):
    c = CASES["pipe_clearvoice_segmented_mix_4s"]
    x, ref = load_case(c["name"])
    normed, inverse = audio_norm(x[0].astype(np.float64))
    ref_normed = np.load(KIT / c["audio_norm_output"])[0]
    assert np.abs(normed - ref_normed).max() <= 1e-6 * np.abs(ref_normed).max()
    assert inverse == pytest.approx(c["audio_norm_inverse_scalar"], rel=1e-9)
    ours = clearvoice_decode(model, normed, INDEX["sampling_rate"], c["decode_window"], c["one_time_decode_length"])
    assert (row_err(ours, ref) <= TOL).all()


def test_published_config_keys_and_shapes():
    """The full 24-block model: the manifest's 1099 names, in stored order, shapes, kinds and counts."""
    manifest = json.loads((KIT / "state_dict_manifest.json").read_text())
    c = manifest["config"]
    cfg = ModelConfig(arch="mossformer2", sample_rate=c["sampling_rate"], num_spks=c["num_spks"],
                      kernel_size=c["encoder_kernel_size"], stride=c["encoder_kernel_size"] // 2,
                      encoder_dim=c["encoder_embedding_dim"], d_model=c["mossformer_sequence_dim"],
                      num_blocks=c["num_mossformer_layer"])
    model = build_model(cfg)
    state = official_state_dict(model)
    assert [(k, list(v.shape)) for k, v in state.items()] == [(e["name"], e["shape"]) for e in manifest["entries"]]
    assert all(v.dtype == torch.float32 for v in state.values())
    buffers = {k for k, _ in model.named_buffers()}
    assert {e["name"] for e in manifest["entries"] if e["kind"] == "buffer"} == {"mask_net.pos_enc.inv_freq"}
    assert buffers == {"mask_net.pos_enc.inv_freq"}
    counts = manifest["counts"]
    params = list(model.parameters())
    assert sum(p.numel() for p in params) == counts["total_parameters_unique"]
    assert sum(p.numel() for p in params if p.requires_grad) == counts["trainable_parameters"]
    assert sum(v.numel() for v in state.values()) == counts["state_dict_elements_with_duplicates"]
    # the 24 rotary tables are one shared tensor
    freqs = {state[f"{STACK}layers.{i}.rotary_pos_emb.freqs"].data_ptr() for i in range(cfg.num_blocks)}
    assert len(freqs) == 1


def test_fixture_keys_are_the_manifest_keys_without_blocks_1_to_23():
    manifest = json.loads((KIT / "state_dict_manifest.json").read_text())
    later_blocks = re.compile(re.escape(STACK) + r"(layers|fsmn)\.([1-9]|1\d|2\d)\.")
    expected = [e["name"] for e in manifest["entries"] if not later_blocks.match(e["name"])]
    stored = torch.load(KIT / "tiny_checkpoint.pt", weights_only=True)["model"]
    assert len(expected) == 64
    assert [k.removeprefix("module.") for k in stored] == expected


@pytest.mark.parametrize("T", [16, 17, 23, 2055, 2063, 2056 + 8 * 256])
def test_forward_any_length_from_kernel_size(model, T):
    """Any T >= kernel size works, including frame counts at and just past the 256-frame group size."""
    x = torch.randn(1, T, generator=torch.Generator().manual_seed(T)) * 0.1
    with torch.no_grad():
        y = model(x)
    assert y.shape == (1, 2, T) and torch.isfinite(y).all()


def test_forward_rejects_shorter_than_kernel(model):
    with pytest.raises(ValueError, match="at least 16"):
        model(torch.zeros(1, 15))


def test_batch_equals_single_items(model):
    x = torch.randn(2, 3000, generator=torch.Generator().manual_seed(5)) * 0.1
    with torch.no_grad():
        both = model(x)
        one = torch.cat([model(x[i:i + 1]) for i in range(2)])
    assert torch.allclose(both, one, atol=1e-5 * one.abs().max().item())


def test_small_mossformer2_trains():
    """Small MossFormer2 configs build and get gradients in every parameter, like MossFormer presets."""
    torch.manual_seed(0)
    cfg = ModelConfig(arch="mossformer2", encoder_dim=32, d_model=32, num_blocks=2, query_key_dim=32,
                      group_size=16, fsmn_dim=16, fsmn_lorder=4)
    model = build_model(cfg).train()
    y = model(torch.randn(2, 800))
    y.pow(2).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum())]
    assert not missing


@pytest.mark.parametrize("n_in, dilation, L", [(1, 1, 1), (1, 1, 50), (2, 2, 7), (2, 2, 64), (3, 4, 33), (3, 4, 2)])
def test_fast_grouped_time_conv_equals_the_stored_conv2d(n_in, dilation, L):
    """The FSMN's dense-layer convolutions are computed by `grouped_time_conv`; it must equal the Conv2d."""
    from mossep.models.fsmn import grouped_time_conv

    torch.manual_seed(n_in * 100 + L)
    K, c = 9, 6
    conv = torch.nn.Conv2d(c * n_in, c, (K, 1), dilation=(dilation, 1), padding=(dilation * (K - 1) // 2, 0),
                           groups=c, bias=False)
    x = torch.randn(2, c * n_in, L)
    with torch.no_grad():
        ref = conv(x.unsqueeze(-1)).squeeze(-1)
        assert torch.allclose(grouped_time_conv(x, conv), ref, atol=1e-5)
