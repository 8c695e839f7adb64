"""Hostile checkpoints, for every format mossep loads: pickles that ask to run code, forged safetensors
headers, headers and configuration files of the wrong JSON types, weights of the wrong dtype or value, and
absurd configurations, which are loaded under a 2 GB address-space limit and must fail fast with one line.

Formats: mossep .safetensors, ModelScope MossFormer folder, ClearerVoice MossFormer2 file, Hugging Face
MossFormer2 standalone folder, ModelScope MossFormer2 folder, and train --resume's last.pt.
"""
from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from faults import one_line_error, run, tone
from mossep.checkpoints import load_checkpoint
from mossep.checkpoints.clearvoice import official_state_dict
from mossep.errors import MossepError
from mossep.models import ModelConfig, build_model, preset
from mossep.models.config import LIMITS
from mossep.train import Trainer

FIXTURES = Path(__file__).parent / "fixtures"
MODELSCOPE = FIXTURES / "mossformer_8k" / "tiny_checkpoint"
STANDALONE = FIXTURES / "mossformer2_standalone_8k" / "tiny" / "librimix_2spk"
MODELSCOPE2 = FIXTURES / "mossformer2_modelscope_8k" / "tiny_checkpoint"
SMALL2 = ModelConfig(arch="mossformer2", encoder_dim=24, d_model=32, num_blocks=2, query_key_dim=16,
                     rotary_dim=8, expansion_factor=2.0, conv_kernel_size=5, fsmn_dim=12, fsmn_lorder=3,
                     kernel_size=8, stride=4)


def one_line(excinfo, *fragments: str) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg and len(msg) < 400, msg
    assert "weights_only" not in msg and "Traceback" not in msg, msg
    for f in fragments:
        assert f in msg, (f, msg)
    return msg


# ---------------------------------------------------------------- small checkpoints of every format


@pytest.fixture(scope="module")
def tiny_native(tiny_model_path) -> Path:
    """The shared tiny model (conftest), only ever read: every forgery is written to a copy."""
    return tiny_model_path


@pytest.fixture(scope="module")
def small2_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return official_state_dict(build_model(SMALL2))


def linked_copy(src: Path, dst: Path, replace: dict[str, object] | None = None) -> Path:
    """A copy of the model folder `src` whose files are symlinks, except those in `replace` (name -> JSON
    object to write, bytes, or a callable writing the file)."""
    dst.mkdir(parents=True)
    replace = replace or {}
    for f in src.iterdir():
        if f.name not in replace:
            (dst / f.name).symlink_to(f.resolve())
    for name, content in replace.items():
        if callable(content):
            content(dst / name)
        elif isinstance(content, bytes):
            (dst / name).write_bytes(content)
        else:
            (dst / name).write_text(json.dumps(content))
    return dst


def with_config(src: Path, name: str, dst: Path, **changes) -> Path:
    """`src` with its JSON configuration `name` changed (a "model" section for ModelScope files)."""
    conf = json.loads((src / name).read_text())
    target = conf["model"] if "model" in conf and name == "configuration.json" else conf
    target.update(changes)
    return linked_copy(src, dst, {name: conf})


def native_header(path: Path) -> tuple[dict, bytes]:
    """(the safetensors JSON header, the data bytes) of a file."""
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def forge(path: Path, header: dict | bytes, data: bytes = b"", length: int | None = None) -> Path:
    """Write a safetensors file byte by byte: 8-byte little-endian header length, header, data."""
    hb = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(hb) if length is None else length) + hb + data)
    return path


def with_header(src: Path, dst: Path, **meta: str) -> Path:
    """`src` with entries of its __metadata__ replaced (the tensors unchanged)."""
    header, data = native_header(src)
    header["__metadata__"] = {**header["__metadata__"], **meta}
    return forge(dst, header, data)


def with_tensors(src: Path, dst: Path, convert) -> Path:
    """`src` with every tensor passed through `convert` (the header's mossep entries unchanged)."""
    with safe_open(str(src), framework="pt") as f:
        meta, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    save_file({k: convert(k, v).contiguous() for k, v in state.items()}, str(dst), metadata=meta)
    return dst


# ---------------------------------------------------------------- pickles that ask to run code


class RunsCode:
    """Unpickling this runs `touch MARKER`: the proof that code ran is the file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_the_payload_runs_when_unpickled_without_weights_only(tmp_path):
    """The control: the same payload does run code when it is unpickled the ordinary way."""
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(RunsCode(marker)))
    assert marker.exists()


def _evil_checkpoint(kind: str, folder: Path, marker: Path, small2_state) -> Path:
    evil = {"model": RunsCode(marker)}
    if kind == "clearvoice":
        torch.save(evil, folder / "evil_8k.pt")
        return folder / "evil_8k.pt"
    if kind == "clearvoice-in-state":  # a real state dict with one entry that runs code
        torch.save({"model": {**small2_state, "enc.conv1d.weight": RunsCode(marker)}}, folder / "evil_8k.pt")
        return folder / "evil_8k.pt"
    if kind == "raw-pickle":  # not even a torch zip: a bare pickle stream
        (folder / "evil_8k.pt").write_bytes(pickle.dumps(evil))
        return folder / "evil_8k.pt"
    if kind == "modelscope":
        return linked_copy(MODELSCOPE, folder / "ms", {"encoder.bin": lambda p: torch.save(evil, p)})
    if kind == "standalone":
        return linked_copy(STANDALONE, folder / "hf", {"pytorch_model.bin": lambda p: torch.save(evil, p)})
    if kind == "standalone-parts":
        return linked_copy(STANDALONE, folder / "hf", {"pytorch_model.bin": lambda p: None,  # read the parts
                                                       "masknet.ckpt": lambda p: torch.save(evil, p)})
    if kind == "modelscope2":
        return linked_copy(MODELSCOPE2, folder / "ms2", {"pytorch_model.pt": lambda p: torch.save(evil, p)})
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["clearvoice", "clearvoice-in-state", "raw-pickle", "modelscope", "standalone",
                                  "standalone-parts", "modelscope2"])
def test_pickled_code_never_runs(tmp_path, small2_state, kind):
    marker = tmp_path / "ran"
    path = _evil_checkpoint(kind, tmp_path, marker, small2_state)
    with pytest.raises(MossepError) as e:
        load_checkpoint(path)
    msg = one_line(e, "cannot read checkpoint", "refused")
    if kind != "raw-pickle":  # a zip whose pickle names os.system: said so, and that mossep never runs it
        assert "never unpickles code" in msg and "system" in msg, msg
    assert not marker.exists()


def test_resume_from_a_pickle_that_runs_code(tmp_path):
    """train --resume: says what was refused and why, never torch's advice to turn weights_only off."""
    marker = tmp_path / "ran"
    torch.save({"model_config": {}, "model": RunsCode(marker)}, tmp_path / "last.pt")
    trainer = SimpleNamespace(out=tmp_path, mcfg=preset("tiny"))
    with pytest.raises(MossepError) as e:
        Trainer.resume(trainer)
    one_line(e, "last.pt", "never unpickles code")
    assert not marker.exists()


@pytest.mark.parametrize("state", [[1, 2], "text", {"model_config": None}, {"model_config": "x", "model": {}}])
def test_resume_from_a_state_of_the_wrong_shape(tmp_path, state):
    torch.save(state, tmp_path / "last.pt")
    with pytest.raises(MossepError) as e:
        Trainer.resume(SimpleNamespace(out=tmp_path, mcfg=preset("tiny")))
    one_line(e, "last.pt")


def test_cli_refused_pickle_is_one_line(tmp_path, capsys, small2_state):
    marker = tmp_path / "ran"
    path = _evil_checkpoint("clearvoice", tmp_path, marker, small2_state)
    code, out, err = run(["info", path], capsys)
    one_line_error(code, err, str(path), "never unpickles code")
    assert "weights_only" not in err and not marker.exists()


# ---------------------------------------------------------------- torch files altered to use more memory


def test_compressed_torch_records_are_refused(tmp_path, small2_state):
    """torch.save never compresses; a deflated record (a zip bomb: here 4 MB of zeros in a few KB) is refused
    before torch.load would inflate it."""
    plain = tmp_path / "plain.pt"
    torch.save({**small2_state, "enc.conv1d.weight": torch.zeros(1000, 1000)}, plain)
    bomb = tmp_path / "bomb_8k.pt"
    with zipfile.ZipFile(plain) as zin, zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))
    assert bomb.stat().st_size < plain.stat().st_size // 4
    assert torch.load(bomb, weights_only=True)["enc.conv1d.weight"].shape == (1000, 1000)  # torch inflates it
    with pytest.raises(MossepError) as e:
        load_checkpoint(bomb)
    one_line(e, str(bomb), "compressed")


def test_zip_records_claiming_more_than_the_file_are_refused(tmp_path, small2_state):
    """A central directory that says a stored record holds 4 GB (torch would allocate that much for it)."""
    path = tmp_path / "forged_8k.pt"
    torch.save(small2_state, path)
    raw = bytearray(path.read_bytes())
    at = raw.index(b"PK\x01\x02", raw.index(b"PK\x01\x02") + 4)  # the second central directory entry
    raw[at + 20:at + 28] = struct.pack("<II", 0xFFFFFFF0, 0xFFFFFFF0)  # compressed and uncompressed size
    path.write_bytes(bytes(raw))
    with pytest.raises(MossepError) as e:
        load_checkpoint(path)
    one_line(e, str(path), "records claim more bytes than the file holds")


def test_legacy_torch_format_is_refused(tmp_path, small2_state):
    """The pre-1.6 format allocates every storage at the size its pickle claims before reading the data."""
    path = tmp_path / "legacy_8k.pt"
    torch.save(small2_state, path, _use_new_zipfile_serialization=False)
    with pytest.raises(MossepError) as e:
        load_checkpoint(path)
    one_line(e, str(path), "legacy format")


# ---------------------------------------------------------------- forged safetensors files


F32x4 = {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}
FORGED = {
    "header length 2^62": ({}, b"", 2 ** 62),
    "header length past the end": ({"a": F32x4}, bytes(16), 10 ** 6),
    "empty header": (b"", b"", None),
    "header not JSON": (b"{{{{", b"", None),
    "header a JSON list": (b"[1, 2]", b"", None),
    "header nested 100000 deep": (b"[" * 100000 + b"]" * 100000, b"", None),
    "offsets past the data": ({"a": {"dtype": "F32", "shape": [2 ** 40], "data_offsets": [0, 2 ** 42]}}, bytes(16), None),
    "overlapping tensors": ({"a": F32x4, "b": F32x4}, bytes(16), None),
    "short data": ({"a": {"dtype": "F32", "shape": [16], "data_offsets": [0, 64]}}, bytes(16), None),
    "shape and offsets disagree": ({"a": {"dtype": "F32", "shape": [8], "data_offsets": [0, 16]}}, bytes(16), None),
    "shape product overflows": ({"a": {"dtype": "F32", "shape": [2 ** 62, 2 ** 62], "data_offsets": [0, 16]}},
                                bytes(16), None),
    "negative shape": ({"a": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}}, bytes(16), None),
    "unknown dtype": ({"a": {"dtype": "Q4", "shape": [4], "data_offsets": [0, 16]}}, bytes(16), None),
    "__metadata__ a list": ({"__metadata__": [1, 2], "a": F32x4}, bytes(16), None),
    "__metadata__ values not strings": ({"__metadata__": {"format": 1}, "a": F32x4}, bytes(16), None),
    "no mossep header": ({"a": F32x4}, bytes(16), None),
}


@pytest.mark.parametrize("case", FORGED, ids=list(FORGED))
def test_forged_safetensors_files(tmp_path, case):
    header, data, length = FORGED[case]
    path = forge(tmp_path / "forged.safetensors", header, data, length)
    with pytest.raises(MossepError) as e:
        load_checkpoint(path)
    one_line(e, str(path))


JSON_OF_EVERY_WRONG_TYPE = {"list": "[1, 2]", "string": '"text"', "number": "3", "true": "true", "null": "null",
                            "not JSON": "{", "nested 100000 deep": "[" * 100000 + "]" * 100000}


@pytest.mark.parametrize("key", ["config", "aliases", "metadata"])
@pytest.mark.parametrize("kind", JSON_OF_EVERY_WRONG_TYPE, ids=list(JSON_OF_EVERY_WRONG_TYPE))
def test_mossep_header_entries_of_every_wrong_json_type(tmp_path, tiny_native, key, kind):
    path = with_header(tiny_native, tmp_path / "bad.safetensors", **{key: JSON_OF_EVERY_WRONG_TYPE[kind]})
    with pytest.raises(MossepError) as e:
        load_checkpoint(path)
    one_line(e, str(path), "bad checkpoint header", key)


@pytest.mark.parametrize("change, words", [
    ({"format_version": "2"}, "format version '2' is not supported"),
    ({"aliases": json.dumps({"x": "missing"})}, "does not name one stored tensor"),
    ({"aliases": json.dumps({"x": 3})}, "does not name one stored tensor"),
    ({"config": json.dumps({**preset("tiny").to_dict(), "colour": "red"})}, "unknown keys"),
    ({"config": json.dumps({**preset("tiny").to_dict(), "num_blocks": "2"})}, "num_blocks must be int"),
    ({"config": json.dumps({**preset("tiny").to_dict(), "num_blocks": 2.0})}, "num_blocks must be int"),
    ({"config": json.dumps({**preset("tiny").to_dict(), "decoder_bias": 1})}, "decoder_bias must be bool"),
    ({"config": json.dumps({**preset("tiny").to_dict(), "num_blocks": 3})}, "missing keys"),
    ({"config": json.dumps({**preset("tiny").to_dict(), "d_model": 96})}, "wrong shapes"),
])
def test_mossep_header_values_that_contradict_the_file(tmp_path, tiny_native, change, words):
    path = with_header(tiny_native, tmp_path / "bad.safetensors", **change)
    with pytest.raises(MossepError) as e:
        load_checkpoint(path)
    one_line(e, str(path), words)


@pytest.mark.parametrize("part", [[1, 2], {"norm.weight": torch.zeros(4, 1)}, {"norm.weight": "x"}, {1: torch.zeros(1)}])
def test_modelscope_parts_of_the_wrong_shape(tmp_path, part):
    path = linked_copy(MODELSCOPE, tmp_path / "ms", {"masknet.bin": lambda p: torch.save(part, p)})
    with pytest.raises(MossepError) as e:
        load_checkpoint(path)
    one_line(e, "masknet.bin")


def test_cli_metadata_a_json_list_is_one_line(tmp_path, tiny_native, capsys):
    """Issue 16, item 6: a header whose metadata is a JSON list crashed `info` with a traceback."""
    path = with_header(tiny_native, tmp_path / "listmeta.safetensors", metadata="[1, 2]")
    for command in (["info", path], ["separate", tone(tmp_path / "x.wav"), "-o", tmp_path / "o", "--model", path]):
        code, out, err = run(command, capsys)
        one_line_error(code, err, str(path), "metadata must be a JSON object")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("metadata", [{"inference": [1]}, {"inference": "two passes"}, {"inference": None},
                                      {"inference": {"passes": "2", "wiener": 1}}, {"inference": {"passes": 10 ** 9}},
                                      {"source_format": {"a": 1}}, {"sample_rate_source": [1]},
                                      {"deep": {"a": [1, {"b": None}]}}])
def test_metadata_values_of_the_wrong_types_fall_back_to_defaults(tmp_path, tiny_native, capsys, metadata):
    """Metadata is free-form: what mossep reads from it (the recommended passes and post-filter) falls back to
    the defaults when it has the wrong type, and info prints it; neither crashes."""
    from mossep import Separator

    path = with_header(tiny_native, tmp_path / "meta.safetensors", metadata=json.dumps(metadata))
    sep = Separator(str(path), device="cpu", raw=False)
    assert sep.passes == 1 and sep.wiener is False
    code, out, err = run(["info", path], capsys)
    assert code == 0, err


# ---------------------------------------------------------------- weights of the wrong dtype or value


def _same_output(a, b) -> bool:
    x = 0.1 * torch.randn(1, 800, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return torch.equal(a.eval()(x), b.eval()(x))


@pytest.mark.parametrize("dtype, how", [(torch.float16, "converted to float32 exactly"),
                                        (torch.bfloat16, "converted to float32 exactly"),
                                        (torch.float64, "rounded to float32")])
def test_other_float_types_load_with_a_note(tmp_path, tiny_native, capsys, dtype, how):
    """Stored in another float type: loaded as float32 (what mossep computes in), and said so."""
    path = with_tensors(tiny_native, tmp_path / "half.safetensors", lambda k, v: v.to(dtype))
    loaded = load_checkpoint(path)
    name = str(dtype).removeprefix("torch.")
    assert any(name in n and how in n for n in loaded.notes), loaded.notes
    assert all(p.dtype == torch.float32 for p in loaded.model.parameters())
    reference = load_checkpoint(tiny_native).model
    with torch.no_grad():
        for t in reference.state_dict().values():  # parameters and buffers, with the same rounding
            t.copy_(t.to(dtype).float())
    assert _same_output(loaded.model, reference)
    code, out, err = run(["info", "--json", path], capsys)
    assert code == 0 and any(name in n and how in n for n in json.loads(out)["notes"]), out


def test_separate_and_batch_say_the_weights_were_converted(tmp_path, tiny_native, capsys):
    path = with_tensors(tiny_native, tmp_path / "half.safetensors", lambda k, v: v.half())
    wav = tone(tmp_path / "in" / "x.wav")
    for command in (["separate", wav, "-o", tmp_path / "o1", "--model", path],
                    ["batch", tmp_path / "in", "-o", tmp_path / "o2", "--model", path]):
        code, out, err = run(command, capsys)
        assert code == 0 and "tensors in half.safetensors are stored as float16" in err, err
    code, out, err = run(["separate", wav, "-o", tmp_path / "o1", "--model", path], capsys)  # outputs exist
    one_line_error(code, err, "already exists")  # the error is still the only line


@pytest.mark.parametrize("dtype", [torch.int8, torch.uint8, torch.int32, torch.int64, torch.bool,
                                   torch.float8_e4m3fn, torch.complex64])
def test_integer_and_quantized_weights_are_refused(tmp_path, tiny_native, dtype):
    path = tmp_path / "int.safetensors"
    if dtype == torch.complex64:  # safetensors stores no complex type: a ClearerVoice file instead
        path = tmp_path / "complex_8k.pt"
        torch.save({k: v.to(dtype) for k, v in official_state_dict(build_model(SMALL2)).items()}, path)
    else:
        with_tensors(tiny_native, path, lambda k, v: v.to(dtype))
    with pytest.raises(MossepError) as e:
        load_checkpoint(path)
    one_line(e, str(path), str(dtype).removeprefix("torch."), "not supported")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_are_refused(tmp_path, tiny_native, small2_state, bad):
    def poison(k, v):
        v = v.clone()
        if k.endswith("decoder.weight") or k == "dec.weight":
            v.view(-1)[3] = bad
        return v

    path = with_tensors(tiny_native, tmp_path / "nan.safetensors", poison)
    with pytest.raises(MossepError) as e:
        load_checkpoint(path)
    one_line(e, str(path), "decoder.weight holds NaN or infinite values")
    cv = tmp_path / "nan_8k.pt"
    torch.save({k: poison(k, v) for k, v in small2_state.items()}, cv)
    with pytest.raises(MossepError) as e:
        load_checkpoint(cv)
    one_line(e, str(cv), "NaN or infinite")


def test_float16_clearvoice_file_loads_with_a_note(tmp_path, small2_state):
    path = tmp_path / "half_8k.pt"
    torch.save({k: v.half() for k, v in small2_state.items()}, path)
    loaded = load_checkpoint(path)
    assert any("float16" in n for n in loaded.notes), loaded.notes


# ---------------------------------------------------------------- absurd configurations under a memory limit

AS_LIMIT = 2 << 30  # bytes of address space the child may add to what it maps once torch and mossep are loaded
CHILD = r"""
import json, resource, sys, time
import torch
from mossep.checkpoints import load_checkpoint
from mossep.errors import MossepError
from mossep.models import ModelConfig, build_model
with open("/proc/self/status") as f:  # a CUDA build of torch alone maps gigabytes: the limit is on top of that
    mapped = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
resource.setrlimit(resource.RLIMIT_AS, (mapped + int(sys.argv[1]), mapped + int(sys.argv[1])))
results = {}
try:  # control 1: the limit bites (3 GB of zeros)
    torch.zeros(3 << 28, dtype=torch.float32)
    results["control: 3 GB tensor"] = {"kind": "allocated"}
except BaseException as e:
    results["control: 3 GB tensor"] = {"kind": type(e).__name__}
try:  # control 2: building the widest model the config bounds allow, without the checkpoint check
    build_model(ModelConfig(d_model=8192, encoder_dim=8192, num_blocks=256, expansion_factor=16.0))
    results["control: build"] = {"kind": "built"}
except BaseException as e:
    results["control: build"] = {"kind": type(e).__name__}
for name, path in json.loads(sys.argv[2]).items():
    t = time.monotonic()
    try:
        load_checkpoint(path)
        kind, msg = "loaded", ""
    except MossepError as e:
        kind, msg = "MossepError", str(e)
    except BaseException as e:
        kind, msg = type(e).__name__, str(e)[:300]
    results[name] = {"kind": kind, "message": msg, "seconds": time.monotonic() - t}
print(json.dumps(results))
"""


def _absurd_cases(root: Path, tiny_native: Path, small2_state: dict) -> dict[str, tuple[Path, str]]:
    """name -> (checkpoint, words its one-line error must contain). Each file is small; what its
    configuration says would need from gigabytes to petabytes, or millions of modules."""
    tiny = preset("tiny").to_dict()
    wide = {"d_model": 8192, "encoder_dim": 8192, "num_blocks": LIMITS["num_blocks"], "query_key_dim": 4096}
    cases: dict[str, tuple[Path, str]] = {}

    def native(name, words, **config):
        p = with_header(tiny_native, root / f"{name}.safetensors", config=json.dumps({**tiny, **config}))
        cases[f"mossep {name}"] = (p, words)

    native("blocks-1e7", "num_blocks must be in 1..256", num_blocks=10 ** 7)
    native("width-1e9", "must be in 1..8192", d_model=10 ** 9, encoder_dim=10 ** 9)
    native("group-1e9", "group_size must be in 1..4096", group_size=10 ** 9)
    native("speakers-1e6", "num_spks must be in 1..16", num_spks=10 ** 6)
    native("rate-1e12", "sample_rate must be in", sample_rate=10 ** 12)
    native("expansion-1e9", "expansion_factor must be in", expansion_factor=1e9)
    native("widest-allowed", "checkpoint does not match the model", **wide)

    def modelscope(name, words, **model):
        cases[f"modelscope {name}"] = (with_config(MODELSCOPE, "configuration.json", root / f"ms-{name}", **model), words)

    modelscope("blocks-1e7", "num_blocks must be in 1..256", num_blocks=10 ** 7)
    modelscope("width-1e9", "must be in 1..8192", in_channels=10 ** 9, out_channels=10 ** 9, d_model=10 ** 9)
    modelscope("widest-allowed", "checkpoint does not match the model", in_channels=8192, out_channels=8192,
               d_model=8192, num_blocks=256)
    modelscope("blocks-string", "num_blocks must be an integer", num_blocks="10000000")
    conf = json.loads((MODELSCOPE / "configuration.json").read_text())
    cases["modelscope section-list"] = (linked_copy(MODELSCOPE, root / "ms-list", {"configuration.json":
                                                                                     {**conf, "model": [1]}}),
                                        "model section must be a JSON object")
    cases["modelscope config-list"] = (linked_copy(MODELSCOPE, root / "ms-toplist", {"configuration.json": b"[1]"}),
                                       "expected a JSON object")

    def standalone(name, words, **conf):
        cases[f"standalone {name}"] = (with_config(STANDALONE, "config.json", root / f"hf-{name}", **conf), words)

    standalone("blocks-1e7", "num_blocks must be in 1..256", intra_numlayers=10 ** 7)
    standalone("width-1e9", "must be in 1..8192", encoder_out_nchannels=10 ** 9)
    standalone("speakers-1e6", "num_spks must be in 1..16", masknet_numspks=10 ** 6)
    standalone("widest-allowed", "8192", encoder_out_nchannels=8192, intra_numlayers=256)
    cases["standalone config-list"] = (linked_copy(STANDALONE, root / "hf-list", {"config.json": b"[1]"}),
                                       "expected a JSON object")

    def modelscope2(name, words, **model):
        cases[f"modelscope2 {name}"] = (with_config(MODELSCOPE2, "configuration.json", root / f"ms2-{name}", **model),
                                        words)

    modelscope2("blocks-1e7", "num_blocks must be in 1..256", num_blocks=10 ** 7)
    modelscope2("width-1e9", "must be in 1..8192", in_channels=10 ** 9, out_channels=10 ** 9)
    modelscope2("widest-allowed", "8192", in_channels=8192, out_channels=8192, num_blocks=256)

    # ClearerVoice files store no config: depth comes from the largest block index among the keys
    stack = "mask_net.mdl.intra_mdl.mossformerM.layers."
    for name, index, words in (("index-1e7", 10 ** 7, "num_blocks must be in 1..256"),
                               ("index-255", 255, "missing keys")):
        p = root / f"cv-{name}_8k.pt"
        torch.save({**small2_state, f"{stack}{index}.to_hidden.mdl.1.weight": torch.zeros(1)}, p)
        cases[f"clearvoice {name}"] = (p, words)
    return cases


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc/self/status: Linux")
@pytest.mark.parametrize("which", ["beyond the bounds", pytest.param("widest allowed", marks=pytest.mark.slow)])
def test_absurd_configs_fail_fast_under_a_memory_limit(tmp_path, tiny_native, small2_state, which):
    """Issue 16, item 5: a small checkpoint whose configuration says 10^7 blocks or 10^9 channels made mossep
    build the model before checking a tensor, until the machine ran out of memory. Under a 2 GB limit, where
    the controls show that such a build does fail, every such file gives one line, within seconds. The
    widest configurations the bounds allow (256 blocks of width 8192, or 256 block indices in a ClearerVoice
    file) are checked on the meta device, a few seconds each on a busy machine: the slow run."""
    cases = {name: case for name, case in _absurd_cases(tmp_path, tiny_native, small2_state).items()
             if (("widest" in name or "index-255" in name) == (which == "widest allowed"))}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(AS_LIMIT), json.dumps({k: str(p) for k, (p, _) in cases.items()})],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout)
    assert results.pop("control: 3 GB tensor")["kind"] != "allocated"
    assert results.pop("control: build")["kind"] != "built"
    for name, (path, words) in cases.items():
        r = results[name]
        assert r["kind"] == "MossepError", (name, r)
        assert "\n" not in r["message"] and str(path) in r["message"] and words in r["message"], (name, r)
        assert r["seconds"] < 30, (name, r)


# ---------------------------------------------------------------- random corruption


@pytest.mark.parametrize("fmt", ["mossep", "clearvoice"])
def test_corrupted_bytes_give_a_mossep_error_or_a_model(tmp_path, tiny_native, small2_state, fmt):
    """60 seeded corruptions (1-8 bytes, mostly in the header and the pickle): each file either loads or gives
    one line; never another exception."""
    import random

    if fmt == "mossep":
        source, target = tiny_native, tmp_path / "m.safetensors"
    else:
        source, target = tmp_path / "c.pt", tmp_path / "c_8k.pt"
        torch.save(small2_state, source)
    data = source.read_bytes()
    rng = random.Random(fmt)
    for _ in range(60):
        b = bytearray(data)
        for _ in range(rng.choice([1, 2, 8])):
            b[rng.randrange(min(len(b), 4000)) if rng.random() < 0.8 else rng.randrange(len(b))] = rng.randrange(256)
        target.write_bytes(bytes(b))
        try:
            load_checkpoint(target)
        except MossepError as e:
            assert "\n" not in str(e) and str(target) in str(e), str(e)
