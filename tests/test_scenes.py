"""Real-recording conditions (mossep.rooms, mossep.scenes, augment_batch with rooms and noise): seeded banks,
dry targets aligned with their reverberant images, WHAM!-like noise levels, held-out noise and rooms never used
in training, fixed validation sets, and a tiny `mossep train` run with all of it on."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from mossep import augment as aug
from mossep import rooms as rm
from mossep import scenes as sc
from mossep.checkpoints import load_checkpoint
from mossep.errors import MossepError

from scripts import load_script

RATE = 8000
FAST = rm.RoomSpec(rt60=(0.1, 0.3), length_seconds=0.4)  # cheap rooms for tests


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """speakers (train 6, valid 4), ambient noise (2 files at 16 kHz, a different constant offset-free tone
    mixture each), measured responses (3: r0, r1 train, r2 held out)."""
    root = tmp_path_factory.mktemp("scenes")
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("valid", 4)):
        for k in range(n):
            d = root / split / f"spk{k}"
            d.mkdir(parents=True)
            t = np.arange(2 * RATE) / RATE
            x = sum(np.sin(2 * np.pi * (150 + 37 * k) * h * t) / h for h in range(1, 6))
            sf.write(d / "u.flac", (0.1 * x * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32), RATE)
    (root / "noise").mkdir()
    for k in range(2):
        sf.write(root / "noise" / f"n{k}.flac", (0.05 * rng.standard_normal(5 * 16000)).astype(np.float32), 16000)
    (root / "rirs").mkdir()
    for k in range(3):
        h = np.zeros(3000, np.float32)
        h[30 + 10 * k] = 1.0
        h[60:] = 0.2 * rng.standard_normal(2940) * np.exp(-np.arange(2940) / 300)
        sf.write(root / "rirs" / f"r{k}.flac", h, 16000)
    return root


def _cfg(data: Path, tmp: Path | None = None, **kw) -> sc.SceneConfig:
    base = dict(noise_dirs=(str(data / "noise"),), rir_dirs=(str(data / "rirs"),), held_out_rirs=("r2",), rooms=2,
                valid_rooms=1, rt60=FAST.rt60, cache=str(tmp) if tmp else None,
                room_spec_overrides={"length_seconds": FAST.length_seconds})
    base.update(kw)
    return sc.SceneConfig(**base)


def test_simulated_bank_is_seeded_compact_and_in_its_rt60_range():
    a = rm.simulated_bank(3, 2, RATE, positions=4, spec=FAST)
    b = rm.simulated_bank(3, 2, RATE, positions=4, spec=FAST, workers=2)
    assert a.wet.shape == (2, 4, int(0.4 * RATE)) and a.dry.shape[:2] == (2, 4)
    assert np.array_equal(a.wet, b.wet) and np.array_equal(a.dry, b.dry)  # seeded, whatever the processes
    assert ((a.rt60 >= 0.1) & (a.rt60 <= 0.3)).all()
    d = rm.simulated_bank(4, 2, RATE, positions=4, spec=FAST)
    assert not np.allclose(a.wet, d.wet)  # another seed, other rooms
    assert np.abs(a.wet[:, 0]).max(-1) == pytest.approx(1.0, rel=1e-3)  # unit peak
    assert np.array_equal(a.wet, a.wet.astype(np.float16).astype(np.float32))  # stored exactly as used
    assert (a.wet[..., -1] == 0).all()  # the tail below -60 dB is cut


def test_room_banks_are_cached_and_read_back_without_simulating(data, tmp_path, monkeypatch):
    cfg = _cfg(data, tmp_path)
    first = sc.room_bank(cfg, RATE, "train")
    assert len(list((tmp_path / "rooms").glob("*.npz"))) == 1

    def no_simulation(*a, **k):
        raise AssertionError("simulated again")

    monkeypatch.setattr(rm, "simulated_bank", no_simulation)
    monkeypatch.setattr(rm, "measured_rt60", no_simulation)
    again = sc.room_bank(cfg, RATE, "train")
    assert np.array_equal(first.wet, again.wet) and np.array_equal(first.dry, again.dry)
    assert first.names == again.names and np.array_equal(first.rt60, again.rt60)


def test_direct_path_ends_a_few_ms_after_the_peak():
    h = np.zeros((2, 400), np.float32)
    h[0, 50], h[0, 51:] = 1.0, 0.1
    h[1, 120], h[1, 121:] = -0.8, 0.05
    dry = rm.direct_path(h, RATE, direct_ms=2.5, fade_ms=1.0)
    keep = int(2.5 * RATE / 1000)
    assert dry.shape == (2, 120 + keep + 1)
    np.testing.assert_array_equal(dry[0, :51], h[0, :51])  # up to the peak: untouched
    assert dry[0, 50 + keep] == 0 and np.all(dry[0, 50 + keep:] == 0)  # nothing after peak + 2.5 ms
    assert dry[1, 120] == h[1, 120] and dry[1, 110] == 0.0


def test_reverberant_targets_are_dry_aligned_and_keep_the_drawn_level():
    bank = rm.simulated_bank(5, 2, RATE, positions=3, spec=FAST)
    rooms = aug.Rooms.from_bank(bank)
    g = torch.Generator().manual_seed(0)
    src = 0.05 * torch.randn(4, 2, RATE, generator=g, dtype=torch.float64)
    mix, tgt = aug.augment_batch(src, torch.Generator().manual_seed(1), RATE, reverb=1.0, rooms=rooms)
    assert mix.shape == (4, RATE) and tgt.shape == (4, 2, RATE)
    torch.testing.assert_close(aug.rms(tgt), aug.rms(src), rtol=0.02, atol=0)  # the dry target keeps the level
    for b in range(4):
        for c in range(2):
            t, s = tgt[b, c].numpy(), src[b, c].numpy()
            # the target is the source delayed by its direct path: the cross-correlation peaks at that delay
            lag = int(np.argmax(np.correlate(t, s, "full"))) - (len(s) - 1)
            assert 0 <= lag < 0.015 * RATE
            # and the reverberant image in the mixture is aligned with it (same delay, the direct path first)
            img = mix[b].numpy() - tgt[b, 1 - c].numpy()  # roughly: this talker's image plus the other's tail
            lag_img = int(np.argmax(np.correlate(img, t, "full"))) - (len(t) - 1)
            assert abs(lag_img) <= 2
    assert (mix.pow(2).mean(-1) > tgt.sum(1).pow(2).mean(-1)).all()  # the room adds energy


def test_noise_levels_follow_the_louder_talker_and_stay_out_of_the_targets(data):
    ambient_train, _ = sc.ambient_split([data / "noise"], RATE)
    clips = aug.Clips.from_arrays(ambient_train)
    g = torch.Generator().manual_seed(0)
    src = 0.05 * torch.randn(64, 2, RATE // 2, generator=g, dtype=torch.float64)
    src[:, 1] *= 0.5
    for kinds in ({"ambient": 1.0}, {"babble": 1.0}, {"synthetic": 1.0}):
        mix, tgt = aug.augment_batch(src, torch.Generator().manual_seed(2), RATE, noise=1.0, ambient=clips,
                                     babble=clips, noise_kinds=kinds, snr_db=(-6.0, 3.0))
        scale = tgt[:, 0].norm(dim=-1) / src[:, 0].norm(dim=-1)  # the peak limit scales everything alike
        torch.testing.assert_close(tgt, src * scale[:, None, None])
        noise = mix - tgt.sum(1)
        snr = 10 * torch.log10(tgt.pow(2).mean(-1).amax(1) / noise.pow(2).mean(-1))
        assert snr.min() > -6.01 and snr.max() < 3.01, kinds
        assert snr.max() - snr.min() > 6, kinds  # spread over the range
    mix, tgt = aug.augment_batch(src, torch.Generator().manual_seed(3), RATE, noise=0.5, ambient=clips)
    noisy = ((mix - tgt.sum(1)).abs().amax(-1) > 1e-9).double().mean()
    assert 0.3 < noisy < 0.7
    a = aug.augment_batch(src, torch.Generator().manual_seed(4), RATE, noise=1.0, reverb=0.0, ambient=clips)
    b = aug.augment_batch(src, torch.Generator().manual_seed(4), RATE, noise=1.0, reverb=0.0, ambient=clips)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])  # seeded
    assert torch.isfinite(a[0]).all() and a[0].abs().max() <= 0.99 + 1e-9


def test_held_out_noise_and_rooms_never_reach_training(data):
    train, valid = sc.ambient_split([data / "noise"], RATE, held_out=0.2)
    for k, f in enumerate(sorted((data / "noise").glob("*.flac"))):
        whole, _ = sf.read(f)
        assert len(train[k]) + len(valid[k]) == len(whole) // 2  # 16 kHz file, 8 kHz parts: all of it, once
        assert len(valid[k]) == pytest.approx(0.2 * (len(train[k]) + len(valid[k])), abs=1)
    cfg = _cfg(data)
    scenes = sc.training_scenes(cfg, RATE, None)
    flat = scenes.ambient.flat.numpy()
    np.testing.assert_array_equal(flat, np.concatenate(train))  # exactly the training parts, nothing else
    tr_bank, va_bank = sc.room_bank(cfg, RATE, "train"), sc.room_bank(cfg, RATE, "valid")
    assert tr_bank.names.count("sim") == 2 and va_bank.names.count("sim") == 1
    assert "r2" not in tr_bank.names and va_bank.names == ["sim", "r2"]
    assert set(tr_bank.names) - {"sim"} == {"r0", "r1"}
    for room in va_bank.wet:  # no validation room is a training room
        assert not any(np.allclose(room, t) for t in tr_bank.wet)
    with pytest.raises(MossepError, match="not found"):
        sc.rir_split([data / "rirs"], ["nope"])


def test_babble_uses_only_the_speakers_it_is_given():
    rng = np.random.default_rng(0)
    speakers = {f"s{k}": [rng.standard_normal(RATE).astype(np.float32)] for k in range(6)}
    speakers["talker"] = [np.full(RATE, np.nan, np.float32)]  # would poison the babble if used
    clip = sc.babble_clip(speakers, [n for n in speakers if n != "talker"], np.random.default_rng(1), RATE)
    assert clip.shape == (RATE,) and np.isfinite(clip).all()
    assert np.sqrt(np.mean(clip**2)) == pytest.approx(1.0, rel=1e-3)


def test_fixed_sets_are_deterministic_paired_and_held_out(data, tmp_path):
    cfg = _cfg(data, tmp_path)
    a = sc.fixed_sets([data / "valid"], RATE, 3, cfg, seconds=1.0)
    b = sc.fixed_sets([data / "valid"], RATE, 3, cfg, seconds=1.0)
    assert list(a) == list(sc.CONDITIONS)
    for c in sc.CONDITIONS:
        assert len(a[c]) == 3
        for (m1, t1), (m2, t2) in zip(a[c], b[c]):
            assert np.array_equal(m1, m2) and np.array_equal(t1, t2)
            assert m1.shape == (RATE,) and t1.shape == (2, RATE) and m1.dtype == np.float32
    for i in range(3):
        clean_mix, clean_src = a["clean"][i]
        noisy_mix, noisy_src = a["noisy"][i]
        np.testing.assert_allclose(noisy_src / np.abs(noisy_src).max(), clean_src / np.abs(clean_src).max(),
                                   atol=1e-5)  # same talkers, the noise only in the mixture
        assert not np.allclose(noisy_mix / np.abs(noisy_mix).max(), clean_mix / np.abs(clean_mix).max(), atol=1e-3)
        assert not np.allclose(a["reverb"][i][0], a["reverb"][i][1].sum(0), atol=1e-4)  # wet mixture, dry targets
    with pytest.raises(MossepError, match="unknown validation conditions"):
        sc.fixed_sets([data / "valid"], RATE, 1, cfg, conditions=["windy"])


def test_tiny_train_run_with_rooms_noise_and_device_mixing(data, tmp_path):
    out = tmp_path / "run"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""
size: tiny
train_dirs: [{data / 'train'}]
valid_dirs: [{data / 'valid'}]
noise_dirs: [{data / 'noise'}]
rir_dirs: [{data / 'rirs'}]
held_out_rirs: [r2]
rooms: 2
rt60: [0.1, 0.3]
data_cache: {tmp_path / 'cache'}
valid_conditions: [clean, noisy, reverb, both]
reverb: 0.5
noise: 0.5
partial: 0.2
segment_seconds: 0.5
valid_seconds: 0.5
valid_count: 1
batch_size: 2
steps: 2
valid_every: 2
checkpoint_every: 2
warmup_steps: 1
schedule: cosine
""")
    proc = subprocess.run([sys.executable, "-m", "mossep", "train", "-c", str(cfg), "-o", str(out), "-q",
                           "--mixing", "device", "--threads", "1"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    meta = load_checkpoint(out / "best.safetensors").metadata
    assert meta["training"]["augment"]["reverb"] == 0.5 and meta["training"]["augment"]["held_out_rirs"] == ["r2"]
    assert meta["training"]["dynamic_mixing"]["mixing"] == "device"
    assert set(meta["validation"]["conditions"]) == set(sc.CONDITIONS)
    assert all(np.isfinite(meta["validation"][f"{c}_si_snri_db"]) for c in sc.CONDITIONS)
    header, *rows = (out / "log.csv").read_text().splitlines()
    assert "valid_both" in header and any(r.split(",")[header.split(",").index("valid_noisy")] for r in rows)
    assert len(list((tmp_path / "cache" / "rooms").glob("*.npz"))) == 2  # training and validation banks


def test_recipes_are_valid_configs_that_hold_out_the_same_rooms(data):
    """The robust recipes (CPU and GPU) parse and pass the option checks, and name the same held-out rooms,
    noise split and room settings, so the GPU stage trains and validates on what the CPU stage does."""
    from dataclasses import replace

    from mossep.train import TrainConfig, checked_config

    root = Path(__file__).resolve().parents[1] / "recipes"
    loaded = {}
    names = ("robust-8k.yaml", "robust-noisy-8k.yaml", "robust-deep-8k.yaml", "gpu-robust-8k.yaml",
             "gpu-default-8k.yaml")
    for name in names:
        opts = TrainConfig.from_file(root / name)
        cfg = replace(TrainConfig(**opts), train_dirs=[str(data / "train")], valid_dirs=[str(data / "valid")])
        loaded[name] = checked_config(cfg)
    first, cpu, gpu = loaded["robust-8k.yaml"], loaded["robust-noisy-8k.yaml"], loaded["gpu-robust-8k.yaml"]
    for name in names[1:4]:  # every robust stage holds out what the first did
        for key in ("held_out_rirs", "rooms", "rt60", "snr_db"):
            assert getattr(loaded[name], key) == getattr(first, key), (name, key)
    # the GPU stage is the CPU specialist's recipe on the device
    for key in ("init", "reverb", "noise", "noise_kinds", "valid_conditions", "partial", "speeds"):
        assert getattr(cpu, key) == getattr(gpu, key), key
    assert "clean" not in gpu.valid_conditions and gpu.init == "weights/robust.safetensors"
    assert gpu.mixing == "device" and loaded["gpu-default-8k.yaml"].mixing == "device" and cpu.mixing == "cpu"


def test_realistic_benchmark_runs_end_to_end_with_a_tiny_model(data, tmp_path, tiny_model_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"valid_dirs: [{data / 'valid'}]\nnoise_dirs: [{data / 'noise'}]\nrir_dirs: [{data / 'rirs'}]\n"
                      f"held_out_rirs: [r2]\nrt60: [0.1, 0.3]\n")
    bench = load_script("benchmarks/bench_realistic.py")
    means = bench.main(["--model", str(tiny_model_path), "--recipe", str(recipe), "--count", "2", "--seconds", "1",
                        "--passes", "1", "--no-wiener", "--cache", str(tmp_path / "cache"), "--valid-rooms", "1"])
    assert list(means) == list(sc.CONDITIONS) and all(np.isfinite(v) for v in means.values())
    out = capsys.readouterr().out
    assert "| both |" in out and "command: python benchmarks/bench_realistic.py --model" in out


def test_realistic_benchmark_pools_seeds_and_compares_two_models_item_by_item(data, tmp_path, tiny_model_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"valid_dirs: [{data / 'valid'}]\nnoise_dirs: [{data / 'noise'}]\nrir_dirs: [{data / 'rirs'}]\n"
                      f"held_out_rirs: [r2]\nrt60: [0.1, 0.3]\n")
    bench = load_script("benchmarks/bench_realistic.py")
    common = ["--recipe", str(recipe), "--count", "2", "--seconds", "1", "--passes", "1", "--no-wiener", "--cache",
              str(tmp_path / "cache"), "--valid-rooms", "1", "--conditions", "clean", "noisy"]
    one = [bench.main(["--model", str(tiny_model_path), "--seed", str(s), *common]) for s in (5, 6)]
    pooled = bench.main(["--model", str(tiny_model_path), "--seed", "5", "6", *common])
    for c in ("clean", "noisy"):  # two draws pooled: the mean of their means (equal counts)
        assert pooled[c] == pytest.approx((one[0][c] + one[1][c]) / 2, abs=2e-3)
    same = bench.main(["--model", str(tiny_model_path), "--against", str(tiny_model_path), "--seed", "5", "6", *common])
    assert all(same[c]["mean"] == 0 and same[c]["better"] == same[c]["worse"] == 0 for c in ("clean", "noisy"))
    assert "difference: mean +- standard error" in capsys.readouterr().out

    d = bench.paired_difference([1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 1.05])
    assert d["mean"] == pytest.approx(1.4875, abs=1e-3) and d["better"] == 3 and d["worse"] == 0
    assert d["standard_error"] == pytest.approx(np.std([0, 1, 2, 2.95], ddof=1) / 2, abs=1e-3)
