"""Choosing the network per chunk (mossep.gate): clean speech to the model, noisy or reverberant chunks to the
noisy-room model; the Separator's routing, its settings and what it reports."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from oracles import BandSplit, oracle_model, talkers

from mossep.checkpoints import LoadedModel
from mossep.errors import MossepError
from mossep.gate import NOISY_BELOW_DB, REVERB_KURTOSIS_BELOW, energy_range_db, lp_residual_kurtosis, sounds_noisy
from mossep.separator import ChunkCount, Separator, recommended_settings

SR = 8000
EXAMPLE = Path(__file__).parents[1] / "examples" / "talkers_mix.wav"


def speech() -> np.ndarray:
    x, sr = sf.read(EXAMPLE, dtype="float32")
    assert sr == SR
    return x


def with_noise(x: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(len(x))
    noise *= np.sqrt(np.mean(x ** 2) / np.mean(noise ** 2)) * 10 ** (-snr_db / 20)
    return (x + noise).astype(np.float32)


def test_clean_speech_has_a_wide_energy_range_and_noise_narrows_it():
    x = speech()
    ranges = [energy_range_db(with_noise(x, snr), SR) for snr in (30, 10, 5, 0, -5)]
    assert energy_range_db(x, SR) > 20
    assert all(a > b for a, b in zip(ranges, ranges[1:]))  # more noise, narrower range
    assert not sounds_noisy(x, SR) and sounds_noisy(with_noise(x, 0), SR)


@settings(max_examples=25, deadline=None)
@given(st.floats(-40, 20), st.integers(0, 4000))
def test_the_range_ignores_level_and_digital_silence(gain_db, pad):
    x = with_noise(speech(), 5)
    want = energy_range_db(x, SR)
    louder = x * np.float32(10 ** (gain_db / 20))
    padded = np.concatenate([np.zeros(pad, np.float32), louder, np.zeros(pad, np.float32)])
    assert energy_range_db(padded, SR) == pytest.approx(want, abs=0.5)


def in_room(x: np.ndarray) -> np.ndarray:
    """`x` through the measured seminar room of the test fixtures (held out from training)."""
    rir, sr = sf.read(Path(__file__).parent / "fixtures" / "noise" / "seminar_room_clap_8k.flac", dtype="float64")
    assert sr == SR
    return np.convolve(x, rir)[: len(x)].astype(np.float32)


def test_a_room_smears_the_prediction_residual_towards_gaussian():
    x = speech()
    dry, wet = lp_residual_kurtosis(x, SR), lp_residual_kurtosis(in_room(x), SR)
    assert dry > 2 * REVERB_KURTOSIS_BELOW and wet < REVERB_KURTOSIS_BELOW
    assert lp_residual_kurtosis(np.random.default_rng(0).standard_normal(SR), SR) == pytest.approx(0, abs=0.3)
    assert lp_residual_kurtosis(3 * x, SR) == pytest.approx(dry, rel=1e-6)  # level does not matter
    # the room alone leaves the pauses deep enough for the energy range; the residual tells
    assert energy_range_db(in_room(x), SR) > NOISY_BELOW_DB and sounds_noisy(in_room(x), SR)
    assert not sounds_noisy(x, SR)


def test_too_little_sound_says_nothing():
    assert energy_range_db(np.zeros(SR, np.float32), SR) is None  # only digital silence
    assert energy_range_db(np.ones(100, np.float32), SR) is None  # under 8 frames
    assert lp_residual_kurtosis(np.zeros(SR, np.float32), SR) is None
    assert not sounds_noisy(np.zeros(SR, np.float32), SR)


class Negated(BandSplit):
    """A stand-in 'noisy-room network': BandSplit's outputs sign-flipped and in the other order (another network
    may name the talkers differently; the level fit undoes the sign, the overlap match the order); counting its
    calls tells which network ran."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return -super().forward(x).flip(1)


def test_noisy_chunks_go_to_the_noisy_room_model_and_are_counted():
    noisy_net = Negated()
    sep = Separator(oracle_model(), device="cpu", chunk_seconds=2.0, overlap_seconds=0.5, solo=False,
                    noisy_model=LoadedModel(noisy_net, "oracle", Path("negated")))
    quiet = talkers(SR, 4.0).sum(0)
    loud_noise = with_noise(quiet, -3, seed=1)
    mix = np.concatenate([quiet, loud_noise])  # 8 s: clean first half, noisy second half
    count = ChunkCount()
    out = np.concatenate(list(sep.separate_stream([mix], len(mix), count=count)), axis=1)
    assert out.shape == (2, len(mix))
    assert 0 < count.noisy < count.total == 5  # chunks at 0, 1.5, 3, 4.5, 6 s; the noisy ones after 4 s
    assert noisy_net.calls == count.noisy
    # where the networks change, each talker stays on its output: the sign-flipped stand-in's chunks are fitted
    # back to the mixture and matched to their neighbours, so the whole output is BandSplit's, as with one network
    plain = Separator(oracle_model(), device="cpu", chunk_seconds=2.0, overlap_seconds=0.5, solo=False,
                      noisy_model=False)
    want = np.concatenate(list(plain.separate_stream([mix], len(mix))), axis=1)
    np.testing.assert_allclose(out, want, atol=1e-4)


def test_no_noisy_room_model_unless_asked_or_recommended(tiny_model_path):
    assert Separator(oracle_model(), device="cpu").noisy is None
    from mossep.checkpoints import load_checkpoint

    loaded = load_checkpoint(tiny_model_path)
    loaded.metadata["inference"] = {"noisy_model": "robust", "noisy_below_db": 12}
    sep = Separator(loaded, device="cpu")
    assert sep.noisy is not None and sep.noisy_below_db == 12.0
    assert sep.noisy_loaded.path.name == "robust.safetensors"
    assert (sep.noisy.signs, sep.noisy.wiener) == ([1.0, -1.0], False)  # robust's own recommendation
    assert Separator(loaded, device="cpu", noisy_model=False).noisy is None
    assert Separator(loaded, device="cpu", raw=True).noisy is None
    explicit = Separator(loaded, device="cpu", passes=1, wiener=True)  # given settings apply to both networks
    assert (explicit.noisy.signs, explicit.noisy.wiener) == ([1.0], True)


def test_checkpoint_metadata_names_only_bundled_models():
    assert recommended_settings({"inference": {"noisy_model": "robust"}})["noisy_model"] == "robust"
    for bad in ("hf:org/name", "mossformer2-whamr-2spk", "/tmp/x.safetensors", 3, ["robust"]):
        assert recommended_settings({"inference": {"noisy_model": bad}})["noisy_model"] is None
    for bad in (0, -3, 100, "15", True, float("nan")):
        assert recommended_settings({"inference": {"noisy_below_db": bad}})["noisy_below_db"] == NOISY_BELOW_DB


def test_a_noisy_room_model_for_other_talkers_is_refused(tiny_model_path):
    three = BandSplit()
    three.config.num_spks = 3
    with pytest.raises(MossepError, match="noisy-room model separates 3 talkers at 8000 Hz"):
        Separator(oracle_model(), device="cpu", noisy_model=LoadedModel(three, "oracle", Path("three")))
    with pytest.raises(MossepError, match="^--noisy-model: nope: model not found"):
        Separator(oracle_model(), device="cpu", noisy_model="nope")
    with pytest.raises(MossepError, match="noisy_below_db"):
        Separator(oracle_model(), device="cpu", noisy_below_db=0)


def test_the_default_model_sends_noisy_recordings_to_robust_and_says_so(tmp_path):
    x = speech()
    sf.write(tmp_path / "clean.wav", x, SR)
    sf.write(tmp_path / "noisy.wav", with_noise(x, 0), SR)
    proc = subprocess.run([sys.executable, "-m", "mossep", "separate", str(tmp_path / "clean.wav"),
                           str(tmp_path / "noisy.wav"), "-o", str(tmp_path / "out"), "--json",
                           str(tmp_path / "r.json"), "--threads", "1"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    files = {Path(f["input"]).name: f for f in json.loads((tmp_path / "r.json").read_text())["files"]}
    assert files["clean.wav"]["noisy_chunks"] == [0, 1] and files["noisy.wav"]["noisy_chunks"] == [1, 1]
    assert "noisy-room model for 1 of 1 chunks" in proc.stderr.replace("\n", " ")
    off = subprocess.run([sys.executable, "-m", "mossep", "separate", str(tmp_path / "noisy.wav"), "-o",
                          str(tmp_path / "off"), "--noisy-model", "none", "--json", str(tmp_path / "off.json"),
                          "--threads", "1"], capture_output=True, text=True)
    assert off.returncode == 0, off.stderr
    assert "noisy_chunks" not in json.loads((tmp_path / "off.json").read_text())["files"][0]
