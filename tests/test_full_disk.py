"""A full disk: outputs into a small tmpfs (mounted by the test when it runs as root, skipped otherwise), and
stdout on /dev/full or closed. One line naming the cause ("disk full"), exit 1, no partial outputs."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from faults import leftovers, mossep, one_line_error, run, tone


@pytest.fixture()
def model(tiny_model_path) -> list[str]:
    return ["--model", str(tiny_model_path), "--device", "cpu", "--quiet"]


@pytest.fixture()
def small_disk(tmp_path):
    """mount(size) -> a folder on a fresh tmpfs of `size` bytes; unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted: list[Path] = []

    def mount(size: int) -> Path:
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", str(point)], check=False)


def _fill(folder: Path, leave: int) -> None:
    """Fill the file system of `folder` until about `leave` bytes are free."""
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    if free > leave:
        (folder / "filler").write_bytes(b"\0" * (free - leave))


def test_separate_onto_a_full_disk(tmp_path, capsys, model, small_disk):
    """No room even for the separated audio: one line that says so, nothing left."""
    disk = small_disk(1 << 20)
    src = tone(tmp_path / "x.wav", seconds=4.0)
    _fill(disk, 64 << 10)
    code, _, err = run(["separate", src, "-o", disk / "out", *model], capsys)
    one_line_error(code, err, "disk full")
    assert sorted(p.name for p in disk.iterdir()) == ["filler"]  # not even the output folder it made


def test_room_for_the_work_but_not_for_the_outputs(tmp_path, capsys, model, small_disk):
    """The separated audio (float32, both talkers) fits; the encoded outputs then do not: libsndfile's bare
    "System error" becomes "disk full", and no output appears."""
    disk = small_disk(4 << 20)
    src = tone(tmp_path / "x.wav", seconds=4.0)  # 32000 frames: 256 kB float32 for two talkers, 128 kB as PCM_16
    (disk / "out").mkdir()
    _fill(disk, 300 << 10)
    code, _, err = run(["separate", src, "-o", disk / "out", *model], capsys)
    one_line_error(code, err, "cannot write outputs", "disk full")  # failed at the encoding, as intended
    assert "System error" not in err
    assert list((disk / "out").iterdir()) == []


def test_batch_onto_a_full_disk_names_the_cause(tmp_path, capsys, model, small_disk):
    disk = small_disk(1 << 20)
    for name in ("a", "b"):
        tone(tmp_path / "in" / f"{name}.wav", seconds=4.0)
    (disk / "out").mkdir()
    _fill(disk, 64 << 10)
    code, _, err = run(["batch", tmp_path / "in", "-o", disk / "out", *model], capsys)
    lines = err.strip().splitlines()
    assert code == 1 and "Traceback" not in err, err
    assert sum("disk full" in line for line in lines) == 2, err
    assert "2 failed" in lines[-2] and not any("System error" in line for line in lines)
    assert [p for p in (disk / "out").rglob("*") if p.is_file()] == []


def test_stdout_on_a_full_device(tmp_path, tiny_model_path):
    """`--stdout >/dev/full`: one line naming the cause, not a traceback or a second 'Exception ignored'."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    src = tone(tmp_path / "x.wav")
    with open("/dev/full", "wb") as full:
        proc = mossep(["separate", src, "--stdout", "--model", tiny_model_path, "--device", "cpu", "--quiet"],
                      stdout=full, stderr=subprocess.PIPE)
    one_line_error(proc.returncode, proc.stderr, "output stream", "disk full")
    assert leftovers(tmp_path) == []


def test_stdout_closed(tmp_path, tiny_model_path):
    src = tone(tmp_path / "x.wav")
    proc = subprocess.run(f'"{sys.executable}" -m mossep separate "{src}" --stdout --model "{tiny_model_path}" '
                          "--device cpu >&-", shell=True, capture_output=False, stderr=subprocess.PIPE, text=True,
                          timeout=300)
    one_line_error(proc.returncode, proc.stderr, "standard output is closed")


def test_outputs_that_fit_are_written(tmp_path, capsys, model, small_disk):
    """The control: the same work on a disk with room succeeds, so the failures above are the disk's."""
    disk = small_disk(4 << 20)
    src = tone(tmp_path / "x.wav", seconds=4.0)
    code, _, err = run(["separate", src, "-o", disk / "out", *model], capsys)
    assert code == 0, err
    assert sf.info(disk / "out" / "x_spk2.wav").frames == 32000
    assert leftovers(disk) == []


@pytest.mark.parametrize("how", ["text", "torch"])
def test_single_files_onto_a_full_disk(small_disk, how):
    """Reports, checkpoints and training states (fsutil.atomic_path): one error naming the file and the cause."""
    import torch

    from mossep.errors import MossepError
    from mossep.fsutil import atomic_path

    disk = small_disk(1 << 20)
    _fill(disk, 64 << 10)
    target = disk / "state.pt"
    with pytest.raises(MossepError, match="state.pt: cannot write .*disk full"):
        with atomic_path(target) as tmp:
            if how == "text":
                tmp.write_bytes(b"x" * (256 << 10))
            else:
                torch.save({"w": torch.zeros(1 << 16)}, tmp)
    assert sorted(p.name for p in disk.iterdir()) == ["filler"]


def test_a_temp_folder_with_room_for_the_work_but_not_for_the_stdout_wav(tmp_path, small_disk, monkeypatch):
    """`--stdout` encodes its WAV in the temp folder next to the separated audio: when that fills up, one line
    naming the folder and the cause, nothing on the stream (it was soundfile's AssertionError, a traceback, when
    libsndfile wrote through a Python file object)."""
    import io

    import numpy as np

    from mossep.audio import SpeakerSink
    from mossep.errors import MossepError

    disk = small_disk(1 << 20)
    with SpeakerSink(2, tmp_path, expected=80000) as sink:  # the separated audio itself is elsewhere
        sink.write(np.full((2, 80000), 0.1, np.float32))
        _fill(disk, 64 << 10)
        monkeypatch.setattr("tempfile.tempdir", str(disk))
        out = io.BytesIO()
        with pytest.raises(MossepError) as e:
            sink.commit_stream(out, 8000, "PCM_16", "in.wav")
    assert str(e.value) == f"in.wav: cannot write the output WAV in {disk} (disk full (no space left on device))"
    assert out.getvalue() == b"" and sorted(p.name for p in disk.iterdir()) == ["filler"]


def test_outputs_onto_a_full_disk_say_disk_full_in_words(tmp_path, small_disk):
    """libsndfile's bare "System error" on a full disk becomes the cause, in these words."""
    import numpy as np

    from mossep.audio import SpeakerSink
    from mossep.errors import MossepError

    disk = small_disk(1 << 20)
    _fill(disk, 32 << 10)
    with SpeakerSink(2, tmp_path, expected=80000) as sink:
        sink.write(np.full((2, 80000), 0.1, np.float32))
        with pytest.raises(MossepError) as e:
            sink.commit_files([disk / "a.wav", disk / "b.wav"], 8000, "wav", "PCM_16", False, "in.wav")
    assert str(e.value) == f"in.wav: cannot write outputs in {disk} (disk full (no space left on device)); none were written"
    assert sorted(p.name for p in disk.iterdir()) == ["filler"]


def test_a_read_only_output_folder_is_refused_up_front(small_disk):
    """check_writable_dir proves the folder it is given (root writes anywhere, so a read-only mount)."""
    from mossep.audio import check_writable_dir
    from mossep.errors import MossepError

    disk = small_disk(1 << 20)
    if subprocess.run(["mount", "-o", "remount,ro", str(disk)], capture_output=True).returncode != 0:
        pytest.skip("cannot remount the tmpfs read-only")
    with pytest.raises(MossepError) as e:
        check_writable_dir(disk)
    assert str(e.value) == f"{disk}: output directory is not writable (read-only file system)"
