"""Signals: SIGINT and SIGTERM stop a batch with one line and 128 + signal, SIGKILL at any moment leaves nothing a
rerun trips over (no .part files survive it, an interrupted set is finished), and a live run's files are never
taken for leftovers."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf

from faults import leftovers, mossep, tone
from mossep import fsutil

# Runs the CLI with a hook: once `when` happens, touch MARK and sleep, so the test can signal it right there.
_HOOKED = """
import os, sys, time
from pathlib import Path
import mossep.separator as s, mossep.fsutil as fsutil
mark, when = Path(sys.argv[1]), sys.argv[2]
def hold():
    mark.touch()
    time.sleep(60)
if when == "forward":  # in the middle of a recording's separation (the second file)
    real_forward, calls = s.Separator._forward, []
    def forward(self, audios):
        calls.append(1)
        if len(calls) == 2:
            hold()
        return real_forward(self, audios)
    s.Separator._forward = forward
else:  # "encode": while the outputs are being written under their temporary names
    real_temp = fsutil._temp_next_to
    def temp(path):
        t = real_temp(path)
        if path.name.endswith("_spk2.wav"):
            hold()
        return t
    fsutil._temp_next_to = temp
from mossep.cli import main
main(sys.argv[3:])
"""


def _tree(root: Path) -> list[Path]:
    return [tone(root / "a.wav", seconds=1.0), tone(root / "sub" / "b.wav", seconds=1.0),
            tone(root / "c.wav", seconds=1.0)]


def _start(tmp_path: Path, when: str, args: list) -> tuple[subprocess.Popen, Path]:
    mark = tmp_path / "reached"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", _HOOKED, str(mark), when, *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 240
    while not mark.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the hook was never reached"
        time.sleep(0.05)
    return proc, mark


def _batch_args(tmp_path: Path, model: Path) -> list:
    return ["batch", tmp_path / "in", "-o", tmp_path / "out", "--model", model, "--device", "cpu",
            "--chunk-seconds", "0.5", "--overlap-seconds", "0.1", "--quiet"]


def _complete(out: Path) -> None:
    for rel in ("a", "sub/b", "c"):
        for k in (1, 2):
            assert sf.info(out / f"{rel}_spk{k}.wav").frames == 8000


@pytest.mark.slow  # (two child runs each; the CLI's handling of both signals is in the default suite too)
@pytest.mark.parametrize("sig, code, word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_stop_signals_in_a_batch(tmp_path, tiny_model_path, sig, code, word):
    _tree(tmp_path / "in")
    proc, _ = _start(tmp_path, "forward", _batch_args(tmp_path, tiny_model_path))
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert err.strip().splitlines() == [f"mossep: {word}"]
    assert leftovers(tmp_path / "out") == []  # no temporary files, journals or claims
    rerun = mossep(_batch_args(tmp_path, tiny_model_path))
    assert rerun.returncode == 0, rerun.stderr
    _complete(tmp_path / "out")


@pytest.mark.parametrize("when", [pytest.param("forward", marks=pytest.mark.slow), "encode"])
def test_sigkill_then_rerun(tmp_path, tiny_model_path, when):
    """SIGKILL while separating (the sink's file has no name: nothing is left) or while encoding the outputs
    (their temporary files are left, unlocked): the rerun removes what was left and finishes every file."""
    _tree(tmp_path / "in")
    proc, _ = _start(tmp_path, when, _batch_args(tmp_path, tiny_model_path))
    proc.kill()
    proc.communicate(timeout=60)
    left = [p for p in leftovers(tmp_path / "out") if p.name.endswith(".part")]
    assert bool(left) == (when == "encode")
    time.sleep(fsutil.STALE_SECONDS)
    rerun = mossep(_batch_args(tmp_path, tiny_model_path))
    assert rerun.returncode == 0, rerun.stderr
    assert "0 failed" in rerun.stderr
    _complete(tmp_path / "out")
    assert leftovers(tmp_path / "out") == []


_HOLDER = """
import sys, time
from pathlib import Path
from mossep import fsutil
print(fsutil._temp_next_to(Path(sys.argv[1]))[0], flush=True)
time.sleep(120)
"""


def test_a_live_runs_temporary_file_is_never_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(fsutil, "STALE_SECONDS", 0.0)
    old = tmp_path / ".mossep-0123abcd.part"  # left by an earlier version's sink: nobody holds it
    old.write_bytes(b"x")
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(tmp_path / "x_spk1.wav")], stdout=subprocess.PIPE,
                            text=True)
    try:
        held = Path(proc.stdout.readline().strip())
        assert held.exists() and held.name.startswith(".x_spk1.wav.")
        assert fsutil.remove_stale_temps(tmp_path, ["x_spk1.wav"]) == [old]
        assert held.exists()  # its owner is alive
        proc.kill()
        proc.wait(timeout=60)
        assert fsutil.remove_stale_temps(tmp_path, ["x_spk1.wav"]) == [held]
        assert not held.exists()
    finally:
        proc.kill()
