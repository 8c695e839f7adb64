"""`--raw` / Separator(raw=True): the official pipeline's output, exactly, through the CLI, for every kit.

Each kit's pipeline case is written as a WAV (16-bit where the official input was 16-bit PCM, float otherwise),
separated by `mossep separate --model <kit checkpoint> --raw`, read back and compared with the kit's
reference: float outputs within the kit tolerance (max error / RMS <= 1e-4), 16-bit outputs within 1 LSB.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mossep import Separator
from mossep.checkpoints import load_checkpoint
from mossep.cli import main
from mossep.errors import MossepError
from mossep.official_pipelines import modelscope_pipeline

FIX = Path(__file__).parent / "fixtures"
TOL = 1e-4


def separate_raw(tmp_path: Path, model: Path, mixture: np.ndarray, in_subtype: str, out_subtype: str,
                 capsys, extra: tuple[str, ...] = ()) -> np.ndarray:
    wav = tmp_path / "in.wav"
    sf.write(wav, mixture, 8000, subtype=in_subtype)
    try:
        main(["separate", "--model", str(model), str(wav), "-o", str(tmp_path / "out"), "--raw", "--subtype",
              out_subtype, "--quiet", *extra])
    except SystemExit as e:
        assert not e.code, capsys.readouterr().err
    outs = sorted((tmp_path / "out").glob("in_spk*.wav"))
    dtype = "int16" if out_subtype == "PCM_16" else "float32"
    return np.stack([sf.read(p, dtype=dtype)[0] for p in outs])


def err(ours: np.ndarray, ref: np.ndarray) -> float:
    ref = ref.astype(np.float64)
    return float(np.abs(ours - ref).max() / np.sqrt(np.mean(ref**2)))


def test_mossformer_modelscope_kit(tmp_path, capsys):
    kit = FIX / "mossformer_8k"
    x = np.load(kit / "cases" / "case2_input.npy")
    ours = separate_raw(tmp_path, kit / "tiny_checkpoint", x, "FLOAT", "PCM_16", capsys)
    ref = np.load(kit / "cases" / "case2_pipeline_pcm16.npy")
    assert ours.shape == ref.shape and np.abs(ours.astype(int) - ref).max() <= 1


def test_mossformer2_modelscope_kit(tmp_path, capsys):
    kit = FIX / "mossformer2_modelscope_8k"
    q = np.load(kit / "cases" / "inputs" / "mix2_4s_pcm16.npy")
    ours = separate_raw(tmp_path, kit / "tiny_checkpoint", q, "PCM_16", "PCM_16", capsys)
    ref = np.load(kit / "cases" / "pipe_modelscope_mix_4s_output_pcm16.npy")
    assert ours.shape == ref.shape and np.abs(ours.astype(int) - ref).max() <= 1
    assert np.abs(ours).max() == 16384


def test_mossformer2_standalone_kit(tmp_path, capsys):
    kit = FIX / "mossformer2_standalone_8k"
    q = np.load(kit / "cases" / "inputs" / "mix2_4s_pcm16.npy")
    ours = separate_raw(tmp_path, kit / "tiny" / "librimix_2spk", q, "PCM_16", "FLOAT", capsys)
    ref = np.load(kit / "cases" / "librimix_2spk" / "pipe_inference_mix_4s_output.npy")
    assert ours.shape == ref.shape and err(ours, ref) <= TOL
    assert np.allclose(np.abs(ours).max(axis=-1), 1.0)  # peak 1.0 each: no peak limiting under --raw


def test_mossformer2_clearvoice_kit(tmp_path, capsys):
    """8 kHz ClearerVoice: the training-side decode with the published settings (pad, one pass, joint peak)."""
    kit = FIX / "mossformer2_8k"
    index = {c["name"]: c for c in json.loads((kit / "cases" / "index.json").read_text())["cases"]}
    case = index["pipe_train_default_noise_1s"]
    assert (case["decode_window"], case["one_time_decode_length"]) == (1, 60)
    x = np.load(kit / case["input"])[0]
    ours = separate_raw(tmp_path, kit / "tiny_checkpoint.pt", x, "FLOAT", "FLOAT", capsys)
    ref = np.load(kit / case["output"])
    assert ours.shape == ref.shape
    assert max(err(o, r) for o, r in zip(ours, ref)) <= TOL


def test_converted_checkpoint_keeps_its_pipeline_and_forward(tmp_path, capsys):
    """A converted whamr model still decodes the masks directly and --raw still applies inference()."""
    kit = FIX / "mossformer2_standalone_8k"
    native = tmp_path / "whamr.safetensors"
    with pytest.raises(SystemExit) as e:
        main(["convert", str(kit / "tiny" / "whamr_2spk"), str(native)])
    assert not e.value.code
    loaded = load_checkpoint(native)
    assert loaded.metadata["source_format"] == "standalone" and loaded.metadata["num_spks"] == 2
    assert loaded.config.mask_encoder is False and loaded.metadata["mask_encoder"] is False
    x = np.load(kit / "cases" / "inputs" / "mix2_4s.npy")
    ref = np.load(kit / "cases" / "whamr_2spk" / "mix_4s_output.npy")
    ref = ref / np.abs(ref).max(axis=-1, keepdims=True)
    direct = Separator(kit / "tiny" / "whamr_2spk", device="cpu", raw=True).separate(x, 8000)
    converted = Separator(native, device="cpu", raw=True).separate(x, 8000)
    assert err(direct, ref) <= TOL and err(converted, ref) <= TOL


def test_raw_three_talkers(tmp_path, capsys):
    kit = FIX / "mossformer2_standalone_8k"
    x = np.load(kit / "cases" / "inputs" / "mix3_4s.npy")
    ours = separate_raw(tmp_path, kit / "tiny" / "wsj0mix_3spk", x, "FLOAT", "FLOAT", capsys)
    ref = np.load(kit / "cases" / "wsj0mix_3spk" / "mix_4s_output.npy")
    assert ours.shape == (3, 32000)
    assert err(ours, ref / np.abs(ref).max(axis=-1, keepdims=True)) <= TOL


def test_raw_keeps_the_dc_offset_that_mossep_would_remove():
    """With raw the network sees the input as it is: the official pipeline of the input with its offset, not
    of the input without it (which is what mossep's own path would separate)."""
    kit = FIX / "mossformer2_modelscope_8k"
    x = np.load(kit / "cases" / "inputs" / "noise_1s.npy") + np.float32(0.05)
    model = load_checkpoint(kit / "tiny_checkpoint").model
    net = lambda t: model(t)  # noqa: E731
    raw = Separator(kit / "tiny_checkpoint", device="cpu", raw=True).separate(x, 8000)
    with_dc, without_dc = modelscope_pipeline(net, x), modelscope_pipeline(net, x - x.mean())
    assert np.abs(raw - with_dc).max() <= 1.5 / 32768
    assert np.abs(raw - without_dc).max() > 100 / 32768


@pytest.mark.parametrize("kwargs, name", [({"passes": 2}, "--passes"), ({"wiener": True}, "--wiener"),
                                          ({"chunk_seconds": 4}, "--chunk-seconds"), ({"fast": True}, "--fast")])
def test_raw_refuses_settings_that_change_the_output(kwargs, name):
    with pytest.raises(MossepError, match=f"--raw .*{name}"):
        Separator(FIX / "mossformer2_modelscope_8k" / "tiny_checkpoint", device="cpu", raw=True, **kwargs)


def test_raw_conflict_is_one_line_through_the_cli(tmp_path, capsys):
    wav = tmp_path / "in.wav"
    sf.write(wav, np.zeros(800, np.float32), 8000)
    with pytest.raises(SystemExit) as e:
        main(["separate", "--model", str(FIX / "mossformer2_modelscope_8k" / "tiny_checkpoint"), str(wav), "-o",
              str(tmp_path / "out"), "--raw", "--passes", "2"])
    assert e.value.code == 1
    err_text = capsys.readouterr().err.strip()
    assert "--passes" in err_text and len(err_text.splitlines()) == 1 and not (tmp_path / "out").exists()
