"""Training: loss goes down, resume is exact, the result separates, DDP with 2 gloo processes."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from mossep import train_data as td
from mossep import dynamic_mix as dm
from mossep.checkpoints import load_checkpoint
from mossep.errors import MossepError
from mossep.train import TrainConfig, Trainer

SR = 8000


def _voice(f0: float, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A harmonic 'voice' with syllable-rate amplitude modulation and a little vibrato."""
    t = np.arange(int(seconds * SR)) / SR
    f = f0 * (1 + 0.03 * np.sin(2 * np.pi * 5 * t + rng.uniform(0, 6)))
    phase = 2 * np.pi * np.cumsum(f) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 8))
    env = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 5) * t + rng.uniform(0, 6)) ** 2
    return (0.1 * x * env).astype(np.float32)


def make_speaker_set(root: Path, f0s: list[float], seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for i, f0 in enumerate(f0s):
        d = root / f"spk{i}"
        d.mkdir(parents=True)
        for u in range(2):
            sf.write(d / f"utt{u}.flac", _voice(f0 * (1 + 0.02 * u), 1.5, rng), SR)
    return root


@pytest.fixture(scope="module")
def speaker_sets(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("corpus")
    train = make_speaker_set(base / "train", [90, 120, 160, 210, 260, 300], seed=1)
    valid = make_speaker_set(base / "valid", [100, 230, 280], seed=2)
    return train, valid


def _cfg(tmp_path: Path, sets: tuple[Path, Path], **kw) -> TrainConfig:
    base = dict(out_dir=str(tmp_path / "run"), size="tiny", train_dirs=[str(sets[0])], valid_dirs=[str(sets[1])],
                segment_seconds=0.5, batch_size=4, steps=40, lr=3e-3, warmup_steps=5, valid_every=20, valid_count=6,
                valid_seconds=0.5, checkpoint_every=10, speed_perturb=0.05, quiet=True)
    base.update(kw)
    return TrainConfig(**base)


def test_batches_are_a_pure_function_of_seed_and_step(speaker_sets):
    spk = dm.load_speaker_folders([speaker_sets[0]], SR)
    src = [td.DynamicMixing(spk, dm.MixSpec(2000, 2, 5.0, 0.05), SR)]
    a = td.make_batch(src, 3, seed=7, step=11)
    b = td.make_batch(src, 3, seed=7, step=11)
    c = td.make_batch(src, 3, seed=7, step=12)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    mix, refs = a
    assert mix.shape == (3, 2000) and refs.shape == (3, 2, 2000)
    np.testing.assert_allclose(refs.sum(1), mix, atol=1e-6)  # the mixture is the sum of its references
    # two different speakers in every mixture: their references are never identical
    assert all(not np.allclose(r[0], r[1]) for r in refs)


@pytest.mark.parametrize("flip", [False, True])
def test_random_polarity_inverts_about_half_the_sources(flip):
    # every utterance is a positive pulse train, so a source's sign shows whether it was inverted
    pulses = np.zeros(4000, np.float32)
    pulses[::50] = 1.0
    spk = {f"s{i}": [pulses.copy()] for i in range(4)}
    spec = dm.MixSpec(1000, 2, 5.0, 0.0, random_polarity=flip)
    rng = np.random.default_rng(0)
    signs = [np.sign(s.sum()) for _ in range(200) for s in dm.make_mixture(spk, spec, rng, SR)[1]]
    inverted = np.mean(np.array(signs) < 0)
    assert (0.4 < inverted < 0.6) if flip else inverted == 0


def test_loss_goes_down_and_best_checkpoint_separates(tmp_path, speaker_sets):
    trainer = Trainer(_cfg(tmp_path, speaker_sets))
    losses = []
    trainer.progress = lambda row: losses.append(row["loss"])
    result = trainer.fit()
    assert result["step"] == 40
    assert np.mean(losses[-8:]) < np.mean(losses[:8]) - 3.0  # dB of SI-SNR gained
    best = tmp_path / "run" / "best.safetensors"
    loaded = load_checkpoint(best)
    meta = loaded.metadata
    assert meta["training"]["steps"] in (20, 40) and "validation" in meta
    assert (tmp_path / "run" / "config.yaml").is_file()
    log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert log[0].startswith("step,") and len(log) >= 4

    # the result works in `mossep separate`
    mix = np.stack(td.make_batch(trainer.data, 1, seed=99, step=0)[0])[0]
    sf.write(tmp_path / "mix.wav", mix, SR)
    proc = subprocess.run([sys.executable, "-m", "mossep", "separate", str(tmp_path / "mix.wav"), "-o",
                           str(tmp_path / "out"), "--model", str(best), "--quiet"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    outs = sorted((tmp_path / "out").glob("mix_spk*.wav"))
    assert [p.name for p in outs] == ["mix_spk1.wav", "mix_spk2.wav"]
    assert all(sf.info(p).frames == len(mix) for p in outs)


def test_resume_gives_the_same_next_step(tmp_path, speaker_sets):
    full = Trainer(_cfg(tmp_path / "a", speaker_sets, steps=6, valid_every=100, speed_perturb=0.0))
    full.fit()
    first = Trainer(_cfg(tmp_path / "b", speaker_sets, steps=4, valid_every=100, speed_perturb=0.0))
    first.fit()
    resumed = Trainer(_cfg(tmp_path / "b", speaker_sets, steps=6, valid_every=100, speed_perturb=0.0))
    resumed.resume()
    assert resumed.step == 4
    resumed.fit()
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k


def test_augmented_training_resumes_exactly_and_records_its_settings(tmp_path, speaker_sets):
    aug = dict(reverb=0.5, noise=0.5, eq=0.5, rt60=[0.1, 0.3], rooms=2, data_cache=str(tmp_path / "cache"),
               partial=0.3, steps=4, valid_every=100, speed_perturb=0.0)
    plain = Trainer(_cfg(tmp_path / "p", speaker_sets, steps=2, valid_every=100, speed_perturb=0.0))
    plain.fit()
    full = Trainer(_cfg(tmp_path / "a", speaker_sets, **aug))
    full.fit()
    first = Trainer(_cfg(tmp_path / "b", speaker_sets, **{**aug, "steps": 2}))
    first.fit()
    for (k, a), b in zip(plain.model.state_dict().items(), first.model.state_dict().values()):
        if a.is_floating_point() and a.numel() > 1 and not torch.equal(a, b):
            break  # the augmented batches trained the model differently
    else:
        raise AssertionError("augmentation changed nothing")
    resumed = Trainer(_cfg(tmp_path / "b", speaker_sets, **aug))
    resumed.resume()
    resumed.fit()
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    meta = full.metadata({"si_snri": 0.0, "si_snr": 0.0})["training"]["augment"]
    assert meta == {"reverb": 0.5, "noise": 0.5, "eq": 0.5, "rt60": [0.1, 0.3], "snr_db": [-6.0, 3.0],
                    "noise_dirs": [], "rir_dirs": [], "held_out_rirs": [], "rooms": 2,
                    "noise_kinds": {"ambient": 0.5, "babble": 0.3, "synthetic": 0.2}}


def test_solo_mixtures_train_silence_and_report_its_depth(tmp_path, speaker_sets):
    """With `solo`, some batches hold one talker and a silent target (mixture = that talker); the loss then
    rewards a silent other output, and validation reports how far below the talker the other output lies."""
    trainer = Trainer(_cfg(tmp_path, speaker_sets, solo=1.0, partial=0.0, steps=2, valid_every=2))
    seen = []
    real = trainer._loss_and_backward
    trainer._loss_and_backward = lambda mix, src: (seen.append((mix, src)), real(mix, src))[1]
    rows = []
    trainer.progress = rows.append
    trainer.fit()
    for mix, src in seen:
        speaking = src.abs().amax(-1) > 0
        assert (speaking.sum(1) == 1).all()  # one talker per mixture, the other target silent
        assert torch.allclose(mix, src.sum(1))
    depth = rows[-1]["valid_solo_db"]
    assert 0 < depth <= 60
    assert trainer.solo_talkers.shape == (6, int(0.5 * SR))
    log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert log[0].endswith(",valid_solo_db") and log[-1].endswith(f",{depth}")
    meta = trainer.metadata({"si_snri": 0.0, "si_snr": 0.0, "solo_db": depth})
    assert meta["training"]["dynamic_mixing"]["solo"] == 1.0
    assert meta["validation"]["solo_depth_db"] == round(depth, 2)
    # without solo mixtures nothing of it is measured
    plain = Trainer(_cfg(tmp_path / "p", speaker_sets, steps=2, valid_every=2))
    assert plain.solo_talkers is None


def test_config_file_and_cli_overrides(tmp_path, speaker_sets):
    cfg = tmp_path / "train.yaml"
    cfg.write_text(f"size: tiny\nsteps: 3\nsegment_seconds: 0.5\nbatch_size: 2\nvalid_every: 3\nvalid_count: 2\n"
                   f"valid_seconds: 0.5\ntrain_dirs: [{speaker_sets[0]}]\nvalid_dirs: [{speaker_sets[1]}]\n")
    proc = subprocess.run([sys.executable, "-m", "mossep", "train", "-c", str(cfg), "--steps", "2",
                           "--noise", "0.5", "--solo", "0.25", "--sequential", "0.3", "-o", str(tmp_path / "run"), "--quiet"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert "steps: 2" in saved and "size: tiny" in saved and "noise: 0.5" in saved and "solo: 0.25" in saved
    assert "sequential: 0.3" in saved
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert state["step"] == 2


def test_bad_training_options_are_one_line_errors(tmp_path, speaker_sets):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("stepz: 3\n")
    proc = subprocess.run([sys.executable, "-m", "mossep", "train", "-c", str(cfg)], capture_output=True, text=True)
    assert proc.returncode == 1 and "unknown options" in proc.stderr and "Traceback" not in proc.stderr
    with pytest.raises(MossepError, match="no training data"):
        Trainer(TrainConfig(out_dir=str(tmp_path / "r"), size="tiny"))
    with pytest.raises(MossepError, match="not found"):
        Trainer(TrainConfig(out_dir=str(tmp_path / "r"), size="tiny", train_dirs=[str(tmp_path / "nope")]))


def test_fixed_mixture_set_training(tmp_path, speaker_sets):
    fixtures = Path(__file__).parent / "fixtures" / "libri2mix"
    trainer = Trainer(_cfg(tmp_path, speaker_sets, train_dirs=[], train_sets=[str(fixtures)], steps=2, valid_every=100))
    trainer.fit()
    mix, refs = td.make_batch(trainer.data, 2, seed=0, step=5)
    assert mix.shape == (2, 4000) and refs.shape == (2, 2, 4000)


def test_ddp_two_gloo_processes(tmp_path, speaker_sets):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "mossep", "train", "--size", "tiny", "--train-dir", str(speaker_sets[0]), "--valid-dir",
           str(speaker_sets[1]), "--segment-seconds", "0.5", "--batch-size", "2", "--steps", "3", "--valid-every", "3",
           "--device", "cpu", "-o", str(tmp_path / "ddp"), "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = load_checkpoint(tmp_path / "ddp" / "best.safetensors")
    assert loaded.metadata["training"]["batch_size"] == 4  # 2 processes x 2
    assert torch.load(tmp_path / "ddp" / "last.pt", weights_only=True)["step"] == 3


def test_training_audio_is_resampled_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("MOSSEP_CACHE", str(tmp_path / "cache"))
    for spk, f0 in (("a", 120), ("b", 220)):
        (tmp_path / "set16k" / spk).mkdir(parents=True)
        t = np.arange(16000) / 16000
        sf.write(tmp_path / "set16k" / spk / "u.wav", (0.1 * np.sin(2 * np.pi * f0 * t)).astype(np.float32), 16000)
    first = dm.load_speaker_folders([tmp_path / "set16k"], SR)
    cached = list((tmp_path / "cache" / "resampled").glob("*.npy"))
    assert len(cached) == 2
    assert all(len(u[0]) == 8000 for u in first.values())
    second = dm.load_speaker_folders([tmp_path / "set16k"], SR)
    for k in first:
        np.testing.assert_array_equal(first[k][0], second[k][0])


@pytest.mark.parametrize("text, words", [
    ("steps: abc\n", "steps: expected a whole number"), ("batch_size: 0\n", "batch_size: must be greater than 0"),
    ("segment_seconds: -1\n", "segment_seconds"), ("lr: .nan\n", "lr: expected a number"),
    ("size: huge\n", "unknown model size"), ("arch: rnn\n", "unknown architecture"),
    ("model: {foo: 1}\n", "unknown model settings"), ("model: 5\n", "model: expected a mapping"),
    ("device: gpu\n", "device"), ("train_dirs: {a: 1}\n", "train_dirs"),
    ("train_dirs: NOPE\n", "nope: training folder not found"), ("lr: 1e-3\nbatch_size: -2\n", "batch_size"),
    ("reverb: 1.5\n", "reverb: is a probability"), ("noise: -0.1\n", "noise: must be at least 0"),
    ("rt60: [0.8, 0.2]\n", "rt60: expected two numbers"), ("snr_db: 10\n", "snr_db: expected two numbers"),
    ("valid_conditions: [windy]\n", "valid_conditions: expected some of"), ("mixing: gpu\n", "mixing: expected cpu"),
    ("schedule: linear\n", "schedule: expected plateau"), ("partial: 2\n", "partial: must be at most 1"),
    ("solo: 1.5\n", "solo: must be at most 1"), ("solo: -0.5\n", "solo: must be at least 0"),
    ("sequential: 2\n", "sequential: must be at most 1"),
    ("noise_kinds: {wind: 1}\n", "noise_kinds: expected weights"), ("reverb: 0.5\nrooms: 0\n", "rooms: reverb needs rooms")])
def test_bad_config_values_are_one_line_errors_before_any_output(tmp_path, capsys, text, words):
    """Bad values in a config file used to end in tracebacks (or, for a folder given as a string, in a walk
    over the root folder letter by letter); now one line naming the option, and no output folder."""
    from mossep.cli import main

    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text.replace("NOPE", str(tmp_path / "nope")))
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        main(["train", "-c", str(cfg), "-o", str(out), "--train-set",
              str(Path(__file__).parent / "fixtures" / "libri2mix"), "--quiet"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 1 and len(lines) == 1 and lines[0].startswith("mossep: error: "), lines
    assert words in lines[0]
    assert not out.exists()


def test_a_stop_during_validation_ends_it_and_the_resume_runs_it_first(tmp_path, speaker_sets, monkeypatch):
    """SIGINT/SIGTERM in the middle of a validation (a minute on a CPU) must not wait for it: the step's state is
    saved with the validation marked pending, and the resume runs that validation before training on, so the
    log and the best checkpoint are those of an uninterrupted run."""
    import signal
    import mossep.train as tr

    kw = dict(steps=4, valid_every=2, valid_count=12, checkpoint_every=1, speed_perturb=0.0)  # 2 batches of 8
    full = Trainer(_cfg(tmp_path / "a", speaker_sets, **kw))
    full.fit()

    run = Trainer(_cfg(tmp_path / "b", speaker_sets, **kw))
    real = tr.si_snri_per_mixture
    calls = []

    def interrupted(*a, **k):  # the signal arrives during the first batch of the step-2 validation
        calls.append(run.step)
        if run.step == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*a, **k)

    monkeypatch.setattr(tr, "si_snri_per_mixture", interrupted)
    result = run.fit()
    assert result["interrupted"] and result["step"] == 2
    assert calls == [2]  # stopped after the batch under way, not after all of them
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler before fit() is back
    assert not (tmp_path / "b" / "run" / "best.safetensors").exists()  # no half-validated choice
    monkeypatch.setattr(tr, "si_snri_per_mixture", real)

    resumed = Trainer(_cfg(tmp_path / "b", speaker_sets, **kw))
    resumed.resume()
    assert resumed.step == 2 and resumed.pending_validation
    resumed.fit()
    assert [h["step"] for h in resumed.history] == [2, 4] == [h["step"] for h in full.history]
    for a, b in zip(full.history, resumed.history):
        assert a["si_snri"] == pytest.approx(b["si_snri"], abs=1e-9)
    log = (tmp_path / "b" / "run" / "log.csv").read_text().splitlines()
    assert sum(1 for line in log[1:] if line.split(",")[0] == "2" and line.split(",")[5]) == 1  # one step-2 score


def test_a_second_stop_signal_stops_at_once_and_keeps_the_saved_state(tmp_path, speaker_sets, monkeypatch):
    import signal
    import mossep.train as tr

    run = Trainer(_cfg(tmp_path, speaker_sets, steps=6, valid_every=100, checkpoint_every=2, speed_perturb=0.0))
    real = run.train_step

    def twice():  # both signals during step 3: the state saved last is step 2's
        if run.step == 2:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return real()

    monkeypatch.setattr(run, "train_step", twice)
    with pytest.raises(KeyboardInterrupt):
        run.fit()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    saved = tr.torch_load_tensors(tmp_path / "run" / "last.pt")
    assert saved["step"] == 2
