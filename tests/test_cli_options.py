"""Every option of `mossep separate` and `mossep batch` changes the output as it says, checked on the audio:
the CLI's files equal, sample for sample, what the Python API gives with the matching Separator settings, and
(for the options that should change the sound) differ from the output without the option. An option the CLI
dropped or mis-wired fails here even though it is still accepted.

--sample-rate and --stdout are checked by value in test_file_paths.py, --backend in test_onnx_export.py, --json
in test_solo.py, --ray in test_cluster.py (slow); `mossep evaluate`'s separation options here, on its scores.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from oracles import talkers
from test_tracking import swapped_estimates, two_voices

from mossep.checkpoints import save_native
from mossep.chunking import plan_chunks
from mossep.models import build_model, preset
from mossep.separator import Separator
from faults import cli

RATE = 16000
CLEARVOICE = Path(__file__).parent / "fixtures" / "mossformer2_8k" / "tiny_checkpoint.pt"



def read(folder: Path, names=("in_spk1.wav", "in_spk2.wav")) -> np.ndarray:
    return np.stack([sf.read(folder / n, dtype="float32")[0] for n in names])


@pytest.fixture(scope="module")
def mixture() -> np.ndarray:
    """Two talkers and a 50 Hz mains hum (so that --no-dehum has something to keep), 3 s at 16 kHz."""
    t = np.arange(3 * RATE) / RATE
    hum = sum(0.03 / k * np.sin(2 * np.pi * 50 * k * t + k) for k in range(1, 5))
    return (talkers(RATE).sum(0) + hum).astype(np.float32)


@pytest.fixture(scope="module")
def other_model(tmp_path_factory) -> Path:
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("other") / "other.safetensors"
    save_native(build_model(preset("tiny")), path, {"note": "a second random tiny model"})
    return path


@pytest.fixture()
def source(tmp_path, mixture) -> Path:
    (tmp_path / "in").mkdir()
    sf.write(tmp_path / "in" / "in.wav", mixture, RATE, subtype="FLOAT")
    return tmp_path / "in" / "in.wav"


CHUNKED = ["--chunk-seconds", "1", "--overlap-seconds", "0.25"]
# (CLI options, Separator settings, whether the output must differ from the output without them)
CASES = {
    "defaults": ([], {}, False),
    "chunk+overlap": (CHUNKED, dict(chunk_seconds=1.0, overlap_seconds=0.25), True),
    "overlap": (["--chunk-seconds", "1", "--overlap-seconds", "0.5"], dict(chunk_seconds=1.0, overlap_seconds=0.5), True),
    "chunk-0": (["--chunk-seconds", "0"], dict(chunk_seconds=0), False),  # 3 s is one chunk anyway
    "passes-2": (["--passes", "2"], dict(passes=2), True),
    "wiener": (["--wiener"], dict(wiener=True), True),
    # the tiny model recommends no post-filter: --no-wiener keeps that (its effect where one is recommended:
    # test_options_that_undo_a_checkpoints_recommendation)
    "no-wiener": (["--passes", "2", "--no-wiener"], dict(passes=2, wiener=False), False),
    "fast": (["--fast"], dict(fast=True), True),
    "no-dehum": (["--no-dehum"], dict(remove_hum=False), True),
    "raw": (["--raw"], dict(raw=True), True),
    # noise-like tiny outputs have no voice profile to act on: --track's effect is test_track_option_heals_a_swap...
    "track": (["--track", *CHUNKED], dict(track_speakers=True, chunk_seconds=1.0, overlap_seconds=0.25), False),
    "device-cpu": (["--device", "cpu"], dict(device="cpu"), False),
    "solo": (["--solo"], dict(solo=True), None),  # the default; whether it changes this clip is mossep.solo's call
    "no-solo": (["--no-solo"], dict(solo=False), False),  # what the other cases are compared with
}
# what an option's effect is measured against when it needs other options to act (default: no options), so that
# the change is the option's own and not that of the options it comes with
BASELINE = {"overlap": dict(chunk_seconds=1.0, overlap_seconds=0.25), "no-wiener": dict(passes=2),
            "track": dict(chunk_seconds=1.0, overlap_seconds=0.25)}


@pytest.mark.parametrize("case", sorted(CASES))
def test_option_gives_the_api_output(tmp_path, tiny_model_path, mixture, source, case):
    args, settings, changes = CASES[case]
    # every other option is checked with mossep.solo off: where it finds one voice, the output is the mixture
    # itself, whatever the option (the tiny random model separates nothing)
    solo_off = [] if "solo" in case else ["--no-solo"]
    settings = {"device": "cpu", "solo": False, **settings}
    want = Separator(tiny_model_path, **settings).separate(mixture, RATE)
    tol = 2e-5 * np.abs(want).max()
    common = ["--model", tiny_model_path, "--subtype", "FLOAT", "--quiet", *solo_off,
              *(["--device", "cpu"] if "--device" not in args else [])]
    assert cli(["separate", source, "-o", tmp_path / "sep", *common, *args]) == 0
    np.testing.assert_allclose(read(tmp_path / "sep"), want, atol=tol)
    assert cli(["batch", source.parent, "-o", tmp_path / "batch", *common, *args]) == 0
    np.testing.assert_allclose(read(tmp_path / "batch"), want, atol=tol)
    if changes is None:
        return
    plain = Separator(tiny_model_path, device="cpu", solo=False, **BASELINE.get(case, {})).separate(mixture, RATE)
    if changes:
        assert np.abs(want - plain).max() > 100 * tol, f"{case} changes nothing"
    else:
        np.testing.assert_allclose(want, plain, atol=tol)


@pytest.fixture(scope="module")
def recommending_model(tmp_path_factory) -> Path:
    """The tiny model's weights in a checkpoint that recommends 2 passes and the post-filter (as the bundled one
    does), so that the options undoing them have something to undo."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("rec") / "rec.safetensors"
    save_native(build_model(preset("tiny")), path, {"inference": {"passes": 2, "wiener": True}})
    return path


@pytest.mark.parametrize("args, settings", [(["--passes", "1"], dict(passes=1)), (["--no-wiener"], dict(wiener=False)),
                                            (["--dehum"], dict(remove_hum=True)), ([], {})],
                                         ids=["passes-1", "no-wiener", "dehum", "recommended"])
def test_options_that_undo_a_checkpoints_recommendation(tmp_path, recommending_model, mixture, source, args,
                                                       settings):
    """--passes 1 and --no-wiener turn off what the checkpoint recommends (and must change the output); --dehum
    asks for the default and must give it (mis-wired, it would drop the hum removal)."""
    sep = Separator(recommending_model, device="cpu", solo=False, **settings)
    assert (sep.passes, sep.wiener) == (settings.get("passes", 2), settings.get("wiener", True))
    want = sep.separate(mixture, RATE)
    tol = 2e-5 * np.abs(want).max()
    assert cli(["separate", source, "-o", tmp_path / "sep", "--model", recommending_model, "--device", "cpu",
                "--subtype", "FLOAT", "--quiet", "--no-solo", *args]) == 0
    np.testing.assert_allclose(read(tmp_path / "sep"), want, atol=tol)
    recommended = Separator(recommending_model, device="cpu", solo=False).separate(mixture, RATE)
    if args and args[0] != "--dehum":
        assert np.abs(want - recommended).max() > 100 * tol, f"{args} changes nothing"
    else:
        np.testing.assert_allclose(want, recommended, atol=tol)
        no_hum = Separator(recommending_model, device="cpu", solo=False, remove_hum=False).separate(mixture, RATE)
        assert np.abs(want - no_hum).max() > 100 * tol  # the clip's hum is removed by default


def test_model_option_uses_that_model(tmp_path, tiny_model_path, other_model, mixture, source):
    assert cli(["separate", source, "-o", tmp_path / "o", "--model", other_model, "--device", "cpu",
                "--subtype", "FLOAT", "--quiet"]) == 0
    want = Separator(other_model, device="cpu").separate(mixture, RATE)
    np.testing.assert_allclose(read(tmp_path / "o"), want, atol=2e-5 * np.abs(want).max())
    assert np.abs(want - Separator(tiny_model_path, device="cpu").separate(mixture, RATE)).max() > 1e-3


def test_model_rate_option_sets_the_rate_of_a_checkpoint_that_has_none(tmp_path, mixture):
    mixture = mixture[: RATE // 2]  # the MossFormer2 kit model is slower than the tiny MossFormer
    source = tmp_path / "in.wav"
    sf.write(source, mixture, RATE, subtype="FLOAT")
    outs = {}
    for rate in (8000, 16000):
        out = tmp_path / str(rate)
        assert cli(["separate", source, "-o", out, "--model", CLEARVOICE, "--model-rate", rate, "--device", "cpu",
                    "--subtype", "FLOAT", "--quiet"]) == 0
        sep = Separator(CLEARVOICE, device="cpu", model_rate=rate)
        assert sep.sample_rate == rate
        want = sep.separate(mixture, RATE)
        outs[rate] = read(out)
        np.testing.assert_allclose(outs[rate], want, atol=2e-5 * np.abs(want).max())
    assert np.abs(outs[8000] - outs[16000]).max() > 1e-3


def test_channel_option_separates_that_channel(tmp_path, tiny_model_path, mixture):
    other = (0.2 * np.sin(2 * np.pi * 330 * np.arange(len(mixture)) / RATE)).astype(np.float32)
    stereo = np.stack([other, mixture], 1)
    sf.write(tmp_path / "in.wav", stereo, RATE, subtype="FLOAT")
    sep = Separator(tiny_model_path, device="cpu")
    common = ["--model", tiny_model_path, "--device", "cpu", "--subtype", "FLOAT", "--quiet"]
    for extra, want in ((["--channel", "2"], sep.separate(mixture, RATE)), (["--channel", "1"], sep.separate(other, RATE)),
                        ([], sep.separate(stereo, RATE))):  # no --channel: the downmix
        out = tmp_path / ("-".join(extra) or "downmix")
        assert cli(["separate", tmp_path / "in.wav", "-o", out, *common, *extra]) == 0
        np.testing.assert_allclose(read(out), want, atol=2e-5 * np.abs(want).max())


def test_format_subtype_and_filename_keep_the_audio(tmp_path, tiny_model_path, source):
    common = ["--model", tiny_model_path, "--device", "cpu", "--quiet"]
    assert cli(["separate", source, "-o", tmp_path / "float", "--subtype", "FLOAT", *common]) == 0
    ref = read(tmp_path / "float")
    assert cli(["separate", source, "-o", tmp_path / "p16", *common]) == 0  # PCM_16 by default
    assert cli(["separate", source, "-o", tmp_path / "p24", "--subtype", "PCM_24", *common]) == 0
    assert cli(["separate", source, "-o", tmp_path / "flac", "--format", "flac", *common]) == 0
    assert cli(["separate", source, "-o", tmp_path / "named", "--filename", "{k}-of-{stem}.{ext}.wav",
                "--subtype", "FLOAT", *common]) == 0
    p16, p24 = read(tmp_path / "p16"), read(tmp_path / "p24")
    err16, err24 = np.abs(p16 - ref).max(), np.abs(p24 - ref).max()
    assert 2 ** -20 < err16 <= 2 ** -15 and err24 <= 2 ** -23 and sf.info(tmp_path / "p24" / "in_spk1.wav").subtype == "PCM_24"
    flac = read(tmp_path / "flac", ("in_spk1.flac", "in_spk2.flac"))
    assert sf.info(tmp_path / "flac" / "in_spk1.flac").format == "FLAC"
    assert np.abs(flac - ref).max() <= 1.5 * 2 ** -15  # 16-bit samples of the same audio (libsndfile's FLAC
    assert np.abs(flac - p16).max() <= 2 ** -15  # writer rounds float to int a little differently: 1 LSB)
    np.testing.assert_array_equal(read(tmp_path / "named", ("1-of-in.wav.wav", "2-of-in.wav.wav")), ref)


def test_overwrite_replaces_with_the_new_audio(tmp_path, tiny_model_path, mixture, source):
    out = tmp_path / "o"
    out.mkdir()
    sf.write(out / "in_spk1.wav", np.zeros(100), RATE)
    common = ["--model", tiny_model_path, "--device", "cpu", "--subtype", "FLOAT", "--quiet"]
    assert cli(["separate", source, "-o", out, *common]) == 1
    assert sf.info(out / "in_spk1.wav").frames == 100 and not (out / "in_spk2.wav").exists()
    assert cli(["separate", source, "-o", out, "--overwrite", *common]) == 0
    want = Separator(tiny_model_path, device="cpu").separate(mixture, RATE)
    np.testing.assert_allclose(read(out), want, atol=2e-5 * np.abs(want).max())
    assert cli(["batch", source.parent, "-o", out.parent / "b", *common]) == 0
    sf.write(out.parent / "b" / "in_spk2.wav", np.zeros(100), RATE)  # batch skips complete sets unless --overwrite
    assert cli(["batch", source.parent, "-o", out.parent / "b", *common]) == 0
    assert sf.info(out.parent / "b" / "in_spk2.wav").frames == 100
    assert cli(["batch", source.parent, "-o", out.parent / "b", "--overwrite", *common]) == 0
    np.testing.assert_allclose(read(out.parent / "b"), want, atol=2e-5 * np.abs(want).max())


def test_quiet_silences_stderr_only(tmp_path, tiny_model_path, source, capsys):
    common = ["--model", tiny_model_path, "--device", "cpu", "--subtype", "FLOAT"]
    capsys.readouterr()
    assert cli(["separate", source, "-o", tmp_path / "loud", *common]) == 0
    out, err = capsys.readouterr()
    assert out == "" and "in_spk1.wav" in err
    assert cli(["separate", source, "-o", tmp_path / "quiet", "--quiet", *common]) == 0
    assert capsys.readouterr() == ("", "")
    np.testing.assert_array_equal(read(tmp_path / "quiet"), read(tmp_path / "loud"))


def test_threads_option_sets_torch_threads(tmp_path, tiny_model_path, source):
    before = torch.get_num_threads()
    try:
        assert cli(["separate", source, "-o", tmp_path / "t", "--threads", "2", "--model", tiny_model_path,
                    "--device", "cpu", "--quiet"]) == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert cli(["separate", source, "-o", tmp_path / "t0", "--threads", "0", "--model", tiny_model_path,
                "--quiet"]) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_device_cuda_without_cuda_is_refused(tmp_path, tiny_model_path, source, capsys):
    assert cli(["separate", source, "-o", tmp_path / "o", "--device", "cuda", "--model", tiny_model_path]) == 1
    assert "CUDA is not available" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_glob_picks_the_files_batch_separates(tmp_path, tiny_model_path, mixture):
    (tmp_path / "in" / "d").mkdir(parents=True)
    sf.write(tmp_path / "in" / "a.flac", mixture, RATE)
    sf.write(tmp_path / "in" / "d" / "b.wav", mixture, RATE)
    assert cli(["batch", tmp_path / "in", "-o", tmp_path / "o", "--glob", "*.flac", "--model", tiny_model_path,
                "--device", "cpu", "--quiet", "--subtype", "FLOAT"]) == 0
    assert sorted(p.name for p in (tmp_path / "o").rglob("*.wav")) == ["a_spk1.wav", "a_spk2.wav"]
    x = sf.read(tmp_path / "in" / "a.flac", dtype="float32")[0]
    want = Separator(tiny_model_path, device="cpu").separate(x, RATE)
    np.testing.assert_allclose(read(tmp_path / "o", ("a_spk1.wav", "a_spk2.wav")), want, atol=2e-5 * np.abs(want).max())


@pytest.mark.parametrize("command", ["separate", "batch"])
def test_track_option_heals_a_swap_inside_a_chunk(tmp_path, tiny_model_path, monkeypatch, command):
    """The 'model' answers each chunk with the true sources, swapped inside chunk 3 (as a real model does where
    a talker pauses): with --track the talkers are back on their outputs from chunk 4 on, without it they
    stay swapped to the end."""
    src = two_voices(60.0)
    (tmp_path / "in").mkdir()
    sf.write(tmp_path / "in" / "in.wav", src.sum(0), 8000, subtype="FLOAT")
    plan = plan_chunks(src.shape[1], 8 * 8000, 8000)
    outs = {}
    for flag in ("--track", "--no-track"):
        chunks = iter(swapped_estimates(src, plan, 3, at=0.7))
        monkeypatch.setattr(Separator, "_forward", lambda self, audios, chunks=chunks: np.stack([next(chunks) for _ in audios]))
        target = [tmp_path / "in" / "in.wav"] if command == "separate" else [tmp_path / "in"]
        assert cli([command, *target, "-o", tmp_path / flag, flag, "--chunk-seconds", "8", "--overlap-seconds", "1",
                    "--model", tiny_model_path, "--device", "cpu", "--subtype", "FLOAT", "--quiet", "--no-dehum"]) == 0
        outs[flag] = read(tmp_path / flag)
    tail = slice(plan[4][0] + 8000, None)
    assert np.abs(outs["--track"][:, tail] - src[:, tail]).max() < 1e-3
    assert np.abs(outs["--no-track"][:, tail] - src[::-1, tail]).max() < 1e-3


@pytest.mark.parametrize("args, settings", [
    (["--chunk-seconds", "1", "--overlap-seconds", "0.5"], dict(chunk_seconds=1.0, overlap_seconds=0.5)),
    (["--passes", "2", "--wiener"], dict(passes=2, wiener=True)),
    (["--fast"], dict(fast=True)),
], ids=["chunking", "passes-wiener", "fast"])
def test_evaluate_options_reach_its_separation(tmp_path, tiny_model_path, args, settings):
    """`mossep evaluate --model` scores what the API separates with the same settings (per item, by value), and
    the options change the scores: an option evaluate dropped would score the default separation."""
    import json

    from mossep.evaluate import evaluate_dataset

    devset = Path(__file__).parent / "fixtures" / "libri2mix"
    js = tmp_path / "r.json"
    assert cli(["evaluate", devset, "--model", tiny_model_path, "--device", "cpu", "--limit", "1", "--json", js,
                "--quiet", *args]) == 0
    got = json.loads(js.read_text())["items"][0]
    want = evaluate_dataset(devset, separator=Separator(tiny_model_path, device="cpu", **settings), limit=1).items[0]
    default = evaluate_dataset(devset, separator=Separator(tiny_model_path, device="cpu"), limit=1).items[0]
    assert got["si_snr"] == pytest.approx(want.si_snr, abs=1e-4)
    assert abs(want.si_snr - default.si_snr) > 1e-3, f"{args} changes nothing"
