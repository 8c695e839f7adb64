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
from mossep.checkpoints import bundled_model_path, common, default_model_path, load_checkpoint, save_native
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
    exists = {source_tree.parent / "robust.safetensors"}  # another bundled model, by its name
    assert bundled_model_path("robust") == source_tree.parent / "robust.safetensors"
    assert error(bundled_model_path, "nosuch") == "no nosuch model found (weights/nosuch.safetensors); pass --model PATH"


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


def test_modelscope_float16_parts_give_one_note_each(tmp_path):
    model = seeded(MS_CFG)
    folder = write_modelscope(tmp_path / "ms", model)
    for name in ("encoder.bin", "decoder.bin", "masknet.bin"):
        torch.save({k: v.half() for k, v in torch.load(folder / name, weights_only=True).items()}, folder / name)
    notes = load_checkpoint(folder).notes
    counts = {"encoder.bin": 1, "decoder.bin": 2, "masknet.bin": len(torch.load(folder / "masknet.bin"))}
    assert notes == ["official ModelScope MossFormer, 8000 Hz"] + [
        f"{n} of {n} tensors in {name} are stored as float16, converted to float32 exactly" for name, n in counts.items()]


# ---------------------------------------------------------------- ModelScope configurations: whole messages


@pytest.mark.parametrize("change, expected", [
    ({"stride": 4}, "stride 4 differs from kernel_size // 2 = 3; the official encoder always uses kernel_size // 2, "
                    "so this configuration cannot be reproduced"),
    ({"out_channels": 8}, "in_channels (16), out_channels (8) and d_model (16) must be equal"),
    ({"d_model": 8}, "in_channels (16), out_channels (16) and d_model (8) must be equal"),
    ({"causal": True}, "causal MossFormer is not supported"),
    ({"norm": "bn"}, "norm 'bn' is not supported (ln or gln)"),
    ({"bias": "yes"}, "bias must be true or false, got 'yes'"),
    ({"bias": "y" * 50}, f"bias must be true or false, got {'y' * 40!r}"),
    ({"norm": "n" * 50}, f"norm {'n' * 40!r} is not supported (ln or gln)"),
    ({"group_size": "z" * 50}, f"group_size must be an integer, got {'z' * 40!r}"),
    ({"num_blocks": 2.0}, "num_blocks must be an integer, got '2.0'"),
    ({"num_blocks": True}, "num_blocks must be an integer, got 'True'"),
    ({"expansion_factor": "4"}, "expansion_factor must be a number, got '4'"),
    ({"kernel_size": None}, "kernel_size must be an integer, got 'None'"),
    ({"num_blocks": 0}, "model config: num_blocks must be in 1..256, got 0"),
])
def test_modelscope_configuration_errors_in_full(tmp_path, change, expected):
    folder = write_modelscope(tmp_path / "ms", seeded(MS_CFG), **change)
    assert error(load_checkpoint, folder) == f"{folder / 'configuration.json'}: {expected}"


def test_modelscope_configuration_lacking_a_key(tmp_path):
    folder = write_modelscope(tmp_path / "ms", seeded(MS_CFG))
    conf = json.loads((folder / "configuration.json").read_text())
    del conf["model"]["num_blocks"]
    (folder / "configuration.json").write_text(json.dumps(conf))
    assert error(load_checkpoint, folder) == f"{folder / 'configuration.json'}: model section lacks key 'num_blocks'"
    (folder / "configuration.json").write_text(json.dumps({"model": [1]}))
    assert error(load_checkpoint, folder) == (f"{folder / 'configuration.json'}: the model section must be a JSON "
                                              "object, got a JSON list")


@pytest.mark.parametrize("change, expected", [
    ({"num_blocks": 0}, "num_blocks must be a positive integer, got 0"),
    ({"num_spks": -1}, "num_spks must be a positive integer, got -1"),
    ({"kernel_size": 8.0}, "kernel_size must be a positive integer, got 8.0"),
    ({"in_channels": "16"}, "in_channels must be a positive integer, got '16'"),
    ({"norm": "gln"}, "norm = 'gln' is not supported (the published model has 'ln')"),
    ({"use_global_pos_enc": False}, "use_global_pos_enc = False is not supported (the published model has True)"),
    ({"out_channels": 24}, "in_channels (16) and out_channels (24) differ; the official code works only when they "
                           "are equal"),
    ({"kernel_size": 5000}, "model config: kernel_size must be in 1..4096, got 5000"),
])
def test_modelscope2_configuration_errors_in_full(tmp_path, change, expected):
    folder = write_modelscope2(tmp_path / "ms2", seeded(MS2_CFG), **change)
    assert error(load_checkpoint, folder) == f"{folder / 'configuration.json'}: {expected}"


def test_modelscope2_small_positive_values_are_accepted(tmp_path):
    """1 is positive: a one-block, one-talker model loads."""
    cfg = ModelConfig(**{**MS2_CFG.to_dict(), "num_spks": 1})
    loaded = load_checkpoint(write_modelscope2(tmp_path / "ms2", seeded(cfg)))
    assert loaded.config == cfg


def test_modelscope2_folder_errors_in_full(tmp_path):
    from mossep.checkpoints.modelscope2 import load_modelscope2

    model = seeded(MS2_CFG)
    folder = write_modelscope2(tmp_path / "ms2", model)
    conf_path, weights = folder / "configuration.json", folder / "pytorch_model.pt"
    assert error(load_modelscope2, tmp_path) == (f"{tmp_path}: not a ModelScope MossFormer2 folder "
                                                 "(configuration.json + pytorch_model.pt)")
    conf_path.write_text(json.dumps({"model": "x"}))
    assert error(load_checkpoint, folder) == f"{conf_path}: no 'model' section"
    conf_path.write_text(json.dumps({"model": {"type": "other"}}))
    assert error(load_checkpoint, folder) == f"{conf_path}: model type 'other' is not {MS2_TYPE!r}"
    write_modelscope2(folder, model, num_blocks=3)
    assert error(load_checkpoint, folder) == (f"{conf_path} and pytorch_model.pt: the configuration says num_blocks "
                                              "= 3 but the weights have 1")
    write_modelscope2(folder, model)
    torch.save([1, 2], weights)
    assert error(load_checkpoint, folder) == f"{weights}: not a state dict (got list)"
    state = official_state_dict(model)
    torch.save({**state, "extra.w": torch.zeros(1)}, weights)
    assert error(load_checkpoint, folder) == (f"{weights}: unexpected key 'extra.w' (MossFormer2 keys start with "
                                              "enc., dec., mask_net.)")
    torch.save({k: v for k, v in state.items() if k != "mask_net.conv1d_out.weight"}, weights)
    assert error(load_checkpoint, folder) == (f"{weights}: not a MossFormer2 checkpoint (no tensor "
                                              "'mask_net.conv1d_out.weight')")
    torch.save({**state, "mask_net.prelu.weight": torch.zeros(2)}, weights)
    assert error(load_checkpoint, folder) == (f"{weights}: checkpoint does not match the model: 1 wrong shapes "
                                              "(first: mask_net.prelu.weight (2,) (expected (1,)))")


def test_modelscope_optional_keys_take_the_official_defaults(tmp_path):
    cfg = ModelConfig(arch="mossformer", encoder_dim=32, d_model=32, num_blocks=1, kernel_size=6, stride=3)
    model = seeded(cfg)
    folder = write_modelscope(tmp_path / "ms", model)
    conf = json.loads((folder / "configuration.json").read_text())
    section = {k: conf["model"][k] for k in ("kernel_size", "in_channels", "out_channels", "d_model", "num_blocks")}
    (folder / "configuration.json").write_text(json.dumps({"model": section}))
    loaded = load_checkpoint(folder)
    assert loaded.config == cfg  # stride 3, 2 talkers, group 256, query-key 128, expansion 4.0, dropout 0.1, no bias
    assert torch.equal(output(loaded.model), output(model))


# ---------------------------------------------------------------- mossep's own format: whole messages


def _tiny_native(path: Path, **header: str) -> Path:
    """A small mossep checkpoint with entries of its header replaced (None: removed)."""
    model = seeded(SMALL2)
    save_native(model, path)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    for k, v in header.items():
        if v is None:
            meta.pop(k)
        else:
            meta[k] = v
    save_file(state, str(path), metadata=meta)
    return path


@pytest.mark.parametrize("header, expected", [
    ({"format": "other"}, "safetensors file is not a mossep checkpoint (no 'format: mossep' header)"),
    ({"format": None}, "safetensors file is not a mossep checkpoint (no 'format: mossep' header)"),
    ({"format_version": "2" * 30}, f"checkpoint format version {'2' * 20!r} is not supported (this mossep reads "
                                   "version 1)"),
    ({"config": None}, "bad checkpoint header (no config)"),
    ({"config": "[1]"}, "bad checkpoint header (config must be a JSON object, got a JSON list)"),
    ({"config": "{"}, "bad checkpoint header (config is not valid JSON: Expecting property name enclosed in double "
                      "quotes: line 1 column 2 (char 1))"),
    ({"aliases": "3"}, "bad checkpoint header (aliases must be a JSON object, got a JSON number)"),
    ({"metadata": "null"}, "bad checkpoint header (metadata must be a JSON object, got a JSON null)"),
    ({"config": "{}"}, "checkpoint does not match the model: "),
    ({"config": json.dumps({"arch": "mossformer3"})}, "bad checkpoint header (unknown architecture 'mossformer3' "
                                                      "(known: mossformer, mossformer2))"),
    ({"config": json.dumps({"num_blocks": "2"})}, "bad checkpoint header (model config: num_blocks must be int, "
                                                  "got '2' (str))"),
    ({"aliases": json.dumps({"x" * 100: "y" * 100})}, f"bad checkpoint header (alias {'x' * 80!r} -> {'y' * 80!r} "
                                                      "does not name one stored tensor)"),
    ({"aliases": json.dumps({"a": ["b"]})}, "bad checkpoint header (alias 'a' -> \"['b']\" does not name one stored "
                                            "tensor)"),
])
def test_native_header_errors_in_full(tmp_path, header, expected):
    path = _tiny_native(tmp_path / "m.safetensors", **header)
    msg = error(load_checkpoint, path)
    if expected.endswith(": "):  # the default config's model: its first missing key depends on the architecture
        assert msg.startswith(f"{path}: {expected}"), msg
    else:
        assert msg == f"{path}: {expected}"


def test_native_aliases_must_not_shadow_a_stored_tensor(tmp_path):
    model = seeded(SMALL2)
    save_native(model, tmp_path / "m.safetensors")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "m.safetensors"), framework="pt") as f:
        meta, keys = f.metadata(), list(f.keys())
    aliases = json.loads(meta["aliases"])
    assert aliases, "the MossFormer2 rotary tables are shared, so a saved model has aliases"
    alias, stored = next(iter(aliases.items()))
    assert stored in keys and alias not in keys
    path = _tiny_native(tmp_path / "shadow.safetensors", aliases=json.dumps({keys[0]: keys[1]}))
    assert error(load_checkpoint, path) == (f"{path}: bad checkpoint header (alias {keys[0]!r} -> {keys[1]!r} does "
                                            "not name one stored tensor)")
    path = _tiny_native(tmp_path / "missing.safetensors", aliases="{}")
    assert error(load_checkpoint, path).startswith(f"{path}: checkpoint does not match the model: {len(aliases)} "
                                                   f"missing keys (first: ")


def test_native_format_version_1_and_no_version_load(tmp_path):
    for version in ("1", None):
        path = _tiny_native(tmp_path / f"v{version}.safetensors", format_version=version)
        assert load_checkpoint(path).config == SMALL2


def test_native_missing_and_unreadable_files(tmp_path):
    assert error(load_native, tmp_path / "none.safetensors") == f"{tmp_path / 'none.safetensors'}: checkpoint file is missing"
    (tmp_path / "short.safetensors").write_bytes(b"\x01\x02")
    assert error(load_native, tmp_path / "short.safetensors") == (
        f"{tmp_path / 'short.safetensors'}: not a readable safetensors checkpoint (header too small)")


# ---------------------------------------------------------------- ClearerVoice: names, containers, whole messages


@pytest.mark.parametrize("names, expected", [
    (("MossFormer2_SS_8K",), (8000, "MossFormer2_SS_8K")),
    (("x", "ss-16khz.pt"), (16000, "ss-16khz.pt")),
    (("8k",), (8000, "8k")),
    (("model8k", "run_16K"), (16000, "run_16K")),  # a letter before the number is not a rate
    (("v18k", "8kbit"), None),  # nor a digit before, nor a letter after
    (("16k_to_8k", "ss_8k"), None),  # the first name naming rates decides, and two rates are no answer
    (("8k_and_8k",), (8000, "8k_and_8k")),
    ((), None),
])
def test_rate_from_name(names, expected):
    from mossep.checkpoints.clearvoice import rate_from_name

    assert rate_from_name(*names) == expected


def _official(model, prefix: str = "") -> dict:
    return {prefix + k: v.clone() for k, v in official_state_dict(model).items()}


def test_clearvoice_notes_in_full(tmp_path):
    model = seeded(SMALL2)
    folder = tmp_path / "ss_16k"
    folder.mkdir()
    torch.save({"model": _official(model, "module."), "epoch": 3, "optimizer": {}}, folder / "w.pt")
    (folder / "last_checkpoint").write_text("w.pt\nignored\n")
    loaded = load_checkpoint(folder)
    assert loaded.config == ModelConfig(**{**SMALL2.to_dict(), "sample_rate": 16000})
    assert torch.equal(output(loaded.model), output(model))
    assert loaded.notes == ["sample rate inferred from the name 'ss_16k'", "ClearerVoice MossFormer2 checkpoint w.pt "
                            "(via last_checkpoint), training container (epoch 3); optimizer state ignored"]
    torch.save({"model": _official(model), "epoch": "x", "step": 5.5}, tmp_path / "m.pt")
    loaded = load_checkpoint(tmp_path / "m.pt", sample_rate=8000)
    assert loaded.notes == ["sample rate given by --model-rate", "ClearerVoice MossFormer2 checkpoint m.pt, training "
                            "container (step 5.5); optimizer state ignored"]
    torch.save({"model": _official(model), "optimizer": {}}, tmp_path / "c.pt")
    loaded = load_checkpoint(tmp_path / "c.pt", sample_rate=8000)
    assert loaded.notes[1] == "ClearerVoice MossFormer2 checkpoint c.pt, training container; optimizer state ignored"
    torch.save(_official(model), tmp_path / "ss_8k.bin")
    loaded = load_checkpoint(tmp_path / "ss_8k.bin", sample_rate=8000)
    assert loaded.notes == ["sample rate given by --model-rate", "ClearerVoice MossFormer2 checkpoint ss_8k.bin, bare "
                            "state dict"]


def test_clearvoice_errors_in_full(tmp_path):
    from mossep.checkpoints.clearvoice import load_clearvoice, resolve_weights

    model = seeded(SMALL2)
    state = _official(model)
    path = tmp_path / "ss_8k.pt"

    def refused(obj, rate=None) -> str:
        torch.save(obj, path)
        return error(load_checkpoint, path, rate).removeprefix(f"{path}: ")

    assert refused({"model": state, "epoch": 1, "lr": 2, 3: 4}) == "unexpected entries beside 'model': lr, 3"
    assert refused([1]) == "not a checkpoint dictionary (got list)"
    assert refused({**state, "w": [1]}) == "state dict entry 'w' is not a tensor"
    assert refused({**state, 3: torch.zeros(1)}) == "state dict entry 3 is not a tensor"
    assert refused({**state, "x.w": torch.zeros(1)}) == ("unexpected key 'x.w' (MossFormer2 keys start with enc., "
                                                         "dec., mask_net. optionally after 'module.')")
    k = "enc.conv1d.weight"
    assert refused({**state, "module." + k: state[k]}) == (f"key 'module.{k}' appears both with and without the "
                                                           "'module.' prefix")
    assert refused({n: v for n, v in state.items() if n != k}) == f"not a MossFormer2 checkpoint (no tensor {k!r})"
    assert refused({**state, k: state[k][0]}) == f"{k} has shape (1, 8); expected 3 dimensions"
    stack = "mask_net.mdl.intra_mdl.mossformerM."
    assert refused({n: v for n, v in state.items() if not n.startswith((stack + "layers.", stack + "fsmn."))}) == (
        f"not a MossFormer2 checkpoint (no {stack}layers.* tensors)")
    assert refused({**state, "mask_net.conv1d_out.weight": torch.zeros(0, 32, 1)}).startswith(
        "inconsistent tensor shapes (model config: num_spks must be in 1..")
    assert refused(state, 0) == "--model-rate must be positive, got 0"
    (tmp_path / "plain").mkdir()
    torch.save(state, tmp_path / "plain" / "w.pt")
    assert error(load_checkpoint, tmp_path / "plain" / "w.pt") == (
        f"{tmp_path / 'plain' / 'w.pt'}: ClearerVoice checkpoints do not store their sample rate and the name does not "
        "name one rate (8k or 16k); pass --model-rate 8000 or --model-rate 16000")
    assert error(load_clearvoice, tmp_path / "gone.pt") == f"{tmp_path / 'gone.pt'}: checkpoint not found"
    folder = tmp_path / "run_8k"
    folder.mkdir()
    assert error(resolve_weights, folder) == f"{folder}: no last_best_checkpoint or last_checkpoint pointer file in this folder"
    (folder / "last_best_checkpoint").write_text("  \n")
    assert error(load_checkpoint, folder) == (f"{folder / 'last_best_checkpoint'}: pointer file is empty (expected the "
                                              "weights file name)")
    (folder / "last_best_checkpoint").write_bytes(b"w\xff.pt\n")  # not UTF-8: shown with a replacement character
    assert error(load_checkpoint, folder) == (f"{folder / 'last_best_checkpoint'}: names w\ufffd.pt, which is not in "
                                              f"{folder}")
    (folder / "last_best_checkpoint").write_text("../plain/w.pt")
    assert error(load_checkpoint, folder) == f"{folder / 'last_best_checkpoint'}: names w.pt, which is not in {folder}"
    assert resolve_weights(tmp_path / "plain" / "w.pt") == (tmp_path / "plain" / "w.pt", None)


def test_clearvoice_declared_sizes_must_match(tmp_path):
    from mossep.checkpoints.clearvoice import check_declared

    a, b = SMALL2, ModelConfig(**{**SMALL2.to_dict(), "num_blocks": 3, "num_spks": 3})
    check_declared(a, a, "w", {"num_blocks": "layers"})
    assert error(check_declared, a, b, "here", {"encoder_dim": "width", "num_blocks": "layers", "num_spks": "n"}) == (
        "here: the configuration says layers = 2 but the weights have 3")


def test_modelscope_odd_kernel(tmp_path):
    """kernel_size // 2 is an integer division: kernel 7 has stride 3."""
    cfg = ModelConfig(**{**MS_CFG.to_dict(), "kernel_size": 7, "stride": 3})
    model = seeded(cfg)
    loaded = load_checkpoint(write_modelscope(tmp_path / "ms", model))
    assert loaded.config == cfg and torch.equal(output(loaded.model), output(model))


# ---------------------------------------------------------------- standalone: which copy, whole messages


def test_standalone_folder_reads_pytorch_model_bin_and_a_part_file_reads_the_parts(tmp_path):
    a, b = seeded(ST_CFG, 1), seeded(ST_CFG, 2)
    folder = write_standalone(tmp_path / "st", b, parts=True)
    write_standalone(folder, a)  # pytorch_model.bin holds a, the .ckpt triple holds b
    assert torch.equal(output(load_checkpoint(folder).model), output(a))
    assert torch.equal(output(load_checkpoint(folder / "pytorch_model.bin").model), output(a))
    for part in ("encoder.ckpt", "decoder.ckpt", "masknet.ckpt"):
        loaded = load_checkpoint(folder / part)
        assert torch.equal(output(loaded.model), output(b))
        assert loaded.notes[1].endswith("from encoder.ckpt + decoder.ckpt + masknet.ckpt; masks applied to the encoder output")


@pytest.mark.parametrize("change, expected", [
    ({"sample_rate": None}, "lacks key 'sample_rate'"),
    ({"intra_numlayers": 0}, "intra_numlayers must be a positive integer, got 0"),
    ({"masknet_numspks": True}, "masknet_numspks must be a positive integer, got True"),
    ({"encoder_kernel_size": 8.0}, "encoder_kernel_size must be a positive integer, got 8.0"),
    ({"config_name": 3}, "config_name must be a str, got 3"),
    ({"masknet_useextralinearlayer": 0}, "masknet_useextralinearlayer must be a bool, got 0"),
    ({"masknet_useextralinearlayer": True}, "masknet_useextralinearlayer = True is not supported (every published "
                                            "model has False)"),
    ({"masknet_norm": "gln"}, "masknet_norm = 'gln' is not supported (every published model has 'ln')"),
    ({"encoder_in_nchannels": 2}, "encoder_in_nchannels = 2 is not supported (every published model has 1)"),
    ({"sample_rate": 10 ** 7}, "model config: sample_rate must be in 1..384000, got 10000000"),
])
def test_standalone_configuration_errors_in_full(tmp_path, change, expected):
    folder = write_standalone(tmp_path / "st", seeded(ST_CFG))
    conf = json.loads((folder / "config.json").read_text())
    for k, v in change.items():
        if v is None:
            del conf[k]
        else:
            conf[k] = v
    (folder / "config.json").write_text(json.dumps(conf))
    assert error(load_checkpoint, folder) == f"{folder / 'config.json'}: {expected}"


def test_standalone_folder_errors_in_full(tmp_path):
    from mossep.checkpoints.standalone import load_standalone

    model = seeded(ST_CFG)
    folder = write_standalone(tmp_path / "st", model)
    conf, bin_ = folder / "config.json", folder / "pytorch_model.bin"
    assert error(load_checkpoint, folder, 8000) == (f"{conf}: the model runs at 16000 Hz; --model-rate 8000 "
                                                    "contradicts it")
    assert load_checkpoint(folder, 16000).config == ST_CFG
    assert error(load_standalone, tmp_path) == (f"{tmp_path}: not a MossFormer2 standalone model (config.json with "
                                                "pytorch_model.bin or the .ckpt files)")
    write_standalone(folder, model, intra_numlayers=3)
    assert error(load_checkpoint, folder) == (f"{conf} and pytorch_model.bin: the configuration says intra_numlayers "
                                              "= 3 but the weights have 2")
    write_standalone(folder, model)
    torch.save([1], bin_)
    assert error(load_checkpoint, folder) == f"{bin_}: not a state dict (got list)"
    state = standalone_state_dict(model)
    torch.save({**state, "other.w": torch.zeros(1)}, bin_)
    assert error(load_checkpoint, folder) == (f"{bin_}: unexpected key 'other.w' (MossFormer2 keys start with "
                                              "encoder., decoder., masknet.)")
    torch.save({**state, "masknet.prelu.weight": torch.zeros(3)}, bin_)
    assert error(load_checkpoint, folder) == (f"{bin_}: checkpoint does not match the model: 1 wrong shapes (first: "
                                              "mask_net.prelu.weight (3,) (expected (1,)))")
    bin_.unlink()
    write_standalone(folder, model, parts=True)
    torch.save([2], folder / "decoder.ckpt")
    assert error(load_checkpoint, folder) == f"{folder / 'decoder.ckpt'}: not a state dict (got list)"
    (folder / "notes.txt").write_text("x")
    assert error(load_checkpoint, folder / "notes.txt").startswith(f"{folder / 'notes.txt'}: not a known checkpoint")


# ---------------------------------------------------------------- load_checkpoint: names, rates, dispatch


def _named(monkeypatch, path, name="some-model", rate=16000, note="fetched from x, revision y"):
    from types import SimpleNamespace

    import mossep.checkpoints as package

    resolved = SimpleNamespace(entry=SimpleNamespace(name=name, sample_rate=rate), path=path, note=note)
    monkeypatch.setattr(package, "resolve_name", lambda spec: resolved if str(spec) == name else None)


def test_a_named_clearvoice_model_takes_its_rate_from_the_list(tmp_path, monkeypatch):
    model = seeded(SMALL2)
    torch.save(_official(model), tmp_path / "w.pt")  # the name says no rate
    _named(monkeypatch, tmp_path / "w.pt")
    loaded = load_checkpoint("some-model")
    assert loaded.config.sample_rate == 16000 and torch.equal(output(loaded.model), output(model))
    assert loaded.notes == ["sample rate from mossep's model list (some-model)",
                            "ClearerVoice MossFormer2 checkpoint w.pt, bare state dict", "fetched from x, revision y"]
    loaded = load_checkpoint("some-model", 8000)  # the caller's rate wins, and its note stays
    assert loaded.config.sample_rate == 8000
    assert loaded.notes == ["sample rate given by --model-rate",
                            "ClearerVoice MossFormer2 checkpoint w.pt, bare state dict", "fetched from x, revision y"]


def test_a_named_model_of_another_format_keeps_its_notes(tmp_path, monkeypatch):
    model = seeded(ST_CFG)
    folder = write_standalone(tmp_path / "st", model)
    _named(monkeypatch, folder, rate=8000)  # a list's rate never overrides a format that stores one
    loaded = load_checkpoint("some-model")
    assert loaded.config.sample_rate == 16000
    assert loaded.notes[0] == "sample rate 16000 Hz from config.json" and loaded.notes[-1] == "fetched from x, revision y"
    _named(monkeypatch, None, name="default", rate=8000, note="the bundled model (name 'default')")
    loaded = load_checkpoint("default")
    assert loaded.path == default_model_path() and loaded.notes[-1] == "the bundled model (name 'default')"


def test_load_checkpoint_rates_and_refusals_in_full(tmp_path):
    model = seeded(SMALL2)
    save_native(model, tmp_path / "m.safetensors")
    assert load_checkpoint(tmp_path / "m.safetensors", 8000).config == SMALL2
    assert error(load_checkpoint, tmp_path / "m.safetensors", 16000) == (
        f"{tmp_path / 'm.safetensors'}: model runs at 8000 Hz; --model-rate 16000 contradicts it")
    ms = write_modelscope(tmp_path / "ms", seeded(MS_CFG))
    assert load_checkpoint(ms, 8000).config == MS_CFG
    assert error(load_checkpoint, ms, 16000) == f"{ms}: the official MossFormer model runs at 8000 Hz"
    ms2 = write_modelscope2(tmp_path / "ms2", seeded(MS2_CFG))
    assert load_checkpoint(ms2, 8000).config == MS2_CFG
    assert error(load_checkpoint, ms2, 16000) == f"{ms2}: the ModelScope MossFormer2 model runs at 8000 Hz"
    assert error(load_checkpoint, tmp_path / "gone") == (f"{tmp_path / 'gone'}: model not found (neither a file nor a "
                                                         "name that `mossep models` lists)")
    (tmp_path / "empty").mkdir()
    assert error(load_checkpoint, tmp_path / "empty") == (
        f"{tmp_path / 'empty'}: directory is not a known model layout (expected configuration.json + encoder.bin, "
        "decoder.bin, masknet.bin; configuration.json + pytorch_model.pt; config.json + pytorch_model.bin; or a "
        "ClearerVoice checkpoint folder)")
    (tmp_path / "m.onnx").write_bytes(b"x")
    assert error(load_checkpoint, tmp_path / "m.onnx") == (f"{tmp_path / 'm.onnx'}: not a known checkpoint format "
                                                           "(.safetensors from mossep, or a ClearerVoice .pt)")
    for path in (tmp_path / "m.safetensors", ms, ms2):
        loaded = load_checkpoint(path)
        assert not loaded.model.training and loaded.path == path


def test_a_modelscope2_folder_named_by_its_type_alone(tmp_path):
    """configuration.json naming the MossFormer2 type makes a folder ModelScope MossFormer2 even without its
    weights (so the missing file is named); a ModelScope MossFormer folder is not one."""
    from mossep.checkpoints.modelscope import is_modelscope_dir
    from mossep.checkpoints.modelscope2 import modelscope2_folder

    folder = write_modelscope2(tmp_path / "ms2", seeded(MS2_CFG))
    assert modelscope2_folder(folder) == folder and modelscope2_folder(folder / "pytorch_model.pt") == folder
    (folder / "pytorch_model.pt").unlink()
    assert modelscope2_folder(folder) == folder
    assert error(load_checkpoint, folder) == f"{folder / 'pytorch_model.pt'}: checkpoint file is missing"
    (folder / "configuration.json").write_text(json.dumps({"model": {"type": "speech_mossformer_separation_temporal_8k"}}))
    assert modelscope2_folder(folder) is None and is_modelscope_dir(folder)
    (folder / "configuration.json").write_text("[")
    assert modelscope2_folder(folder) is None
    (tmp_path / "pytorch_model.pt").write_bytes(b"x")
    assert modelscope2_folder(tmp_path / "pytorch_model.pt") is None  # no configuration.json beside it
    ms = write_modelscope(tmp_path / "ms", seeded(MS_CFG))
    assert modelscope2_folder(ms) is None and modelscope2_folder(ms / "encoder.bin") is None
    (ms / "last_checkpoint").write_text("encoder.bin")
    assert not is_modelscope_dir(ms)  # a ClearerVoice folder that happens to hold one of these names


# ---------------------------------------------------------------- convert and describe by value


def test_convert_writes_metadata_and_reproduces_the_source(tmp_path):
    from mossep import __version__
    from mossep.checkpoints.convert import convert

    model = seeded(ST_CFG)
    folder = write_standalone(tmp_path / "st", model)
    out = tmp_path / "c.safetensors"
    result = convert(folder, out)
    loaded = load_checkpoint(out)
    assert loaded.config == ST_CFG and torch.equal(output(loaded.model), output(model))
    notes = ["sample rate 16000 Hz from config.json",
             "MossFormer2 standalone 'mossformer2-x' from pytorch_model.bin; masks applied to the encoder output"]
    expected_meta = {"source_config": json.loads((folder / "config.json").read_text()), "source_format": "standalone",
                     "source_path": "st", "sample_rate": 16000, "sample_rate_source": "from config.json",
                     "num_spks": 3, "mask_encoder": True, "source_notes": notes, "converted_by": f"mossep {__version__}"}
    assert loaded.metadata == expected_meta
    n = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert 0 < trainable < n  # the rotary frequencies are fixed
    assert result == {"path": str(out), "format": "mossep", "format_name": "mossep (.safetensors)",
                      "architecture": "mossformer2", "sample_rate": 16000,
                      "sample_rate_source": "stored in the checkpoint (at conversion: from config.json)", "num_spks": 3,
                      "config": ST_CFG.to_dict(), "parameters": {"total": n, "trainable": trainable, "buffers": sum(
                          b.numel() for b in model.buffers())}, "metadata": expected_meta, "notes": [],
                      "verified_max_rel_error": 0.0}
    assert error(convert, folder, tmp_path / "c.pt") == f"{tmp_path / 'c.pt'}: output must be a .safetensors file"


@pytest.mark.parametrize("diff, ok", [(0.0, True), (1e-5, True), (1.1e-5, False), (float("nan"), False)])
def test_convert_verification_threshold(tmp_path, monkeypatch, diff, ok):
    from mossep.checkpoints import convert as convert_module

    save_native(seeded(SMALL2), tmp_path / "a.safetensors")
    monkeypatch.setattr(convert_module, "output_difference", lambda a, b: diff)
    out = tmp_path / "b.safetensors"
    if ok:
        assert convert_module.convert(tmp_path / "a.safetensors", out)["verified_max_rel_error"] == diff
    else:
        assert error(convert_module.convert, tmp_path / "a.safetensors", out) == (
            f"{out}: converted model differs from {tmp_path / 'a.safetensors'} (max error {diff:.3g} of the output "
            "RMS); nothing written")
        assert not out.exists()


def test_output_difference_is_max_abs_over_rms():
    from mossep.checkpoints.convert import output_difference

    a, b = seeded(SMALL2, 1), seeded(SMALL2, 2)
    assert output_difference(a, a) == 0.0
    gen = torch.Generator().manual_seed(0)
    x = 0.1 * torch.randn(1, 8000, generator=gen)  # one second at 8 kHz
    with torch.no_grad():
        ya, yb = a(x), b(x)
    expected = float((ya - yb).abs().max() / ya.pow(2).mean().sqrt())
    assert output_difference(a, b) == pytest.approx(expected, rel=1e-6)
    gen = torch.Generator().manual_seed(3)
    x = 0.1 * torch.randn(1, 4000, generator=gen)
    with torch.no_grad():
        ya, yb = a(x), b(x)
    assert output_difference(a, b, seconds=0.5, seed=3) == pytest.approx(
        float((ya - yb).abs().max() / ya.pow(2).mean().sqrt()), rel=1e-6)
    silent = seeded(SMALL2, 1)
    with torch.no_grad():
        for p in silent.decoder.parameters():
            p.zero_()
    assert output_difference(silent, a) > 1e6  # an all-zero output divides by the 1e-12 floor, not by zero


def test_sample_rate_origin_and_counts(tmp_path):
    from mossep.checkpoints import LoadedModel
    from mossep.checkpoints.convert import describe, parameter_counts, sample_rate_origin

    model = seeded(SMALL2)
    origin = {s: sample_rate_origin(LoadedModel(model, s, tmp_path, {}, ["sample rate inferred from x"]))
              for s in ("clearvoice", "modelscope", "modelscope2", "standalone", "mossep")}
    assert origin == {"clearvoice": "inferred from x",
                      "modelscope": "fixed: the official ModelScope MossFormer is an 8000 Hz model",
                      "modelscope2": "fixed: the official ModelScope MossFormer2 pipeline accepts only 8000 Hz",
                      "standalone": "from config.json", "mossep": "stored in the checkpoint"}
    for p in model.decoder.parameters():
        p.requires_grad_(False)
    total = sum(p.numel() for p in model.parameters())
    frozen = sum(p.numel() for p in model.decoder.parameters())
    buffers = sum(b.numel() for b in model.buffers())
    assert frozen > 0 and buffers > 0
    fixed = sum(p.numel() for p in model.parameters() if not p.requires_grad) - frozen  # the rotary frequencies
    assert fixed > 0
    assert parameter_counts(model) == {"total": total, "trainable": total - frozen - fixed, "buffers": buffers}
    d = describe(LoadedModel(model, "other", tmp_path, {"m": 1}, ["n"]))
    assert (d["format"], d["format_name"], d["metadata"], d["notes"]) == ("other", "other", {"m": 1}, ["n"])


# ---------------------------------------------------------------- common: state checks, archives, JSON files


def _expected() -> dict:
    return {"a.w": torch.zeros(2, 3), "b.w": torch.zeros(4), "c.w": torch.zeros(1), "d.w": torch.zeros(5)}


def test_check_state_lists_every_kind_of_difference_in_one_line():
    state = {"a.w": torch.ones(3, 2), "b.w": torch.ones(4, 1), "x": torch.ones(1), "y": torch.ones(1)}
    assert error(common.check_state, _expected(), state, "f") == (
        "f: checkpoint does not match the model: 2 missing keys (first: c.w); 2 unexpected keys (first: x); 2 wrong "
        "shapes (first: a.w (3, 2) (expected (2, 3)))")
    assert error(common.check_state, _expected(), {**_expected(), "z": torch.ones(1)}, "f") == (
        "f: checkpoint does not match the model: 1 unexpected keys (first: z)")
    for bad in ([1], {"a.w": 1}, {3: torch.ones(1)}):
        assert error(common.check_state, _expected(), bad, "f") == "f: not a state dict of tensors"


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.complex64, torch.float8_e4m3fn, torch.uint8])
def test_check_state_refuses_non_float_weights_in_full(dtype):
    state = {**_expected(), "b.w": torch.zeros(4, dtype=dtype)}
    name = str(dtype).removeprefix("torch.")
    assert error(common.check_state, _expected(), state, "dir/f.pt") == (
        f"dir/f.pt: tensor b.w is {name}, expected float32 (quantized or integer weights are not supported; float16, "
        "bfloat16 and float64 are converted to float32)")


def test_check_state_notes_per_float_type_in_order():
    state = {"a.w": torch.zeros(2, 3, dtype=torch.float64), "b.w": torch.zeros(4, dtype=torch.bfloat16),
             "c.w": torch.zeros(1, dtype=torch.float64), "d.w": torch.zeros(5)}
    assert common.check_state(_expected(), state, "dir/f.pt") == [
        "2 of 4 tensors in f.pt are stored as float64, rounded to float32",
        "1 of 4 tensors in f.pt are stored as bfloat16, converted to float32 exactly"]
    assert all(isinstance(n, common.ConversionNote) for n in common.check_state(_expected(), state, "f"))
    assert common.check_state(_expected(), _expected(), "f") == []
    half = {**_expected(), "d.w": torch.zeros(5, dtype=torch.float16)}
    assert common.check_state(_expected(), half, "f") == ["1 of 4 tensors in f are stored as float16, converted to "
                                                          "float32 exactly"]
    expected64 = {**_expected(), "b.w": torch.zeros(4, dtype=torch.float64)}  # only float32 weights take others
    assert error(common.check_state, expected64, _expected(), "f").startswith("f: tensor b.w is float32, expected float64")


@pytest.mark.parametrize("value, dtype", [(float("nan"), torch.float32), (float("inf"), torch.float16),
                                          (-float("inf"), torch.bfloat16), (1e300, torch.float64),
                                          (float("nan"), torch.float64)])
def test_check_state_refuses_values_not_finite_in_float32(value, dtype):
    state = {**_expected(), "c.w": torch.full((1,), value, dtype=dtype)}
    assert error(common.check_state, _expected(), state, "f") == "f: tensor c.w holds NaN or infinite values"
    big = {**_expected(), "c.w": torch.full((1,), 3e38, dtype=torch.float64)}  # within float32
    assert common.check_state(_expected(), big, "f") == ["1 of 4 tensors in f are stored as float64, rounded to float32"]


def test_meta_state_is_the_models_state_without_memory():
    state = common.meta_state(SMALL2)
    real = build_model(SMALL2).state_dict()
    assert [(k, v.shape, v.dtype) for k, v in state.items()] == [(k, v.shape, v.dtype) for k, v in real.items()]
    assert all(v.is_meta for k, v in state.items() if k.endswith(".weight"))  # position tables are computed


def test_shapes_only_skips_initialisers_on_meta_tensors_only():
    with common._ShapesOnly():
        t = torch.nn.init.normal_(torch.empty(3, device="meta"))
        assert t.is_meta
        r = torch.nn.init.constant_(torch.empty(3), 2.0)
        assert torch.equal(r, torch.full((3,), 2.0))
    with torch.device("meta"), common._ShapesOnly():
        a = torch.arange(4)
    assert a.device.type == "cpu" and torch.equal(a, torch.arange(4))


def test_build_checked_loads_converted_values(tmp_path):
    model = seeded(SMALL2)
    state = {k: v.double() for k, v in model.state_dict().items()}
    built, notes = common.build_checked(SMALL2, state, "x/w.pt")
    assert torch.equal(output(built), output(model))
    assert notes == [f"{len(state)} of {len(state)} tensors in w.pt are stored as float64, rounded to float32"]
    assert all(p.dtype == torch.float32 for p in built.parameters())


def test_torch_archives_in_full(tmp_path):
    p = tmp_path / "w.pt"
    assert error(common.torch_load_tensors, p) == f"{p}: checkpoint file is missing"
    p.write_bytes(b"PK\x03\x04" + bytes(100))
    assert error(common.torch_load_tensors, p) == f"{p}: cannot read checkpoint (truncated or corrupt: no zip directory)"
    p.write_bytes(b"\x80\x02" + bytes(100))
    assert error(common.torch_load_tensors, p) == (
        f"{p}: cannot read checkpoint (refused: not a PyTorch zip archive, which torch.save has written since torch "
        "1.6; the legacy format is not read)")
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({}), compress_type=zipfile.ZIP_STORED)
        z.writestr("archive/big", bytes(1000), compress_type=zipfile.ZIP_DEFLATED)
    assert error(common.torch_load_tensors, p) == (f"{p}: cannot read checkpoint (record archive/big is compressed; "
                                                   "torch.save never compresses, so the file was altered)")
    torch.save({"w": torch.arange(3.0)}, p)
    assert torch.equal(common.torch_load_tensors(p)["w"], torch.arange(3.0))
    raw = bytearray(p.read_bytes())
    record = next(r for r in zipfile.ZipFile(p).infolist() if r.filename.endswith("data/0"))
    # the central directory's size field of that record (offset 24 in its entry) claims far more than the file holds
    entries = [i for i in range(len(raw)) if raw[i:i + 4] == b"PK\x01\x02"]
    entry = next(i for i in entries if raw[i + 46:i + 46 + len(record.filename)] == record.filename.encode())
    raw[entry + 24:entry + 28] = (10 ** 9).to_bytes(4, "little")
    (tmp_path / "claims.pt").write_bytes(bytes(raw))
    assert error(common.torch_load_tensors, tmp_path / "claims.pt") == (
        f"{tmp_path / 'claims.pt'}: cannot read checkpoint (its records claim more bytes than the file holds)")


def test_read_json_object_in_full(tmp_path):
    p = tmp_path / "c.json"
    p.write_text(" " * (common.MAX_JSON_BYTES - 2) + "{}")
    assert common.read_json_object(p) == {}
    p.write_text(" " * (common.MAX_JSON_BYTES - 1) + "{}")
    assert error(common.read_json_object, p) == (f"{p}: too large for a configuration file "
                                                 f"({common.MAX_JSON_BYTES + 1} bytes)")
    p.write_text("[1]")
    assert error(common.read_json_object, p) == f"{p}: expected a JSON object, got a JSON list"
    p.write_text('{"a": ')
    assert error(common.read_json_object, p) == f"{p}: not valid JSON (Expecting value: line 1 column 7 (char 6))"
    p.write_bytes(b'{"a": "\xff"}')
    assert error(common.read_json_object, p).startswith(f"{p}: not valid JSON ('utf-8' codec can't decode byte 0xff")
    p.write_text("[" * 100000 + "]" * 100000)
    assert error(common.read_json_object, p) == f"{p}: not valid JSON (maximum recursion depth exceeded while decoding a JSON array from a unicode string)"
    assert error(common.read_json_object, tmp_path) == f"{tmp_path}: cannot read (Is a directory)"
    assert error(common.read_json_object, tmp_path / "none.json") == f"{tmp_path / 'none.json'}: cannot read (No such file or directory)"


def test_save_native_header_and_tensors(tmp_path):
    from safetensors import safe_open

    model = seeded(SMALL2).double()
    save_native(model, tmp_path / "m.safetensors")
    with safe_open(str(tmp_path / "m.safetensors"), framework="pt") as f:
        meta, stored = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    full = model.state_dict()
    groups: dict = {}
    for k, v in full.items():  # tensors sharing one storage (the rotary tables) are stored once
        groups.setdefault((v.data_ptr(), v.shape, v.stride()), []).append(k)
    aliases = {k: ks[0] for ks in groups.values() for k in ks[1:]}
    assert aliases and set(stored) == {ks[0] for ks in groups.values()}
    assert meta == {"format": "mossep", "format_version": "1", "config": json.dumps(SMALL2.to_dict()),
                    "aliases": json.dumps(aliases), "metadata": "{}"}
    assert all(v.dtype == torch.float32 and torch.equal(v, full[k].float()) for k, v in stored.items())
    assert torch.equal(output(load_native(tmp_path / "m.safetensors")[0]), output(model.float()))


def test_unique_state_keeps_empty_tensors_apart():
    from mossep.checkpoints.native import _unique_state

    class Two(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Parameter(torch.zeros(0)), torch.nn.Parameter(torch.zeros(0))
            self.c = torch.nn.Parameter(torch.ones(2, 3).t())  # not contiguous
            self.d = self.c

    state, aliases = _unique_state(Two())
    assert list(state) == ["a", "b", "c"] and aliases == {"d": "c"}
    assert state["c"].is_contiguous() and torch.equal(state["c"], torch.ones(3, 2))


def test_clearvoice_rate_from_the_weights_name_in_a_folder_and_any_positive_rate(tmp_path):
    model = seeded(SMALL2)
    folder = tmp_path / "run"
    folder.mkdir()
    torch.save(_official(model), folder / "ss_16k.pt")
    (folder / "last_best_checkpoint").write_text("ss_16k.pt")
    loaded = load_checkpoint(folder)
    assert loaded.config.sample_rate == 16000 and loaded.notes[0] == "sample rate inferred from the name 'ss_16k.pt'"
    assert load_checkpoint(folder / "ss_16k.pt", sample_rate=1).config.sample_rate == 1


def test_a_pointer_naming_a_file_longer_than_the_file_system_allows_is_one_line(tmp_path):
    """pathlib's is_file raises OSError (File name too long) instead of returning False: found by mutation testing
    (the 4096-byte read of the pointer file)."""
    folder = tmp_path / "run_8k"
    folder.mkdir()
    (folder / "last_checkpoint").write_text("a" * 5000 + "\nb.pt")
    assert error(load_checkpoint, folder) == f"{folder / 'last_checkpoint'}: names {'a' * 80}, which is not in {folder}"


def test_convert_keeps_an_existing_file_unless_told(tmp_path):
    from mossep.checkpoints.convert import convert

    save_native(seeded(SMALL2), tmp_path / "a.safetensors")
    out = tmp_path / "b.safetensors"
    out.write_bytes(b"keep")
    assert "--overwrite" in error(convert, tmp_path / "a.safetensors", out)
    assert out.read_bytes() == b"keep"
    convert(tmp_path / "a.safetensors", out, overwrite=True)
    assert load_checkpoint(out).config == SMALL2


def test_layout_detection_edges(tmp_path):
    from mossep.checkpoints.modelscope import is_modelscope_dir
    from mossep.checkpoints.modelscope2 import modelscope2_folder

    ms = write_modelscope(tmp_path / "ms", seeded(MS_CFG))
    (ms / "last_best_checkpoint").write_text("encoder.bin")
    assert not is_modelscope_dir(ms)  # a ClearerVoice folder (either pointer) holding one of these names
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "pytorch_model.pt").write_bytes(b"x")
    assert modelscope2_folder(bare) is None  # weights without configuration.json
    assert error(load_checkpoint, bare).startswith(f"{bare}: directory is not a known model layout")
    only_config = tmp_path / "only_config"
    only_config.mkdir()
    (only_config / "config.json").write_text("{}")  # a standalone folder needs a weights file too
    assert error(load_checkpoint, only_config).startswith(f"{only_config}: directory is not a known model layout")


def test_standalone_tensors_missing_in_full(tmp_path):
    model = seeded(ST_CFG)
    folder = write_standalone(tmp_path / "st", model)
    state = standalone_state_dict(model)
    del state["masknet.conv1d_out.weight"]
    torch.save(state, folder / "pytorch_model.bin")
    assert error(load_checkpoint, folder) == (f"{folder / 'pytorch_model.bin'}: not a MossFormer2 checkpoint (no "
                                              "tensor 'mask_net.conv1d_out.weight')")


def test_native_header_defaults_and_unreadable_tensors(tmp_path):
    path = _tiny_native(tmp_path / "m.safetensors", metadata=None)
    loaded = load_checkpoint(path)
    assert loaded.metadata == {} and loaded.config == SMALL2  # no metadata entry: none
    path = _tiny_native(tmp_path / "a.safetensors", aliases=None)
    assert error(load_checkpoint, path).startswith(f"{path}: checkpoint does not match the model: ")  # no aliases: none
    header = {"__metadata__": {"format": "mossep", "config": "{}"},
              "a": {"dtype": "F6_E2M3", "shape": [4], "data_offsets": [0, 3]}}
    path = _forge(tmp_path / "f6.safetensors", header, bytes(3))
    assert error(load_native, path) == f"{path}: cannot read tensors (Dtype not understood: F6_E2M3)"


def test_clearvoice_decoder_bias_is_read_from_the_tensors(tmp_path):
    cfg = ModelConfig(**{**SMALL2.to_dict(), "decoder_bias": True})
    model = seeded(cfg)
    torch.save(_official(model), tmp_path / "ss_8k.pt")
    loaded = load_checkpoint(tmp_path / "ss_8k.pt")
    assert loaded.config == cfg and torch.equal(output(loaded.model), output(model))


def _rewrite_zip(src: Path, dst: Path, change) -> Path:
    """`src` (a torch.save zip) with each record's bytes passed through change(name, data), stored uncompressed."""
    with zipfile.ZipFile(src) as old, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as new:
        for r in old.infolist():
            new.writestr(r.filename, change(r.filename, old.read(r)))
    return dst


def test_a_checkpoint_saved_on_a_gpu_loads_on_the_cpu(tmp_path):
    torch.save({"w": torch.arange(3.0)}, tmp_path / "cpu.pt")
    tag = b"X\x03\x00\x00\x00cpu"  # the storage's device in the pickle, as a GPU run writes "cuda:0"
    path = _rewrite_zip(tmp_path / "cpu.pt", tmp_path / "gpu.pt", lambda name, data: data.replace(
        tag, b"X\x06\x00\x00\x00cuda:0") if name.endswith("data.pkl") else data)
    assert b"cuda:0" in zipfile.ZipFile(path).read(next(n for n in zipfile.ZipFile(path).namelist()
                                                        if n.endswith("data.pkl")))
    state = common.torch_load_tensors(path)
    assert state["w"].device.type == "cpu" and torch.equal(state["w"], torch.arange(3.0))


def test_an_environment_variable_cannot_make_torch_unpickle_code(tmp_path, monkeypatch):
    """TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD turns weights_only off only where a caller leaves it unset."""
    import os

    class RunsCode:
        def __reduce__(self):
            return os.system, (f"touch {tmp_path / 'ran'}",)

    torch.save({"w": RunsCode()}, tmp_path / "evil.pt")
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    assert error(common.torch_load_tensors, tmp_path / "evil.pt").startswith(
        f"{tmp_path / 'evil.pt'}: cannot read checkpoint (refused: it asks to run Python code (")
    assert not (tmp_path / "ran").exists()


def test_zip_directories_damaged_or_claiming_the_whole_file(tmp_path):
    torch.save({"w": torch.arange(1000.0)}, tmp_path / "ok.pt")
    raw = bytearray((tmp_path / "ok.pt").read_bytes())
    cd = raw.find(b"PK\x01\x02")
    bad = bytearray(raw)
    bad[cd:cd + 4] = b"XXXX"  # the end record still points at it: is_zipfile says yes, ZipFile cannot read it
    (tmp_path / "bad.pt").write_bytes(bytes(bad))
    assert error(common.torch_load_tensors, tmp_path / "bad.pt") == (
        f"{tmp_path / 'bad.pt'}: cannot read checkpoint (truncated or corrupt: Bad magic number for central directory)")
    records = zipfile.ZipFile(tmp_path / "ok.pt").infolist()
    big = max(records, key=lambda r: r.file_size)
    entries = [i for i in range(len(raw)) if raw[i:i + 4] == b"PK\x01\x02"]
    entry = next(i for i in entries if raw[i + 46:i + 46 + len(big.filename)] == big.filename.encode())
    claim = len(raw) - (sum(r.file_size for r in records) - big.file_size)  # the records claim exactly the file
    raw[entry + 24:entry + 28] = claim.to_bytes(4, "little")
    (tmp_path / "exact.pt").write_bytes(bytes(raw))
    msg = error(common.torch_load_tensors, tmp_path / "exact.pt")
    assert msg.startswith(f"{tmp_path / 'exact.pt'}: cannot read checkpoint (") and "claim more bytes" not in msg


def test_shapes_only_skips_torch_nn_init_before_its_body_runs(monkeypatch):
    """torch.nn.init passes the tensor by keyword to the mode; skipping there keeps torch's slow reference
    implementations (and their imports of torch._dynamo and sympy) out of every load."""
    ran = []
    real = torch.nn.init._no_grad_normal_
    monkeypatch.setattr(torch.nn.init, "_no_grad_normal_", lambda *a, **k: ran.append(1) or real(*a, **k))
    with torch.device("meta"), common._ShapesOnly():
        t = torch.nn.init.normal_(torch.empty(3))
        torch.nn.init.xavier_uniform_(torch.empty(2, 3))
    assert t.is_meta and ran == []
    with common._ShapesOnly():
        torch.nn.init.normal_(torch.empty(3))  # a real tensor gets its values
    assert ran == [1]


def test_large_finite_weights_are_accepted():
    """The finiteness check sums in float64: float32 values near the top of their range are not an overflow."""
    state = {**_expected(), "d.w": torch.full((5,), 3e38)}
    assert common.check_state(_expected(), state, "f") == []
