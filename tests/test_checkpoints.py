"""Checkpoint loading: ClearerVoice MossFormer2 containers and layouts, sample-rate choice, strict errors,
and round trips through mossep's own format. Small models built on the fly keep this fast."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from mossep.checkpoints import load_checkpoint, save_native
from mossep.checkpoints.clearvoice import infer_config, is_clearvoice, load_clearvoice, official_state_dict
from mossep.checkpoints.native import load_native
from mossep.errors import MossepError
from mossep.models import ModelConfig, build_model, preset

KIT2 = Path(__file__).parent / "fixtures" / "mossformer2_8k"
SMALL2 = ModelConfig(arch="mossformer2", encoder_dim=24, d_model=32, num_blocks=2, query_key_dim=16,
                     rotary_dim=8, expansion_factor=2.0, conv_kernel_size=5, fsmn_dim=12,
                     fsmn_lorder=3, kernel_size=8, stride=4)


@pytest.fixture(scope="module")
def small2() -> torch.nn.Module:
    torch.manual_seed(3)
    model = build_model(SMALL2).eval()
    with torch.no_grad():  # make every tensor differ from its default so misrouted keys show up
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def same_output(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    x = torch.randn(1, 1000, generator=torch.Generator().manual_seed(0)) * 0.1
    with torch.no_grad():
        return torch.equal(a.eval()(x), b.eval()(x))


def official(model, prefix: str = "module.") -> dict[str, torch.Tensor]:
    return {prefix + k: v.clone() for k, v in official_state_dict(model).items()}


def assert_one_line_error(excinfo, *fragments: str) -> None:
    msg = str(excinfo.value)
    assert "\n" not in msg
    for f in fragments:
        assert f in msg, msg


# ---------------------------------------------------------------- containers and layouts


@pytest.mark.parametrize("prefix", ["module.", ""])
@pytest.mark.parametrize("wrapped", [True, False])
def test_containers_and_prefixes(tmp_path, small2, prefix, wrapped):
    state = official(small2, prefix)
    obj = {"model": state, "optimizer": {"state": {}, "param_groups": []}, "epoch": 7, "step": 99} if wrapped else state
    path = tmp_path / "mossformer2_8k.pt"
    torch.save(obj, path)
    model, notes = load_clearvoice(path)
    assert model.config == SMALL2
    assert same_output(model, small2)
    assert notes[0] == "sample rate inferred from the name 'mossformer2_8k.pt'"
    assert ("epoch 7, step 99" in notes[1]) == wrapped


@pytest.mark.parametrize("pointer", ["last_best_checkpoint", "last_checkpoint"])
def test_folder_with_pointer_file(tmp_path, small2, pointer):
    folder = tmp_path / "MossFormer2_SS_16K"
    folder.mkdir()
    torch.save({"model": official(small2)}, folder / "model.ckpt-59-3498143.pt")
    (folder / pointer).write_text("model.ckpt-59-3498143.pt\n")
    assert is_clearvoice(folder)
    loaded = load_checkpoint(folder)
    assert loaded.source == "clearvoice" and loaded.config.sample_rate == 16000
    assert same_output(loaded.model, small2)
    assert f"via {pointer}" in loaded.notes[1]


def test_the_kit_fixture_through_a_hub_style_folder(tmp_path):
    folder = tmp_path / "MossFormer2_SS_8K"
    folder.mkdir()
    shutil.copy(KIT2 / "tiny_checkpoint.pt", folder / "last_best_checkpoint.pt")
    (folder / "last_best_checkpoint").write_text("last_best_checkpoint.pt")
    loaded = load_checkpoint(folder)
    assert loaded.config.num_blocks == 1 and loaded.config.d_model == 512 and loaded.config.sample_rate == 8000
    n = sum(p.numel() for p in loaded.model.parameters())
    assert n == 3_850_262  # the kit's unique parameter count of the 1-block fixture


def test_config_is_inferred_from_shapes(small2):
    state = {k.replace("enc.", "encoder.", 1) if k.startswith("enc.") else
             k.replace("dec.", "decoder.", 1) if k.startswith("dec.") else k: v
             for k, v in official_state_dict(small2).items()}
    assert infer_config(state, 8000, "x") == SMALL2


# ---------------------------------------------------------------- sample rate


def test_sample_rate_argument_wins_and_is_noted(tmp_path, small2):
    path = tmp_path / "ss_8k.pt"
    torch.save(official(small2), path)
    loaded = load_checkpoint(path, sample_rate=16000)
    assert loaded.config.sample_rate == 16000
    assert loaded.notes[0] == "sample rate given by --model-rate; the name 'ss_8k.pt' suggests 8000 Hz"


def test_sample_rate_from_parent_folder(tmp_path, small2):
    (tmp_path / "run_16k").mkdir()
    path = tmp_path / "run_16k" / "last_best_checkpoint.pt"
    torch.save(official(small2), path)
    assert load_checkpoint(path).config.sample_rate == 16000


@pytest.mark.parametrize("name", ["weights.pt", "from_16k_to_8k.pt"])
def test_sample_rate_unknown_is_an_error(tmp_path, small2, name):
    (tmp_path / "plain").mkdir()
    path = tmp_path / "plain" / name
    torch.save(official(small2), path)
    with pytest.raises(MossepError) as e:
        load_checkpoint(path)
    assert_one_line_error(e, str(path), "--model-rate")


# ---------------------------------------------------------------- strict errors


def test_missing_file(tmp_path):
    with pytest.raises(MossepError) as e:
        load_checkpoint(tmp_path / "nope_8k.pt")
    assert_one_line_error(e, "nope_8k.pt", "not found")


def test_pointer_to_missing_weights(tmp_path):
    (tmp_path / "last_best_checkpoint").write_text("gone.pt")
    with pytest.raises(MossepError) as e:
        load_checkpoint(tmp_path, sample_rate=8000)
    assert_one_line_error(e, "gone.pt")


def test_truncated_file(tmp_path, small2):
    good = tmp_path / "good.pt"
    torch.save({"model": official(small2)}, good)
    bad = tmp_path / "bad_8k.pt"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(MossepError) as e:
        load_checkpoint(bad)
    assert_one_line_error(e, str(bad), "cannot read checkpoint")


def test_wrong_shape(tmp_path, small2):
    state = official(small2)
    key = "module.mask_net.mdl.intra_mdl.mossformerM.fsmn.1.gated_fsmn.to_u.mdl.1.weight"
    state[key] = torch.zeros(12, 13)
    path = tmp_path / "m_8k.pt"
    torch.save({"model": state}, path)
    with pytest.raises(MossepError) as e:
        load_checkpoint(path)
    assert_one_line_error(e, str(path), "wrong shapes", "fsmn.1.gated_fsmn.to_u.mdl.1.weight (12, 13)")


def test_missing_key(tmp_path, small2):
    state = official(small2)
    del state["module.mask_net.mdl.intra_mdl.mossformerM.fsmn.1.gated_fsmn.fsmn.conv.prelu2.weight"]
    path = tmp_path / "m_8k.pt"
    torch.save(state, path)
    with pytest.raises(MossepError) as e:
        load_checkpoint(path)
    assert_one_line_error(e, "1 missing keys", "fsmn.conv.prelu2.weight")


def test_extra_key(tmp_path, small2):
    state = official(small2)
    state["module.mask_net.extra_head.weight"] = torch.zeros(3)
    path = tmp_path / "m_8k.pt"
    torch.save({"model": state, "epoch": 1}, path)
    with pytest.raises(MossepError) as e:
        load_checkpoint(path)
    assert_one_line_error(e, "1 unexpected keys", "mask_net.extra_head.weight")


def test_missing_block_is_reported_not_guessed(tmp_path, small2):
    state = {k: v for k, v in official(small2).items() if ".layers.1." not in k}
    path = tmp_path / "m_8k.pt"
    torch.save(state, path)
    with pytest.raises(MossepError) as e:
        load_checkpoint(path)
    assert_one_line_error(e, "missing keys", "layers.1.")


@pytest.mark.parametrize("obj, fragment", [
    ([torch.zeros(1)], "not a checkpoint dictionary"),
    ({"model": {"enc.conv1d.weight": 3}}, "is not a tensor"),
    ({"model": {}, "scheduler": {}}, "unexpected entries beside 'model': scheduler"),
    ({"encoder.conv1d.weight": torch.zeros(1, 1, 1)}, "unexpected key 'encoder.conv1d.weight'"),
    ({"enc.conv1d.weight": torch.zeros(1)}, "enc.conv1d.weight has shape (1,); expected 3 dimensions"),
    ({"enc.conv1d.weight": torch.zeros(4, 1, 8)}, "not a MossFormer2 checkpoint (no tensor 'mask_net."),
])
def test_not_a_mossformer2_state_dict(tmp_path, obj, fragment):
    path = tmp_path / "m_8k.pt"
    torch.save(obj, path)
    with pytest.raises(MossepError) as e:
        load_checkpoint(path)
    assert_one_line_error(e, fragment)


class _Payload:  # a pickled object that weights_only loading must refuse
    pass


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil_8k.pt"
    torch.save({"model": _Payload()}, path)
    with pytest.raises(MossepError) as e:
        load_checkpoint(path)
    assert_one_line_error(e, "cannot read checkpoint")


def test_modelscope_dir_truncated_and_wrong_shape(tmp_path):
    src = Path(__file__).parent / "fixtures" / "mossformer_8k" / "tiny_checkpoint"
    dst = tmp_path / "ms"
    shutil.copytree(src, dst)
    data = (dst / "encoder.bin").read_bytes()
    (dst / "encoder.bin").write_bytes(data[: len(data) // 3])
    with pytest.raises(MossepError) as e:
        load_checkpoint(dst)
    assert_one_line_error(e, "encoder.bin", "cannot read")
    torch.save({"weight": torch.zeros(512, 1, 8)}, dst / "decoder.bin")
    shutil.copy(src / "encoder.bin", dst / "encoder.bin")
    with pytest.raises(MossepError) as e:
        load_checkpoint(dst)
    assert_one_line_error(e, "decoder.bin", "wrong shapes")


# ---------------------------------------------------------------- mossep's own format


@pytest.mark.parametrize("cfg", [SMALL2, preset("tiny")], ids=["mossformer2", "mossformer"])
def test_native_round_trip(tmp_path, cfg):
    torch.manual_seed(1)
    model = build_model(cfg).eval()
    path = tmp_path / "m.safetensors"
    save_native(model, path, {"scores": {"si_snri": 12.5}})
    back, meta, _ = load_native(path)
    assert back.config == cfg and meta == {"scores": {"si_snri": 12.5}}
    assert same_output(model, back)
    loaded = load_checkpoint(path)
    assert loaded.source == "mossep"
    with pytest.raises(MossepError) as e:
        load_checkpoint(path, sample_rate=16000)
    assert_one_line_error(e, "--model-rate 16000")


@pytest.mark.parametrize("missing", ["configuration.json", "encoder.bin", "decoder.bin", "masknet.bin"])
def test_modelscope_dir_missing_one_file_is_named(tmp_path, missing):
    """An official folder that lost a file says which one (it said 'not a known model layout' for
    configuration.json or masknet.bin)."""
    kit = tmp_path / "speech_mossformer_separation_temporal_8k"
    shutil.copytree(KIT2.parent / "mossformer_8k" / "tiny_checkpoint", kit)
    (kit / missing).unlink()
    with pytest.raises(MossepError, match=f"lacks {missing}"):
        load_checkpoint(kit)


def test_native_file_is_opened_once(tmp_path, small2, monkeypatch):
    """Header and tensors come from one safe_open (it opened the file twice)."""
    import mossep.checkpoints.native as native
    path = tmp_path / "m.safetensors"
    save_native(small2, path, {"k": 1})
    opened, real = [], native.safe_open
    monkeypatch.setattr(native, "safe_open", lambda *a, **kw: opened.append(a[0]) or real(*a, **kw))
    model, meta, _ = load_native(path)
    assert opened == [str(path)] and meta == {"k": 1} and same_output(model, small2)


def test_broken_native_files_are_one_line_errors(tmp_path, small2):
    from safetensors.torch import save_file
    good = tmp_path / "good.safetensors"
    save_native(small2, good)
    cases = {"zeros": ("not a readable safetensors checkpoint", lambda p: p.write_bytes(b"\x00" * 100)),
             "cut": ("not a readable safetensors checkpoint",
                     lambda p: p.write_bytes(good.read_bytes()[: good.stat().st_size - 64])),
             "plain": ("is not a mossep checkpoint", lambda p: save_file({"x": torch.zeros(2)}, str(p))),
             "badcfg": ("bad checkpoint header", lambda p: save_file({"x": torch.zeros(2)}, str(p),
                                                                      metadata={"format": "mossep", "config": "{"}))}
    for name, (fragment, make) in cases.items():
        path = tmp_path / f"{name}.safetensors"
        make(path)
        with pytest.raises(MossepError) as e:
            load_native(path)
        assert_one_line_error(e, str(path), fragment)


def test_preset_names_a_size_and_optionally_an_architecture():
    assert preset("paper-l:mossformer2") == preset("paper-l", arch="mossformer2")
    assert preset("paper-l:mossformer2").arch == "mossformer2" != preset("paper-l").arch
    assert preset("tiny:mossformer2", arch="mossformer").arch == "mossformer"  # an explicit override wins
    with pytest.raises(ValueError, match="unknown model size 'nope'"):
        preset("nope:mossformer2")
