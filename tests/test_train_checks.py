"""Training does what it says, checked on what it produces: validation SI-SNRi rises on the tiny run and
`best.safetensors` holds the weights of the best validation; the loss is permutation-invariant; DDP keeps the
ranks' parameters identical; Ctrl-C (SIGINT) leaves a resumable last.pt."""
from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from test_train import make_speaker_set

from mossep import train_data as td
from mossep.checkpoints import load_checkpoint
from mossep.metrics import pit_si_snr_loss, si_snr, si_snr_improvement
from mossep.train import TrainConfig, Trainer

SR = 8000


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("corpus")
    return (make_speaker_set(base / "train", [90, 120, 160, 210, 260, 300], seed=1),
            make_speaker_set(base / "valid", [100, 230, 280], seed=2))


def cfg(out: Path, sets: tuple[Path, Path], **kw) -> TrainConfig:
    base = dict(out_dir=str(out), size="tiny", train_dirs=[str(sets[0])], valid_dirs=[str(sets[1])],
                segment_seconds=0.5, batch_size=4, steps=40, lr=3e-3, warmup_steps=5, valid_every=10, valid_count=6,
                valid_seconds=0.5, checkpoint_every=1000, speed_perturb=0.05, quiet=True)
    base.update(kw)
    return TrainConfig(**base)


def held_out_si_snri(model: torch.nn.Module, valid: Path) -> float:
    """Mean SI-SNRi of `model` on mixtures of the validation speakers, made here (not the trainer's own)."""
    utts = [np.concatenate([__import__("soundfile").read(p, dtype="float32")[0] for p in sorted(d.glob("*.flac"))])
            for d in sorted(valid.iterdir())]
    scores = []
    for i in range(len(utts)):
        for j in range(i + 1, len(utts)):
            ref = np.stack([utts[i][:4000], utts[j][1000:5000]])
            with torch.no_grad():
                est = model.eval()(torch.from_numpy(ref.sum(0))[None])[0].numpy()
            scores.append(si_snr_improvement(est, ref, ref.sum(0))["si_snri"])
    return float(np.mean(scores))


def test_validation_rises_and_best_holds_the_best_validations_weights(tmp_path, sets):
    trainer = Trainer(cfg(tmp_path / "run", sets))
    initial = held_out_si_snri(trainer.model, sets[1])
    trainer.model.train()
    snapshots: dict[int, dict] = {}

    def progress(row):  # called after the step's validation, before the next step
        if "valid_si_snri" in row:
            snapshots[row["step"]] = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}

    trainer.progress = progress
    trainer.fit()
    with open(tmp_path / "run" / "log.csv", newline="") as f:
        valid = {int(r["step"]): float(r["valid_si_snri"]) for r in csv.DictReader(f) if r["valid_si_snri"]}
    assert sorted(valid) == [10, 20, 30, 40] == sorted(snapshots)
    assert max(valid.values()) > valid[10] + 1.0, valid  # validation rises clearly over the run
    best_step = max(valid, key=valid.get)
    loaded = load_checkpoint(tmp_path / "run" / "best.safetensors")
    assert loaded.metadata["training"]["steps"] == best_step
    assert loaded.metadata["validation"]["si_snri_db"] == pytest.approx(valid[best_step], abs=1e-3)
    state = loaded.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in snapshots[best_step].items())  # those very weights
    # and it separates held-out speakers clearly better than the untrained network did
    assert held_out_si_snri(loaded.model, sets[1]) > initial + 3.0


def test_loss_is_permutation_invariant():
    rng = np.random.default_rng(0)
    ref = torch.from_numpy(rng.standard_normal((3, 2, 800)))
    est = ref + 0.3 * torch.from_numpy(rng.standard_normal((3, 2, 800)))
    swapped = ref[:, [1, 0]]
    assert float(pit_si_snr_loss(est, swapped)) == pytest.approx(float(pit_si_snr_loss(est, ref)), abs=1e-9)
    # the fixed-order loss would punish the swap: PIT is what makes the order free
    assert float(-si_snr(est, swapped).mean()) > float(-si_snr(est, ref).mean()) + 10.0
    assert float(pit_si_snr_loss(est, ref)) == pytest.approx(float(-si_snr(est, ref).mean()), abs=1e-9)


def test_a_training_step_does_not_care_about_the_reference_order(tmp_path, sets, monkeypatch):
    """The same batch with its references swapped: the same loss and the same updated weights."""
    kw = dict(steps=1, valid_dirs=[], speed_perturb=0.0, warmup_steps=0)
    plain = Trainer(cfg(tmp_path / "a", sets, **kw))
    loss_plain = plain.train_step()
    real = td.make_batch

    def swapped(*args, **kwargs):
        mix, src = real(*args, **kwargs)
        return mix, src[:, ::-1].copy()

    monkeypatch.setattr(td, "make_batch", swapped)
    other = Trainer(cfg(tmp_path / "b", sets, **kw))
    loss_swapped = other.train_step()
    assert loss_swapped == pytest.approx(loss_plain, abs=1e-5)
    for (name, a), b in zip(plain.model.state_dict().items(), other.model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name


DDP_WORKER = textwrap.dedent("""
    import sys, torch
    from mossep.train import TrainConfig, Trainer
    out, train_dir = sys.argv[1], sys.argv[2]
    cfg = TrainConfig(out_dir=out, size="tiny", train_dirs=[train_dir], segment_seconds=0.5, batch_size=2, steps=2,
                      lr=3e-3, warmup_steps=0, valid_every=1000, checkpoint_every=1000, device="cpu", quiet=True)
    t = Trainer(cfg)
    before = {k: v.clone() for k, v in t.model.state_dict().items()}
    t.fit()
    torch.save({"before": before, "after": t.model.state_dict()}, f"{out}/rank{t.rank}.pt")
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_ranks_keep_identical_parameters(tmp_path, sets):
    """Two gloo processes see different batches (the rank is in the batch seed); after two steps their
    parameters are still identical, and moved: the gradients were averaged across ranks."""
    script = tmp_path / "worker.py"
    script.write_text(DDP_WORKER)
    out = tmp_path / "ddp"
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr",
                           "127.0.0.1", "--master-port", str(_free_port()), str(script), str(out), str(sets[0])],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r0, r1 = (torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    a = torch.stack([(r0["before"][k] == r1["before"][k]).all() for k in r0["before"]])
    assert bool(a.all())  # the same start (one seed)
    moved = 0
    for k in r0["after"]:
        assert torch.equal(r0["after"][k], r1["after"][k]), k
        moved += not torch.equal(r0["after"][k], r0["before"][k])
    assert moved > len(r0["after"]) // 2
    # the ranks did see different data: otherwise equal parameters would prove nothing
    b0 = td.make_batch([td.DynamicMixing(*_spk_spec(sets[0]), SR)], 2, 0, 0, 0)[0]
    b1 = td.make_batch([td.DynamicMixing(*_spk_spec(sets[0]), SR)], 2, 0, 0, 1)[0]
    assert not np.allclose(b0, b1)


def _spk_spec(train: Path):
    from mossep import dynamic_mix as dm

    return dm.load_speaker_folders([train], SR), dm.MixSpec(4000, 2, 5.0, 0.05)


def test_ctrl_c_writes_a_resumable_last_pt(tmp_path, sets):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "mossep", "train", "--size", "tiny", "--train-dir", str(sets[0]), "--segment-seconds",
           "0.5", "--batch-size", "2", "--steps", "100000", "--valid-every", "100000", "--checkpoint-every", "100000",
           "--device", "cpu", "-o", str(out), "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 240
        while not (out / "log.csv").exists():  # written at step 10: the loop is running
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "training never reached step 10"
            time.sleep(0.2)
        assert not (out / "last.pt").exists()  # nothing would have written it but the interruption
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    assert "interrupted at step" in err and "Traceback" not in err
    state = torch.load(out / "last.pt", weights_only=True)
    step = int(err.split("interrupted at step ")[1].split(";")[0])
    assert state["step"] == step >= 10
    resumed = Trainer(TrainConfig(out_dir=str(out), size="tiny", train_dirs=[str(sets[0])], segment_seconds=0.5,
                                  batch_size=2, steps=step + 1, valid_every=100000, device="cpu", quiet=True))
    resumed.resume()
    assert resumed.step == step
