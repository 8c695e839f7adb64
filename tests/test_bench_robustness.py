"""benchmarks/bench_robustness.py: its disturbances are pure, seeded and give the references its docstring
names; the whole benchmark runs end to end with a tiny model."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from scripts import load_script

RATE = 8000


def _bench():
    return load_script("benchmarks/bench_robustness.py")


def _pair(seed: int = 0):
    rng = np.random.default_rng(seed)
    src = (0.05 * rng.standard_normal((2, 2 * RATE))).astype(np.float32)
    return src.sum(0), src


def test_disturbances_are_seeded_and_give_the_stated_references():
    mod = _bench()
    mix, src = _pair()
    for name, (refs, fn) in mod.CONDITIONS.items():
        m1, r1 = fn(mix, src, RATE, 5)
        m2, r2 = fn(mix.copy(), src.copy(), RATE, 5)
        assert np.array_equal(m1, m2) and np.array_equal(r1, r2), name
        assert m1.shape == mix.shape and r1.shape == src.shape and m1.dtype == np.float32, name
        if refs == "clean":
            assert np.array_equal(r1, src), name
        else:
            assert not np.allclose(r1, src, atol=1e-3), name
    m, _ = mod.noise(mix, src, RATE, 5, color="white", snr_db=10.0)
    snr = 10 * np.log10(np.mean(mix.astype(np.float64) ** 2) / np.mean((m - mix).astype(np.float64) ** 2))
    assert abs(snr - 10.0) < 0.01
    m, _ = mod.hum(mix, src, RATE, 5)
    assert abs(10 * np.log10(np.mean((m - mix).astype(np.float64) ** 2)) + 30.0) < 0.01  # -30 dBFS RMS
    m_a, _ = mod.noise(mix, src, RATE, 6, color="white", snr_db=10.0)
    assert not np.array_equal(m, m_a)
    m, r = mod.telephone(mix, src, RATE, 0)
    np.testing.assert_allclose(m, r.sum(0), atol=1e-5)  # a linear filter on both alike


def _corpus(root: Path) -> None:
    rng = np.random.default_rng(0)
    for k in range(3):
        d = root / f"spk{k}"
        d.mkdir(parents=True)
        sf.write(d / "u.flac", (0.1 * rng.standard_normal(3 * RATE)).astype(np.float32), RATE)


def test_benchmark_runs_end_to_end_with_a_tiny_model(tmp_path, tiny_model_path, capsys):
    _corpus(tmp_path / "set")
    _bench().main(["--model", str(tiny_model_path), "--sets", str(tmp_path / "set"), "--count", "2",
                   "--seconds", "1", "--conditions", "white noise 10", "telephone", "--passes", "1"])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [r.split(" | ")[0] for r in rows] == ["| clean", "| white noise 10 dB SNR", "| telephone band 300-3400 Hz"]
    assert all(np.isfinite(float(c)) for r in rows for c in r.strip("| ").split(" | ")[2:4])
    assert "command: python benchmarks/bench_robustness.py --model" in out
