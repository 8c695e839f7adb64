"""Block-wise audio input/output: checks, downmix, streaming resampling, peak-safe atomic writing."""
from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
import soxr

from mossep.audio import (PEAK_LIMIT, SpeakerSink, StreamResampler, check_output_format, open_input,
                          read_mono_blocks, resample_blocks, select_channel)
from mossep.errors import MossepError


def test_open_input_errors(tmp_path):
    with pytest.raises(MossepError, match="no such file"):
        open_input(tmp_path / "missing.wav")
    with pytest.raises(MossepError, match="is a directory"):
        open_input(tmp_path)
    bad = tmp_path / "text.wav"
    bad.write_text("not audio at all\n" * 10)
    with pytest.raises(MossepError, match=r"text\.wav: not a readable audio file"):
        open_input(bad)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 8000)
    with pytest.raises(MossepError, match="contains no audio"):
        open_input(empty)
    with pytest.raises(MossepError, match="stdin"):
        open_input("-", stdin=io.BytesIO(b""))


def test_open_input_from_stdin_bytes(rng):
    buf = io.BytesIO()
    x = rng.standard_normal((1000, 2)).astype(np.float32) * 0.1
    sf.write(buf, x, 16000, format="WAV", subtype="FLOAT")
    inp = open_input("-", stdin=io.BytesIO(buf.getvalue()))
    assert (inp.name, inp.stem, inp.sample_rate, inp.channels, inp.frames) == ("<stdin>", "stdin", 16000, 2, 1000)
    got = np.concatenate(list(read_mono_blocks(inp, None, block_frames=300)))
    np.testing.assert_allclose(got, x.mean(1), atol=1e-7)
    got = np.concatenate(list(read_mono_blocks(inp, 2, block_frames=300)))
    np.testing.assert_array_equal(got, x[:, 1])


def test_select_channel():
    x = np.array([[1.0, 3.0], [2.0, 4.0]], np.float32)
    assert select_channel(x, None).tolist() == [2.0, 3.0]
    assert select_channel(x, 1).tolist() == [1.0, 2.0]
    with pytest.raises(MossepError, match="--channel 3"):
        select_channel(x, 3)


def test_nan_is_reported_with_the_file_name(tmp_path):
    x = np.zeros(5000, np.float32)
    x[4000] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(path, x, 8000, subtype="FLOAT")
    with pytest.raises(MossepError, match=r"nan\.wav: contains NaN"):
        list(read_mono_blocks(open_input(path), None, block_frames=1000))


@pytest.mark.parametrize("rates", [(16000, 8000), (8000, 44100), (8000, 8000), (22050, 8000)])
def test_stream_resampler_matches_one_shot_and_is_exact_length(rng, rates):
    a, b = rates
    x = rng.standard_normal(a).astype(np.float32)
    expected = int(round(len(x) * b / a))
    y = np.concatenate(list(resample_blocks(np.array_split(x, 7), a, b, expected=expected)))
    assert len(y) == expected
    ref = soxr.resample(x, a, b, quality="HQ")
    m = min(len(ref), len(y))
    np.testing.assert_allclose(y[:m], ref[:m], atol=1e-5)
    # multichannel: [t, C] blocks
    rs = StreamResampler(a, b, 2, expected=expected)
    x2 = np.stack([x, -x], 1)
    y2 = np.concatenate([rs.process(x2[:1000]), rs.process(x2[1000:]), rs.flush()])
    assert y2.shape == (expected, 2)
    np.testing.assert_allclose(y2[:, 0], -y2[:, 1])


def test_check_output_format():
    assert check_output_format("flac", "PCM_24") == "FLAC"
    with pytest.raises(MossepError, match="FLOAT"):
        check_output_format("flac", "FLOAT")
    with pytest.raises(MossepError, match="unknown output format"):
        check_output_format("mp4", "PCM_16")


def test_sink_scales_to_avoid_clipping_and_writes_all_outputs(tmp_path):
    notes = []
    t = np.arange(4000) / 8000
    loud = np.stack([1.6 * np.sin(2 * np.pi * 200 * t), 0.5 * np.sin(2 * np.pi * 300 * t)])
    paths = [tmp_path / "a1.wav", tmp_path / "a2.wav"]
    with SpeakerSink(2, tmp_path, expected=4000) as sink:
        sink.write(loud[:, :1500])
        sink.write(loud[:, 1500:])
        sink.commit_files(paths, 8000, "wav", "PCM_16", False, "in.wav", notes.append)
    assert len(notes) == 1 and "in.wav" in notes[0] and "clipping" in notes[0]
    y1, _ = sf.read(paths[0])
    y2, _ = sf.read(paths[1])
    assert np.abs(y1).max() <= PEAK_LIMIT + 1e-4
    # both speakers scaled by the same gain: their ratio (balance) is kept
    g = PEAK_LIMIT / 1.6
    np.testing.assert_allclose(y2, loud[1] * g, atol=2e-4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a1.wav", "a2.wav"]  # no temporary files left


def test_sink_quiet_signal_is_untouched_and_padded(tmp_path):
    notes = []
    x = np.full((2, 100), 0.25, np.float32)
    with SpeakerSink(2, tmp_path, expected=150) as sink:
        sink.write(x)
        sink.commit_files([tmp_path / "x1.flac", tmp_path / "x2.flac"], 8000, "flac", "PCM_24", False, "x",
                          notes.append)
    y, sr = sf.read(tmp_path / "x1.flac")
    assert notes == [] and sr == 8000 and len(y) == 150
    np.testing.assert_allclose(y[:100], 0.25, atol=1e-6)
    assert np.all(y[100:] == 0)


def test_sink_refuses_existing_output_and_leaves_nothing(tmp_path):
    (tmp_path / "b2.wav").write_bytes(b"keep")
    with SpeakerSink(2, tmp_path, expected=10) as sink:
        sink.write(np.zeros((2, 10), np.float32))
        with pytest.raises(MossepError, match="already exists"):
            sink.commit_files([tmp_path / "b1.wav", tmp_path / "b2.wav"], 8000, "wav", "PCM_16", False, "b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b2.wav"]
    assert (tmp_path / "b2.wav").read_bytes() == b"keep"


def test_sink_stream_is_one_multichannel_wav(tmp_path):
    out = io.BytesIO()
    x = np.stack([np.linspace(-0.5, 0.5, 300), np.linspace(0.5, -0.5, 300)]).astype(np.float32)
    with SpeakerSink(2, tmp_path, expected=300) as sink:
        sink.write(x)
        sink.commit_stream(out, 16000, "FLOAT", "x")
    y, sr = sf.read(io.BytesIO(out.getvalue()))
    assert sr == 16000 and y.shape == (300, 2)
    np.testing.assert_allclose(y.T, x, atol=1e-7)
    assert list(tmp_path.iterdir()) == []


def test_check_channel_is_the_one_channel_rule():
    """One rule (and message) for --channel everywhere: the Separator's up-front check and the block reader."""
    from mossep.audio import check_channel, select_channel

    check_channel("a.wav", 2, None)
    check_channel("a.wav", 2, 2)
    for bad in (0, 3, -1):
        with pytest.raises(MossepError, match=r"a.wav: has 2 channel\(s\); --channel"):
            check_channel("a.wav", 2, bad)
    with pytest.raises(MossepError, match="--channel 3 does not exist"):
        select_channel(np.zeros((4, 2), np.float32), 3, "a.wav")
