"""The Separator API: arrays and files, chunked streaming, level fitting, errors."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import soundfile as sf

import mossep
from mossep.errors import MossepError
from mossep.separator import Separator, output_names


@pytest.fixture(scope="module")
def sep(tiny_model_path):
    return Separator(tiny_model_path, device="cpu", chunk_seconds=1.0, overlap_seconds=0.25)


def test_contract(sep, tiny_model_path):
    assert mossep.Separator is Separator
    assert sep.sample_rate == 8000 and sep.num_speakers == 2
    assert sep.loaded.path == tiny_model_path and sep.loaded.source == "mossep"


@pytest.mark.parametrize("shape_rate", [((12000,), 8000), ((24000, 2), 16000), ((11025,), 22050)])
def test_separate_shapes_and_rates(sep, rng, shape_rate):
    shape, rate = shape_rate
    mix = (rng.standard_normal(shape) * 0.1).astype(np.float32)
    est = sep.separate(mix, rate)
    assert est.shape == (2, shape[0]) and est.dtype == np.float32
    assert np.isfinite(est).all()


def test_streaming_does_not_depend_on_block_size(sep, rng):
    x = (rng.standard_normal(8000 * 4 + 123) * 0.1).astype(np.float32)
    whole = np.concatenate(list(sep.separate_stream([x])), axis=1)
    pieces = np.concatenate(list(sep.separate_stream(np.array_split(x, 37))), axis=1)
    assert whole.shape == (2, len(x))
    np.testing.assert_allclose(pieces, whole, atol=1e-5)


def test_dc_offset_is_removed_before_the_model_and_from_the_outputs(sep, rng):
    """A constant offset belongs to no talker: the outputs are those of the offset-free mixture (each chunk
    is separated without its mean), whole-file and chunked alike."""
    x = (rng.standard_normal(8000 * 3 + 77) * 0.1).astype(np.float32)
    x -= x.mean()
    for s in (sep, Separator(sep.loaded, device="cpu", chunk_seconds=0)):
        plain = s.separate(x, 8000)
        offset = s.separate(x + 0.3, 8000)
        np.testing.assert_allclose(offset, plain, atol=2e-4)
        assert np.abs(offset.mean(axis=1)).max() < 5e-3


class _ShuffledOracle:
    """Stands in for a model: returns the true sources of each chunk in a random order and scale."""

    def __init__(self, sources: np.ndarray, seed: int = 0):
        self.sources, self.pos, self.rng = sources, 0, np.random.default_rng(seed)

    def __call__(self, audios: np.ndarray, plan) -> np.ndarray:
        out = []
        for _ in audios:
            s, e = plan[self.pos]
            self.pos += 1
            perm = self.rng.permutation(len(self.sources))
            out.append(self.sources[perm, s:e] * self.rng.uniform(0.2, 5.0, (len(perm), 1)))
        return np.stack(out)


def test_chunked_streaming_keeps_talkers_on_their_outputs(tiny_model_path, rng, monkeypatch):
    from mossep.chunking import plan_chunks

    sep = Separator(tiny_model_path, device="cpu", chunk_seconds=0.5, overlap_seconds=0.125)
    n = 8000 * 3 + 77
    t = np.arange(n) / 8000
    sources = np.stack([0.3 * np.sin(2 * np.pi * 200 * t) * (1 + np.sin(2 * np.pi * 0.7 * t)),
                        0.2 * rng.standard_normal(n)])
    oracle = _ShuffledOracle(sources, seed=5)
    plan = plan_chunks(n, sep.chunk, sep.overlap)
    monkeypatch.setattr(sep, "_forward", lambda audios: oracle(audios, plan))
    est = sep.separate(sources.sum(0).astype(np.float32), 8000)
    assert oracle.pos == len(plan) > 4
    # output order is fixed by the first chunk; then every chunk follows it, at the mixture's level
    first = np.argmax(np.abs(est @ sources.T), axis=1)
    np.testing.assert_allclose(est, sources[first], atol=5e-3)


def test_separate_file_writes_each_speaker_at_the_input_rate(sep, tmp_path, rng):
    x = (rng.standard_normal((16000, 2)) * 0.1).astype(np.float32)
    src = tmp_path / "talk.flac"
    sf.write(src, x, 16000)
    paths = sep.separate_file(src, tmp_path / "out")
    assert [p.name for p in paths] == ["talk_spk1.wav", "talk_spk2.wav"]
    for p in paths:
        info = sf.info(p)
        assert (info.samplerate, info.frames, info.channels, info.subtype) == (16000, 16000, 1, "PCM_16")
    paths = sep.separate_file(src, tmp_path / "out", filename="{k}-{stem}.flac", fmt="flac", subtype="PCM_24",
                              output_rate=8000)
    assert [p.name for p in paths] == ["1-talk.flac", "2-talk.flac"]
    assert sf.info(paths[0]).samplerate == 8000 and sf.info(paths[0]).frames == 8000
    # the default template follows the format's extension
    assert output_names("{stem}_spk{k}.wav", "a", 2, "flac") == ["a_spk1.flac", "a_spk2.flac"]


def test_level_fit_restores_mixture_level(sep, tmp_path, monkeypatch):
    """Whatever the model's output level, the written speakers add up to the input mixture."""
    t = np.arange(8000 * 2) / 8000
    s = np.stack([0.3 * np.sin(2 * np.pi * 150 * t), 0.2 * np.sign(np.sin(2 * np.pi * 3 * t)) * np.sin(2 * np.pi * 410 * t)])
    mix = s.sum(0)
    src = tmp_path / "m.wav"
    sf.write(src, mix, 8000, subtype="FLOAT")
    state = {"pos": 0}

    def fake(audios):
        out = []
        for a in audios:
            start = state["pos"]
            seg = s[:, start:start + a.shape[-1]]
            out.append(seg * np.array([[40.0], [0.01]]))
            state["pos"] = start + sep.chunk - sep.overlap
        return np.stack(out)

    monkeypatch.setattr(sep, "_forward", fake)
    # the 410 Hz tone's 3 Hz on/off sidebands fall near multiples of 60 Hz like a hum would; this test is about
    # the level fit, so the mixture must reach it unchanged
    monkeypatch.setattr(sep, "remove_hum", False)
    with monkeypatch.context() as m:
        m.setattr(sep, "chunk", 0)
        m.setattr(sep, "overlap", 0)
        paths = sep.separate_file(src, tmp_path / "o", subtype="FLOAT")
    y = np.stack([sf.read(p)[0] for p in paths])
    np.testing.assert_allclose(y, s, atol=1e-3)


def test_clipping_is_prevented_and_reported(sep, tmp_path, monkeypatch):
    t = np.arange(8000) / 8000
    mix = 0.9 * np.sin(2 * np.pi * 100 * t)
    loud = 1.5 * np.sin(2 * np.pi * 37 * t)
    s = np.stack([mix + loud, -loud])  # sums to the mixture, but each peaks above full scale
    src = tmp_path / "c.wav"
    sf.write(src, mix, 8000, subtype="FLOAT")
    monkeypatch.setattr(sep, "_forward", lambda audios: np.stack([s[:, :a.shape[-1]] for a in audios]))
    notes = []
    with monkeypatch.context() as m:
        m.setattr(sep, "chunk", 0)
        m.setattr(sep, "overlap", 0)
        paths = sep.separate_file(src, tmp_path / "o", note=notes.append)
    peaks = [np.abs(sf.read(p)[0]).max() for p in paths]
    assert max(peaks) <= 0.9991 and max(peaks) > 0.99
    assert len(notes) == 1 and "c.wav" in notes[0]


@pytest.mark.parametrize("kwargs, match", [
    (dict(chunk_seconds=1.0, overlap_seconds=1.0), "must be shorter"),
    (dict(chunk_seconds=-1.0), "chunk-seconds"),
    (dict(overlap_seconds=-0.5), "overlap-seconds"),
    (dict(chunk_seconds=0.0001), "model minimum"),
    (dict(threads=0), "threads"),
    (dict(device="tpu"), "device"),
])
def test_bad_settings(tiny_model_path, kwargs, match):
    with pytest.raises(MossepError, match=match):
        Separator(tiny_model_path, **kwargs)


def test_bad_arrays(sep):
    with pytest.raises(MossepError, match="NaN"):
        sep.separate(np.array([0.0, np.nan] * 100), 8000)
    with pytest.raises(MossepError, match="no samples"):
        sep.separate(np.zeros(0), 8000)
    with pytest.raises(MossepError, match="too short"):
        sep.separate(np.zeros(5), 8000)


def test_chunk_zero_is_one_forward(tiny_model_path, rng, monkeypatch):
    sep = Separator(tiny_model_path, device="cpu", chunk_seconds=0)
    calls = []
    real = sep._forward
    monkeypatch.setattr(sep, "_forward", lambda a: calls.append(a.shape) or real(a))
    sep.separate(rng.standard_normal(8000 * 3).astype(np.float32) * 0.1, 8000)
    assert calls == [(1, 24000)]


def test_fast_mode(tiny_model_path):
    if importlib.util.find_spec("mossep.fast") is None:
        with pytest.raises(MossepError, match="fast mode is not available"):
            Separator(tiny_model_path, device="cpu", fast=True)
    else:
        sep = Separator(tiny_model_path, device="cpu", fast=True)
        assert sep.separate(np.zeros(800, np.float32), 8000).shape == (2, 800)


def test_missing_default_model_is_a_clear_error(monkeypatch):
    import mossep.checkpoints as ck

    def missing():
        raise MossepError("no default model found (weights/default.safetensors); pass --model PATH")

    monkeypatch.setattr(ck, "default_model_path", missing)
    with pytest.raises(MossepError, match="no default model"):
        Separator(None)


_RSS_SCRIPT = """
import resource, sys, numpy as np, soundfile as sf, torch
torch.set_num_threads(1)
from mossep.separator import Separator
model, wav, out = sys.argv[1:4]
sep = Separator(model, device="cpu", chunk_seconds=2, overlap_seconds=0.5)
sep.separate_file(wav, out, overwrite=True)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_length(tiny_model_path, tmp_path):
    import subprocess
    import sys

    peaks = {}
    for minutes in (0.25, 4):
        wav = tmp_path / f"{minutes}.wav"
        n = int(minutes * 60 * 16000)
        with sf.SoundFile(wav, "w", 16000, 1, "PCM_16") as f:
            for s in range(0, n, 160000):
                f.write(np.random.default_rng(s).standard_normal(min(160000, n - s)) * 0.1)
        proc = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, str(tiny_model_path), str(wav), str(tmp_path)],
                              capture_output=True, text=True, check=True)
        peaks[minutes] = int(proc.stdout.split()[-1]) / 1024
    # 16x the audio (61 MB more as float32 in and out) must cost almost no extra memory
    assert peaks[4] < peaks[0.25] + 25, peaks


def test_channels_first_array_is_refused_with_a_hint(sep, rng):
    """A [channels, T] array (the torch/librosa layout) used to be averaged over its T 'channels' and then fail
    as 'too short (0 samples)'; it is refused with the fix in the message, and [T, channels] still works."""
    x = (0.1 * rng.standard_normal((2, 16000))).astype(np.float32)
    with pytest.raises(MossepError, match=r"\(2, 16000\).*mix\.T"):
        sep.separate(x, 16000)
    assert sep.separate(x.T, 16000).shape == (2, 16000)
