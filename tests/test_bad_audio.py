"""Bad audio: samples far beyond full scale, a checkpoint whose output is NaN, degenerate API arrays, stdin that
is closed or long. Never a non-finite output; one line and exit 1 where nothing sensible can be written."""
from __future__ import annotations

import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
import soundfile as sf
import torch

from faults import leftovers, mossep, one_line_error, run, tone
from mossep import Separator
from mossep.audio import SpeakerSink, open_input
from mossep.checkpoints import save_native
from mossep.errors import MossepError
from mossep.models import build_model, preset


@pytest.fixture()
def model(tiny_model_path) -> list[str]:
    return ["--model", str(tiny_model_path), "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def nan_model_path(tmp_path_factory):
    """Finite weights (NaN ones are refused when loading) so large that the output overflows to inf/NaN."""
    torch.manual_seed(0)
    net = build_model(preset("tiny"))
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(1e30)
    path = tmp_path_factory.mktemp("nan") / "overflow.safetensors"
    save_native(net, path, {"note": "weights that overflow"})
    return path


@pytest.mark.parametrize("huge", [1e22, 3e38])
@pytest.mark.parametrize("subtype", ["PCM_16", "FLOAT"])
def test_a_huge_finite_sample_gives_finite_outputs(tmp_path, capsys, model, huge, subtype):
    """One float sample of 1e22 made the model output NaN, written as -32768 or NaN with exit 0."""
    x, rate = sf.read(tone(tmp_path / "t.wav", seconds=1.0), dtype="float32")
    x[100] = huge
    sf.write(tmp_path / "huge.wav", x, rate, subtype="FLOAT")
    code, _, err = run(["separate", tmp_path / "huge.wav", "-o", tmp_path / "o", "--subtype", subtype, *model], capsys)
    assert code == 0, err
    ys = [sf.read(tmp_path / "o" / f"huge_spk{k}.wav")[0] for k in (1, 2)]
    for y in ys:
        assert np.all(np.isfinite(y)) and np.abs(y).max() <= 1.0
    total = np.abs(ys[0] + ys[1])  # the click is far louder than the rest: it is what the outputs hold
    assert total.max() > 0.25 and abs(int(total.argmax()) - 100) <= 32  # (smeared by the encoder's filters)


def test_a_checkpoint_whose_output_overflows_writes_nothing(tmp_path, capsys, nan_model_path):
    src = tone(tmp_path / "x.wav")
    for subtype in ("PCM_16", "FLOAT"):
        code, _, err = run(["separate", src, "-o", tmp_path / "o", "--subtype", subtype, "--model", nan_model_path,
                            "--device", "cpu", "--quiet"], capsys)
        one_line_error(code, err, "x.wav", "NaN or infinite")
        assert not (tmp_path / "o").exists()
    with pytest.raises(MossepError, match="NaN or infinite"):
        Separator(nan_model_path, device="cpu").separate(np.ones(8000, np.float32) * 0.1, 8000)


def test_the_sink_refuses_non_finite_samples(tmp_path):
    with SpeakerSink(2, tmp_path) as sink:
        sink.write(np.zeros((2, 10), np.float32))
        with pytest.raises(MossepError, match="NaN or infinite"):
            sink.write(np.array([[0.0, np.nan], [0.0, 0.0]], np.float32))
    assert list(tmp_path.iterdir()) == []  # its file had no name


def test_output_level_follows_the_input_whatever_the_input_level(tiny_model_path):
    """The network sees each chunk at the training level, so scaling the input scales the outputs exactly
    (no overflow for loud input, no epsilon floor for quiet input)."""
    sep = Separator(tiny_model_path, device="cpu", chunk_seconds=1.0, overlap_seconds=0.25, passes=1, wiener=False)
    x = np.random.default_rng(0).standard_normal(20000).astype(np.float32) * 0.1
    ref = sep.separate(x, 8000)
    for scale in (1e-4, 1e6):
        y = sep.separate(x * np.float32(scale), 8000) / scale
        assert np.all(np.isfinite(y))
        np.testing.assert_allclose(y, ref, atol=2e-3 * np.abs(ref).max())


def test_the_api_rejects_arrays_and_rates_it_would_misread(tiny_model_path):
    sep = Separator(tiny_model_path, device="cpu")
    with pytest.raises(MossepError, match="no channels"):
        sep.separate(np.zeros((8000, 0), np.float32), 8000)
    for rate in (8000.7, float("nan"), "fast"):
        with pytest.raises(MossepError, match="whole number"):
            sep.separate(np.zeros(8000, np.float32), rate)
    with pytest.raises(MossepError, match="positive"):
        sep.separate(np.zeros(8000, np.float32), -8000)
    assert sep.separate(np.zeros(8000, np.float32), 8000.0).shape == (2, 8000)  # a whole float is fine


def test_stdin_closed_is_one_line(tmp_path, tiny_model_path):
    proc = subprocess.run(f'"{sys.executable}" -m mossep separate - -o "{tmp_path / "o"}" --model '
                          f'"{tiny_model_path}" --device cpu <&-', shell=True, capture_output=True, text=True,
                          timeout=300)
    one_line_error(proc.returncode, proc.stderr, "standard input is closed")
    assert not (tmp_path / "o").exists()


def test_stdin_is_not_held_in_memory(tmp_path):
    """A long stream is spooled to disk in blocks: memory stays flat (it was read whole: +115 MB for 2 h)."""
    rate, seconds = 8000, 1800  # 30 minutes of 16-bit mono: 28.8 MB
    path = tmp_path / "long.wav"
    with sf.SoundFile(path, "w", rate, 1, "PCM_16") as f:
        block = (0.1 * np.sin(np.arange(rate * 60) / 7)).astype(np.float32)
        for _ in range(seconds // 60):
            f.write(block)
    tracemalloc.start()
    try:
        with open(path, "rb") as stream:
            inp = open_input("-", stdin=stream)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (inp.frames, inp.sample_rate, inp.name) == (rate * seconds, rate, "<stdin>")
    assert peak < 8 << 20, peak
    with inp.open() as f:
        np.testing.assert_allclose(f.read(rate * 60, dtype="float32"), block, atol=1e-4)
    assert leftovers(tmp_path) == []


def test_stdin_pipe_still_separates(tmp_path, tiny_model_path):
    src = tone(tmp_path / "x.wav", seconds=1.5)
    with open(src, "rb") as f:
        proc = mossep(["separate", "-", "-o", tmp_path / "o", "--model", tiny_model_path, "--device", "cpu",
                       "--quiet"], stdin=f)
    assert proc.returncode == 0, proc.stderr
    assert sf.info(tmp_path / "o" / "stdin_spk2.wav").frames == 12000
