"""Property-based tests (hypothesis) for the audio readers and the output file-name templates.

Audio: any valid WAV or FLAC file (any rate the format allows, 1-8 channels, every PCM/float subtype, any
length) reads back, block by block and channel by channel, exactly as soundfile reads it, and within the
subtype's quantisation of what was written; random bytes, truncated files and empty files give a
MossepError and never any other exception.
Templates: output_names never names a path outside the output folder (nor the folder itself), and gives
distinct names to distinct speakers, or raises a MossepError.
"""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mossep.audio import STDIN, open_input, read_mono_blocks
from mossep.errors import MossepError
from mossep.separator import output_names

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# subtype -> largest error of a value in [-1, 1) after writing (one quantisation step)
WAV_SUBTYPES = {"PCM_U8": 2 / 255, "PCM_16": 2 ** -15, "PCM_24": 2 ** -23, "PCM_32": 2 ** -31, "FLOAT": 0.0,
                "DOUBLE": 2 ** -24}  # DOUBLE: read back as float32
FLAC_SUBTYPES = {"PCM_S8": 2 ** -7, "PCM_16": 2 ** -15, "PCM_24": 2 ** -23}


@st.composite
def audio_files(draw):
    """(format, subtype, rate, samples [frames, channels] in [-1, 1))."""
    fmt = draw(st.sampled_from(["WAV", "FLAC"]))
    subtype = draw(st.sampled_from(sorted(WAV_SUBTYPES if fmt == "WAV" else FLAC_SUBTYPES)))
    # FLAC stores any rate up to 65535 Hz, above that multiples of 10 Hz up to 655350 Hz
    flac_rates = st.integers(1, 65_535) | st.integers(6_554, 65_535).map(lambda r: 10 * r)
    rate = draw(flac_rates if fmt == "FLAC" else st.integers(1, 2 ** 20))
    channels = draw(st.integers(1, 8))
    frames = draw(st.integers(1, 3000))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    kind = draw(st.sampled_from(["noise", "full scale", "silence", "tone"]))
    rng = np.random.default_rng(seed)
    if kind == "noise":
        x = rng.uniform(-1, 1, (frames, channels))
    elif kind == "full scale":
        x = rng.choice([-1.0, 1.0 - 2 ** -15], (frames, channels))
    elif kind == "silence":
        x = np.zeros((frames, channels))
    else:
        x = 0.5 * np.sin(np.arange(frames)[:, None] * (0.01 + np.arange(channels)))
    return fmt, subtype, rate, x.astype(np.float32)


def _write(folder: Path, fmt: str, subtype: str, rate: int, x: np.ndarray) -> Path:
    path = folder / f"clip.{fmt.lower()}"
    sf.write(path, x, rate, format=fmt, subtype=subtype)
    return path


def _open(path: Path, via_stdin: bool):
    """open_input of the file, or of its bytes arriving on standard input ("-")."""
    return open_input(STDIN, stdin=io.BytesIO(path.read_bytes())) if via_stdin else open_input(path)


def _read_all(path, channel, block_frames, via_stdin=False) -> np.ndarray:
    blocks = list(read_mono_blocks(_open(path, via_stdin), channel, block_frames=block_frames))
    return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)


@SETTINGS
@given(audio_files(), st.integers(1, 5000), st.booleans())
def test_valid_files_read_back_as_written(audio, block_frames, via_stdin):
    fmt, subtype, rate, x = audio
    with tempfile.TemporaryDirectory() as d:
        path = _write(Path(d), fmt, subtype, rate, x)
        reference = sf.read(path, dtype="float32", always_2d=True)[0]
        inp = _open(path, via_stdin)
        assert (inp.sample_rate, inp.channels, inp.frames) == (rate, x.shape[1], len(x))
        step = (WAV_SUBTYPES if fmt == "WAV" else FLAC_SUBTYPES)[subtype]
        for c in range(1, x.shape[1] + 1):
            got = _read_all(path, c, block_frames, via_stdin)
            assert got.dtype == np.float32 and np.array_equal(got, reference[:, c - 1])
            assert np.max(np.abs(got - x[:, c - 1])) <= step * 1.0001 + 1e-12
        mono = _read_all(path, None, block_frames, via_stdin)
        assert np.allclose(mono, reference.astype(np.float64).mean(axis=1), atol=1e-6)


def _must_fail_cleanly(data: bytes, name: str) -> None:
    """Open and read `data` as a file called `name`, and as standard input: a MossepError naming it, or finite
    float32 audio; nothing else."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / name
        path.write_bytes(data)
        for via_stdin in (False, True):
            try:
                inp = _open(path, via_stdin)
                for block in read_mono_blocks(inp, None, block_frames=777):
                    assert block.dtype == np.float32 and np.all(np.isfinite(block))
            except MossepError as e:
                assert "\n" not in str(e) and ("<stdin>" if via_stdin else str(path)) in str(e)


HEADERS = [b"", b"RIFF", b"RIFF\xff\xff\xff\xffWAVEfmt ", b"fLaC", b"fLaC\x00\x00\x00\x22", b"OggS", b"FORM"]


@SETTINGS
@given(st.sampled_from(HEADERS), st.binary(max_size=3000), st.sampled_from(["x.wav", "x.flac", "x.ogg", "x"]))
def test_random_bytes_give_a_mossep_error(header, body, name):
    _must_fail_cleanly(header + body, name)


@SETTINGS
@given(audio_files(), st.floats(0, 1), st.binary(max_size=64))
def test_truncated_and_corrupted_files_give_a_mossep_error(audio, cut, tail):
    fmt, subtype, rate, x = audio
    buf = io.BytesIO()
    sf.write(buf, x, rate, format=fmt, subtype=subtype)
    data = buf.getvalue()
    _must_fail_cleanly(data[: int(cut * len(data))] + tail, f"clip.{fmt.lower()}")


@pytest.mark.parametrize("name", ["empty.wav", "empty.flac", "empty"])
def test_empty_files_give_a_mossep_error(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(MossepError, match="empty|no audio|not a readable"):
        open_input(tmp_path / name)
    with pytest.raises(MossepError, match="<stdin>: no data on standard input"):
        open_input(STDIN, stdin=io.BytesIO(b""))


# ---------------------------------------------------------------- output file-name templates

# pieces of templates: fields (with conversions and format specs) and text that tries to leave the folder
FIELDS = ["{stem}", "{k}", "{ext}", "{k:02d}", "{k:>3}", "{k!s:.0}", "{k!r}", "{stem!s:.0}", "{stem:.2}",
          "{k:x}", "{k:c}", "{k:.0}", "{0}", "{}", "{k.real}", "{stem[0]}", "{", "}", "{{", "}}", "{k!z}"]
TEXT = ["/", "..", ".", "../", "./", "//", "\\", "~", "_spk", ".wav", " ", "a", "\x00", "é", ":", "*"]
STEM_CHARS = st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",))


@SETTINGS
@given(st.lists(st.sampled_from(FIELDS + TEXT), min_size=0, max_size=8).map("".join),
       st.text(STEM_CHARS, min_size=1, max_size=12).filter(lambda s: s not in (".", "..")),
       st.text(STEM_CHARS, max_size=5).filter(lambda s: s not in (".", "..")),
       st.integers(1, 6), st.sampled_from(["wav", "flac"]))
@example("{k!s:.0}.", "a", "", 1, "wav")  # "." : the output folder itself
@example("x/{k!s:.0}..", "a", "", 1, "wav")  # "x/..": the folder again
@example("{k}\x00", "a", "", 1, "wav")  # a NUL: no file system takes it
@example("{stem}{k!s:.0}", "a", "", 2, "wav")  # two speakers, one name
@example("../{stem}_{k}", "a", "", 2, "wav")
def test_output_names_stay_inside_and_are_distinct(template, stem, ext, speakers, fmt):
    try:
        names = output_names(template, stem, speakers, fmt, ext)
    except MossepError as e:
        assert "\n" not in str(e)
        return
    assert len(names) == speakers
    out = Path("/srv/out")
    paths = [os.path.normpath(out / n) for n in names]
    assert len(set(paths)) == speakers, names  # distinct files, not only distinct strings
    for n, p in zip(names, paths):
        assert "\x00" not in n
        assert os.path.commonpath([p, str(out)]) == str(out) and p != str(out), (template, n)
        assert Path(n).name not in ("", ".", ".."), (template, n)


@SETTINGS
@given(st.integers(1, 16), st.text(STEM_CHARS, min_size=1, max_size=20).filter(lambda s: s not in (".", "..")))
def test_the_default_template_names_every_speaker(speakers, stem):
    names = output_names("{stem}_spk{k}.wav", stem, speakers)
    assert names == [f"{stem}_spk{k}.wav" for k in range(1, speakers + 1)]
