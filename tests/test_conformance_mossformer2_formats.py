"""The other published MossFormer2 formats against their conformance kits (see each kit's README):

- tests/fixtures/mossformer2_standalone_8k: Hugging Face alibabasglab/mossformer2-{librimix-2spk, wsj0mix-3spk,
  whamr-2spk} (config.json + pytorch_model.bin, and the encoder/decoder/masknet.ckpt triple);
- tests/fixtures/mossformer2_modelscope_8k: ModelScope damo/speech_mossformer2_separation_temporal_8k
  (configuration.json + pytorch_model.pt).

Criterion (both kits): max |y - ref| / sqrt(mean(ref^2)) over the whole [C, T] array <= 1e-4, no permutation.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mossep.checkpoints import load_checkpoint
from mossep.checkpoints.clearvoice import official_state_dict
from mossep.checkpoints.modelscope2 import config_from_modelscope2
from mossep.checkpoints.standalone import config_from_standalone, standalone_state_dict
from mossep.errors import MossepError
from mossep.models import build_model
from mossep.official_pipelines import modelscope_pcm16, standalone_inference

FIXTURES = Path(__file__).parent / "fixtures"
HF = FIXTURES / "mossformer2_standalone_8k"
MS = FIXTURES / "mossformer2_modelscope_8k"
HF_INDEX = json.loads((HF / "cases" / "index.json").read_text())
MS_INDEX = json.loads((MS / "cases" / "index.json").read_text())
VARIANTS = ("librimix_2spk", "wsj0mix_3spk", "whamr_2spk")
TOL = 1e-4
assert HF_INDEX["tolerance"]["threshold"] == MS_INDEX["tolerance"]["threshold"] == TOL


def err(ours: np.ndarray, ref: np.ndarray) -> float:
    ref64 = ref.astype(np.float64)
    return float(np.abs(ours - ref64).max() / np.sqrt(np.mean(ref64**2)))


def forward(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)[None])[0].numpy()


@pytest.fixture(scope="module")
def hf_models():
    return {v: load_checkpoint(HF / "tiny" / v) for v in VARIANTS}


@pytest.fixture(scope="module")
def ms_model():
    return load_checkpoint(MS / "tiny_checkpoint")


# ---------------------------------------------------------------- standalone: loading


def test_standalone_configs_from_config_json(hf_models):
    for v, loaded in hf_models.items():
        meta = HF_INDEX["checkpoints"][v]
        cfg = loaded.config
        assert loaded.source == "standalone" and cfg.arch == "mossformer2" and cfg.sample_rate == 8000
        assert (cfg.encoder_dim, cfg.num_blocks, cfg.num_spks) == (
            meta["encoder_out_nchannels"], meta["intra_numlayers"], meta["masknet_numspks"])
        assert cfg.mask_encoder == meta["mask_multiplication"]
        assert sum(p.numel() for p in loaded.model.parameters()) + 32 == meta["unique_tensor_elements"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_both_weight_copies_load_to_identical_tensors(tmp_path, hf_models, variant):
    triple = tmp_path / variant
    triple.mkdir()
    for name in ("config.json", "encoder.ckpt", "decoder.ckpt", "masknet.ckpt"):
        shutil.copy(HF / "tiny" / variant / name, triple / name)
    a = hf_models[variant].model.state_dict()
    for source in (triple, HF / "tiny" / variant / "masknet.ckpt"):  # the folder without .bin, or a part file
        loaded = load_checkpoint(source)
        assert "encoder.ckpt + decoder.ckpt + masknet.ckpt" in loaded.notes[1]
        b = loaded.model.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert "pytorch_model.bin" in load_checkpoint(HF / "tiny" / variant / "pytorch_model.bin").notes[1]


def test_stored_keys_are_the_manifest_keys_in_both_copies(hf_models):
    for v, loaded in hf_models.items():
        manifest = json.loads((HF / f"state_dict_manifest_{v}.json").read_text())
        n = loaded.config.num_blocks
        keep = [e for e in manifest["entries"] if not any(f".{part}.{i}." in e["name"] for part in ("fsmn", "layers")
                                                          for i in range(n, 24))]
        stored = torch.load(HF / "tiny" / v / "pytorch_model.bin", weights_only=True)
        assert list(stored) == [e["name"] for e in keep]
        assert list(standalone_state_dict(loaded.model)) == [e["name"] for e in keep]
        for file in ("encoder.ckpt", "decoder.ckpt", "masknet.ckpt"):
            part = torch.load(HF / "tiny" / v / file, weights_only=True)
            assert list(part) == [e["ckpt_key"] for e in keep if e["ckpt_file"] == file]


@pytest.mark.parametrize("variant", VARIANTS)
def test_full_published_configuration_keys_shapes_and_counts(variant):
    """Built on the meta device (no memory): the manifest's 1099 names, stored order, shapes and counts."""
    manifest = json.loads((HF / f"state_dict_manifest_{variant}.json").read_text())
    published = json.loads((HF / f"published_config_{variant}.json").read_text())
    assert published == manifest["config"]
    cfg = config_from_standalone(published, "config.json")
    assert cfg.mask_encoder == (variant != "whamr_2spk")
    with torch.device("meta"):
        model = build_model(cfg)
    state = standalone_state_dict(model)
    assert [(k, list(v.shape)) for k, v in state.items()] == [(e["name"], e["shape"]) for e in manifest["entries"]]
    counts = manifest["counts"]
    params = list(model.parameters())
    assert sum(p.numel() for p in params) == counts["total_parameters_unique"]
    assert sum(p.numel() for p in params if p.requires_grad) == counts["trainable_parameters"]
    assert sum(b.numel() for b in model.buffers()) == 256
    assert sum(v.numel() for v in state.values()) == counts["state_dict_elements_counting_aliases"]
    # the README's numbers
    expected = {"librimix_2spk": 55_735_410, "wsj0mix_3spk": 55_998_066, "whamr_2spk": 55_735_410}[variant]
    assert sum(p.numel() for p in params) == expected


# ---------------------------------------------------------------- standalone: outputs


@pytest.mark.parametrize("case", [c["name"] for c in HF_INDEX["cases"]])
def test_standalone_cases(hf_models, case):
    c = next(c for c in HF_INDEX["cases"] if c["name"] == case)
    x = np.load(HF / HF_INDEX["inputs"][c["input"]]["file"])
    ref = np.load(HF / c["output"]["file"])
    ours = forward(hf_models[c["checkpoint"]].model, x)
    assert ours.shape == ref.shape
    assert err(ours, ref) <= TOL
    if c["zero_padded_tail_samples"]:
        assert (ours[:, -c["zero_padded_tail_samples"]:] == 0).all()


def _debug_values(model, x: np.ndarray) -> dict[str, np.ndarray]:
    """Intermediates of one forward, named as in the kits."""
    got: dict[str, np.ndarray] = {}
    mn = model.mask_net
    stack = mn.mdl.intra_mdl

    def keep(name, fn=lambda out: out):
        return lambda mod, inp, out: got.__setitem__(name, fn(out).detach().numpy().copy())

    hooks = [model.encoder.register_forward_hook(keep("encoder_out")),
             mn.norm.register_forward_hook(keep("masknet_norm_out")),
             mn.mdl.register_forward_pre_hook(lambda mod, inp: got.__setitem__("masknet_after_posenc", inp[0].numpy().copy())),
             stack.mossformerM.layers[0].register_forward_hook(keep("flash0_out")),
             stack.mossformerM.fsmn[0].register_forward_hook(keep("fsmn0_out")),
             stack.norm.register_forward_hook(keep("stack_out_after_final_ln")),
             mn.mdl.register_forward_hook(keep("dual_block_out")),
             mn.register_forward_hook(keep("masknet_out"))]
    try:
        got["output"] = forward(model, x)
    finally:
        for h in hooks:
            h.remove()
    got["computation_block_out"] = got["dual_block_out"]
    return got


@pytest.mark.parametrize("variant", ["librimix_2spk", "whamr_2spk"])
def test_standalone_debug_intermediates(hf_models, variant):
    debug = HF_INDEX["debug_intermediates"]
    got = _debug_values(hf_models[variant].model, np.load(HF / HF_INDEX["inputs"][debug["input"]]["file"]))
    names = [n for n in debug[variant]]
    assert {"encoder_out", "masknet_out"} <= set(names)
    for name in names:
        ref = np.load(HF / debug[variant][name]["file"])
        assert got[name].shape == ref.shape, name
        assert err(got[name], ref) <= TOL, name


def test_whamr_switch_is_the_config_field_and_changes_the_output(hf_models):
    """mask_encoder (not the model's name) selects the forward; the other forward fails the kit."""
    loaded = hf_models["whamr_2spk"]
    c = next(c for c in HF_INDEX["cases"] if c["name"] == "whamr_2spk/odd_4005")
    x, ref = np.load(HF / HF_INDEX["inputs"][c["input"]]["file"]), np.load(HF / c["output"]["file"])
    other = build_model(loaded.config.__class__(**{**loaded.config.to_dict(), "mask_encoder": True}))
    other.load_state_dict(loaded.model.state_dict())
    assert err(forward(other.eval(), x), ref) > 1.0


def test_standalone_inference_pipeline(hf_models):
    """Mossformer2Wrapper.inference(): q / 32768, one pass, each speaker divided by its own peak."""
    c = HF_INDEX["pipeline_cases"][0]
    q = np.load(HF / HF_INDEX["inputs"][c["input"]]["file"])
    assert q.dtype == np.int16
    model = hf_models[c["checkpoint"]].model
    raw = forward(model, q.astype(np.float32) / 32768)
    assert err(raw, np.load(HF / c["raw_forward_of_decoded_input"]["file"])) <= TOL
    ours = standalone_inference(model, q.astype(np.float32) / 32768)
    ref = np.load(HF / c["output"]["file"])
    assert err(ours, ref) <= TOL
    assert np.allclose(np.abs(ours).max(axis=-1), 1.0)


# ---------------------------------------------------------------- ModelScope MossFormer2


def test_modelscope2_loads_its_configuration(ms_model):
    cfg = ms_model.config
    assert ms_model.source == "modelscope2" and cfg.sample_rate == 8000 and cfg.mask_encoder
    assert (cfg.encoder_dim, cfg.num_blocks, cfg.num_spks) == (128, 2, 2)
    assert sum(p.numel() for p in ms_model.model.parameters()) + 64 == 1_104_986
    stored = torch.load(MS / "tiny_checkpoint" / "pytorch_model.pt", weights_only=True)
    assert list(stored) == list(official_state_dict(ms_model.model))
    assert load_checkpoint(MS / "tiny_checkpoint" / "pytorch_model.pt").source == "modelscope2"


@pytest.mark.parametrize("case", [c["name"] for c in MS_INDEX["cases"]])
def test_modelscope2_cases(ms_model, case):
    c = next(c for c in MS_INDEX["cases"] if c["name"] == case)
    x, ref = np.load(MS / MS_INDEX["inputs"][c["input"]]["file"]), np.load(MS / c["output"]["file"])
    assert err(forward(ms_model.model, x), ref) <= TOL


def test_modelscope2_debug_intermediates(ms_model):
    debug = MS_INDEX["debug_intermediates"]
    got = _debug_values(ms_model.model, np.load(MS / MS_INDEX["inputs"][debug["input"]]["file"]))
    names = [k for k, v in debug.items() if isinstance(v, dict)]
    assert len(names) == 8
    for name in names:
        ref = np.load(MS / debug[name]["file"])
        assert err(got[name], ref) <= TOL, name


def test_modelscope2_pipeline_pcm16(ms_model):
    c = MS_INDEX["pipeline_cases"][0]
    q = np.load(MS / MS_INDEX["inputs"][c["input"]]["file"])
    raw = forward(ms_model.model, q.astype(np.float32) / 32768)
    assert err(raw, np.load(MS / c["raw_forward_of_decoded_input"]["file"])) <= TOL
    ours, ref = modelscope_pcm16(raw).astype(np.int32), np.load(MS / c["output"]["file"]).astype(np.int32)
    assert np.abs(ours - ref).max() <= 1 and np.abs(ours).max() == 16384


def test_modelscope2_full_published_configuration():
    manifest = json.loads((MS / "state_dict_manifest.json").read_text())
    assert config_from_modelscope2({}, "configuration.json") == config_from_modelscope2(manifest["config"], "x")
    cfg = config_from_modelscope2(manifest["config"], "configuration.json")
    with torch.device("meta"):
        model = build_model(cfg)
    state = official_state_dict(model)
    assert [(k, list(v.shape)) for k, v in state.items()] == [(e["name"], e["shape"]) for e in manifest["entries"]]
    assert sum(p.numel() for p in model.parameters()) == manifest["counts"]["total_parameters_unique"] == 55_735_410


# ---------------------------------------------------------------- strictness


def _copy_hf(tmp_path: Path, variant: str = "wsj0mix_3spk") -> Path:
    dst = tmp_path / variant
    shutil.copytree(HF / "tiny" / variant, dst)
    return dst


@pytest.mark.parametrize("key, value, words", [
    ("intra_numlayers", 2, "intra_numlayers = 2 but the weights have 1"),
    ("masknet_numspks", 2, "masknet_numspks = 2 but the weights have 3"),
    ("encoder_out_nchannels", 128, "encoder_out_nchannels = 128 but the weights have 64"),
    ("masknet_numlayers", 2, "masknet_numlayers = 2 is not supported"),
    ("intra_numlayers", "1", "must be a positive integer"),
    ("sample_rate", None, "lacks key 'sample_rate'"),
])
def test_standalone_config_must_agree_with_the_tensors(tmp_path, key, value, words):
    folder = _copy_hf(tmp_path)
    conf = json.loads((folder / "config.json").read_text())
    if value is None:
        del conf[key]
    else:
        conf[key] = value
    (folder / "config.json").write_text(json.dumps(conf))
    with pytest.raises(MossepError, match=words) as e:
        load_checkpoint(folder)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("change, words", [
    (lambda s: s.pop("masknet.prelu.weight"), "missing"),
    (lambda s: s.__setitem__("masknet.extra", torch.zeros(1)), "unexpected"),
    (lambda s: s.__setitem__("module.encoder.conv1d.weight", s.pop("encoder.conv1d.weight")), "unexpected key"),
    (lambda s: s.__setitem__("masknet.norm.weight", torch.zeros(65)), "wrong shape|masknet.norm"),
])
def test_standalone_weights_are_loaded_strictly(tmp_path, change, words):
    folder = _copy_hf(tmp_path)
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    change(state)
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(MossepError, match=words) as e:
        load_checkpoint(folder)
    assert "\n" not in str(e.value) and "pytorch_model.bin" in str(e.value)


def test_modelscope2_strictness_and_rate(tmp_path):
    folder = tmp_path / "ms2"
    shutil.copytree(MS / "tiny_checkpoint", folder)
    with pytest.raises(MossepError, match="8000 Hz"):
        load_checkpoint(folder, sample_rate=16000)
    conf = json.loads((folder / "configuration.json").read_text())
    conf["model"]["num_blocks"] = 3
    (folder / "configuration.json").write_text(json.dumps(conf))
    with pytest.raises(MossepError, match="num_blocks = 3 but the weights have 2"):
        load_checkpoint(folder)
    (folder / "pytorch_model.pt").unlink()
    with pytest.raises(MossepError, match="pytorch_model.pt"):
        load_checkpoint(folder)  # recognised by its model type, so the missing file is named


# ---------------------------------------------------------------- info and convert


def _cli(args: list[str], capsys) -> tuple[int, str, str]:
    from mossep.cli import main

    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out, err_text = capsys.readouterr()
    return code, out, err_text


@pytest.mark.parametrize("source, fmt, spks, mask", [
    (HF / "tiny" / "librimix_2spk", "standalone", 2, True),
    (HF / "tiny" / "wsj0mix_3spk" / "pytorch_model.bin", "standalone", 3, True),
    (HF / "tiny" / "whamr_2spk" / "encoder.ckpt", "standalone", 2, False),
    (MS / "tiny_checkpoint", "modelscope2", 2, True),
])
def test_info_and_convert_every_format(tmp_path, capsys, source, fmt, spks, mask):
    code, out, err_text = _cli(["info", source, "--json"], capsys)
    assert code == 0, err_text
    info = json.loads(out)
    assert (info["format"], info["num_spks"], info["sample_rate"], info["config"]["mask_encoder"]) == (
        fmt, spks, 8000, mask)
    dst = tmp_path / "converted.safetensors"
    code, out, err_text = _cli(["convert", source, dst], capsys)
    assert code == 0, err_text
    assert f"{spks} speakers" in out and "max error 0 of RMS" in out
    loaded = load_checkpoint(dst)
    meta = loaded.metadata
    assert (meta["source_format"], meta["sample_rate"], meta["num_spks"], meta["mask_encoder"]) == (fmt, 8000, spks, mask)
    assert loaded.config.mask_encoder is mask and loaded.config.num_spks == spks
    assert "source_config" in meta  # config.json / configuration.json as published


@pytest.mark.parametrize("name", ["config.json", "model.safetensors"])
def test_a_file_that_is_not_the_weights_is_refused_in_one_line(tmp_path, name):
    folder = _copy_hf(tmp_path)
    (folder / "model.safetensors").write_bytes(b"x")
    with pytest.raises(MossepError) as e:
        load_checkpoint(folder / name)
    assert "\n" not in str(e.value)
