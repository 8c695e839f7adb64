"""mossep.memory: the `mossep` program keeps freed memory for reuse, so a chunk's large activations do not come
back from the kernel as fresh pages every time (issue 18: 22-35 % of a 16 s forward at the published size)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from mossep import cli

_FAULTS = """
import resource, sys
import numpy as np
from mossep.memory import reuse_freed_memory
ok = reuse_freed_memory() if sys.argv[1] == "reuse" else None
def touch():  # a 64 MiB block, written, freed: above glibc's largest mmap threshold
    a = np.empty(64 << 20, np.uint8)
    a[::4096] = 1
    del a
touch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    touch()
print(ok, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_blocks_are_reused_instead_of_faulted_in_again():
    def faults(mode: str) -> tuple[str, int]:
        out = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True)
        ok, n = out.stdout.split()
        return ok, int(n)

    ok, reused = faults("reuse")
    _, plain = faults("plain")
    assert ok == "True"
    assert plain >= 5 * 32  # each block's pages faulted in again (at least one per 2 MiB, with huge pages)
    assert reused < plain / 20


def test_only_the_program_entry_point_changes_the_allocator(monkeypatch):
    calls = []
    monkeypatch.setattr(cli, "reuse_freed_memory", lambda: calls.append(1))
    monkeypatch.setattr(cli, "app", lambda *a, **k: None)
    cli.main(["info"])  # a caller's main([...]) in its own process: left alone
    assert calls == []
    monkeypatch.setattr(sys, "argv", ["mossep", "info"])
    cli.main()
    assert calls == [1]
