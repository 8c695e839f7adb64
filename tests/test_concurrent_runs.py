"""Concurrent runs: two `mossep batch` over the same trees each separate a file once and both exit 0 with an
honest summary; a claim dies with the process that held it, so a killed run never blocks a later one."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import soundfile as sf

from faults import leftovers, tone
from mossep import fsutil

# The CLI, with each separation logged (pid and file) and slowed, so that two runs overlap for sure.
_LOGGED = """
import os, sys, time
import mossep.separator as s
log = sys.argv[1]
real = s.Separator.separate_file
def separate_file(self, input_path, *a, **k):
    with open(log, "a") as f:
        f.write(f"{os.getpid()} {input_path}\\n")
    time.sleep(0.4)
    return real(self, input_path, *a, **k)
s.Separator.separate_file = separate_file
from mossep.cli import main
main(sys.argv[2:])
"""


def test_two_batches_on_the_same_tree_share_the_work(tmp_path, tiny_model_path):
    names = [f"f{i}" for i in range(6)]
    for n in names:
        tone(tmp_path / "in" / f"{n}.wav", seconds=0.5)
    log = tmp_path / "log.txt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["batch", tmp_path / "in", "-o", tmp_path / "out", "--model", tiny_model_path, "--device", "cpu", "--quiet"]
    procs = [subprocess.Popen([sys.executable, "-c", _LOGGED, str(log), *map(str, args)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err
        assert "Traceback" not in err and "already exists" not in err and "error" not in err
    done = [Path(line.split()[1]).stem for line in log.read_text().splitlines()]
    assert sorted(done) == names  # every file separated exactly once, by one run or the other
    totals = [0, 0, 0]
    for _, err in results:  # each run's summary adds up, and the two add up to the work done once
        m = re.search(r"6 files: (\d+) separated, (\d+) skipped \(outputs exist\), (?:(\d+) being separated by "
                      r"another run, )?0 failed", err)
        assert m, err
        counts = [int(g or 0) for g in m.groups()]
        assert sum(counts) == 6
        totals = [t + c for t, c in zip(totals, counts)]
    assert totals[0] == 6
    for n in names:
        for k in (1, 2):
            assert sf.info(tmp_path / "out" / f"{n}_spk{k}.wav").frames == 4000
    assert leftovers(tmp_path / "out") == []


_HOLDER = """
import sys, time
from mossep import fsutil
with fsutil.claimed(sys.argv[1], "x_spk1.wav") as mine:
    print(mine, flush=True)
    time.sleep(120)
"""


def test_a_claim_is_held_while_its_process_lives_and_freed_when_it_dies(tmp_path, monkeypatch):
    monkeypatch.setattr(fsutil, "STALE_SECONDS", 0.0)
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "True"
        with fsutil.claimed(tmp_path, "x_spk1.wav") as mine:
            assert not mine
        assert fsutil.remove_stale_temps(tmp_path) == []  # a live claim is never taken for a leftover
        with fsutil.claimed(tmp_path, "other.wav") as mine:  # claims are per piece of work
            assert mine
        proc.kill()  # SIGKILL: no clean-up at all
        proc.wait(timeout=60)
        (left,) = tmp_path.iterdir()
        assert fsutil.remove_stale_temps(tmp_path) == [left]  # a dead run's claim file goes with the next run
        start = time.monotonic()
        with fsutil.claimed(tmp_path, "x_spk1.wav") as mine:
            assert mine and time.monotonic() - start < 1.0  # no waiting for a timeout
        assert list(tmp_path.iterdir()) == []  # released claims leave no files
    finally:
        proc.kill()
