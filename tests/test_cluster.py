"""`mossep batch --ray` (mossep.cluster) on a real Ray cluster started here (`ray start --head` on 127.0.0.1, in a
temporary folder, 2 CPUs, stopped afterwards): the same files as a local batch, byte for byte; a worker killed
mid-file has its file finished by another worker; a killed driver leaves only complete outputs and a rerun
finishes the rest without redoing anything. Without Ray installed, --ray is one line saying how to install it."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import secrets
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from faults import leftovers, mossep, one_line_error, run
from mossep.cli import with_optional_values


def test_ray_option_value_may_be_left_out():
    assert with_optional_values(["batch", "d", "-o", "o", "--ray"]) == ["batch", "d", "-o", "o", "--ray", "local"]
    assert with_optional_values(["batch", "d", "--ray", "-o", "o"]) == ["batch", "d", "--ray", "local", "-o", "o"]
    assert with_optional_values(["batch", "d", "--ray", "auto"]) == ["batch", "d", "--ray", "auto"]
    assert with_optional_values(["batch", "d", "--ray=10.0.0.1:6379"]) == ["batch", "d", "--ray=10.0.0.1:6379"]


def test_ray_missing_is_one_line_how_to_install(tmp_path, capsys, monkeypatch, tiny_model_path):
    _noise(tmp_path / "in" / "a.wav", 1, 0)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    code, _, err = run(["batch", tmp_path / "in", "-o", tmp_path / "out", "--model", tiny_model_path, "--ray"], capsys)
    one_line_error(code, err, "pip install 'mossep[ray]'")
    assert not (tmp_path / "out").exists()


# -- a real cluster ------------------------------------------------------------------------------------------

RAY = Path(sys.executable).parent / "ray"  # the `ray` command of this environment (mossep[ray])
needs_ray = pytest.mark.skipif(not RAY.exists(), reason="Ray not installed (pip install 'mossep[ray]')")


# Ray >= 2.59 authenticates with a token; the cluster and its drivers share this one (no file in $HOME)
RAY_ENV = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32), "RAY_USAGE_STATS_ENABLED": "0"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    """The address of a one-node Ray cluster with 2 CPUs, stopped (its process group ended) afterwards."""
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths live under it
    port = _free_port()
    head = subprocess.Popen([str(RAY), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
                             "--port", str(port), "--num-cpus", "2", "--include-dashboard=false",
                             "--disable-usage-stats", "--temp-dir", temp],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, **RAY_ENV})
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while not _accepts(port):
            assert head.poll() is None and time.monotonic() < deadline, "ray start failed"
            time.sleep(0.5)
        yield address
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # `ray start --block` stops the processes it started
        try:
            head.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        shutil.rmtree(temp, ignore_errors=True)


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _noise(path: Path, seconds: float, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, 0.1 * np.random.default_rng(seed).standard_normal(int(8000 * seconds)), 8000)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def short_files(tmp_path_factory, tiny_model_path):
    """A dozen short files in a tree and a broken one, and what a local batch writes and says for them."""
    root = tmp_path_factory.mktemp("short")
    for i in range(12):
        _noise(root / "in" / f"day{i % 3}" / f"call{i}.wav", 1 + i % 4, i)
    (root / "in" / "day1" / "broken.wav").write_bytes(b"RIFF\x00\x00not a wav file")
    done = mossep(["batch", root / "in", "-o", root / "local", "--model", tiny_model_path, "--device", "cpu",
                   "--threads", "1", "--quiet"])
    assert done.returncode == 1, done.stderr
    return root, done.stderr.splitlines()


@pytest.fixture(scope="module")
def long_files(tmp_path_factory, tiny_model_path):
    """Six 40-second files (long enough to catch a worker mid-file), and what a local batch writes for them."""
    root = tmp_path_factory.mktemp("long")
    for i in range(6):
        _noise(root / "in" / f"rec{i}.wav", 40, 100 + i)
    done = mossep(["batch", root / "in", "-o", root / "local", "--model", tiny_model_path, "--device", "cpu",
                   "--threads", "1", "--quiet"])
    assert done.returncode == 0, done.stderr
    return root


def _ray_batch(root: Path, out: str, model: Path, address: str, *extra):
    return ["batch", root / "in", "-o", root / out, "--model", model, "--device", "cpu", "--ray", address,
            "--ray-workers", "2", *extra]


@pytest.mark.slow
@needs_ray
def test_ray_batch_equals_local_batch(cluster, short_files, tiny_model_path):
    root, local = short_files
    done = mossep(_ray_batch(root, "ray", tiny_model_path, cluster, "--quiet"), env=RAY_ENV)
    lines = done.stderr.splitlines()
    assert done.returncode == 1, done.stderr  # as local batch: the broken file fails alone
    assert local[-2].startswith("mossep: batch: 13 files: 12 separated, 0 skipped (outputs exist), 1 failed")
    assert lines[-2:] == local[-2:]  # the same summary and final error
    assert [ln for ln in lines if "broken.wav" in ln] == [ln for ln in local if "broken.wav" in ln]
    assert _tree(root / "ray") == _tree(root / "local")  # byte for byte
    assert not leftovers(root / "ray")
    workers = [ln for ln in lines if ln.startswith("mossep: ray: worker ")]  # both worked, 12 files in all
    files = [int(ln.split("): ")[1].split()[0]) for ln in workers]
    assert len(files) == 2 and sum(files) == 12 and min(files) > 0, done.stderr
    again = mossep(_ray_batch(root, "ray", tiny_model_path, cluster, "--quiet"), env=RAY_ENV)  # resume: all done
    assert again.returncode == 1 and "13 files: 0 separated, 12 skipped (outputs exist), 1 failed" in again.stderr


def _claim_holders(out: Path) -> list[int]:
    """Processes (other than this one) holding a batch claim in `out`, i.e. in the middle of a file."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            links = [os.readlink(f) for f in (d / "fd").iterdir()]
        except OSError:
            continue
        if any(link.startswith(str(out)) and ".mossep-claim-" in link for link in links):
            pids.append(int(d.name))
    return pids


def _separator_workers() -> list[int]:
    found = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and (d / "cmdline").read_bytes().startswith(b"ray::SeparatorWorker"):
                found.append(int(d.name))
        except OSError:
            continue
    return found


def _wait_for(predicate, timeout: float, step: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return None


@pytest.mark.slow
@needs_ray
def test_a_worker_killed_mid_file_has_its_file_done_by_another(cluster, long_files, tiny_model_path):
    out = long_files / "killed-worker"
    driver = subprocess.Popen([sys.executable, "-m", "mossep",
                               *map(str, _ray_batch(long_files, "killed-worker", tiny_model_path, cluster))],
                              stderr=subprocess.PIPE, text=True, env={**os.environ, **RAY_ENV, "OMP_NUM_THREADS": "1"})
    try:
        victim = _wait_for(lambda: _claim_holders(out), timeout=240)
        assert victim, "no worker was seen in the middle of a file"
        os.kill(victim[0], signal.SIGKILL)
        _, err = driver.communicate(timeout=300)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, err
    assert "died on it" in err and "goes to another worker" in err, err
    assert "6 files: 6 separated, 0 skipped (outputs exist), 0 failed" in err, err
    assert _tree(out) == _tree(long_files / "local")  # the killed file complete, and every other one
    assert not leftovers(out)


@pytest.mark.slow
@needs_ray
def test_a_killed_driver_leaves_complete_outputs_and_a_rerun_finishes(cluster, long_files, tiny_model_path):
    out = long_files / "killed-driver"
    reference = _tree(long_files / "local")
    finals = lambda: [p for p in out.rglob("*.wav") if not p.name.startswith(".")]  # noqa: E731
    driver = subprocess.Popen([sys.executable, "-m", "mossep",
                               *map(str, _ray_batch(long_files, "killed-driver", tiny_model_path, cluster))],
                              stderr=subprocess.DEVNULL, env={**os.environ, **RAY_ENV, "OMP_NUM_THREADS": "1"})
    try:
        assert _wait_for(lambda: len(finals()) >= 2 and _claim_holders(out), timeout=240, step=0.01), \
            "the run never had a file done and another in progress"
        driver.kill()
        driver.wait()
    finally:
        if driver.poll() is None:
            driver.kill()
    # Ray ends the dead driver's workers; until then one may still finish the file it holds
    assert _wait_for(lambda: not _separator_workers() and not _claim_holders(out), timeout=120, step=0.2)
    before = {str(p.relative_to(out)): p.stat() for p in finals()}
    assert 2 <= len(before) < 12
    for name in before:  # what is there is complete
        assert (out / name).read_bytes() == reference[name], name
    complete = {name.rsplit("_spk", 1)[0] for name in before
                if all(f"{name.rsplit('_spk', 1)[0]}_spk{k}.wav" in before for k in (1, 2))}

    again = mossep(_ray_batch(long_files, "killed-driver", tiny_model_path, cluster, "--quiet"), env=RAY_ENV)
    assert again.returncode == 0, again.stderr
    assert (f"6 files: {6 - len(complete)} separated, {len(complete)} skipped (outputs exist), 0 failed"
            in again.stderr), again.stderr
    assert _tree(out) == reference
    for name, st in before.items():  # nothing done twice: a finished output is never written again
        if name.rsplit("_spk", 1)[0] in complete:
            now = (out / name).stat()
            assert (now.st_ino, now.st_mtime_ns) == (st.st_ino, st.st_mtime_ns), name
    assert not leftovers(out)


def test_ray_options_without_ray_are_one_line(tmp_path, capsys, tiny_model_path):
    _noise(tmp_path / "in" / "a.wav", 1, 0)
    code, _, err = run(["batch", tmp_path / "in", "-o", tmp_path / "out", "--model", tiny_model_path,
                        "--ray-workers", 2], capsys)
    one_line_error(code, err, "need --ray")
    assert not (tmp_path / "out").exists()
