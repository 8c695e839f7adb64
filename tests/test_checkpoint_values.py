"""Checkpoint loading by value (issue 19, the mutants of src/mossep/checkpoints that survived the other tests).

Every format is written here from a model with non-default settings (kernel, stride, width, talkers) and loaded
back: the configuration and the output must be exactly the source's. Every refusal is checked as its whole
one-line message, so that a message that loses its file name, its value or its reason fails. Each test loads
its own checkpoint (no shared fixture), so that a mutation tool that runs only the tests calling a function
sees every check. Small models: the whole file runs in seconds.
"""
from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import mossep
from mossep.checkpoints import common, default_model_path, load_checkpoint, save_native
from mossep.checkpoints.clearvoice import official_state_dict
from mossep.checkpoints.native import load_native
from mossep.checkpoints.standalone import standalone_state_dict
from mossep.errors import MossepError
from mossep.models import ModelConfig, build_model

FIXTURES = Path(__file__).parent / "fixtures"
MS2_TYPE = "speech_mossformer2_separation_temporal_8k"
# MossFormer2 with every width that the files store different from ModelConfig's defaults
SMALL2 = ModelConfig(arch="mossformer2", encoder_dim=24, d_model=32, num_blocks=2, query_key_dim=16, rotary_dim=8,
                     expansion_factor=2.0, conv_kernel_size=5, fsmn_dim=12, fsmn_lorder=3, kernel_size=8, stride=4)


def seeded(cfg: ModelConfig, seed: int = 0) -> torch.nn.Module:
    """A model whose every tensor differs from its initial value, so that a misrouted tensor shows."""
    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def output(model: torch.nn.Module, n: int = 800) -> torch.Tensor:
    x = 0.1 * torch.randn(1, n, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        return model.eval()(x)


def error(fn, *args, **kwargs) -> str:
    """The MossepError message of fn(*args), checked to be one line."""
    with pytest.raises(MossepError) as e:
        fn(*args, **kwargs)
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


# ---------------------------------------------------------------- common: pure helpers


@pytest.mark.parametrize("value, name", [({}, "object"), ([], "list"), ("", "string"), (True, "boolean"),
                                         (3, "number"), (2.5, "number"), (None, "null"), ((1,), "tuple")])
def test_json_type_names(value, name):
    assert common.json_type(value) == name


WEIGHTS_ONLY = ("Weights only load failed. In PyTorch 2.6, we changed the default. Re-running `torch.load` with "
                "`weights_only` set to `False` will likely succeed.\nPlease file an issue with the following so "
                "that we can make `weights_only=True` compatible with your use case: WeightsUnpickler error: ")


@pytest.mark.parametrize("text, expected", [
    (WEIGHTS_ONLY + "\n\nUnsupported operand 149\n\nCheck the documentation", "not a PyTorch tensor file (Unsupported operand 149)"),
    (WEIGHTS_ONLY + "\n\nUnsupported operand 80.\n\nCheck", "not a PyTorch tensor file (Unsupported operand 80)"),
    (WEIGHTS_ONLY + "\n  Bad thing X. More words. Even more.\nCheck", "not a PyTorch tensor file (Bad thing X)"),
    (WEIGHTS_ONLY + "\n\n   \n", "not a PyTorch tensor file"),
    ("Weights only load failed. Trying to load unsupported GLOBAL posix.system whose module posix is blocked.",
     "refused: it asks to run Python code (posix.system), and mossep never unpickles code; only plain tensors are read"),
    ("PytorchStreamReader failed reading file data/0: invalid header. This is an internal miniz error. Really.",
     "truncated or corrupt: PytorchStreamReader failed reading file data/0: invalid header"),
    ("first line of something else. Second sentence\nsecond line", "first line of something else. Second sentence"),
])
def test_load_failure_words(text, expected):
    assert common.load_failure(RuntimeError(text)) == expected


def test_real_torch_failures_in_a_few_words(tmp_path):
    """The same through torch.load: a damaged zip record, and a pickle opcode weights_only does not allow."""
    torch.save({"a": torch.arange(1000.0)}, tmp_path / "ok.pt")
    raw = bytearray((tmp_path / "ok.pt").read_bytes())
    record = next(r for r in zipfile.ZipFile(tmp_path / "ok.pt").infolist() if r.filename.endswith("data/0"))
    raw[record.header_offset:record.header_offset + 4] = b"XXXX"  # the record's own header, not the directory
    (tmp_path / "bad.pt").write_bytes(bytes(raw))
    assert error(common.torch_load_tensors, tmp_path / "bad.pt") == (
        f"{tmp_path / 'bad.pt'}: cannot read checkpoint (truncated or corrupt: PytorchStreamReader failed reading "
        "file data/0: invalid header or archive is corrupted)")
    with zipfile.ZipFile(tmp_path / "op.pt", "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", b"\xff.")
        z.writestr("archive/version", "3\n")
    assert error(common.torch_load_tensors, tmp_path / "op.pt") == (
        f"{tmp_path / 'op.pt'}: cannot read checkpoint (not a PyTorch tensor file (Unsupported operand 255))")
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pt")
    msg = error(common.torch_load_tensors, tmp_path / "module.pt")
    assert msg.startswith(f"{tmp_path / 'module.pt'}: cannot read checkpoint (refused: it asks to run Python code (")
    assert msg.endswith("), and mossep never unpickles code; only plain tensors are read)")


def test_default_model_path_prefers_the_installed_package(monkeypatch):
    installed = Path(mossep.__file__).resolve().parent / "weights" / "default.safetensors"
    source_tree = installed.parent.parent.parent.parent / "weights" / "default.safetensors"
    seen = []

    def is_file(self):
        seen.append(self)
        return self in exists

    monkeypatch.setattr(Path, "is_file", is_file)
    exists = {installed, source_tree}
    assert default_model_path() == installed
    exists = {source_tree}
    assert default_model_path() == source_tree
    exists = set()
    assert error(default_model_path) == "no default model found (weights/default.safetensors); pass --model PATH"
    assert seen[-2:] == [installed, source_tree]


# ---------------------------------------------------------------- native: safetensors errors in a few words


def _forge(path: Path, header: dict, data: bytes) -> Path:
    hb = json.dumps(header).encode()
    path.write_bytes(len(hb).to_bytes(8, "little") + hb + data)
    return path


@pytest.mark.parametrize("name_length, shown", [(132, None), (133, 157), (140, 157)])
def test_safetensors_messages_are_cut_at_160_characters(tmp_path, name_length, shown):
    """safetensors' reason without its prefix; at most 160 characters (157 and '...')."""
    f32 = {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}
    name = "b" * name_length
    path = _forge(tmp_path / "x.safetensors", {"a": f32, name: {**f32, "data_offsets": [8, 24]}}, bytes(24))
    text = f"invalid offset for tensor `{name}`"
    expected = text if shown is None else text[:shown] + "..."
    assert error(load_native, path) == f"{path}: not a readable safetensors checkpoint ({expected})"


def test_safetensors_dtype_list_is_left_out(tmp_path):
    path = _forge(tmp_path / "x.safetensors", {"a": {"dtype": "Q4", "shape": [4], "data_offsets": [0, 16]}},
                  bytes(16))
    assert error(load_native, path) == (f"{path}: not a readable safetensors checkpoint (invalid JSON in header: "
                                        "unknown variant `Q4`)")


# ---------------------------------------------------------------- every format written here, loaded back exactly


def write_modelscope(folder: Path, model, **section) -> Path:
    """An official ModelScope MossFormer directory holding `model` (MossFormer)."""
    cfg = model.config
    folder.mkdir(parents=True, exist_ok=True)
    conf = {"model": {"type": "speech_mossformer_separation_temporal_8k", "kernel_size": cfg.kernel_size,
                      "stride": cfg.stride, "in_channels": cfg.encoder_dim, "out_channels": cfg.encoder_dim,
                      "d_model": cfg.d_model, "num_blocks": cfg.num_blocks, "group_size": cfg.group_size,
                      "query_key_dim": cfg.query_key_dim, "expansion_factor": cfg.expansion_factor,
                      "attn_dropout": cfg.dropout, "bias": cfg.decoder_bias, "num_spks": cfg.num_spks,
                      "causal": False, "norm": "ln", **section}}
    (folder / "configuration.json").write_text(json.dumps(conf))
    state = model.state_dict()
    for name, prefix in (("encoder.bin", "encoder."), ("decoder.bin", "decoder."), ("masknet.bin", "mask_net.")):
        part = {k[len(prefix):]: v.clone() for k, v in state.items() if k.startswith(prefix)}
        if name == "masknet.bin" and conf["model"]["norm"] == "gln":  # gln stores [N, 1] affine parameters
            part["norm.weight"], part["norm.bias"] = part["norm.weight"][:, None], part["norm.bias"][:, None]
        torch.save(part, folder / name)
    return folder


def write_modelscope2(folder: Path, model, **section) -> Path:
    cfg = model.config
    folder.mkdir(parents=True, exist_ok=True)
    conf = {"model": {"type": MS2_TYPE, "in_channels": cfg.encoder_dim, "out_channels": cfg.encoder_dim,
                      "num_blocks": cfg.num_blocks, "kernel_size": cfg.kernel_size, "num_spks": cfg.num_spks,
                      **section}}
    (folder / "configuration.json").write_text(json.dumps(conf))
    torch.save(official_state_dict(model), folder / "pytorch_model.pt")
    return folder


def write_standalone(folder: Path, model, parts: bool = False, **changes) -> Path:
    cfg = model.config
    folder.mkdir(parents=True, exist_ok=True)
    conf = {"sample_rate": cfg.sample_rate, "config_name": "mossformer2-x" if cfg.mask_encoder else "mossformer2-whamr-2spk",
            "encoder_kernel_size": cfg.kernel_size, "encoder_out_nchannels": cfg.encoder_dim, "encoder_in_nchannels": 1,
            "masknet_numspks": cfg.num_spks, "masknet_numlayers": 1, "masknet_norm": "ln",
            "masknet_useextralinearlayer": False, "masknet_extraskipconnection": True,
            "intra_numlayers": cfg.num_blocks, **changes}
    (folder / "config.json").write_text(json.dumps(conf))
    state = standalone_state_dict(model)
    if not parts:
        torch.save(state, folder / "pytorch_model.bin")
    for name, prefix in (("encoder.ckpt", "encoder."), ("decoder.ckpt", "decoder."), ("masknet.ckpt", "masknet.")):
        if parts:
            torch.save({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, folder / name)
    return folder


MS2_CFG = ModelConfig(arch="mossformer2", encoder_dim=16, d_model=16, num_blocks=1, num_spks=3, kernel_size=8,
                      stride=4)  # the other sizes are fixed by the ModelScope configuration (ModelConfig's defaults)
MS_CFG = ModelConfig(arch="mossformer", encoder_dim=16, d_model=16, num_blocks=1, num_spks=3, kernel_size=6, stride=3,
                     group_size=32, query_key_dim=32, expansion_factor=2.0, dropout=0.0, decoder_bias=True)
ST_CFG = ModelConfig(arch="mossformer2", sample_rate=16000, encoder_dim=16, d_model=16, num_blocks=2, num_spks=3,
                     kernel_size=8, stride=4)


def test_modelscope2_round_trip_with_non_default_sizes(tmp_path):
    model = seeded(MS2_CFG)
    loaded = load_checkpoint(write_modelscope2(tmp_path / "ms2", model))
    assert (loaded.source, loaded.config) == ("modelscope2", MS2_CFG)
    assert torch.equal(output(loaded.model), output(model))
    assert loaded.notes == ["official ModelScope MossFormer2, 8000 Hz (the pipeline accepts no other rate)"]
    assert loaded.metadata["source_config"]["model"]["num_spks"] == 3


@pytest.mark.parametrize("norm", ["ln", "gln"])
def test_modelscope_round_trip_with_non_default_sizes(tmp_path, norm):
    model = seeded(MS_CFG)
    loaded = load_checkpoint(write_modelscope(tmp_path / "ms", model, norm=norm))
    assert (loaded.source, loaded.config) == ("modelscope", MS_CFG)
    assert torch.equal(output(loaded.model), output(model))
    assert loaded.notes == ["official ModelScope MossFormer, 8000 Hz"]


@pytest.mark.parametrize("parts", [False, True])
@pytest.mark.parametrize("whamr", [False, True])
def test_standalone_round_trip_with_non_default_sizes(tmp_path, parts, whamr):
    cfg = ModelConfig(**{**ST_CFG.to_dict(), "mask_encoder": not whamr})
    model = seeded(cfg)
    folder = write_standalone(tmp_path / "st", model, parts)
    loaded = load_checkpoint(folder)
    assert (loaded.source, loaded.config) == ("standalone", cfg)
    assert torch.equal(output(loaded.model), output(model))
    source = "encoder.ckpt + decoder.ckpt + masknet.ckpt" if parts else "pytorch_model.bin"
    name = "mossformer2-whamr-2spk" if whamr else "mossformer2-x"
    forward = "masks decoded directly (WHAMR! forward)" if whamr else "masks applied to the encoder output"
    assert loaded.notes == ["sample rate 16000 Hz from config.json", f"MossFormer2 standalone {name!r} from {source}; {forward}"]


def test_native_round_trip_keeps_aliases_and_metadata(tmp_path):
    model = seeded(SMALL2)
    save_native(model, tmp_path / "m.safetensors", {"k": [1, "v"]})
    loaded = load_checkpoint(tmp_path / "m.safetensors")
    assert (loaded.source, loaded.config, loaded.metadata, loaded.notes) == ("mossep", SMALL2, {"k": [1, "v"]}, [])
    assert torch.equal(output(loaded.model), output(model))
