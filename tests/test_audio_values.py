"""mossep.audio's messages and stream handling, by value (what a user reads and gets): the libsndfile reason
quoted in one line, stdin buffering failures, the clipping note of a stream output."""
from __future__ import annotations

import errno
import io
import tempfile

import numpy as np
import pytest
import soundfile as sf
import soxr

from mossep import audio
from mossep.errors import MossepError


@pytest.mark.parametrize("text, want", [
    ("Error opening 'a.wav': Format not recognised.", "Format not recognised."),
    ("Error opening 'a.wav': System error: No such file.", "System error: No such file."),  # only the prefix goes
    ("first line\nInternal error: bad header", "Internal error: bad header"),  # the last line, kept whole
    ("  \n ", "RuntimeError"),
    ("Error opening stdin", "Error opening stdin"),  # no ": " after the prefix: nothing to cut
])
def test_sf_reason_quotes_libsndfile_in_one_line(text, want):
    assert audio._sf_reason(RuntimeError(text)) == want


class _Failing(io.RawIOBase):
    def __init__(self, err: OSError):
        self.err = err

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        raise self.err


@pytest.mark.parametrize("err, words", [
    (OSError(errno.ENOSPC, "No space left on device"), "cannot read the stream (buffering it in "),
    (OSError("connection reset"), "<stdin>: cannot read the stream (connection reset)"),
])
def test_spool_failures_say_what_failed(err, words):
    with pytest.raises(MossepError) as e:
        audio.spool(_Failing(err))
    assert words in str(e.value)
    if err.errno is not None:
        assert str(e.value).endswith("disk full (no space left on device))")


def test_spool_copies_the_whole_stream_in_blocks():
    data = bytes(range(256)) * (audio.BLOCK_FRAMES // 8)  # two copy blocks and a bit
    tmp = audio.spool(io.BytesIO(data))
    assert tmp.tell() == 0 and tmp.read() == data


def test_stream_output_clipping_note_names_the_input(tmp_path):
    notes = []
    out = io.BytesIO()
    with audio.SpeakerSink(2, None, expected=100) as sink:
        sink.write(np.full((2, 100), 2.0, np.float32))
        sink.commit_stream(out, 8000, "FLOAT", "in.wav", notes.append)
    assert notes == ["in.wav: separated speakers peaked at 2.000; scaled all outputs by -6.0 dB to avoid clipping"]
    y, sr = sf.read(io.BytesIO(out.getvalue()), dtype="float32")
    assert sr == 8000 and y.shape == (100, 2)
    np.testing.assert_allclose(y, audio.PEAK_LIMIT, rtol=1e-6)


def test_spool_without_room_for_its_buffer_says_where(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    with pytest.raises(MossepError) as e:
        audio.spool(io.BytesIO(b"RIFF"))
    assert str(e.value) == f"<stdin>: cannot buffer the stream in {tempfile.gettempdir()} (read-only file system)"


def test_output_format_messages_name_the_choices():
    assert audio.check_output_format("WAV", "PCM_16") == "WAV"  # any case
    for (fmt, subtype), want in {
        ("mp4", "PCM_16"): "unknown output format 'mp4' (choose wav, flac)",
        ("wav", "PCM_8"): "unknown subtype 'PCM_8' (choose PCM_16, PCM_24, FLOAT)",
        ("flac", "FLOAT"): "format flac cannot store FLOAT samples",
    }.items():
        with pytest.raises(MossepError) as e:
            audio.check_output_format(fmt, subtype)
        assert str(e.value) == want


def test_peak_gain_brings_the_peak_to_the_limit():
    assert audio.peak_gain(0.5) == 1.0 and audio.peak_gain(audio.PEAK_LIMIT) == 1.0
    assert audio.peak_gain(2.0) * 2.0 == pytest.approx(audio.PEAK_LIMIT)
    assert audio.peak_gain(3.0, limit=1.5) == 0.5


def test_check_writable_dir_makes_the_folder_and_its_parents(tmp_path):
    out = tmp_path / "a" / "b"
    audio.check_writable_dir(out)
    audio.check_writable_dir(out)  # an existing folder is fine
    assert out.is_dir() and list(out.iterdir()) == []  # the probe file is gone


def test_check_writable_dir_says_what_is_in_the_way(tmp_path):
    afile = tmp_path / "f"
    afile.write_text("x")
    for folder, want in [(afile, f"{afile}: output folder is a file, not a directory"),
                         (afile / "sub", f"{afile / 'sub'}: output directory is not writable (Not a directory)")]:
        with pytest.raises(MossepError) as e:
            audio.check_writable_dir(folder)
        assert str(e.value) == want


@pytest.mark.parametrize("rates", [(8000, 16000), (16000, 16000)])
def test_stream_resampler_with_no_input_gives_expected_zeros(rates):
    """No block at all (an empty stream): flush still gives `expected` samples, shaped as the channels say."""
    mono = audio.StreamResampler(*rates, expected=5)  # one channel by default: [t] blocks
    y = mono.flush()
    assert y.shape == (5,) and y.dtype == np.float32 and not y.any()
    assert audio.StreamResampler(*rates, 2, expected=5).flush().shape == (5, 2)
    assert np.concatenate(list(audio.resample_blocks([], *rates, expected=3))).tolist() == [0.0, 0.0, 0.0]


def test_stream_resampler_defaults_to_mono(rng):
    x = rng.standard_normal(4000).astype(np.float32)
    rs = audio.StreamResampler(16000, 8000, expected=2000)
    y = np.concatenate([rs.process(x[:1500]), rs.process(x[1500:]), rs.flush()])
    assert y.shape == (2000,)
    np.testing.assert_array_equal(y, np.concatenate(list(audio.resample_blocks([x], 16000, 8000, expected=2000))))


def test_sink_keeps_exactly_the_expected_frames_over_several_writes(tmp_path):
    with audio.SpeakerSink(2, tmp_path, expected=150) as sink:
        for k in (1, 2, 3):
            sink.write(np.full((2, 100), k, np.float32))
        assert sink.frames == 150
        got = np.concatenate(list(sink.blocks(1.0)))
    assert got.shape == (150, 2) and np.all(got[:100] == 1) and np.all(got[100:] == 2)


def test_sink_non_finite_message_in_full(tmp_path):
    with audio.SpeakerSink(2, tmp_path) as sink:
        with pytest.raises(MossepError) as e:
            sink.write(np.array([[0.0, np.inf], [0.0, 0.0]], np.float32))
    assert str(e.value) == ("the separated speakers contain NaN or infinite samples (a broken checkpoint, or input "
                            "the model cannot handle); nothing was written")


def test_sink_blocks_are_whole_frames_of_the_given_size(rng, tmp_path):
    x = rng.standard_normal((3, 10)).astype(np.float32)
    with audio.SpeakerSink(3, tmp_path) as sink:
        sink.write(x)
        blocks = list(sink.blocks(0.5, block_frames=4))
    assert [b.shape for b in blocks] == [(4, 3), (4, 3), (2, 3)]
    np.testing.assert_array_equal(np.concatenate(blocks), x.T * np.float32(0.5))


def test_one_speaker_without_an_expected_length(tmp_path):
    """A one-output sink (paths has one entry), no expected length: exactly what was written, as written."""
    x = np.linspace(-0.5, 0.5, 77, dtype=np.float32)
    with audio.SpeakerSink(1, tmp_path) as sink:
        sink.write(x[None])
        sink.commit_files([tmp_path / "o.wav"], 8000, "wav", "FLOAT", False, "x")
    y, _ = sf.read(tmp_path / "o.wav", dtype="float32")
    np.testing.assert_array_equal(y, x)


def test_sink_without_peak_limit_writes_the_samples_as_they_are(tmp_path):
    notes = []
    x = np.stack([np.full(50, 1.5), np.full(50, -2.0)]).astype(np.float32)
    with audio.SpeakerSink(2, tmp_path, expected=50, limit_peak=False) as sink:
        sink.write(x)
        sink.commit_files([tmp_path / "r1.wav", tmp_path / "r2.wav"], 8000, "wav", "FLOAT", False, "x", notes.append)
    assert notes == []
    for k in (0, 1):
        np.testing.assert_array_equal(sf.read(tmp_path / f"r{k + 1}.wav", dtype="float32")[0], x[k])


def test_sink_overwrite_replaces_existing_outputs(tmp_path):
    (tmp_path / "b2.wav").write_bytes(b"old")
    x = np.full((2, 20), 0.25, np.float32)
    with audio.SpeakerSink(2, tmp_path, expected=20) as sink:
        sink.write(x)
        sink.commit_files([tmp_path / "b1.wav", tmp_path / "b2.wav"], 8000, "wav", "FLOAT", True, "b")
    np.testing.assert_array_equal(sf.read(tmp_path / "b2.wav", dtype="float32")[0], x[1])


def test_sink_in_a_missing_folder_says_so(tmp_path):
    with pytest.raises(MossepError) as e:
        audio.SpeakerSink(2, tmp_path / "missing")
    assert str(e.value) == f"{tmp_path / 'missing'}: cannot write there (No such file or directory)"


def test_sink_closes_its_file_even_when_the_last_flush_fails(tmp_path):
    with audio.SpeakerSink(2, tmp_path) as sink:
        sink.write(np.zeros((2, 5), np.float32))
        real = sink.file
    assert real.closed  # closed on leaving the block, not left to the garbage collector
    sink = audio.SpeakerSink(2, tmp_path)
    real = sink.file
    sink.file = _Broken(real, "close", OSError(errno.ENOSPC, "No space left on device"))
    sink.close()  # a full disk refusing the last flush is not an error: the file goes anyway
    real.close()


class _Broken:
    """A file whose method `name` raises `err`; everything else is the real file's."""

    def __init__(self, real, name: str, err: Exception):
        self.real, self.name, self.err = real, name, err

    def __getattr__(self, attr):
        if attr == self.name:
            def fail(*args, **kwargs):
                raise self.err
            return fail
        return getattr(self.real, attr)


def _loaded_sink(tmp_path, method: str, err: OSError) -> audio.SpeakerSink:
    sink = audio.SpeakerSink(2, tmp_path, expected=10)
    sink.write(np.full((2, 10), 0.1, np.float32))
    sink.file = _Broken(sink.file, method, err)
    return sink


def test_sink_that_cannot_flush_names_its_folder_and_the_cause(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with _loaded_sink(tmp_path, "flush", OSError(errno.ENOSPC, "No space left on device")) as sink:
        with pytest.raises(MossepError) as e:
            sink.commit_files([out / "a.wav", out / "b.wav"], 8000, "wav", "PCM_16", False, "in.wav")
        sink.file.real.close()
    assert str(e.value) == f"{tmp_path}: cannot write (disk full (no space left on device))"
    assert list(out.iterdir()) == []


def test_sink_that_cannot_read_back_names_the_outputs_folder(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with _loaded_sink(tmp_path, "read", OSError(errno.EIO, "Input/output error")) as sink:
        with pytest.raises(MossepError) as e:
            sink.commit_files([out / "a.wav", out / "b.wav"], 8000, "wav", "PCM_16", False, "in.wav")
        assert str(e.value) == f"in.wav: cannot write outputs in {out} (Input/output error); none were written"
        with pytest.raises(MossepError) as e:
            sink.commit_stream(io.BytesIO(), 8000, "PCM_16", "in.wav")
        assert str(e.value) == f"in.wav: cannot write the output WAV in {tempfile.gettempdir()} (Input/output error)"
        sink.file.real.close()
    assert list(out.iterdir()) == []


def test_a_libsndfile_refusal_is_quoted_not_called_a_full_disk(tmp_path):
    """libsndfile refuses the header (rate 0): its reason, in one line; outputs in no folder's way."""
    reason = "Internal error : SF_INFO struct incomplete."
    with audio.SpeakerSink(2, tmp_path, expected=10) as sink:
        sink.write(np.zeros((2, 10), np.float32))
        with pytest.raises(MossepError) as e:
            sink.commit_files([tmp_path / "a.wav", tmp_path / "b.wav"], 0, "wav", "PCM_16", False, "in.wav")
        assert str(e.value) == f"in.wav: cannot write outputs in {tmp_path} ({reason}); none were written"
        with pytest.raises(MossepError) as e:
            sink.commit_stream(io.BytesIO(), 0, "PCM_16", "in.wav")
        assert str(e.value) == f"in.wav: cannot write the output WAV in {tempfile.gettempdir()} ({reason})"
    assert list(tmp_path.iterdir()) == []


def test_stream_output_failures_say_why(tmp_path, monkeypatch):
    with audio.SpeakerSink(2, tmp_path, expected=10) as sink:
        sink.write(np.zeros((2, 10), np.float32))
        closed = io.BytesIO()
        closed.close()
        with pytest.raises(MossepError) as e:
            sink.commit_stream(closed, 8000, "PCM_16", "in.wav")
        assert str(e.value) == "in.wav: cannot write to the output stream (it is closed)"

        class Full(io.RawIOBase):
            def writable(self):
                return True

            def write(self, b):
                raise OSError(errno.ENOSPC, "No space left on device")

        with pytest.raises(MossepError) as e:
            sink.commit_stream(Full(), 8000, "PCM_16", "in.wav")
        assert str(e.value) == "in.wav: cannot write to the output stream (disk full (no space left on device))"

        def refuse(*args, **kwargs):
            raise OSError(errno.EROFS, "Read-only file system")

        monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
        with pytest.raises(MossepError) as e:
            sink.commit_stream(io.BytesIO(), 8000, "PCM_16", "in.wav")
        assert str(e.value) == f"{tempfile.gettempdir()}: cannot write there (read-only file system)"


# ---------------------------------------------------------------- reading and resampling, by value

def test_select_channel_messages_and_mono_blocks():
    with pytest.raises(MossepError) as e:
        audio.select_channel(np.zeros((4, 2), np.float32), 3)
    assert str(e.value) == "input: has 2 channel(s); --channel 3 does not exist"
    with pytest.raises(MossepError) as e:
        audio.select_channel(np.zeros((4, 2), np.float32), 3, "a.wav")
    assert str(e.value) == "a.wav: has 2 channel(s); --channel 3 does not exist"
    x = np.arange(5, dtype=np.float64)  # a [t] block is one channel
    for channel in (None, 1):
        y = audio.select_channel(x, channel)
        assert y.dtype == np.float32 and y.tolist() == x.tolist()


def test_the_downmix_is_the_float64_mean_rounded_once(rng):
    x = rng.standard_normal((1000, 3)).astype(np.float32) * np.float32(1e3)
    y = audio.select_channel(x, None)
    np.testing.assert_array_equal(y, x.astype(np.float64).mean(axis=1).astype(np.float32))
    top = np.finfo(np.float32).max
    assert audio.select_channel(np.full((1, 2), top, np.float32), None).tolist() == [top]  # no overflow to inf


def _pcm32_stereo(path, rng, frames=3000):
    x = rng.integers(-2**31, 2**31, size=(frames, 2), dtype=np.int64).astype(np.int32)
    sf.write(path, x, 8000, subtype="PCM_32")
    return path


def test_file_blocks_are_the_array_path_bit_for_bit(rng, tmp_path):
    """read_mono_blocks gives what select_channel gives for the file read whole as float32 (the array path),
    also for 32-bit PCM, where a downmix of float64 samples would differ in the last bit; in blocks of the size
    asked for (memory does not grow with the file)."""
    path = _pcm32_stereo(tmp_path / "x.wav", rng)
    whole = sf.read(path, dtype="float32", always_2d=True)[0]
    inp = audio.open_input(path)
    for channel in (None, 1, 2):
        blocks = list(audio.read_mono_blocks(inp, channel, block_frames=700))
        assert [len(b) for b in blocks] == [700] * 4 + [200]
        assert all(b.dtype == np.float32 for b in blocks)
        np.testing.assert_array_equal(np.concatenate(blocks), audio.select_channel(whole, channel))


def test_a_missing_channel_is_refused_before_any_sample_is_read(tmp_path):
    x = np.zeros(100, np.float32)
    x[0] = np.nan  # the first block would fail its NaN check
    path = tmp_path / "n.wav"
    sf.write(path, x, 8000, subtype="FLOAT")
    with pytest.raises(MossepError) as e:
        next(audio.read_mono_blocks(audio.open_input(path), 2))
    assert str(e.value) == f"{path}: has 1 channel(s); --channel 2 does not exist"


def test_a_file_that_breaks_while_read_quotes_libsndfile(rng, tmp_path):
    x = (rng.standard_normal(40000) * 0.1).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, x, 8000, format="FLAC", subtype="PCM_16")
    data = bytearray(buf.getvalue())
    start = len(data) // 3
    data[start:start + 2000] = bytes((b * 7 + 13) & 255 for b in data[start:start + 2000])
    path = tmp_path / "bad.flac"
    path.write_bytes(bytes(data))
    inp = audio.open_input(path)  # the header is fine
    with pytest.raises(MossepError) as e:
        list(audio.read_mono_blocks(inp, None, block_frames=1000))
    assert str(e.value).startswith(f"{path}: cannot read audio (") and "lost sync" in str(e.value)


@pytest.mark.parametrize("rates", [(16000, 8000), (8000, 22050), (8000, 8000)])
def test_resampled_streams_are_exactly_the_expected_length(rng, rates):
    """Cut to `expected` however the blocks fall (a quarter, just short) and padded with zeros past soxr's own
    end; without `expected`, the length of soxr's one-shot resampling (equal rates: the input itself)."""
    a, b = rates
    x = rng.standard_normal(4000).astype(np.float32)
    blocks = np.array_split(x, 5)
    natural = np.concatenate(list(audio.resample_blocks(blocks, a, b)))
    ref = x if a == b else soxr.resample(x, a, b, quality="HQ")
    assert len(natural) == len(ref) == audio.resampled_length(len(x), a, b)
    if a == b:
        np.testing.assert_array_equal(natural, x)
    for expected in (len(natural) // 4, len(natural) - 7, len(natural) + 5):
        y = np.concatenate(list(audio.resample_blocks(blocks, a, b, expected=expected)))
        m = min(expected, len(natural))
        assert len(y) == expected and y.dtype == np.float32
        np.testing.assert_array_equal(y[:m], natural[:m])
        assert not y[m:].any()
    # [t, 2] blocks, and blocks of float64: float32 [t, 2] out, the same lengths
    rs = audio.StreamResampler(a, b, 2, expected=len(natural) + 5)
    x2 = np.stack([x, -x], 1).astype(np.float64)
    y2 = np.concatenate([rs.process(x2[:1500]), rs.process(x2[1500:]), rs.flush()])
    assert y2.shape == (len(natural) + 5, 2) and y2.dtype == np.float32
    np.testing.assert_array_equal(y2[:, 0], np.concatenate([natural, np.zeros(5, np.float32)]))
    same = audio.StreamResampler(a, b, 2)
    got = np.concatenate([same.process(x2), same.flush()])
    assert got.shape == (len(natural), 2)


class _Stdin:
    """sys.stdin as the CLI sees it: text, with the bytes in `.buffer`."""

    def __init__(self, buffer):
        self.buffer = buffer


class _Reader:
    """A minimal byte stream: read() and nothing else (no `closed`)."""

    def __init__(self, data: bytes):
        self.data = io.BytesIO(data)

    def read(self, n=-1):
        return self.data.read(n)


def _wav_bytes(rng) -> tuple[np.ndarray, bytes]:
    x = (rng.standard_normal(300) * 0.1).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, x, 8000, format="WAV", subtype="FLOAT")
    return x, buf.getvalue()


def test_dash_reads_the_process_standard_input(rng, monkeypatch):
    x, data = _wav_bytes(rng)
    monkeypatch.setattr("sys.stdin", _Stdin(io.BytesIO(data)))
    inp = audio.open_input("-")
    np.testing.assert_array_equal(np.concatenate(list(audio.read_mono_blocks(inp, None))), x)
    inp = audio.open_input("-", stdin=_Reader(data))  # any object with read() will do
    assert (inp.name, inp.frames, inp.sample_rate) == ("<stdin>", 300, 8000)


def test_closed_or_missing_standard_input_is_one_message(monkeypatch):
    closed = io.BytesIO(b"RIFF")
    closed.close()
    for stdin in (_Stdin(closed), None):  # closed; no standard input at all (sys.stdin is None)
        monkeypatch.setattr("sys.stdin", stdin)
        with pytest.raises(MossepError) as e:
            audio.open_input("-")
        assert str(e.value) == "<stdin>: standard input is closed"
    with pytest.raises(MossepError) as e:
        audio.open_input("-", stdin=closed)
    assert str(e.value) == "<stdin>: standard input is closed"


def test_not_audio_quotes_libsndfile(tmp_path):
    bad = tmp_path / "text.wav"
    bad.write_text("not audio at all\n" * 10)
    with pytest.raises(MossepError) as e:
        audio.open_input(bad)
    assert str(e.value) == f"{bad}: not a readable audio file (Format not recognised.)"
