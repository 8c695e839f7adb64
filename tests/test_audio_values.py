"""mossep.audio's messages and stream handling, by value (what a user reads and gets): the libsndfile reason
quoted in one line, stdin buffering failures, the clipping note of a stream output."""
from __future__ import annotations

import errno
import io

import numpy as np
import pytest
import soundfile as sf

from mossep import audio
from mossep.errors import MossepError


@pytest.mark.parametrize("text, want", [
    ("Error opening 'a.wav': Format not recognised.", "Format not recognised."),
    ("Error opening 'a.wav': System error: No such file.", "System error: No such file."),  # only the prefix goes
    ("first line\nInternal error: bad header", "Internal error: bad header"),  # the last line, kept whole
    ("  \n ", "RuntimeError"),
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
    assert len(notes) == 1 and notes[0].startswith("in.wav: separated speakers peaked at 2.000")
    y, sr = sf.read(io.BytesIO(out.getvalue()), dtype="float32")
    assert sr == 8000 and y.shape == (100, 2)
    np.testing.assert_allclose(y, audio.PEAK_LIMIT, rtol=1e-6)
