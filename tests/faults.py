"""Helpers shared by the CLI and fault-injection tests (test_bad_*, test_full_disk, test_signals, test_concurrent_runs,
test_cli_*, test_three_talkers, test_file_paths): the CLI in-process or as a child process, short test signals, and checks for leftovers."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from mossep.cli import main


def cli(args: list) -> int:
    """`mossep ARGS` in this process: its exit status."""
    try:
        main([str(a) for a in args])
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0


def run(args: list, capsys) -> tuple[int, str | bytes, str]:
    """`mossep ARGS` in this process: (exit status, stdout, stderr); stdout is bytes under capsysbinary."""
    code = cli(args)
    out, err = capsys.readouterr()
    return code, out, err.decode() if isinstance(err, bytes) else err


def mossep(args: list, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """`mossep ARGS` as a child process (text output, one thread)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **kwargs.pop("env", {})}
    if "stdout" not in kwargs and "stderr" not in kwargs:
        kwargs.setdefault("capture_output", True)
    return subprocess.run([sys.executable, "-m", "mossep", *map(str, args)], text=True, env=env, timeout=timeout,
                          **kwargs)


def tone(path: Path, seconds: float = 1.0, rate: int = 8000, level: float = 1.0, subtype: str | None = None) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    x = level * (0.3 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 347 * t + 1.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, rate, subtype=subtype)
    return path


def one_line_error(code: int, err: str, *words: str) -> None:
    """Exit status 1 and exactly one line on stderr, an error that contains every one of `words`."""
    lines = err.strip().splitlines()
    assert code == 1, err
    assert len(lines) == 1 and lines[0].startswith("mossep: error: "), err
    for w in words:
        assert w in lines[0], (w, lines[0])


def leftovers(root: Path) -> list[Path]:
    """Temporary files, commit journals and claims under `root` (none may survive a finished run)."""
    return [p for p in root.rglob("*") if p.name.endswith((".part", ".commit")) or p.name.startswith(".mossep-")]
