"""Three talkers end to end: stitching and tracking among all 6 orders, separate/batch/--stdout/API with a tiny
3-output model, evaluate on 3-source sets, and train --num-spks 3."""
from __future__ import annotations

import csv
import io
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from mossep import dynamic_mix as dm
from mossep import train_data as td
from mossep.checkpoints import load_checkpoint, save_native
from mossep.chunking import choose_permutation, keep_quiet_outputs, plan_chunks, stitch
from mossep.errors import MossepError
from mossep.level import training_level_dbfs
from mossep.models import build_model, preset
from mossep.separator import Separator
from mossep.tracking import decide, override_margin, permutation_scores
from mossep.train import TrainConfig, Trainer

from test_tracking import voice
from faults import run

SR = 8000
ORDERS = list(itertools.permutations(range(3)))
FIXTURES = Path(__file__).parent / "fixtures" / "libri2mix"


def three_voices(seconds: float) -> np.ndarray:
    """A low dark voice, a high bright one and one between, taking turns (each alone 0.8 s of every 3 s) with
    some overlap."""
    return np.stack([voice(seconds, 110.0, 1.6, 3.0, 0.4, 0.0, 1), voice(seconds, 230.0, 0.6, 3.0, 0.4, 2 / 3, 2),
                     voice(seconds, 160.0, 1.1, 3.0, 0.4, 1 / 3, 3)])



# ---------------------------------------------------------------- stitching
@pytest.mark.parametrize("order", ORDERS)
def test_stitching_keeps_each_of_three_talkers_on_its_output(order):
    src = three_voices(20.0)
    mix = src.sum(0)
    plan = plan_chunks(len(mix), 6 * SR, 1 * SR)
    rng = np.random.default_rng(sum(order))
    # the model's order changes from chunk to chunk: identity, `order`, `order` applied twice, ...
    orders, o = [], np.arange(3)
    for _ in plan:
        orders.append(o)
        o = o[list(order)]
    est = [src[o, s:e] * rng.uniform(0.2, 5.0, (3, 1)) for o, (s, e) in zip(orders, plan)]
    out, perms = stitch(est, plan, mix, 1 * SR)
    assert np.abs(out - src).max() < 1e-3 * np.abs(src).max()
    for o, p in zip(orders, perms):  # output i carries est[p[i]], which is talker o[p[i]]
        assert [int(o[p[i]]) for i in range(3)] == [0, 1, 2]
    if order != (0, 1, 2):
        assert len(set(perms)) > 1  # the orders really changed


def test_quiet_outputs_keep_their_previous_order():
    # over the overlap only output 0 talks: the estimates of outputs 1 and 2 cannot be told apart there
    rng = np.random.default_rng(0)
    stitched = np.zeros((3, 400))
    stitched[0] = rng.standard_normal(400)
    est = np.zeros((3, 400))
    est[2] = stitched[0]
    for previous, expected in [((0, 1, 2), (2, 1, 0)), ((1, 0, 2), (2, 0, 1)), ((2, 1, 0), (2, 1, 0)),
                               ((1, 2, 0), (2, 1, 0))]:
        assert choose_permutation(stitched, est, stitched[0], 1.0, previous) == expected
    # the live outputs always keep what the overlap matched; quiet ones keep as much of `previous` as is left
    for chosen in ORDERS:
        for previous in ORDERS:
            for quiet in itertools.product([False, True], repeat=3):
                out = keep_quiet_outputs(chosen, previous, quiet)
                assert sorted(out) == [0, 1, 2]
                if sum(quiet) in (0, 1, 3):
                    assert out == chosen
                else:
                    assert all(out[i] == chosen[i] for i in range(3) if not quiet[i])
                    left = {chosen[i] for i in range(3) if quiet[i]}
                    assert all(out[i] == previous[i] for i in range(3) if quiet[i] and previous[i] in left)
    # two talkers: never changed
    for chosen in [(0, 1), (1, 0)]:
        for quiet in itertools.product([False, True], repeat=2):
            assert keep_quiet_outputs(chosen, (1, 0), quiet) == chosen


def test_quiet_overlap_stitching_with_three_talkers():
    rng = np.random.default_rng(2)
    n, chunk, overlap = 500, 200, 50
    src = rng.standard_normal((3, n))
    src[1:, 300:350] = 0.0  # only talker 0 over the last overlap
    mix = src.sum(0)
    plan = plan_chunks(n, chunk, overlap)
    assert plan == [(0, 200), (150, 350), (300, 500)]
    order = [2, 1, 0]  # chunks 1 and 2 come out in the same order (estimate j is talker order[j])
    est = [src[:, 0:200], src[order, 150:350].copy(), src[order, 300:500].copy()]
    # the outputs of the silent talkers carry faint junk there, which happens to favour swapping them
    junk = 1e-3 * rng.standard_normal((2, overlap))
    est[1][order.index(1), 150:], est[1][order.index(2), 150:] = junk
    est[2][order.index(1), :overlap], est[2][order.index(2), :overlap] = junk[::-1]
    out, perms = stitch(est, plan, mix, overlap)
    assert perms[1] == perms[2] == (2, 1, 0)  # the silent talkers keep their previous outputs
    np.testing.assert_allclose(out[:, 350:], src[:, 350:], atol=1e-3 * np.abs(src).max())


# ---------------------------------------------------------------- tracking
def test_override_margin_scales_with_the_talker_count():
    assert override_margin(2) == pytest.approx(1.2)
    assert override_margin(3) == pytest.approx(0.6)
    # three equally distinct voices, exact profiles: a swap of two scores 1 below the right order, a rotation 1.5
    profiles = np.array([[1.0, 0.0], [-0.5, np.sqrt(3) / 2], [-0.5, -np.sqrt(3) / 2]])
    scores = permutation_scores(profiles, profiles)
    assert scores[(0, 1, 2)] == pytest.approx(1.0)
    assert scores[(1, 0, 2)] == pytest.approx(0.0) and scores[(1, 2, 0)] == pytest.approx(-0.5)
    assert sum(scores.values()) == pytest.approx(0.0)
    counts = np.full(3, 1e6)
    for matched in ORDERS:  # every wrong order is put right
        chunk = profiles[np.argsort(matched)]  # the chunk's outputs in the matched order are the profiles
        assert decide(matched, profiles, counts, profiles, counts, 62.5) == (0, 1, 2)
        assert decide(matched, profiles, counts, chunk, counts, 62.5) == matched


@pytest.mark.parametrize("change", [(1, 2, 0), (1, 0, 2)])
def test_three_way_rotation_or_swap_inside_a_chunk_is_healed(change):
    src = three_voices(48.0)
    mix = src.sum(0)
    plan = plan_chunks(len(mix), 8 * SR, 1 * SR)
    k = 4
    est = [src[:, s:e].copy() for s, e in plan]
    cut = int(0.6 * (plan[k][1] - plan[k][0]))
    est[k][:, cut:] = est[k][list(change), cut:]
    plain, plain_perms = stitch(est, plan, mix, SR)
    tracked, perms = stitch(est, plan, mix, SR, track_speakers=True, sample_rate=SR)
    after = plan[k + 1][0] + SR
    np.testing.assert_allclose(plain[:, after:], src[list(change), after:], atol=1e-3)  # carried to the end
    np.testing.assert_allclose(tracked[:, after:], src[:, after:], atol=1e-3)  # undone at the next chunk
    assert perms[:k + 1] == plain_perms[:k + 1]
    assert all(p == (0, 1, 2) for p in perms[k + 1:])


def test_tracking_changes_nothing_without_a_swap():
    src = three_voices(48.0)
    mix = src.sum(0)
    plan = plan_chunks(len(mix), 8 * SR, 1 * SR)
    est = [src[list(ORDERS[i % 6]), s:e] for i, (s, e) in enumerate(plan)]
    plain, p0 = stitch(est, plan, mix, SR)
    tracked, p1 = stitch(est, plan, mix, SR, track_speakers=True, sample_rate=SR)
    assert p0 == p1
    np.testing.assert_allclose(tracked, plain, atol=1e-6)


# ---------------------------------------------------------------- separate, batch, --stdout, Python API
@pytest.fixture(scope="module")
def tiny3(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = build_model(preset("tiny", num_spks=3))
    path = tmp_path_factory.mktemp("models3") / "tiny3.safetensors"
    save_native(model, path, {"note": "random weights for tests"})
    return path


@pytest.fixture(scope="module")
def talk3(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A 3-talker mixture at 16 kHz (resampled to and from the model rate), 4 s."""
    x = 0.1 * three_voices(4.0).sum(0)
    x16 = np.repeat(x, 2).astype(np.float32)
    path = tmp_path_factory.mktemp("in3") / "talk.wav"
    sf.write(path, x16, 16000, subtype="FLOAT")
    return path, x16


SETTINGS = ["--chunk-seconds", "2", "--overlap-seconds", "0.5", "--device", "cpu", "--quiet"]


def array_path(tiny3: Path, mix: np.ndarray, rate: int) -> np.ndarray:
    return Separator(tiny3, device="cpu", chunk_seconds=2, overlap_seconds=0.5).separate(mix, rate)


def test_separate_writes_three_files_matching_the_array_path(tiny3, talk3, tmp_path, capsysbinary):
    path, x16 = talk3
    ref = array_path(tiny3, x16, 16000)
    assert ref.shape == (3, len(x16)) and np.abs(ref).max() > 0
    code, out, err = run(["separate", path, "-o", tmp_path / "out", "--model", tiny3, "--subtype", "FLOAT", *SETTINGS],
                         capsysbinary)
    assert code == 0, err
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["talk_spk1.wav", "talk_spk2.wav", "talk_spk3.wav"]
    got = np.stack([sf.read(tmp_path / "out" / n, dtype="float32")[0] for n in names])
    np.testing.assert_allclose(got, ref, atol=1e-6)
    # --stdout: one WAV with 3 channels, the same content
    code, out, err = run(["separate", path, "--stdout", "--model", tiny3, "--subtype", "FLOAT", *SETTINGS],
                         capsysbinary)
    assert code == 0, err
    data, rate = sf.read(io.BytesIO(out), dtype="float32")
    assert rate == 16000 and data.shape == (len(x16), 3)
    np.testing.assert_allclose(data.T, ref, atol=1e-6)


def test_every_output_is_checked_before_writing(tiny3, talk3, tmp_path, capsys):
    path, _ = talk3
    out = tmp_path / "out"
    out.mkdir()
    (out / "talk_spk3.wav").write_bytes(b"keep me")  # only the third exists
    code, _, err = run(["separate", path, "-o", out, "--model", tiny3, *SETTINGS], capsys)
    assert code == 1 and "talk_spk3.wav: already exists" in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["talk_spk3.wav"]
    assert (out / "talk_spk3.wav").read_bytes() == b"keep me"
    code, _, err = run(["separate", path, "-o", out, "--model", tiny3, "--overwrite", "--filename", "{k}-{stem}.wav",
                        *SETTINGS], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["1-talk.wav", "2-talk.wav", "3-talk.wav", "talk_spk3.wav"]


def test_batch_and_python_api_write_three_outputs(tiny3, talk3, tmp_path, capsys):
    path, x16 = talk3
    ref = array_path(tiny3, x16, 16000)
    tree = tmp_path / "in" / "sub"
    tree.mkdir(parents=True)
    sf.write(tree / "a.wav", x16, 16000, subtype="FLOAT")
    code, _, err = run(["batch", tmp_path / "in", "-o", tmp_path / "out", "--model", tiny3, "--subtype", "FLOAT",
                        *SETTINGS], capsys)
    assert code == 0, err
    got = np.stack([sf.read(tmp_path / "out" / "sub" / f"a_spk{k}.wav", dtype="float32")[0] for k in (1, 2, 3)])
    np.testing.assert_allclose(got, ref, atol=1e-6)
    # resumable: with all three outputs there the file is skipped; with the third missing it is not
    (tmp_path / "out" / "sub" / "a_spk3.wav").unlink()
    code, _, err = run(["batch", tmp_path / "in", "-o", tmp_path / "out", "--model", tiny3, *SETTINGS], capsys)
    assert code == 1 and "a_spk1.wav: already exists" in err
    # the Python API
    sep = Separator(tiny3, device="cpu", chunk_seconds=2, overlap_seconds=0.5)
    assert sep.num_speakers == 3
    paths = sep.separate_file(path, tmp_path / "api", subtype="FLOAT")
    assert [p.name for p in paths] == ["talk_spk1.wav", "talk_spk2.wav", "talk_spk3.wav"]
    np.testing.assert_allclose(np.stack([sf.read(p, dtype="float32")[0] for p in paths]), ref, atol=1e-6)
    # two passes (merged among the 6 orders), the post-filter and tracking all take three outputs
    both = Separator(tiny3, device="cpu", chunk_seconds=2, overlap_seconds=0.5, passes=2, wiener=True,
                     track_speakers=True).separate(x16, 16000)
    assert both.shape == (3, len(x16)) and np.isfinite(both).all()


def test_chunks_reach_a_three_talker_model_at_its_training_level(tiny3, monkeypatch):
    assert training_level_dbfs(2) == -22.0  # two talkers at -25 dBFS each, as before
    sep = Separator(tiny3, device="cpu", chunk_seconds=0)
    seen, real = [], sep._run_model
    monkeypatch.setattr(sep, "_run_model", lambda x, model=None: (seen.append(float(x.double().pow(2).mean().sqrt())), real(x, model))[1])
    sep.separate((0.3 * three_voices(2.0).sum(0)).astype(np.float32), SR)
    assert 20 * np.log10(seen[0]) == pytest.approx(-22.0 + 10 * np.log10(3 / 2), abs=0.01)  # 1.8 dB above two


# ---------------------------------------------------------------- evaluate
def fixture_sources() -> list[np.ndarray]:
    """Four different talkers from the Libri2Mix fixture, cut to one length."""
    xs = [sf.read(FIXTURES / f"item{i}_source{k}.wav", dtype="float64")[0] for i in (10, 28) for k in (1, 2)]
    n = min(len(x) for x in xs)
    return [x[:n] for x in xs]


def three_source_items() -> list[tuple[str, np.ndarray]]:
    s = fixture_sources()
    return [("item1", np.stack([s[0], s[1], s[2]])), ("item2", np.stack([s[3], s[1], s[0]]))]


def write_numbered(folder: Path, items) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, src in items:
        sf.write(folder / f"{name}_mix.wav", src.sum(0), SR, subtype="FLOAT")
        for k, x in enumerate(src, 1):
            sf.write(folder / f"{name}_source{k}.wav", x, SR, subtype="FLOAT")
    return folder


def si_snr_db(est: np.ndarray, ref: np.ndarray) -> float:
    est, ref = est - est.mean(), ref - ref.mean()
    proj = (est @ ref) / (ref @ ref) * ref
    return float(10 * np.log10((proj @ proj) / ((est - proj) @ (est - proj))))


def direct_pit(est: np.ndarray, ref: np.ndarray, mix: np.ndarray) -> dict:
    """SI-SNR, SI-SNRi and SDRi with the best of the 6 orders, computed here from their definitions."""
    import fast_bss_eval

    si = {p: np.mean([si_snr_db(est[p[i]], ref[i]) for i in range(3)]) for p in ORDERS}
    best = max(si, key=si.get)
    base = np.mean([si_snr_db(mix, r) for r in ref])
    pair = -fast_bss_eval.sdr_loss(est, ref, filter_length=512, pairwise=True)  # [ref, est]
    sdr = max(np.mean([pair[i, p[i]] for i in range(3)]) for p in ORDERS)
    sdr_base = np.mean(np.diag(-fast_bss_eval.sdr_loss(np.stack([mix] * 3), ref, filter_length=512, pairwise=True)))
    return {"si_snr": si[best], "si_snri": si[best] - base, "sdri": sdr - sdr_base, "perm": list(best)}


def test_evaluate_scores_three_sources_with_a_direct_pit(tmp_path, capsys):
    items = three_source_items()
    data = write_numbered(tmp_path / "set", items)
    est_dir = tmp_path / "est"
    est_dir.mkdir()
    rng = np.random.default_rng(5)
    wants = []
    for (name, src), order in zip(items, [(2, 0, 1), (1, 2, 0)]):
        # estimates: the sources in another order, each with some of the others and noise in it
        mixing = np.eye(3) + rng.uniform(0.05, 0.4, (3, 3)) * (1 - np.eye(3))
        est = (mixing @ src)[list(order)] + 0.01 * rng.standard_normal(src.shape)
        for k, x in enumerate(est, 1):
            sf.write(est_dir / f"{name}_source{k}.wav", x, SR, subtype="FLOAT")
        est = np.stack([sf.read(est_dir / f"{name}_source{k}.wav")[0] for k in (1, 2, 3)])
        ref = np.stack([sf.read(data / f"{name}_source{k}.wav")[0] for k in (1, 2, 3)])
        wants.append(direct_pit(est, ref, sf.read(data / f"{name}_mix.wav")[0]))
        assert [wants[-1]["perm"][order[j]] for j in range(3)] == [0, 1, 2]  # estimate j is source order[j]
    code, out, err = run(["evaluate", data, "--estimates", est_dir, "--json", tmp_path / "r.json", "--quiet"], capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["layout"] == "numbered" and [i["id"] for i in report["items"]] == ["item1", "item2"]
    for got, want in zip(report["items"], wants):
        assert got["perm"] == want["perm"]
        for key in ("si_snr", "si_snri", "sdri"):
            assert got[key] == pytest.approx(want[key], abs=1e-3), key


def test_evaluate_with_a_three_output_model_reads_every_layout(tiny3, tmp_path, capsys):
    items = three_source_items()
    data = write_numbered(tmp_path / "set", items)
    code, out, err = run(["evaluate", data, "--model", tiny3, "--json", tmp_path / "r.json", *SETTINGS], capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["model"]["num_speakers"] == 3 and len(report["items"]) == 2
    assert all(sorted(i["perm"]) == [0, 1, 2] for i in report["items"])
    # the same set as LibriMix folders (s1/ s2/ s3/) and as a manifest with an s3 column: the same scores
    lm = tmp_path / "Libri3Mix" / "test"
    for sub in ("mix_clean", "s1", "s2", "s3"):
        (lm / sub).mkdir(parents=True)
    with open(tmp_path / "list.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["mix", "s1", "s2", "s3"])
        for name, src in items:
            sf.write(lm / "mix_clean" / f"{name}.wav", src.sum(0), SR, subtype="FLOAT")
            for k, x in enumerate(src, 1):
                sf.write(lm / f"s{k}" / f"{name}.wav", x, SR, subtype="FLOAT")
            w.writerow([f"set/{name}_mix.wav"] + [f"set/{name}_source{k}.wav" for k in (1, 2, 3)])
    for dataset, layout in ((lm, "librimix"), (tmp_path / "list.csv", "manifest")):
        code, out, err = run(["evaluate", dataset, "--model", tiny3, "--json", tmp_path / "o.json", "--overwrite",
                              "--limit", "1", *SETTINGS], capsys)
        assert code == 0, err
        other = json.loads((tmp_path / "o.json").read_text())
        assert other["layout"] == layout and len(other["items"]) == 1
        assert other["items"][0]["si_snri"] == pytest.approx(report["items"][0]["si_snri"])
    # the files `mossep separate` writes (<stem>_spk1..3) score as the model path does
    sep_dir = tmp_path / "sep"
    code, _, err = run(["separate", *sorted(data.glob("*_mix.wav")), "-o", sep_dir, "--model", tiny3,
                        "--subtype", "FLOAT", *SETTINGS], capsys)
    assert code == 0, err
    code, out, err = run(["evaluate", data, "--estimates", sep_dir, "--json", tmp_path / "e.json", "--quiet"], capsys)
    assert code == 0, err
    scored = json.loads((tmp_path / "e.json").read_text())
    assert [i["si_snri"] for i in scored["items"]] == pytest.approx([i["si_snri"] for i in report["items"]], abs=1e-3)


def test_evaluate_talker_count_errors_are_one_line(tiny3, tiny_model_path, tmp_path, capsys):
    data = write_numbered(tmp_path / "set", three_source_items())
    # a 2-output model on 3-source mixtures, a 3-output model on 2-source ones
    for model, dataset in ((tiny_model_path, data), (tiny3, FIXTURES)):
        code, _, err = run(["evaluate", dataset, "--model", model, *SETTINGS], capsys)
        assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1
        assert "speakers but the item has" in err
    # a set mixing 2- and 3-source items
    s = fixture_sources()
    write_numbered(data, [("item3", np.stack(s[:2]))])
    code, _, err = run(["evaluate", data, "--model", tiny3, *SETTINGS], capsys)
    assert code == 1 and "item3_mix.wav: has 2 references where others have 3" in err
    lm = tmp_path / "lm"
    for sub in ("mix_clean", "s1", "s2", "s3"):
        (lm / sub).mkdir(parents=True)
    for k, sub in enumerate(("mix_clean", "s1", "s2")):
        sf.write(lm / sub / "a.wav", s[k], SR)
    code, _, err = run(["evaluate", lm, "--model", tiny3, *SETTINGS], capsys)
    assert code == 1 and "s3/a.wav: reference for mixture" in err
    (tmp_path / "m.csv").write_text(f"mix,s1,s2,s3\n{data}/item1_mix.wav,{data}/item1_source1.wav,"
                                    f"{data}/item1_source2.wav,\n")
    code, _, err = run(["evaluate", tmp_path / "m.csv", "--model", tiny3, *SETTINGS], capsys)
    assert code == 1 and "m.csv:2: empty s3 path" in err


# ---------------------------------------------------------------- train --num-spks 3
def tone_speakers(root: Path, f0s: list[float]) -> Path:
    """One folder per speaker holding a steady tone at its own frequency (1.5 s, two utterances)."""
    t = np.arange(int(1.5 * SR)) / SR
    for i, f0 in enumerate(f0s):
        d = root / f"spk{i}"
        d.mkdir(parents=True)
        for u in range(2):
            sf.write(d / f"u{u}.flac", (0.1 * np.sin(2 * np.pi * f0 * t + u)).astype(np.float32), SR)
    return root


def test_mixtures_hold_three_distinct_speakers(tmp_path):
    f0s = [200.0, 450.0, 700.0, 950.0, 1200.0]
    speakers = dm.load_speaker_folders([tone_speakers(tmp_path / "set", f0s)], SR, min_speakers=3)
    spec = dm.MixSpec(4000, num_spks=3, speed_perturb=0.0, random_polarity=True)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(40):
        mix, src = dm.make_mixture(speakers, spec, rng, SR)
        assert src.shape == (3, 4000)
        np.testing.assert_allclose(mix, src.sum(0), atol=1e-6)
        freqs = np.fft.rfftfreq(4000, 1 / SR)
        who = [int(np.argmin(np.abs(np.array(f0s) - freqs[np.argmax(np.abs(np.fft.rfft(s)))]))) for s in src]
        assert len(set(who)) == 3
        seen.add(tuple(sorted(who)))
    assert len(seen) > 3  # different triples, not one fixed one
    with pytest.raises(MossepError, match="need at least 3 speakers"):
        dm.load_speaker_folders([tone_speakers(tmp_path / "two", f0s[:2])], SR, min_speakers=3)


def test_train_num_spks_3_gives_a_three_output_checkpoint(tmp_path, capsys):
    train = tone_speakers(tmp_path / "train", [200.0, 450.0, 700.0, 950.0])
    valid = tone_speakers(tmp_path / "valid", [300.0, 600.0, 900.0])
    (tmp_path / "c.yaml").write_text("valid_count: 4\nvalid_seconds: 0.5\nsegment_seconds: 0.5\nbatch_size: 2\n")
    code, _, err = run(["train", "-c", tmp_path / "c.yaml", "--size", "tiny", "--num-spks", "3", "--train-dir", train,
                        "--valid-dir", valid, "--steps", "2", "--valid-every", "2", "--device", "cpu",
                        "-o", tmp_path / "run", "--quiet"], capsys)
    assert code == 0, err
    loaded = load_checkpoint(tmp_path / "run" / "best.safetensors")
    assert loaded.config.num_spks == 3 and loaded.metadata["num_spks"] == 3
    assert loaded.model(torch.zeros(1, 4000)).shape == (1, 3, 4000)
    assert "num_spks: 3" in (tmp_path / "run" / "config.yaml").read_text()
    # too few speakers for three-talker mixtures: one line
    code, _, err = run(["train", "--size", "tiny", "--num-spks", "3", "--train-dir", tone_speakers(tmp_path / "two", [200.0, 450.0]),
                        "--steps", "1", "--device", "cpu", "-o", tmp_path / "run2", "--quiet"], capsys)
    assert code == 1 and "need at least 3 speakers" in err and len(err.strip().splitlines()) == 1


def test_training_reads_fixed_three_source_sets(tmp_path):
    data = write_numbered(tmp_path / "set", three_source_items())
    cfg = dict(size="tiny", train_sets=[str(data)], segment_seconds=0.5, batch_size=2, steps=1, device="cpu", quiet=True)
    trainer = Trainer(TrainConfig(num_spks=3, out_dir=str(tmp_path / "run"), **cfg))
    mix, refs = td.make_batch(trainer.data, 2, seed=0, step=0)
    assert mix.shape == (2, 4000) and refs.shape == (2, 3, 4000)
    np.testing.assert_allclose(mix, refs.sum(1), atol=1e-5)
    trainer.fit()
    with pytest.raises(MossepError, match="has 3 references, the model separates 2"):
        Trainer(TrainConfig(out_dir=str(tmp_path / "run2"), **cfg))
    with pytest.raises(MossepError, match="num_spks"):
        Trainer(TrainConfig(num_spks=1, out_dir=str(tmp_path / "run3"), **cfg))
