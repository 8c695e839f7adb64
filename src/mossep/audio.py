"""Audio input and output in blocks, so that memory does not grow with the recording length.

Input: any file libsndfile reads (or "-" for a WAV/FLAC stream on stdin), checked up front and block by
block (NaN/Inf); downmixed or one channel picked; resampled with soxr's streaming resampler.
Output: the speakers' signals go to one raw float32 temporary file while their peak is tracked; at the end
they are scaled down together if they would clip, converted to the requested format and renamed into place
(all outputs or none).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator

import numpy as np
import soundfile as sf
import soxr

from .errors import MossepError
from .fsutil import atomic_paths, check_writable, disk_full, os_error_text

STDIN = "-"
BLOCK_FRAMES = 1 << 16
PEAK_LIMIT = 0.999  # outputs are scaled so that no sample exceeds this (just under PCM full scale)
FORMATS = {"wav": "WAV", "flac": "FLAC"}
SUBTYPES = ("PCM_16", "PCM_24", "FLOAT")


@dataclass
class InputAudio:
    """An opened input: `name` is used in messages, `stem` in output names."""

    name: str
    stem: str
    sample_rate: int
    channels: int
    frames: int
    source: str | BinaryIO  # a path, or stdin spooled to an anonymous temporary file

    def open(self) -> sf.SoundFile:
        if not isinstance(self.source, str):
            self.source.seek(0)
        return sf.SoundFile(self.source)

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate


def _sf_reason(e: Exception) -> str:
    text = str(e).strip().splitlines()
    msg = text[-1] if text else type(e).__name__
    return msg.split(": ", 1)[-1] if msg.startswith("Error opening") else msg


def spool(stream: BinaryIO, name: str = "<stdin>") -> BinaryIO:
    """Copy a stream, block by block, to an anonymous temporary file (it has no name, so nothing is left
    behind even by a killed process) and return it at position 0: libsndfile needs to seek, and memory
    must not grow with the length of the recording."""
    try:
        tmp = tempfile.TemporaryFile()
    except OSError as e:
        raise MossepError(f"{name}: cannot buffer the stream in {tempfile.gettempdir()} ({os_error_text(e)})") from None
    try:
        shutil.copyfileobj(stream, tmp, BLOCK_FRAMES * 16)
        tmp.seek(0)
    except OSError as e:
        tmp.close()
        where = f"buffering it in {tempfile.gettempdir()}: " if e.errno is not None else ""
        raise MossepError(f"{name}: cannot read the stream ({where}{os_error_text(e)})") from None
    except BaseException:
        tmp.close()
        raise
    return tmp


def open_input(path: str | Path, stdin: BinaryIO | None = None) -> InputAudio:
    """Check that `path` is a readable, non-empty audio file and read its header ("-": stdin, spooled to an
    anonymous temporary file so that memory does not grow with its length)."""
    if str(path) == STDIN:
        stream = stdin if stdin is not None else getattr(sys.stdin, "buffer", None)
        if stream is None or getattr(stream, "closed", False):
            raise MossepError("<stdin>: standard input is closed")
        data = spool(stream)
        name, stem, source = "<stdin>", "stdin", data
    else:
        p = Path(path)
        name, stem, source = str(p), p.stem, str(p)
        if not p.exists():
            raise MossepError(f"{p}: no such file")
        if p.is_dir():
            raise MossepError(f"{p}: is a directory, not an audio file")
    try:
        if not isinstance(source, str) and not os.fstat(source.fileno()).st_size:
            raise MossepError(f"{name}: no data on standard input")
        with sf.SoundFile(source) as f:
            info = (f.samplerate, f.channels, f.frames)
    except MossepError:
        raise
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise MossepError(f"{name}: not a readable audio file ({_sf_reason(e)})") from None
    except OSError as e:
        raise MossepError(f"{name}: cannot read ({e.strerror or e})") from None
    rate, channels, frames = info
    if frames <= 0:
        raise MossepError(f"{name}: contains no audio samples")
    return InputAudio(name, stem, int(rate), int(channels), int(frames), source)


def check_channel(name: str, channels: int, channel: int | None) -> None:
    """`channel` (1 = first; None = the downmix) must exist in an input with `channels` channels."""
    if channel is not None and not 1 <= channel <= channels:
        raise MossepError(f"{name}: has {channels} channel(s); --channel {channel} does not exist")


def select_channel(block: np.ndarray, channel: int | None, name: str = "input") -> np.ndarray:
    """[t, ch] -> [t]: the mean of the channels, or channel number `channel` (1 = first)."""
    if block.ndim == 1:
        block = block[:, None]
    if channel is None:
        return block.mean(axis=1, dtype=np.float64).astype(np.float32)
    check_channel(name, block.shape[1], channel)
    return np.ascontiguousarray(block[:, channel - 1], dtype=np.float32)


def check_finite(block: np.ndarray, name: str) -> None:
    if not np.all(np.isfinite(block)):
        raise MossepError(f"{name}: contains NaN or infinite samples")


def read_mono_blocks(inp: InputAudio, channel: int | None, block_frames: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
    """The input as float32 mono blocks at its own rate, each checked for NaN/Inf."""
    check_channel(inp.name, inp.channels, channel)
    try:
        with inp.open() as f:
            while True:
                block = f.read(block_frames, dtype="float32", always_2d=True)
                if not len(block):
                    break
                check_finite(block, inp.name)
                yield select_channel(block, channel, inp.name)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise MossepError(f"{inp.name}: cannot read audio ({_sf_reason(e)})") from None


def resampled_length(n: int, from_rate: int, to_rate: int) -> int:
    return int(round(n * to_rate / from_rate))


class StreamResampler:
    """soxr's streaming resampler that returns exactly `expected` samples in total (when given).

    Works on [t] (mono) or [t, ch] blocks; passes blocks through when the rates are equal.
    """

    def __init__(self, from_rate: int, to_rate: int, channels: int = 1, expected: int | None = None):
        self.same = from_rate == to_rate
        self.stream = None if self.same else soxr.ResampleStream(from_rate, to_rate, channels, dtype="float32",
                                                                 quality="HQ")
        self.channels = channels
        self.ndim = 1 if channels == 1 else 2
        self.expected = expected
        self.count = 0

    def _limit(self, y: np.ndarray) -> np.ndarray:
        if self.expected is not None:
            y = y[: max(self.expected - self.count, 0)]
        self.count += len(y)
        return y

    def process(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        self.ndim = x.ndim
        return self._limit(x if self.same else self.stream.resample_chunk(x))

    def flush(self) -> np.ndarray:
        shape = (0,) if self.ndim == 1 else (0, self.channels)
        y = np.zeros(shape, np.float32) if self.same else self.stream.resample_chunk(np.zeros(shape, np.float32), last=True)
        y = self._limit(y)
        if self.expected is not None and self.count < self.expected:
            pad = self.expected - self.count
            y = np.concatenate([y, np.zeros((pad,) + y.shape[1:], np.float32)])
            self.count += pad
        return y


def resample_blocks(blocks: Iterable[np.ndarray], from_rate: int, to_rate: int,
                    expected: int | None = None) -> Iterator[np.ndarray]:
    """Resample a stream of mono blocks; empty blocks are not yielded."""
    rs = StreamResampler(from_rate, to_rate, 1, expected)
    for b in blocks:
        y = rs.process(b)
        if len(y):
            yield y
    y = rs.flush()
    if len(y):
        yield y


def check_output_format(fmt: str, subtype: str) -> str:
    """Validate (format, subtype); returns libsndfile's format name."""
    if fmt.lower() not in FORMATS:
        raise MossepError(f"unknown output format {fmt!r} (choose {', '.join(FORMATS)})")
    if subtype not in SUBTYPES:
        raise MossepError(f"unknown subtype {subtype!r} (choose {', '.join(SUBTYPES)})")
    major = FORMATS[fmt.lower()]
    if not sf.check_format(major, subtype):
        raise MossepError(f"format {fmt} cannot store {subtype} samples")
    return major


def peak_gain(peak: float, limit: float = PEAK_LIMIT) -> float:
    """The gain (<= 1) that brings `peak` down to `limit`."""
    return 1.0 if peak <= limit else limit / peak


def check_writable_dir(out_dir: Path) -> None:
    """Create `out_dir` if needed and prove it is writable by creating (and removing) a file there."""
    if out_dir.exists() and not out_dir.is_dir():
        raise MossepError(f"{out_dir}: output folder is a file, not a directory")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MossepError(f"{out_dir}: output directory is not writable ({e.strerror or e})") from None
    check_writable(out_dir)


class SpeakerSink:
    """Collects [C, t] blocks of the separated speakers in a raw float32 temporary file, tracking the peak.

    `commit_files` / `commit_stream` write the final outputs (scaled together to avoid clipping).
    Use as a context manager: the temporary file is always removed.
    """

    def __init__(self, num_spks: int, tmp_dir: Path | None, expected: int | None = None, limit_peak: bool = True):
        """limit_peak: scale all outputs down together if they would exceed PEAK_LIMIT (off: written as they are)."""
        self.C = num_spks
        self.limit_peak = limit_peak
        self.expected = expected
        self.where = Path(tmp_dir if tmp_dir is not None else tempfile.gettempdir())
        try:  # anonymous (no name on disk), so even a SIGKILL leaves nothing behind
            self.file = tempfile.TemporaryFile(dir=tmp_dir, prefix=".mossep-", suffix=".part")
        except OSError as e:
            raise MossepError(f"{self.where}: cannot write there ({os_error_text(e)})") from None
        self.frames = 0
        self.peak = 0.0

    def __enter__(self) -> "SpeakerSink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if not self.file.closed:
            with contextlib.suppress(OSError):  # a full disk may refuse the last flush; the file goes anyway
                self.file.close()

    def write(self, block: np.ndarray) -> None:
        """Append block [C, t]; anything past `expected` frames is dropped. A non-finite sample is refused
        (MossepError): no output ever holds NaN or infinity."""
        frames = np.ascontiguousarray(np.asarray(block, dtype=np.float32).T)
        if self.expected is not None:
            frames = frames[: max(self.expected - self.frames, 0)]
        if len(frames):
            if not np.all(np.isfinite(frames)):
                raise MossepError("the separated speakers contain NaN or infinite samples (a broken checkpoint, "
                                  "or input the model cannot handle); nothing was written")
            self.peak = max(self.peak, float(np.abs(frames).max()))
            try:
                self.file.write(frames.tobytes())
            except OSError as e:
                raise MossepError(f"{self.where}: cannot write ({os_error_text(e)})") from None
            self.frames += len(frames)

    def pad_to_expected(self) -> None:
        if self.expected is not None and self.frames < self.expected:
            self.write(np.zeros((self.C, self.expected - self.frames), np.float32))

    def blocks(self, gain: float, block_frames: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
        """The stored frames [t, C], times `gain`."""
        try:
            self.file.flush()
        except OSError as e:
            raise MossepError(f"{self.where}: cannot write ({os_error_text(e)})") from None
        self.file.seek(0)
        while True:
            raw = self.file.read(block_frames * self.C * 4)
            if not raw:
                return
            yield np.frombuffer(raw, dtype=np.float32).reshape(-1, self.C) * np.float32(gain)

    def _gain(self, name: str, note: Callable[[str], None] | None) -> float:
        gain = peak_gain(self.peak) if self.limit_peak else 1.0
        if gain < 1.0 and note is not None:
            note(f"{name}: separated speakers peaked at {self.peak:.3f}; scaled all outputs by "
                 f"{20 * np.log10(gain):.1f} dB to avoid clipping")
        return gain

    def commit_files(self, paths: list[Path], rate: int, fmt: str, subtype: str, overwrite: bool, name: str,
                     note: Callable[[str], None] | None = None) -> None:
        """Write speaker k to paths[k]; all are renamed into place only after all were written (fsutil.atomic_paths:
        without overwrite, a set that a killed process left incomplete is finished, anything else refused)."""
        self.pad_to_expected()
        major = check_output_format(fmt, subtype)
        gain = self._gain(name, note)
        folder = paths[0].parent
        try:
            with contextlib.ExitStack() as stack:
                try:
                    tmps = stack.enter_context(atomic_paths(paths, overwrite=overwrite))
                except FileExistsError as e:
                    raise MossepError(f"{e}: already exists (use --overwrite)") from None
                outs = [stack.enter_context(sf.SoundFile(str(t), "w", rate, 1, subtype, format=major)) for t in tmps]
                for block in self.blocks(gain):
                    for k, out in enumerate(outs):
                        out.write(block[:, k])
                for out in outs:
                    out.close()
        except OSError as e:
            raise MossepError(f"{name}: cannot write outputs in {folder} ({os_error_text(e)}); none were "
                              "written") from None
        except (sf.LibsndfileError, RuntimeError) as e:  # libsndfile says only "System error" for a full disk
            cause = "disk full (no space left on device)" if disk_full(folder) else _sf_reason(e)
            raise MossepError(f"{name}: cannot write outputs in {folder} ({cause}); none were written") from None

    def commit_stream(self, stream: BinaryIO, rate: int, subtype: str, name: str,
                      note: Callable[[str], None] | None = None) -> None:
        """Write one WAV with channel k = speaker k to `stream` (may be a pipe)."""
        self.pad_to_expected()
        check_output_format("wav", subtype)
        gain = self._gain(name, note)
        try:  # anonymous, like the sink's own file; libsndfile writes the header's sizes by seeking back
            wav = tempfile.TemporaryFile(prefix=".mossep-", suffix=".wav.part")
        except OSError as e:
            raise MossepError(f"{tempfile.gettempdir()}: cannot write there ({os_error_text(e)})") from None
        with wav:
            try:  # libsndfile writes to the descriptor itself: through a Python file object, a full disk would
                # surface as soundfile's AssertionError (a traceback), not as a libsndfile error
                with sf.SoundFile(wav.fileno(), "w", rate, self.C, subtype, format="WAV", closefd=False) as out:
                    for block in self.blocks(gain):
                        out.write(block)
            except (sf.LibsndfileError, RuntimeError, OSError) as e:
                where = tempfile.gettempdir()
                cause = ("disk full (no space left on device)" if disk_full(where) else
                         os_error_text(e) if isinstance(e, OSError) else _sf_reason(e))
                raise MossepError(f"{name}: cannot write the output WAV in {where} ({cause})") from None
            wav.seek(0)
            try:
                shutil.copyfileobj(wav, stream)
                stream.flush()
            except (OSError, ValueError) as e:  # ValueError: the stream was closed
                cause = os_error_text(e) if isinstance(e, OSError) else "it is closed"
                raise MossepError(f"{name}: cannot write to the output stream ({cause})") from None
