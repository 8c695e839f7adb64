"""Every way out of mossep gives the audio of the array path, compared by value, at the input's rate or
--sample-rate: Separator.separate_file, `mossep separate -o`, `mossep batch`, `--stdout`.

Two models: an oracle that splits the mixture at 800 Hz (so the right answer is known: each output is one
talker, whatever the input rate), and the tiny random network (a real MossFormer forward). A file path that
stopped resampling back to the input rate, or resampled twice, gives a right header over wrong audio; these
tests compare the samples.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
from oracles import oracle_model, si_snrs, talkers

from mossep import separator as separator_module
from mossep.separator import Separator
from faults import cli

RATES = [8000, 16000, 44100]


def read_speakers(folder: Path, stem: str, ext: str = "wav") -> np.ndarray:
    return np.stack([sf.read(folder / f"{stem}_spk{k}.{ext}", dtype="float32", always_2d=False)[0] for k in (1, 2)])



@pytest.fixture()
def oracle_everywhere(monkeypatch) -> None:
    """Every Separator the CLI builds gets the oracle, whatever --model says."""
    monkeypatch.setattr(separator_module, "load_checkpoint", lambda path, sample_rate=None: oracle_model())


# ---------------------------------------------------------------- the array path itself is right

@pytest.mark.parametrize("rate", RATES)
def test_array_path_gives_each_talker_at_the_input_rate(rate):
    src = talkers(rate)
    sep = Separator(oracle_model(), device="cpu", chunk_seconds=1.0, overlap_seconds=0.25, remove_hum=False)
    est = sep.separate(src.sum(0), rate)
    assert est.shape == src.shape
    assert min(si_snrs(est, src)) > 20.0  # a wrong rate anywhere (double speed, a shift) scores below 0 dB


# ---------------------------------------------------------------- files == arrays

@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("which", ["oracle", "tiny"])
def test_separate_file_equals_the_array_path(tmp_path, tiny_model_path, rate, which):
    src = talkers(rate)
    mix = src.sum(0)
    model = oracle_model() if which == "oracle" else tiny_model_path
    sep = Separator(model, device="cpu", chunk_seconds=1.0, overlap_seconds=0.25)
    sf.write(tmp_path / "mix.wav", mix, rate, subtype="FLOAT")
    sep.separate_file(tmp_path / "mix.wav", tmp_path / "out", subtype="FLOAT")
    got = read_speakers(tmp_path / "out", "mix")
    assert sf.info(tmp_path / "out" / "mix_spk1.wav").samplerate == rate
    want = sep.separate(mix, rate)
    np.testing.assert_allclose(got, want, atol=2e-5 * np.abs(want).max())
    if which == "oracle":
        assert min(si_snrs(got, src)) > 20.0


@pytest.mark.parametrize("rate", RATES)
def test_cli_separate_batch_and_stdout_give_the_array_output(tmp_path, oracle_everywhere, capsysbinary, rate):
    src = talkers(rate)
    mix = src.sum(0)
    (tmp_path / "in" / "sub").mkdir(parents=True)
    sf.write(tmp_path / "in" / "sub" / "mix.wav", mix, rate, subtype="FLOAT")
    common = ["--device", "cpu", "--chunk-seconds", "1", "--overlap-seconds", "0.25", "--subtype", "FLOAT"]
    want = Separator(oracle_model(), device="cpu", chunk_seconds=1.0, overlap_seconds=0.25).separate(mix, rate)
    tol = 2e-5 * np.abs(want).max()

    assert cli(["separate", tmp_path / "in" / "sub" / "mix.wav", "-o", tmp_path / "sep", "--quiet", *common]) == 0
    np.testing.assert_allclose(read_speakers(tmp_path / "sep", "mix"), want, atol=tol)

    assert cli(["batch", tmp_path / "in", "-o", tmp_path / "batch", "--quiet", *common]) == 0
    np.testing.assert_allclose(read_speakers(tmp_path / "batch" / "sub", "mix"), want, atol=tol)

    capsysbinary.readouterr()
    assert cli(["separate", tmp_path / "in" / "sub" / "mix.wav", "--stdout", *common]) == 0
    y, sr = sf.read(io.BytesIO(capsysbinary.readouterr().out), dtype="float32")
    assert sr == rate
    np.testing.assert_allclose(y.T, want, atol=tol)
    assert min(si_snrs(y.T, src)) > 20.0


@pytest.mark.parametrize("rate_in, rate_out", [(16000, 44100), (44100, 16000), (8000, 22050)])
def test_sample_rate_option_resamples_the_separated_audio(tmp_path, oracle_everywhere, capsysbinary, rate_in,
                                                          rate_out):
    """--sample-rate R: the model-rate estimates resampled to R, for files, batch and --stdout alike."""
    src_in, src_out = talkers(rate_in), talkers(rate_out)
    (tmp_path / "in").mkdir()
    sf.write(tmp_path / "in" / "m.wav", src_in.sum(0), rate_in, subtype="FLOAT")
    common = ["--device", "cpu", "--chunk-seconds", "1", "--overlap-seconds", "0.25", "--subtype", "FLOAT",
              "--sample-rate", rate_out]
    # the array path at the model's rate, then to R
    sep = Separator(oracle_model(), device="cpu", chunk_seconds=1.0, overlap_seconds=0.25)
    at_model = sep.separate(soxr.resample(src_in.sum(0), rate_in, 8000), 8000)
    want = np.stack([soxr.resample(e, 8000, rate_out) for e in at_model])[:, : src_out.shape[1]]

    assert cli(["separate", tmp_path / "in" / "m.wav", "-o", tmp_path / "sep", "--quiet", *common]) == 0
    assert cli(["batch", tmp_path / "in", "-o", tmp_path / "batch", "--quiet", *common]) == 0
    capsysbinary.readouterr()
    assert cli(["separate", tmp_path / "in" / "m.wav", "--stdout", *common]) == 0
    y, sr = sf.read(io.BytesIO(capsysbinary.readouterr().out), dtype="float32")
    assert sr == rate_out
    for got in (read_speakers(tmp_path / "sep", "m"), read_speakers(tmp_path / "batch", "m"), y.T):
        assert got.shape == src_out.shape
        assert min(si_snrs(got, src_out)) > 20.0  # the right talker at the right speed at R
        assert min(si_snrs(got, want)) > 40.0  # and the same audio as the array path (to the resamplers' edges)
