"""mossep.separator by value: the exact names, messages, settings and numbers the Separator API gives, each test
aimed at a way the module could be wrong that the broader tests (test_separator, test_file_paths,
test_batched_forward) would not notice (the mutation run of issue 19, benchmarks/README.md).

Stand-in networks keep them fast and their answers known: BandSplit (tests/oracles.py) and linear variants of it.
CUDA-only branches are reached with a fake CUDA device (a network whose .to() only records the device).
"""
from __future__ import annotations

import logging
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from oracles import BandSplit, oracle_model, talkers

from mossep import separator as separator_module
from mossep.checkpoints import LoadedModel, load_checkpoint
from mossep.chunking import DEFAULT_CHUNK_SECONDS, DEFAULT_OVERLAP_SECONDS
from mossep.errors import MossepError
from mossep.separator import (CUDA_BATCH, DEFAULT_FILENAME, Separator, output_names, recommended_settings,
                              resolve_device, whole_rate)
from mossep.solo import SOLO
from mossep.tracking import TRACK_SPEAKERS

FIX = Path(__file__).parent / "fixtures"


def message(excinfo) -> str:
    return str(excinfo.value)


# ---------------------------------------------------------------- output_names

def test_output_names_exact():
    assert output_names(DEFAULT_FILENAME, "talk", 2) == ["talk_spk1.wav", "talk_spk2.wav"]
    # the default template follows the format's extension, in lower case; a template of one's own is kept
    assert output_names(DEFAULT_FILENAME, "a", 2, "FLAC") == ["a_spk1.flac", "a_spk2.flac"]
    assert output_names(DEFAULT_FILENAME, "a", 2, "wav") == ["a_spk1.wav", "a_spk2.wav"]
    assert output_names("{k}.wav", "a", 2) == ["1.wav", "2.wav"]
    assert output_names("{k}-{stem}.wav", "a", 2, "flac") == ["1-a.wav", "2-a.wav"]
    # {ext}: the input's extension, empty unless given; speakers are numbered 1..C
    assert output_names("{stem}.{ext}_{k}", "a", 3, ext="mp3") == ["a.mp3_1", "a.mp3_2", "a.mp3_3"]
    assert output_names("{stem}{ext}_{k}", "a", 2) == ["a_1", "a_2"]
    assert output_names("sub/{stem}/{k}.wav", "a", 1) == ["sub/a/1.wav"]


@pytest.mark.parametrize("template, num, want", [
    ("{stem", 2, "--filename '{stem': ..."),  # ...: Python's own words for the format error
    ("{foo}_{k}", 2, "--filename '{foo}_{k}': use {stem}, {ext} and {k} (the speaker number), "
                     "e.g. {stem}_spk{k}.wav"),
    ("{stem}.wav", 2, "--filename '{stem}.wav': use {stem}, {ext} and {k} (the speaker number), "
                      "e.g. {stem}_spk{k}.wav"),
    ("{k:.0s}", 2, "--filename '{k:.0s}': ..."),
    # the name most speakers share is named (here "1": speakers 1, 10 and 11; "9" would sort last)
    ("{k!s:.1}", 11, "--filename '{k!s:.1}': gives several speakers the same name (1); {k} must tell them apart"),
    ("{k!s:.0}", 1, "--filename '{k!s:.0}': gives an empty file name (or one that names a folder)"),
    ("{stem}_{k}/", 2, "--filename '{stem}_{k}/': gives an empty file name (or one that names a folder)"),
    ("{stem}_{k}\\", 2, "--filename '{stem}_{k}\\\\': gives an empty file name (or one that names a folder)"),
    ("{k}/.", 2, "--filename '{k}/.': gives an empty file name (or one that names a folder)"),
    ("{k}/x/.", 2, "--filename '{k}/x/.': gives an empty file name (or one that names a folder)"),
    ("{k}/..", 2, "--filename '{k}/..': gives an empty file name (or one that names a folder)"),
    ("{k}\x00.wav", 2, "--filename '{k}\\x00.wav': gives a name with a NUL character"),
    ("/tmp/{k}.wav", 2, "--filename '/tmp/{k}.wav': names must stay inside the output folder (no leading / or ..)"),
    ("../{k}.wav", 2, "--filename '../{k}.wav': names must stay inside the output folder (no leading / or ..)"),
])
def test_output_names_refusals_say_what_is_wrong(template, num, want):
    with pytest.raises(MossepError) as e:
        output_names(template, "a", num)
    if want.endswith(": ..."):
        assert message(e).startswith(want[:-3]) and len(message(e)) > len(want)
    else:
        assert message(e) == want


# ---------------------------------------------------------------- whole_rate, recommended_settings, resolve_device

def test_whole_rate():
    for given, want in ((16000, 16000), (16000.0, 16000), ("8000", 8000), (np.int64(44100), 44100), (1, 1)):
        got = whole_rate(given)
        assert got == want and type(got) is int
    cases = [(0.5, "sample rate must be a whole number of Hz, got 0.5"),
             (float("inf"), "sample rate must be a whole number of Hz, got inf"),
             (float("nan"), "sample rate must be a whole number of Hz, got nan"),
             ("fast", "sample rate must be a whole number of Hz, got 'fast'"),
             (None, "sample rate must be a whole number of Hz, got None"),
             (0, "sample rate must be positive, got 0"),
             (-8000, "sample rate must be positive, got -8000")]
    for given, want in cases:
        with pytest.raises(MossepError) as e:
            whole_rate(given)
        assert message(e) == want
    with pytest.raises(MossepError) as e:
        whole_rate(22050.5, "output sample rate")
    assert message(e) == "output sample rate must be a whole number of Hz, got 22050.5"


@pytest.mark.parametrize("metadata, want", [
    (None, (1, False)),
    ({}, (1, False)),
    ({"inference": {"passes": 2, "wiener": True}}, (2, True)),
    ({"inference": {"passes": 2}}, (2, False)),
    ({"inference": {"wiener": True}}, (1, True)),
    ({"inference": {"passes": 1, "wiener": False}}, (1, False)),
    ({"inference": [2, True]}, (1, False)),  # untrusted metadata of the wrong kind is ignored
    ({"inference": {"passes": 3, "wiener": 1}}, (1, False)),
    ({"inference": {"passes": 0}}, (1, False)),
    ({"inference": {"passes": True}}, (1, False)),  # a bool is not a number of passes
    ({"inference": {"passes": "2", "wiener": "yes"}}, (1, False)),
    ({"inference": {"passes": 2.0}}, (1, False)),
    ({"inference": {"solo": False}}, (1, False, False)),
    ({"inference": {"passes": 2, "solo": True}}, (2, False, True)),
    ({"inference": {"solo": "no"}}, (1, False, None)),  # not a bool: no say
    ({"inference": {"solo": 0}}, (1, False, None)),
])
def test_recommended_settings(metadata, want):
    got = recommended_settings(metadata)
    assert got == {"passes": want[0], "wiener": want[1], "solo": want[2] if len(want) > 2 else None,
                   "noisy_model": None, "noisy_below_db": 15.0}
    assert type(got["passes"]) is int and type(got["wiener"]) is bool


@pytest.mark.parametrize("recommended, given, want", [
    (None, None, True), (False, None, False), (True, None, True), (False, True, True), (True, False, False)])
def test_the_one_voice_step_follows_the_checkpoint_unless_told(tiny_model_path, recommended, given, want):
    """A checkpoint may recommend the one-voice step off (a model that denoises, or silences the other output
    itself); an explicit solo= wins; official formats keep it off (tested in test_solo.py)."""
    loaded = load_checkpoint(tiny_model_path)
    meta = {} if recommended is None else {"inference": {"solo": recommended}}
    sep = Separator(replace(loaded, metadata=meta), device="cpu", solo=given)
    assert sep.solo is want


def test_resolve_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    for name, want in (("cuda", "device cuda requested but CUDA is not available (use --device cpu)"),
                       ("tpu", "unknown device 'tpu' (use cpu, cuda or auto)"),
                       ("meta", "unsupported device 'meta' (use cpu, cuda or auto)")):
        with pytest.raises(MossepError) as e:
            resolve_device(name)
        assert message(e) == want
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # as on a machine with a GPU
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    assert resolve_device("cpu") == torch.device("cpu")


# ---------------------------------------------------------------- stand-in networks

class Scaled(BandSplit):
    """BandSplit with its outputs at other levels (2x the low band, 0.5x the rest): linear, so the level
    normalisation around the network must cancel exactly."""

    def forward(self, x):
        y = super().forward(x)
        return y * torch.tensor([2.0, 0.5], dtype=y.dtype)[:, None]


class OnFakeCuda(BandSplit):
    """Records where it is moved to and stays where it is (a CUDA device without CUDA)."""

    moved_to: list = []

    def to(self, *args, **kwargs):
        self.moved_to = [*self.moved_to, args]
        return self

    def forward(self, x):
        self.autocast_dtype = torch.get_autocast_dtype("cuda")  # what a CUDA op here would run in
        return super().forward(x)


def band_split(x: np.ndarray) -> np.ndarray:
    return BandSplit()(torch.from_numpy(np.asarray(x, np.float64))[None])[0].numpy()


def loaded(net: torch.nn.Module, source: str = "mossep", metadata: dict | None = None) -> LoadedModel:
    return LoadedModel(net, source, Path("stand-in"), dict(metadata or {}))


# ---------------------------------------------------------------- construction

def test_settings_as_given_and_defaults():
    sep = Separator(oracle_model(), device="cpu")
    assert sep.chunk_seconds == DEFAULT_CHUNK_SECONDS and sep.overlap_seconds == DEFAULT_OVERLAP_SECONDS
    assert sep.chunk == round(DEFAULT_CHUNK_SECONDS * 8000) and sep.overlap == round(DEFAULT_OVERLAP_SECONDS * 8000)
    assert (sep.passes, sep.signs, sep.wiener, sep.batch_size) == (1, [1.0], False, 1)
    assert (sep.track_speakers, sep.remove_hum, sep.raw, sep.solo) == (TRACK_SPEAKERS, True, False, SOLO)
    assert (sep.backend, sep.format, sep.amp_dtype, sep.device) == ("torch", "mossep", None, torch.device("cpu"))
    assert isinstance(sep.model, torch.nn.Module) and sep.model is sep.loaded.model

    sep = Separator(oracle_model(), device="cpu", chunk_seconds=1.0, overlap_seconds=0.25, passes=2, wiener=True,
                    batch_size=3, track_speakers=not TRACK_SPEAKERS, remove_hum=False, solo=not SOLO)
    assert (sep.chunk_seconds, sep.overlap_seconds, sep.chunk, sep.overlap) == (1.0, 0.25, 8000, 2000)
    assert (sep.passes, sep.signs, sep.wiener, sep.batch_size) == (2, [1.0, -1.0], True, 3)
    assert (sep.track_speakers, sep.remove_hum, sep.solo) == (not TRACK_SPEAKERS, False, not SOLO)
    # the whole input at once: no overlap, whatever was asked
    assert (Separator(oracle_model(), device="cpu", chunk_seconds=0, overlap_seconds=0.5).overlap,
            Separator(oracle_model(), device="cpu", chunk_seconds=0).overlap) == (0, 0)
    # the shortest chunk the model takes, and chunks without overlap, are accepted
    sep = Separator(oracle_model(), device="cpu", chunk_seconds=16 / 8000, overlap_seconds=0)
    assert (sep.chunk, sep.overlap) == (16, 0)
    assert Separator(oracle_model(), device="cpu", chunk_seconds=0.5, overlap_seconds=0.5 - 1 / 8000).overlap == 3999


def test_settings_from_checkpoint_metadata_unless_given():
    rec = loaded(BandSplit(), metadata={"inference": {"passes": 2, "wiener": True}})
    assert (Separator(rec, device="cpu").passes, Separator(rec, device="cpu").wiener) == (2, True)
    assert (Separator(rec, device="cpu", passes=1).passes, Separator(rec, device="cpu", wiener=False).wiener) == (1, False)
    plain = loaded(BandSplit())
    assert (Separator(plain, device="cpu").passes, Separator(plain, device="cpu", passes=2).passes) == (1, 2)
    assert (Separator(plain, device="cpu").wiener, Separator(plain, device="cpu", wiener=True).wiener) == (False, True)


@pytest.mark.parametrize("kwargs, want", [
    (dict(backend="tf"), "--backend must be torch or onnx, got 'tf'"),
    (dict(backend="onnx", fast=True), "--fast is a torch mode; --backend onnx runs the exact network: drop one"),
    (dict(backend="onnx", device="cuda"), "--backend onnx runs on the CPU (onnxruntime); --device cuda contradicts it"),
    (dict(device="cuda"), "device cuda requested but CUDA is not available (use --device cpu)"),
    (dict(threads=0), "--threads must be at least 1, got 0"),
    (dict(chunk_seconds=-1), "--chunk-seconds must be >= 0 (0 = whole file), got -1.0"),
    (dict(chunk_seconds=float("nan")), "--chunk-seconds must be >= 0 (0 = whole file), got nan"),
    (dict(chunk_seconds=float("inf")), "--chunk-seconds must be >= 0 (0 = whole file), got inf"),
    (dict(overlap_seconds=-0.5), "--overlap-seconds must be >= 0, got -0.5"),
    (dict(overlap_seconds=float("inf")), "--overlap-seconds must be >= 0, got inf"),
    (dict(chunk_seconds=15 / 8000), "--chunk-seconds 0.001875 is shorter than the model minimum "
                                    "(16 samples at 8000 Hz)"),
    (dict(chunk_seconds=1.0, overlap_seconds=1.0), "--overlap-seconds (1.0) must be shorter than --chunk-seconds (1.0)"),
    (dict(passes=3), "--passes must be 1 or 2, got 3"),
    (dict(passes=0), "--passes must be 1 or 2, got 0"),
])
def test_bad_settings_say_what_is_wrong(monkeypatch, kwargs, want):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(MossepError) as e:
        Separator(oracle_model(), **{"device": "cpu", **kwargs})
    assert message(e) == want


def test_threads_sets_torch_threads():
    try:
        Separator(oracle_model(), device="cpu", threads=2)
        assert torch.get_num_threads() == 2
        Separator(oracle_model(), device="cpu", threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(1)


def test_model_rate_reaches_checkpoints_that_do_not_store_it():
    path = FIX / "mossformer2_8k" / "tiny_checkpoint.pt"  # ClearerVoice: the rate comes from the name or the user
    assert Separator(path, device="cpu").sample_rate == 8000
    sep = Separator(path, device="cpu", model_rate=16000)
    assert (sep.sample_rate, sep.format) == (16000, "clearvoice")


@pytest.mark.parametrize("source, metadata, want", [
    ("mossep", {}, "mossep"),
    ("mossep", {"source_format": "standalone"}, "standalone"),  # a converted official checkpoint
    ("mossep", {"source_format": "bogus"}, "mossep"),
    ("modelscope", {}, "modelscope"),
    ("clearvoice", {"source_format": "standalone"}, "clearvoice"),
    ("oracle", {}, "mossep"),
])
def test_format_and_solo_default(source, metadata, want):
    sep = Separator(loaded(BandSplit(), source, metadata), device="cpu")
    assert sep.format == want
    assert sep.solo == (SOLO and want == "mossep")  # measured on mossep's own checkpoints only
    assert Separator(loaded(BandSplit(), source, metadata), device="cpu", solo=True).solo is True
    assert Separator(loaded(BandSplit(), source, metadata), device="cpu", solo=False).solo is False


def test_raw_is_the_official_pipeline_and_nothing_else():
    sep = Separator(loaded(BandSplit(), "standalone"), device="cpu", raw=True, solo=True)
    assert (sep.raw, sep.chunk, sep.overlap, sep.passes, sep.wiener, sep.remove_hum, sep.solo) == \
        (True, 0, 0, 1, False, False, False)
    from mossep.official_pipelines import standalone_inference
    assert sep.official is standalone_inference
    for kwargs, name in ((dict(fast=True), "--fast"), (dict(chunk_seconds=4), "--chunk-seconds"),
                         (dict(passes=2), "--passes"), (dict(wiener=True), "--wiener")):
        with pytest.raises(MossepError) as e:
            Separator(loaded(BandSplit(), "standalone"), device="cpu", raw=True, **kwargs)
        assert message(e) == f"--raw gives the official pipeline's output, which {name} would change; drop one"
    # chunk_seconds 0 and passes 1 say what raw does anyway
    assert Separator(loaded(BandSplit(), "standalone"), device="cpu", raw=True, chunk_seconds=0, passes=1).raw


def test_the_network_goes_to_the_device(monkeypatch):
    net = OnFakeCuda()
    Separator(loaded(net), device="cpu")
    assert net.moved_to == [(torch.device("cpu"),)]


@pytest.mark.parametrize("bf16", [True, False])
def test_cuda_defaults(monkeypatch, bf16):
    """On CUDA: 4 chunks per forward and bf16 autocast (fp16 where bf16 is missing), none under raw; --fast is a
    CPU mode. Reached with a fake CUDA device."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    net = OnFakeCuda()
    sep = Separator(loaded(net), device="cuda")
    assert net.moved_to == [(torch.device("cuda"),)]
    assert (sep.device, sep.batch_size, sep.amp_dtype) == (torch.device("cuda"), CUDA_BATCH,
                                                           torch.bfloat16 if bf16 else torch.float16)
    with warnings.catch_warnings():  # without CUDA, torch disables a CUDA autocast but keeps its dtype
        warnings.simplefilter("ignore")
        y = sep._run_model(torch.from_numpy(talkers(8000, seconds=0.1).sum(0))[None])
    assert net.autocast_dtype == (torch.bfloat16 if bf16 else torch.float16) and y.shape == (1, 2, 800)
    assert Separator(loaded(OnFakeCuda()), device="cuda", batch_size=2).batch_size == 2
    assert Separator(loaded(OnFakeCuda(), "standalone"), device="cuda", raw=True).amp_dtype is None
    auto = Separator(loaded(OnFakeCuda()))
    assert (auto.device, auto.batch_size) == (torch.device("cuda"), CUDA_BATCH)
    with pytest.raises(MossepError) as e:
        Separator(loaded(OnFakeCuda()), device="cuda", fast=True)
    assert message(e) == ("--fast is a CPU mode (bf16 or int8 mask net); on CUDA the default already runs under "
                          "bf16/fp16 autocast: drop --fast, or use --device cpu")


def test_fast_mode_missing_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "mossep.fast", None)
    with pytest.raises(MossepError) as e:
        Separator(oracle_model(), device="cpu", fast=True)
    assert message(e) == "fast mode is not available"


def test_fast_mode_converts_its_own_model_in_place_and_copies_a_callers(tiny_model_path):
    pytest.importorskip("mossep.fast")
    from mossep.checkpoints import load_checkpoint

    own = Separator(tiny_model_path, device="cpu", fast=True)
    assert own.model is own.loaded.model  # no second copy of the weights
    given = load_checkpoint(tiny_model_path)
    before = {k: v.clone() for k, v in given.model.state_dict().items()}
    sep = Separator(given, device="cpu", fast=True)
    assert sep.model is not given.model
    after = given.model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_onnx_backend_builds_the_onnx_network_last(monkeypatch, tmp_path):
    import mossep.export

    made = []

    class FakeOnnx:
        def __init__(self, loaded, threads=None, note=None):
            made.append((loaded, threads, note))

    monkeypatch.setattr(mossep.export, "OnnxNetwork", FakeOnnx)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # "auto" would be CUDA: onnx still runs on the CPU
    model = loaded(OnFakeCuda())
    try:
        sep = Separator(model, backend="onnx")
        assert (sep.backend, sep.device) == ("onnx", torch.device("cpu")) and isinstance(sep.model, FakeOnnx)
        assert made == [(model, torch.get_num_threads(), logging.getLogger("mossep").info)]
        sep = Separator(model, backend="onnx", device="cpu", threads=2)
        assert made[-1] == (model, 2, logging.getLogger("mossep").info)
    finally:
        torch.set_num_threads(1)
    assert len(made) == 2 and not isinstance(Separator(model, device="cpu").model, FakeOnnx)


# ---------------------------------------------------------------- the engine

def test_forward_undoes_its_level_normalisation_exactly():
    """A linear network's outputs come back at the input's own level and sign (no level fit of its own)."""
    x = talkers(8000, seconds=1.0).sum(0)[:6000]
    want = band_split(x) * np.array([[2.0], [0.5]])
    for level in (1.0, 1e-3, 3.0):
        sep = Separator(loaded(Scaled()), device="cpu", passes=1, wiener=False)
        got = sep._forward((level * x)[None].astype(np.float32))
        assert got.shape == (1, 2, 6000) and got.dtype == np.float64
        np.testing.assert_allclose(got[0], level * want, rtol=0, atol=1e-5 * level)


def test_clean_removes_the_offset_at_double_precision():
    """The DC offset is taken out with a float64 mean, even of a large offset (float32 would leave ~1e-5)."""
    rng = np.random.default_rng(3)
    x = (1000.0 + 0.1 * rng.standard_normal(8000)).astype(np.float32)
    sep = Separator(oracle_model(), device="cpu", remove_hum=False)
    y = sep._clean(x)
    assert y.dtype == np.float32
    assert abs(y.mean(dtype=np.float64)) < 1e-6
    # hum removal only when asked: a 50 Hz hum stays without it
    t = np.arange(8000) / 8000
    hum = (0.1 * np.sin(2 * np.pi * 50 * t) + 0.05 * rng.standard_normal(8000)).astype(np.float32)
    np.testing.assert_array_equal(sep._clean(hum), (hum - hum.mean(dtype=np.float64)).astype(np.float32))
    assert np.abs(Separator(oracle_model(), device="cpu")._clean(hum) - sep._clean(hum)).max() > 0.05


def test_run_model_is_the_float32_network_on_the_cpu(tiny_model_path):
    from mossep.checkpoints import load_checkpoint
    from mossep.fast import OneDNNLinear, onednn_linear_available

    model = load_checkpoint(tiny_model_path)
    x = torch.from_numpy(np.random.default_rng(4).standard_normal((1, 4000)).astype(np.float32) * 0.1)
    with torch.inference_mode():
        want = model.model(x).double().numpy()
    sep = Separator(model, device="cpu")
    got = sep._run_model(x)
    assert got.dtype == np.float64
    # no autocast on the CPU: float32 throughout, the linear layers prepacked (only the order of sums differs;
    # bf16 anywhere would be ~1e-3 off), and the caller's model is left as it was
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-7)
    packed = [m for m in sep.model.modules() if isinstance(m, OneDNNLinear)]
    assert bool(packed) == onednn_linear_available()
    assert not any(isinstance(m, OneDNNLinear) for m in model.model.modules())


def test_progress_reports_seconds_done_and_total():
    x = talkers(8000, seconds=3.0).sum(0)
    sep = Separator(oracle_model(), device="cpu", chunk_seconds=1.0, overlap_seconds=0.25)
    calls = []
    sep.separate(x, 8000, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (3.0, 3.0) and len(calls) == 4  # 4 chunks
    assert all(t == 3.0 for _, t in calls) and all(a < b for (a, _), (b, _) in zip(calls, calls[1:]))
    calls.clear()
    list(sep.separate_stream([x[:5000], x[5000:]], progress=lambda done, total: calls.append((done, total))))
    assert calls[-1] == (3.0, None)


def test_too_short_and_nan_outputs_say_where(monkeypatch):
    sep = Separator(oracle_model(), device="cpu", chunk_seconds=1.0, overlap_seconds=0.25)
    with pytest.raises(MossepError) as e:
        list(sep.separate_stream([np.zeros(10, np.float32), np.zeros(5, np.float32)]))
    assert message(e) == "input: too short (15 samples at 8000 Hz; the model needs at least 16)"
    assert np.concatenate(list(sep.separate_stream([np.zeros(16, np.float32)])), axis=1).shape == (2, 16)
    monkeypatch.setattr(sep, "_forward", lambda audios: np.full((len(audios), 2, audios.shape[1]), np.nan))
    with pytest.raises(MossepError) as e:
        sep.separate(np.ones(8000, np.float32), 8000)
    assert message(e) == ("mixture: the model's output is NaN or infinite (a broken checkpoint?); nothing was "
                          "written")


def test_separate_array_conversions():
    """PCM integers are read at full scale 1.0, channels are averaged, a [T, 1] array is a mono one."""
    x = talkers(8000, seconds=1.0).sum(0)
    sep = Separator(oracle_model(), device="cpu", remove_hum=False, solo=False)
    want = sep.separate(x, 8000)
    assert want.dtype == np.float32 and want.flags.c_contiguous and want.shape == (2, 8000)
    pcm = np.round(x * 32768).astype(np.int16)
    np.testing.assert_allclose(sep.separate(pcm, 8000), want, atol=1e-4)
    np.testing.assert_allclose(sep.separate(pcm, 8000), sep.separate(pcm / 32768.0, 8000), rtol=0, atol=1e-7)
    pcm32 = np.round(x * 2.0 ** 31).astype(np.int32)
    np.testing.assert_allclose(sep.separate(pcm32, 8000), sep.separate(pcm32 / 2.0 ** 31, 8000), rtol=0, atol=1e-7)
    assert sep.separate(np.zeros((16, 16), np.float32), 8000).shape == (2, 16)  # as many channels as samples
    np.testing.assert_allclose(sep.separate(x[:, None], 8000), want, atol=1e-6)
    np.testing.assert_allclose(sep.separate(np.stack([x + 0.1, x - 0.1], axis=1), 8000), want, atol=1e-5)
    np.testing.assert_allclose(sep.separate(np.stack([x, x], axis=1), 8000.0), want, atol=1e-6)
    for bad, want_msg in ((np.zeros((4, 4, 4)), "mixture must be [T] or [T, channels], got shape (4, 4, 4)"),
                          (np.zeros((100, 0)), "mixture has shape (100, 0): no channels"),
                          (np.zeros((2, 3)), "mixture has shape (2, 3), more channels than samples: separate() "
                                             "takes [T] or [T, channels]; for a [channels, T] array pass mix.T"),
                          (np.zeros(0), "mixture contains no samples"),
                          (np.array([0.0, np.inf] * 100), None)):
        with pytest.raises(MossepError) as e:
            sep.separate(bad, 8000)
        if want_msg is not None:
            assert message(e) == want_msg
        else:
            assert message(e).startswith("mixture")
    with pytest.raises(MossepError) as e:
        sep.separate(x, 8000.5)
    assert message(e) == "sample rate must be a whole number of Hz, got 8000.5"


# ---------------------------------------------------------------- files

def test_file_outputs_stdin_channel_and_refusals(tmp_path):
    import io

    rate = 16000
    src = talkers(rate, seconds=1.0)
    stereo = np.stack([src.sum(0), 0.5 * src[0]], axis=1)
    path = tmp_path / "talk.flac"
    sf.write(path, stereo, rate)
    sep = Separator(oracle_model(), device="cpu", chunk_seconds=0.5, overlap_seconds=0.125, remove_hum=False)
    # channel 2 alone is the low talker only
    paths = sep.separate_file(path, tmp_path / "o", channel=2, subtype="FLOAT", filename="{stem}.{ext}.{k}.wav")
    assert [p.name for p in paths] == ["talk.flac.1.wav", "talk.flac.2.wav"]
    assert list(paths.speech) == list(paths.report.speech) and len(paths.speech_seconds) == 2
    want = sep.separate(stereo[:, 1], rate)
    got = np.stack([sf.read(p, dtype="float32")[0] for p in paths])
    np.testing.assert_allclose(got, want, atol=1e-4)
    # default output: 16-bit wav at the input's rate
    paths = sep.separate_file(path, tmp_path / "d")
    assert [(sf.info(p).subtype, sf.info(p).samplerate, sf.info(p).frames) for p in paths] == [("PCM_16", rate, rate)] * 2
    # stdin
    data = io.BytesIO()
    sf.write(data, stereo, rate, format="WAV", subtype="FLOAT")
    data.seek(0)
    paths = sep.separate_file("-", tmp_path / "s", stdin=data, channel=2, subtype="FLOAT")
    assert [p.name for p in paths] == ["stdin_spk1.wav", "stdin_spk2.wav"]
    np.testing.assert_allclose(np.stack([sf.read(p, dtype="float32")[0] for p in paths]), want, atol=1e-4)
    # an existing output is kept unless overwrite; the message names it
    with pytest.raises(MossepError) as e:
        sep.separate_file(path, tmp_path / "d")
    assert message(e) == f"{tmp_path / 'd' / 'talk_spk1.wav'}: already exists (use --overwrite)"
    (tmp_path / "d" / "talk_spk1.wav").unlink()
    with pytest.raises(MossepError) as e:
        sep.separate_file(path, tmp_path / "d")
    assert message(e) == f"{tmp_path / 'd' / 'talk_spk2.wav'}: already exists (use --overwrite)"
    sep.separate_file(path, tmp_path / "d", overwrite=True)
    # an output that would overwrite the input
    wav = tmp_path / "x_spk1.wav"
    sf.write(wav, stereo, rate)
    with pytest.raises(MossepError) as e:
        sep.separate_file(wav, tmp_path, filename="x_spk{k}.wav", overwrite=True)
    assert message(e) == f"{wav}: an output would overwrite the input"
    with pytest.raises(MossepError) as e:
        sep.separate_file(path, tmp_path / "c", channel=3)
    assert message(e) == f"{path}: has 2 channel(s); --channel 3 does not exist"
    assert not (tmp_path / "c").exists()


def test_stream_output_is_one_wav_with_a_channel_per_speaker(tmp_path):
    import io

    rate = 16000
    src = talkers(rate, seconds=1.0)
    stereo = np.stack([0.5 * src[1], src.sum(0)], axis=1)
    path = tmp_path / "talk.wav"
    sf.write(path, stereo, rate, subtype="FLOAT")
    sep = Separator(oracle_model(), device="cpu", chunk_seconds=0.5, overlap_seconds=0.125, remove_hum=False)
    want = sep.separate(stereo[:, 1], rate)
    out = io.BytesIO()
    report = sep.separate_to_stream(path, out, channel=2, subtype="FLOAT")
    assert len(report.speech) == 2
    y, sr = sf.read(io.BytesIO(out.getvalue()), dtype="float32")
    assert sr == rate and y.shape == (rate, 2)
    np.testing.assert_allclose(y.T, want, atol=1e-4)
    info = sf.info(io.BytesIO(out.getvalue()))
    out = io.BytesIO()
    sep.separate_to_stream(path, out, output_rate=8000)
    info = sf.info(io.BytesIO(out.getvalue()))
    assert (info.samplerate, info.frames, info.channels, info.subtype) == (8000, 8000, 2, "PCM_16")
    data = io.BytesIO()
    sf.write(data, stereo, rate, format="WAV", subtype="FLOAT")
    data.seek(0)
    out = io.BytesIO()
    sep.separate_to_stream("-", out, subtype="FLOAT", channel=2, stdin=data)
    np.testing.assert_allclose(sf.read(io.BytesIO(out.getvalue()), dtype="float32")[0].T, want, atol=1e-4)
    with pytest.raises(MossepError) as e:
        sep.separate_to_stream(path, io.BytesIO(), output_rate=0)
    assert message(e) == "output sample rate must be positive, got 0"


def test_stream_output_limits_its_peak_says_so_and_reports_progress(tmp_path, monkeypatch):
    """As for files (test_separator.test_clipping_is_prevented_and_reported): outputs that would clip are scaled
    down together, the note names the input; progress runs to the input's length in seconds."""
    import io

    mix = 0.9 * np.sin(2 * np.pi * 100 * np.arange(12345) / 16000)
    path = tmp_path / "c.wav"
    sf.write(path, mix, 16000, subtype="FLOAT")
    sep = Separator(oracle_model(), device="cpu", chunk_seconds=0, remove_hum=False, solo=False)

    def forward(audios):  # two outputs that sum to the mixture, each peaking above full scale
        loud = 1.5 * np.sin(2 * np.pi * 37 * np.arange(audios.shape[1]) / 8000)
        return np.stack([np.stack([a + loud, -loud]) for a in audios])

    monkeypatch.setattr(sep, "_forward", forward)
    notes, calls = [], []
    out = io.BytesIO()
    sep.separate_to_stream(path, out, subtype="FLOAT", note=notes.append, output_rate=44100,
                           progress=lambda done, total: calls.append((done, total)))
    y, sr = sf.read(io.BytesIO(out.getvalue()), dtype="float32")
    assert sr == 44100 and y.shape == (round(12345 * 44100 / 16000), 2)
    assert 0.99 < np.abs(y).max() <= 0.9991
    assert len(notes) == 1 and notes[0].startswith(f"{path}: separated speakers peaked at ")
    assert calls and calls[-1][0] == pytest.approx(12345 / 16000, abs=1e-3) and calls[-1][1] == calls[-1][0]
    # files: the same progress
    calls.clear()
    sep.separate_file(path, tmp_path / "o", note=notes.append,
                      progress=lambda done, total: calls.append((done, total)))
    assert calls and calls[-1][0] == pytest.approx(12345 / 16000, abs=1e-3) and len(notes) == 2


class Leaky(BandSplit):
    """BandSplit that leaks 30 % of the low talker into the second output."""

    def forward(self, x):
        low, high = super().forward(x).unbind(1)
        return torch.stack([0.7 * low, high + 0.3 * low], dim=1)


def test_solo_runs_mossep_solo_on_each_chunk():
    """Separator(solo=True) gives each chunk's estimates and its own (cleaned) mixture to mossep.solo.reassign,
    with the network as the probe; here, where the low talker speaks alone (the first 2.5 s), that takes most of the
    leak out of the other output (whatever solo's thresholds, the Separator's output is reassign's)."""
    from mossep.chunking import fit_to_mixture
    from mossep.solo import reassign

    src = talkers(8000, seconds=4.0)
    src[1, : int(2.5 * 8000)] = 0
    mix = src.sum(0)
    out = {solo: Separator(loaded(Leaky()), device="cpu", chunk_seconds=0, solo=solo, remove_hum=False).separate(
        mix, 8000) for solo in (True, False)}
    sep = Separator(loaded(Leaky()), device="cpu", chunk_seconds=0, solo=False, remove_hum=False)
    a = (mix - mix.mean(dtype=np.float64)).astype(np.float32)
    est = reassign(sep._forward(a[None])[0], a, 8000, lambda x: sep._forward(x[None])[0])
    want = est * fit_to_mixture(est, a.astype(np.float64))[:, None]
    np.testing.assert_allclose(out[True], want, atol=1e-5)
    alone = slice(int(0.2 * 8000), int(2.3 * 8000))
    leak = {solo: 10 * np.log10(np.mean(y[1, alone] ** 2) / np.mean(mix[alone] ** 2)) for solo, y in out.items()}
    assert leak[True] < leak[False] - 3


def test_streaming_yields_output_as_soon_as_no_later_chunk_can_change_it():
    """Memory stays about one chunk: fed in blocks, the output lags the input by at most one chunk; and an input
    that ends one sample after a regular chunk (the final chunk then starts one sample later) still streams."""
    sep = Separator(oracle_model(), device="cpu", chunk_seconds=1.0, overlap_seconds=0.25)
    x = talkers(8000, seconds=5.0).sum(0)
    fed, lags = [0], []

    def blocks():
        for i in range(0, len(x), 500):
            fed[0] = min(i + 500, len(x))
            yield x[i:i + 500]

    parts = []
    for y in sep.separate_stream(blocks()):
        parts.append(y)
        lags.append(fed[0] - sum(p.shape[1] for p in parts))
    assert len(parts) >= 6 and max(lags) <= sep.chunk and lags[-1] == 0
    whole = np.concatenate(list(sep.separate_stream([x])), axis=1)
    np.testing.assert_allclose(np.concatenate(parts, axis=1), whole, atol=1e-6)
    for n in (sep.chunk - sep.overlap + sep.chunk + 1, 2 * (sep.chunk - sep.overlap) + sep.chunk + 1):
        one = np.concatenate(list(sep.separate_stream([x[:n]])), axis=1)
        assert one.shape == (2, n)
        np.testing.assert_allclose(np.concatenate(list(sep.separate_stream(np.array_split(x[:n], 7))), axis=1), one,
                                   atol=1e-6)


def test_output_paths():
    sep = Separator(oracle_model(), device="cpu")
    assert sep.output_paths("in/talk.flac", "out") == [Path("out/talk_spk1.wav"), Path("out/talk_spk2.wav")]
    assert sep.output_paths(Path("in/talk.flac"), "out", fmt="flac") == [Path("out/talk_spk1.flac"),
                                                                          Path("out/talk_spk2.flac")]
    assert sep.output_paths("in/talk.flac", "out", "{stem}.{ext}.{k}.wav") == [Path("out/talk.flac.1.wav"),
                                                                                 Path("out/talk.flac.2.wav")]
    assert sep.output_paths("-", "out", "{stem}[{ext}]{k}.wav") == [Path("out/stdin[]1.wav"), Path("out/stdin[]2.wav")]


class Mono(BandSplit):
    """A one-output stand-in: the input itself."""

    def __init__(self):
        super().__init__()
        self.config.num_spks = 1

    def forward(self, x):
        return x[:, None]


def test_file_output_details(tmp_path, monkeypatch):
    """The format names the default outputs; the input is checked before any existing output is reported, and
    nothing is separated when outputs exist; a killed run's temporary files of these outputs are removed; the
    speakers are spooled next to the first output; the length at another rate is exact; an output may be called
    "-" when the input is stdin."""
    import io
    import os
    import tempfile
    import time

    src = talkers(16000, seconds=1.0)
    path = tmp_path / "talk.wav"
    sf.write(path, np.stack([src.sum(0), src[0]], axis=1), 16000, subtype="FLOAT")
    sep = Separator(oracle_model(), device="cpu", chunk_seconds=0.5, overlap_seconds=0.125)
    paths = sep.separate_file(path, tmp_path / "f", fmt="flac")
    assert [p.name for p in paths] == ["talk_spk1.flac", "talk_spk2.flac"] and all(p.exists() for p in paths)

    calls = []
    with pytest.raises(MossepError) as e:
        sep.separate_file(path, tmp_path / "f", fmt="flac", channel=3)
    assert message(e) == f"{path}: has 2 channel(s); --channel 3 does not exist"
    with pytest.raises(MossepError) as e:
        sep.separate_file(path, tmp_path / "f", fmt="flac", progress=lambda *a: calls.append(a))
    assert message(e).endswith("talk_spk1.flac: already exists (use --overwrite)") and calls == []

    stale = tmp_path / "f" / ".talk_spk2.flac.0123abcd.part"
    other = tmp_path / "f" / ".notes.txt.0123abcd.part"
    for p in (stale, other):
        p.write_bytes(b"x")
        os.utime(p, (time.time() - 60, time.time() - 60))
    sep.separate_file(path, tmp_path / "f", fmt="flac", overwrite=True)
    assert not stale.exists() and other.exists()

    spooled = []
    real = tempfile.TemporaryFile

    def spy(*args, **kwargs):
        spooled.append(kwargs.get("dir"))
        return real(*args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(tempfile, "TemporaryFile", spy)
        paths = sep.separate_file(path, tmp_path / "g", filename="{stem}{k}/out.wav", output_rate=44100)
    assert [p.parent.name for p in paths] == ["talk1", "talk2"] and spooled[0] == paths[0].parent
    assert [sf.info(p).frames for p in paths] == [44100, 44100]
    t = talkers(16000, seconds=0.8).sum(0)[:12345]  # 6172 samples at the model's 8 kHz: back at 44.1 kHz by
    sf.write(path, t, 16000, subtype="FLOAT")             # themselves they would be 3 samples short
    paths = sep.separate_file(path, tmp_path / "h", output_rate=44100)
    assert [sf.info(p).frames for p in paths] == [round(len(t) * 44100 / 16000)] * 2

    data = io.BytesIO()
    sf.write(data, t, 16000, format="WAV", subtype="FLOAT")
    data.seek(0)
    monkeypatch.chdir(tmp_path)
    out = Separator(loaded(Mono()), device="cpu").separate_file("-", ".", filename="-{k!s:.0}", stdin=data)
    assert out == [Path("-")] and sf.info(tmp_path / "-").frames == len(t)


@pytest.mark.parametrize("raw", [False, True])
def test_stream_overlap_add_settings(monkeypatch, raw):
    """The overlap-add gets the model's speakers, the overlap in samples, the level fit (off under raw) and the
    speaker tracker at the model's own rate (here 16 kHz: voice profiles are measured in Hz)."""
    from mossep.chunking import OverlapAdd

    made = []

    class Spy(OverlapAdd):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(separator_module, "OverlapAdd", Spy)
    net = BandSplit()
    net.config.sample_rate = 16000
    kw = dict(raw=True) if raw else dict(chunk_seconds=1.0, overlap_seconds=0.25, track_speakers=True)
    sep = Separator(loaded(net, "standalone" if raw else "mossep"), device="cpu", **kw)
    out = np.concatenate(list(sep.separate_stream([talkers(16000, seconds=2.0).sum(0)])), axis=1)
    assert out.shape == (2, 32000) and len(made) == 1
    ola = made[0]
    assert (ola.C, ola.overlap, ola.fit_level) == (2, 0 if raw else 4000, not raw)
    assert (ola.tracker is None) if raw else (ola.tracker.sample_rate == 16000)


def test_raw_output_is_the_official_pipeline_at_the_model_rate():
    """raw: one pass of the checkpoint format's own pipeline (here ClearerVoice's, which needs the model's rate)
    over the whole input, nothing added."""
    from mossep.official_pipelines import for_checkpoint

    x = talkers(8000, seconds=1.0).sum(0) + 0.05  # an offset raw keeps
    net = BandSplit()
    sep = Separator(loaded(net, "clearvoice"), device="cpu", raw=True)
    want = for_checkpoint("clearvoice", 8000)(lambda t: net(t).double(), x.astype(np.float32))
    np.testing.assert_allclose(sep.separate(x, 8000), want, atol=1e-6)


def test_raw_outputs_are_not_peak_limited(tmp_path, monkeypatch):
    import io

    mix = 0.9 * np.sin(2 * np.pi * 100 * np.arange(8000) / 8000)
    path = tmp_path / "c.wav"
    sf.write(path, mix, 8000, subtype="FLOAT")
    sep = Separator(loaded(BandSplit(), "standalone"), device="cpu", raw=True)
    loud = 1.5 * np.sin(2 * np.pi * 37 * np.arange(8000) / 8000)
    monkeypatch.setattr(sep, "_forward", lambda audios: np.stack([np.stack([a + loud, -loud]) for a in audios]))
    out = io.BytesIO()
    sep.separate_to_stream(path, out, subtype="FLOAT")
    assert np.abs(sf.read(io.BytesIO(out.getvalue()))[0]).max() > 1.5
    paths = sep.separate_file(path, tmp_path / "o", subtype="FLOAT")
    assert max(np.abs(sf.read(p)[0]).max() for p in paths) > 1.5


def test_file_input_length_limits_and_nan_outputs_name_the_file(tmp_path, monkeypatch):
    sep = Separator(oracle_model(), device="cpu")
    path = tmp_path / "short.wav"
    sf.write(path, np.full(16, 0.1), 8000, subtype="FLOAT")  # exactly the model's minimum
    assert [sf.info(p).frames for p in sep.separate_file(path, tmp_path / "o")] == [16, 16]
    sf.write(path, np.full(15, 0.1), 8000, subtype="FLOAT")
    with pytest.raises(MossepError) as e:
        sep.separate_file(path, tmp_path / "p")
    assert message(e) == (f"{path}: too short (15 samples at 8000 Hz; the model needs at least 16 samples at "
                          "8000 Hz)")
    sf.write(path, np.full(800, 0.1), 8000, subtype="FLOAT")
    monkeypatch.setattr(sep, "_forward", lambda audios: np.full((len(audios), 2, audios.shape[1]), np.inf))
    with pytest.raises(MossepError) as e:
        sep.separate_file(path, tmp_path / "q")
    assert message(e) == (f"{path}: the model's output is NaN or infinite (a broken checkpoint?); nothing was "
                          "written")
    assert not (tmp_path / "p").exists() and not (tmp_path / "q").exists()


class LevelProbe(BandSplit):
    """Records the RMS level (dBFS) of what the network is given; `num_spks` outputs (the band split, then silence)."""

    def __init__(self, num_spks: int):
        super().__init__()
        self.config.num_spks = num_spks
        self.seen: list[float] = []

    def forward(self, x):
        self.seen.append(float(10 * torch.log10(x.double().pow(2).mean())))
        y = super().forward(x)
        return torch.cat([y, torch.zeros_like(y[:, :1]).repeat(1, self.config.num_spks - 2, 1)], dim=1)


@pytest.mark.parametrize("num_spks", [2, 3])
def test_the_network_hears_the_training_level_of_its_talker_count(num_spks):
    """Each chunk reaches the network at the level of a training mixture of that many talkers (mossep.level):
    -25 dBFS per talker, about -20.2 dBFS for three; the estimates come back at the input's level."""
    from mossep.level import training_level_dbfs

    net = LevelProbe(num_spks)
    x = 0.01 * talkers(8000, seconds=1.0).sum(0)
    est = Separator(loaded(net), device="cpu", solo=False, remove_hum=False).separate(x, 8000)
    assert net.seen == pytest.approx([training_level_dbfs(num_spks)], abs=0.01)
    assert est.shape == (num_spks, 8000)
    np.testing.assert_allclose(est.sum(0), x - x.mean(), atol=1e-5)


def test_separate_at_another_rate_keeps_the_length_and_reports_progress_to_the_end():
    """12345 samples at 16 kHz are 6172 at the model's 8 kHz (soxr alone would give 6173) and 12345 again on the
    way back (soxr alone: 12344): both resamplers are held to the exact lengths."""
    x = talkers(16000, seconds=0.8).sum(0)[:12345]
    sep = Separator(oracle_model(), device="cpu", chunk_seconds=0.25, overlap_seconds=0.05)
    calls = []
    est = sep.separate(x, 16000, progress=lambda done, total: calls.append((done, total)))
    assert est.shape == (2, 12345) and est.dtype == np.float32
    assert calls[-1] == (6172 / 8000, 6172 / 8000)


class Switch(BandSplit):
    """Moves its input from output 1 to output 2 halfway through whatever it is given (one voice, two outputs)."""

    def forward(self, x):
        half = (torch.arange(x.shape[-1]) >= x.shape[-1] // 2).to(x.dtype)
        return torch.stack([x * (1 - half), x * half], dim=1)


def test_solo_asks_the_network_whether_two_outputs_hold_one_voice():
    """One talker that the network moves between its outputs mid-way: solo plays a snippet of each output's part
    to the network at once; as it cannot pull them apart, they are one voice, and it all goes to one output
    (without the network's answer, each output would keep its half)."""
    t = np.arange(4 * 8000) / 8000
    voice = sum(0.1 / k * np.sin(2 * np.pi * k * (140 * t + 10 * t ** 2)) for k in range(1, 8))
    voice = (voice * (1 + 0.3 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    est = Separator(loaded(Switch()), device="cpu", chunk_seconds=0, solo=True, remove_hum=False).separate(voice, 8000)
    share = np.mean(est ** 2, axis=1) / np.mean((voice - voice.mean()) ** 2)
    assert max(share) > 0.99 and min(share) < 1e-3


def test_stream_blocks_are_read_as_float32():
    """Blocks of any float type are taken at float32 precision, like audio read from a file: a float64 stream
    gives exactly the output of its float32 copy."""
    x = talkers(8000, seconds=2.0).sum(0).astype(np.float64) + 1e-4 * np.random.default_rng(5).standard_normal(16000)
    sep = Separator(oracle_model(), device="cpu", chunk_seconds=1.0, overlap_seconds=0.25)
    got = np.concatenate(list(sep.separate_stream(np.array_split(x, 3))), axis=1)
    want = np.concatenate(list(sep.separate_stream(np.array_split(x.astype(np.float32), 3))), axis=1)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("extra", [1, 2001])  # the final chunk starts 1 sample in, or 1 sample after a hop
def test_stream_stitches_like_chunking_stitch(monkeypatch, extra):
    """separate_stream is the streaming form of mossep.chunking.stitch: same chunks, same first/last flags (no fade
    where the recording begins or ends), same output, also where the final chunk overlaps its predecessor almost
    whole. The network's answer differs from chunk to chunk, so every weight shows."""
    from mossep.chunking import plan_chunks, stitch

    sep = Separator(oracle_model(), device="cpu", chunk_seconds=0.5, overlap_seconds=0.25, solo=False)
    n = sep.chunk + extra
    x = talkers(8000, seconds=1.0).sum(0)[:n]
    answers = []

    def forward(audios):
        out = []
        for a in audios:
            low, high = band_split(a)
            c = 0.1 * len(answers)
            answers.append(np.stack([low + c * high, (1 - c) * high]))
            out.append(answers[-1])
        return np.stack(out)

    monkeypatch.setattr(sep, "_forward", forward)
    monkeypatch.setattr(sep, "_clean", lambda a: np.asarray(a, np.float32))  # the chunks as they are
    got = np.concatenate(list(sep.separate_stream(np.array_split(x, 5))), axis=1)
    plan = plan_chunks(n, sep.chunk, sep.overlap)
    assert len(answers) == len(plan) >= 2 and plan[-1][0] == extra
    want, _ = stitch(answers, plan, x.astype(np.float32).astype(np.float64), sep.overlap)
    np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("raw", [False, True])
def test_the_input_goes_to_the_device_of_the_network(monkeypatch, raw):
    """The chunks are moved to the Separator's device before the network runs (on a GPU, input left on the CPU
    fails the forward). torch's 'meta' device stands in for a GPU: the stand-in records where its input is."""
    sep = Separator(loaded(BandSplit(), "standalone" if raw else "mossep"), device="cpu", raw=raw)
    seen = []

    def run_model(x, model=None):
        seen.append(x.device)
        return np.zeros((x.shape[0], 2, x.shape[-1]))

    monkeypatch.setattr(sep, "device", torch.device("meta"))
    monkeypatch.setattr(sep, "_run_model", run_model)
    sep._forward(talkers(8000, seconds=0.2).sum(0, keepdims=True).astype(np.float32))
    assert seen and all(d == torch.device("meta") for d in seen)
