"""mossep.device_mix (the training set drawn on the device, `mossep train` with mixing: device) and the
trainer's guards for GPU runs: a non-finite step changes nothing, a compiler failure falls back to eager."""
from __future__ import annotations

import numpy as np
import torch

from mossep.checkpoints import load_checkpoint
from mossep.device_mix import DeviceMixer
from mossep.train import TrainConfig, Trainer

from scripts import noise_corpus

RATE = 8000


def _tone_speakers(n: int, seconds: float = 3.0) -> dict[str, list[np.ndarray]]:
    """Speaker k is a pure tone at 200 + 100 k Hz, so a source can be traced back to its speaker."""
    t = np.arange(int(seconds * RATE)) / RATE
    return {f"s{k}": [np.sin(2 * np.pi * (200 + 100 * k) * t).astype(np.float32)] for k in range(n)}


def _speaker_of(x: torch.Tensor) -> torch.Tensor:
    freq = torch.fft.rfft(x).abs().argmax(-1).float() * RATE / x.shape[-1]
    return torch.round((freq - 200) / 100).long()


def test_device_mixer_draws_distinct_speakers_at_their_levels_seeded():
    mixer = DeviceMixer(_tone_speakers(5), RATE, 2 * RATE, [1.0], "cpu")
    src = mixer.sources(256, torch.Generator().manual_seed(0), gain_db=5.0, polarity=False)
    assert src.shape == (256, 2, 2 * RATE)
    spk = _speaker_of(src)
    assert (spk[:, 0] != spk[:, 1]).all()
    assert len(torch.unique(spk)) == 5  # every speaker is drawn
    level = 10 * torch.log10(src.pow(2).mean(-1))
    assert level.min() > -27.6 and level.max() < -22.4  # -25 dBFS +- 2.5 dB
    again = mixer.sources(256, torch.Generator().manual_seed(0), gain_db=5.0, polarity=False)
    assert torch.equal(src, again)
    three = mixer.sources(64, torch.Generator().manual_seed(1), gain_db=5.0, num_spks=3)
    spk = _speaker_of(three)
    assert three.shape == (64, 3, 2 * RATE) and all(len(set(r.tolist())) == 3 for r in spk)


def test_device_mixer_inverts_about_half_the_sources_when_asked_and_uses_its_speed_copies():
    t = np.arange(3 * RATE) / RATE
    speakers = {f"s{k}": [(1.0 + 0.5 * np.sin(2 * np.pi * (200 + 100 * k) * t)).astype(np.float32)] for k in range(4)}
    mixer = DeviceMixer(speakers, RATE, RATE, [0.9, 1.0, 1.1], "cpu")
    assert mixer.variants == 3 and mixer.flat.numel() > 3 * 4 * 3 * RATE * 0.95
    for polarity in (False, True):
        src = mixer.sources(512, torch.Generator().manual_seed(3), 0.0, polarity=polarity)
        inverted = (src.mean(-1) < 0).float().mean()  # positive signals: a negative mean is an inverted source
        assert (0.4 < inverted < 0.6) if polarity else inverted == 0


def _cfg(root, **kw) -> TrainConfig:
    base = dict(out_dir=str(root / "run"), size="tiny", train_dirs=[str(root / "train")],
                valid_dirs=[str(root / "valid")], segment_seconds=0.5, batch_size=2, steps=3, warmup_steps=1,
                valid_every=3, valid_count=2, valid_seconds=0.5, checkpoint_every=3, quiet=True, mixing="device",
                speeds=[0.95, 1.0], partial=0.5, schedule="cosine")
    base.update(kw)
    return TrainConfig(**base)


def test_device_mixing_run_resumes_exactly_and_survives_a_non_finite_step(tmp_path):
    noise_corpus(tmp_path)
    full = Trainer(_cfg(tmp_path, out_dir=str(tmp_path / "full")))
    full.fit()
    assert load_checkpoint(tmp_path / "full" / "best.safetensors").metadata["training"]["dynamic_mixing"]["mixing"] == "device"
    part = Trainer(_cfg(tmp_path, out_dir=str(tmp_path / "part"), steps=1))
    part.fit()
    resumed = Trainer(_cfg(tmp_path, out_dir=str(tmp_path / "part")))
    resumed.resume()
    resumed.fit()
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    # a batch that gives a non-finite loss leaves the weights and Adam's moments finite
    resumed.mixer.flat[:] = float("nan")
    assert not np.isfinite(resumed.train_step())
    for k, v in resumed.model.state_dict().items():
        assert torch.isfinite(v).all(), k
    for state in resumed.opt.state.values():
        assert all(torch.isfinite(t).all() for t in state.values() if torch.is_tensor(t))


def test_compile_failure_falls_back_to_eager_training(tmp_path, monkeypatch, capsys):
    """compile: true and the compiler fails on the first step: the run trains on eagerly (a lent GPU's minutes
    must not be lost to a compiler error)."""
    noise_corpus(tmp_path, seed=1)

    def broken(model, *a, **k):
        def fn(*x, **y):
            raise RuntimeError("inductor exploded")
        return fn

    monkeypatch.setattr(torch, "compile", broken)
    trainer = Trainer(_cfg(tmp_path, compile=True, steps=2))
    result = trainer.fit()
    assert result["step"] == 2 and np.isfinite(result["last_loss"])
    assert "torch.compile failed (RuntimeError: inductor exploded); training eagerly" in capsys.readouterr().out
