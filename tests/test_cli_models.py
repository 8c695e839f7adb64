"""`mossep info` and `mossep convert`, through the CLI entry point."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from faults import run

from mossep.checkpoints import load_checkpoint
from mossep.checkpoints import convert as convert_module
from mossep.checkpoints.clearvoice import official_state_dict
from mossep.models import ModelConfig, build_model

FIXTURES = Path(__file__).parent / "fixtures"
SMALL2 = ModelConfig(arch="mossformer2", encoder_dim=24, d_model=32, num_blocks=1, query_key_dim=16,
                     rotary_dim=8, expansion_factor=2.0, conv_kernel_size=5, fsmn_dim=12, fsmn_lorder=3)


@pytest.fixture()
def clearvoice_file(tmp_path) -> Path:
    """A small MossFormer2 saved as ClearerVoice does (training container, `module.` keys)."""
    torch.manual_seed(2)
    model = build_model(SMALL2)
    folder = tmp_path / "MossFormer2_SS_8K"
    folder.mkdir()
    path = folder / "last_best_checkpoint.pt"
    torch.save({"model": {"module." + k: v for k, v in official_state_dict(model).items()},
                "optimizer": {}, "epoch": 3, "step": 120}, path)
    (folder / "last_best_checkpoint").write_text(path.name + "\n")
    return path


def same_output(a, b) -> bool:
    x = torch.randn(1, 4000, generator=torch.Generator().manual_seed(1)) * 0.1
    with torch.no_grad():
        return torch.equal(a.eval()(x), b.eval()(x))


def test_info_json_native(capsys, tiny_model_path):
    code, out, _ = run(["info", str(tiny_model_path), "--json"], capsys)
    assert code == 0
    s = json.loads(out)
    model = load_checkpoint(tiny_model_path).model
    assert s["format"] == "mossep" and s["architecture"] == "mossformer" and s["sample_rate"] == 8000
    assert s["num_spks"] == 2 and s["config"]["num_blocks"] == 2
    assert s["parameters"]["total"] == sum(p.numel() for p in model.parameters())
    assert s["metadata"] == {"note": "random weights for tests"}
    assert s["sample_rate_source"] == "stored in the checkpoint"


def test_info_without_a_model_describes_the_bundled_one(capsys):
    code, out, _ = run(["info", "--json"], capsys)
    assert code == 0
    s = json.loads(out)
    assert s["path"].endswith("default.safetensors") and s["format"] == "mossep"
    assert s["metadata"]["inference"]["passes"] == 2 and "libri2mix_dev_clips" in s["metadata"]["evaluation"]


def test_info_json_clearvoice_rate_sources(capsys, clearvoice_file):
    s = json.loads(run(["info", str(clearvoice_file), "--json"], capsys)[1])
    assert s["format"] == "clearvoice" and s["architecture"] == "mossformer2" and s["sample_rate"] == 8000
    assert s["sample_rate_source"] == "inferred from the name 'MossFormer2_SS_8K'"
    assert any("epoch 3, step 120" in n for n in s["notes"])
    s = json.loads(run(["info", str(clearvoice_file.parent), "--model-rate", "16000", "--json"], capsys)[1])
    assert s["sample_rate"] == 16000 and s["sample_rate_source"].startswith("given by --model-rate")


def test_info_table_modelscope_kit(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run(["info", str(FIXTURES / "mossformer_8k" / "tiny_checkpoint")], capsys)
    assert code == 0
    for text in ("ModelScope MossFormer directory", "mossformer", "8000 Hz", "3,282,197", "config.num_blocks"):
        assert text in out


def test_info_missing_model_is_one_line_error(capsys, tmp_path):
    code, out, err = run(["info", str(tmp_path / "none.safetensors")], capsys)
    assert code == 1 and out == ""
    assert err.startswith("mossep: error: ") and err.count("\n") == 1 and "none.safetensors" in err


def test_convert_clearvoice_records_source_and_matches(capsys, clearvoice_file, tmp_path):
    out_path = tmp_path / "small.safetensors"
    code, out, err = run(["convert", str(clearvoice_file), str(out_path)], capsys)
    assert code == 0, err
    assert out.startswith(f"wrote {out_path}") and "output matches the source" in out
    converted = load_checkpoint(out_path)
    assert converted.source == "mossep" and converted.config == ModelConfig(**{**SMALL2.to_dict()})
    meta = converted.metadata
    assert meta["source_format"] == "clearvoice" and meta["source_path"] == "last_best_checkpoint.pt"
    assert meta["sample_rate"] == 8000 and meta["sample_rate_source"] == "inferred from the name 'MossFormer2_SS_8K'"
    assert same_output(converted.model, load_checkpoint(clearvoice_file).model)
    s = json.loads(run(["info", str(out_path), "--json"], capsys)[1])
    assert s["sample_rate_source"] == "stored in the checkpoint (at conversion: inferred from the name 'MossFormer2_SS_8K')"


def test_convert_with_model_rate(capsys, clearvoice_file, tmp_path):
    out_path = tmp_path / "r.safetensors"
    assert run(["convert", str(clearvoice_file), str(out_path), "--model-rate", "16000"], capsys)[0] == 0
    assert load_checkpoint(out_path).config.sample_rate == 16000


def test_convert_refuses_to_overwrite(capsys, clearvoice_file, tmp_path):
    out_path = tmp_path / "x.safetensors"
    out_path.write_bytes(b"keep me")
    code, _, err = run(["convert", str(clearvoice_file), str(out_path)], capsys)
    assert code == 1 and "--overwrite" in err and out_path.read_bytes() == b"keep me"
    assert run(["convert", str(clearvoice_file), str(out_path), "--overwrite"], capsys)[0] == 0
    assert load_checkpoint(out_path).config.arch == "mossformer2"


@pytest.mark.parametrize("name", ["x.pt", "missing_dir/x.safetensors"])
def test_convert_bad_output_path(capsys, clearvoice_file, tmp_path, name):
    code, _, err = run(["convert", str(clearvoice_file), str(tmp_path / name)], capsys)
    assert code == 1 and err.startswith("mossep: error: ") and err.count("\n") == 1
    assert not (tmp_path / name).exists()


def test_convert_missing_source_writes_nothing(capsys, tmp_path):
    code, _, err = run(["convert", str(tmp_path / "gone_8k.pt"), str(tmp_path / "o.safetensors")], capsys)
    assert code == 1 and "gone_8k.pt" in err
    assert list(tmp_path.iterdir()) == []


def test_convert_failed_verification_leaves_nothing(capsys, clearvoice_file, tmp_path, monkeypatch):
    monkeypatch.setattr(convert_module, "output_difference", lambda a, b: 0.5)
    out_path = tmp_path / "bad.safetensors"
    code, _, err = run(["convert", str(clearvoice_file), str(out_path)], capsys)
    assert code == 1 and "differs" in err and "nothing written" in err
    assert [p.name for p in tmp_path.iterdir()] == ["MossFormer2_SS_8K"]  # no output, no temporary file
    assert sorted(p.name for p in clearvoice_file.parent.iterdir()) == ["last_best_checkpoint", clearvoice_file.name]


def test_convert_modelscope_kit(capsys, tmp_path):
    src = FIXTURES / "mossformer_8k" / "tiny_checkpoint"
    out_path = tmp_path / "ms.safetensors"
    assert run(["convert", str(src), str(out_path)], capsys)[0] == 0
    converted = load_checkpoint(out_path)
    assert converted.metadata["source_format"] == "modelscope"
    assert converted.metadata["sample_rate_source"].startswith("fixed")
    assert same_output(converted.model, load_checkpoint(src).model)


class _Code:  # a class that a weights-only load refuses
    pass


def _unreadable_checkpoints(folder: Path) -> dict[str, Path]:
    import os
    import pickle
    import shutil

    folder.mkdir()
    files = {"random": folder / "random_8k.pt", "code": folder / "code_8k.pt", "object": folder / "object_8k.pt"}
    files["random"].write_bytes(bytes(range(256)) * 40)
    files["code"].write_bytes(pickle.dumps({"x": os.system}, protocol=4))  # protocol 4 also makes torch warn
    torch.save({"a": _Code()}, files["object"])
    kit = folder / "truncated"
    shutil.copytree(FIXTURES / "mossformer_8k" / "tiny_checkpoint", kit)
    data = (kit / "masknet.bin").read_bytes()
    (kit / "masknet.bin").write_bytes(data[: len(data) // 2])
    files["truncated"] = kit
    return files


@pytest.mark.parametrize("case, words", [("random", "refused"), ("code", "refused"), ("object", "refused"),
                                         ("truncated", "truncated or corrupt")])
def test_unreadable_torch_checkpoint_is_a_short_line(capsys, tmp_path, recwarn, case, words):
    """torch.load's own messages run to several sentences (advising weights_only=False); mossep says what is
    wrong in one short line, and torch's warnings do not reach the terminal."""
    path = _unreadable_checkpoints(tmp_path / "ck")[case]
    code, out, err = run(["info", str(path)], capsys)
    lines = err.strip().splitlines()
    assert code == 1 and out == "" and len(lines) == 1, err
    assert lines[0].startswith(f"mossep: error: {path}") and words in lines[0]
    assert "weights_only" not in err and "PyTorch 2.6" not in err and len(lines[0]) - len(str(path)) < 200
    assert not [w for w in recwarn if "pickle protocol" in str(w.message)]


def test_convert_into_unwritable_folder_is_one_line(capsys, tmp_path, tiny_model_path, refuse_writes_in):
    folder = tmp_path / "out"
    folder.mkdir()
    refuse_writes_in(folder)
    code, out, err = run(["convert", str(tiny_model_path), str(folder / "m.safetensors")], capsys)
    assert code == 1 and out == "" and err.count("\n") == 1 and "not writable" in err, err
    assert list(folder.iterdir()) == []


def test_shared_options_are_defined_once():
    """--model, --model-rate, --device, --threads, --fast, --passes, --wiener and the chunk options mean the same
    in every command that has them: the same option objects, hence the same help."""
    import inspect

    import typer

    from mossep.cli import options
    from mossep.cli.app import app

    shared = {o.param_decls[0]: o for o in vars(options).values() if isinstance(o, typer.models.OptionInfo)}
    seen = 0
    for cmd in app.registered_commands:
        for param in inspect.signature(cmd.callback).parameters.values():
            opt = param.default
            if isinstance(opt, typer.models.OptionInfo) and opt.param_decls and opt.param_decls[0] in shared:
                assert opt is shared[opt.param_decls[0]], (cmd.callback.__name__, opt.param_decls[0])
                seen += 1
    assert seen == 35  # separate and batch 11 each, evaluate 10, info, convert and export 1 each
