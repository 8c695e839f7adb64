"""recipes/gpu_default_8k.py: the GPU-side mixing draws valid mixtures, and a short run on the CPU writes a
loadable checkpoint (the script itself runs on CPU too; only its speed needs a GPU)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from mossep.checkpoints import load_checkpoint

from scripts import load_script, noise_corpus

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "gpu_default_8k.py"
RATE = 8000


def _recipe():
    return load_script("recipes/gpu_default_8k.py")


def _tone_speakers(n: int, seconds: float = 3.0) -> dict[str, list[np.ndarray]]:
    """Speaker k is a pure tone at 200 + 100 k Hz, so a source can be traced back to its speaker."""
    t = np.arange(int(seconds * RATE)) / RATE
    return {f"s{k}": [np.sin(2 * np.pi * (200 + 100 * k) * t).astype(np.float32)] for k in range(n)}


def _speaker_of(x: torch.Tensor) -> torch.Tensor:
    freq = torch.fft.rfft(x).abs().argmax(-1).float() * RATE / x.shape[-1]
    return torch.round((freq - 200) / 100).long()


def test_gpu_mixer_draws_two_distinct_speakers_summing_to_the_mixture():
    mod = _recipe()
    mixer = mod.GpuMixer(_tone_speakers(5), RATE, 2 * RATE, [1.0], torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    mix, src = mixer.batch(256, gen, gain_db=5.0, partial=0.0)
    assert mix.shape == (256, 2 * RATE) and src.shape == (256, 2, 2 * RATE)
    torch.testing.assert_close(mix, src.sum(1))
    spk = _speaker_of(src)
    assert (spk[:, 0] != spk[:, 1]).all()
    assert len(torch.unique(spk)) == 5  # every speaker is drawn
    level = 10 * torch.log10(src.pow(2).mean(-1))
    assert level.min() > -27.6 and level.max() < -22.4  # -25 dBFS +- 2.5 dB
    gen2 = torch.Generator().manual_seed(0)
    torch.testing.assert_close(mixer.batch(256, gen2, 5.0, 0.0)[0], mix)  # seeded


def test_gpu_mixer_partial_overlap_silences_part_of_one_talker_never_all():
    mod = _recipe()
    t = np.arange(3 * RATE) / RATE
    speakers = {f"s{k}": [(1.0 + 0.5 * np.sin(2 * np.pi * (200 + 100 * k) * t)).astype(np.float32)] for k in range(4)}
    mixer = mod.GpuMixer(speakers, RATE, 2 * RATE, [0.95, 1.0, 1.05], torch.device("cpu"))
    mix, src = mixer.batch(512, torch.Generator().manual_seed(1), gain_db=0.0, partial=0.5)
    quiet = (src.abs() < 1e-6).float().mean(-1)  # silent fraction of each source (the signals never cross 0)
    cut = quiet.max(1).values
    assert 0.35 < (cut > 0).float().mean() < 0.65  # about half the mixtures, as asked
    assert cut.max() < 0.65 and cut[cut > 0].min() > 0.05  # 10-60 % silent (40-90 % kept, minus the fade)
    assert (quiet.min(1).values == 0).all()  # only one talker is cut

    speakers["short"] = [np.ones(RATE // 2, np.float32)]  # padded to a segment: mostly silence already
    mixer = mod.GpuMixer(speakers, RATE, 2 * RATE, [1.0], torch.device("cpu"))
    mix, src = mixer.batch(512, torch.Generator().manual_seed(2), gain_db=0.0, partial=1.0)
    assert (src.pow(2).mean(-1) > 0).all()  # never a silent target


def test_gpu_mixer_inverts_about_half_the_sources_when_asked():
    mod = _recipe()
    t = np.arange(3 * RATE) / RATE
    speakers = {f"s{k}": [(1.0 + 0.5 * np.sin(2 * np.pi * (200 + 100 * k) * t)).astype(np.float32)] for k in range(4)}
    mixer = mod.GpuMixer(speakers, RATE, RATE, [1.0], torch.device("cpu"))
    for polarity in (False, True):
        _, src = mixer.batch(512, torch.Generator().manual_seed(3), 0.0, 0.0, polarity=polarity)
        inverted = (src.mean(-1) < 0).float().mean()  # positive signals: a negative mean is an inverted source
        assert (0.4 < inverted < 0.6) if polarity else inverted == 0


def test_a_non_finite_step_leaves_weights_and_adam_state_finite():
    mod = _recipe()
    w = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.Adam([w], lr=0.1)
    for loss_scale in (1.0, float("nan"), 1.0):
        opt.zero_grad()
        (w.sum() * loss_scale).backward()
        mod.zero_grads_if_nonfinite_([w], torch.nn.utils.clip_grad_norm_([w], 5.0))
        if loss_scale != loss_scale:
            assert torch.equal(w.grad, torch.zeros(3))
        opt.step()
    assert torch.isfinite(w).all() and torch.isfinite(opt.state[w]["exp_avg_sq"]).all()
    assert (w < 1).all()  # the finite steps did move the weights


def test_short_cpu_run_writes_a_loadable_checkpoint(tmp_path):
    noise_corpus(tmp_path, seed=0)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(RECIPE), "--preset", "tiny", "--train", str(tmp_path / "train"),
                           "--valid", str(tmp_path / "valid"), "--minutes", "0.1", "--batch", "2",
                           "--segment", "1", "--valid-count", "4", "--device", "cpu", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    loaded = load_checkpoint(out / "best.safetensors")
    assert loaded.metadata["training"]["steps"] >= 1 and loaded.metadata["training"]["valid_count"] == 4
    log = (out / "log.csv").read_text().splitlines()
    assert log[0].startswith("step,") and len(log) >= 3  # header, the first and the last validation


def test_compile_failure_falls_back_to_eager_training(tmp_path):
    """--compile: if the compiler fails on the first step, the run trains on eagerly and still writes its
    checkpoint (a lent GPU's minutes must not be lost to a compiler error)."""
    noise_corpus(tmp_path, seed=1)
    out = tmp_path / "out"
    args = ["--preset", "tiny", "--train", str(tmp_path / "train"), "--valid", str(tmp_path / "valid"),
            "--minutes", "0.1", "--batch", "2", "--segment", "1", "--valid-count", "4", "--device", "cpu",
            "--out", str(out), "--compile"]
    script = (
        "import importlib.util, sys, torch\n"
        "def broken(model, *a, **k):\n"
        "    def fn(*x, **y):\n"
        "        raise RuntimeError('inductor exploded')\n"
        "    return fn\n"
        "torch.compile = broken\n"
        f"spec = importlib.util.spec_from_file_location('r', {str(RECIPE)!r})\n"
        "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)\n"
        f"sys.argv = ['r'] + {args!r}\n"
        "mod.main()\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "torch.compile failed (RuntimeError: inductor exploded); training eagerly" in proc.stdout
    loaded = load_checkpoint(out / "best.safetensors")
    assert loaded.metadata["training"]["steps"] >= 2  # it went on past the failed first step
