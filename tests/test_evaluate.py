"""`mossep evaluate`: scoring estimates on disk or from a separator, its errors, and the CLI's outputs."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mossep.cli import main
from mossep.datasets import find_items, resample
from mossep.errors import MossepError
from mossep.evaluate import evaluate_dataset, find_estimates, score_mixtures, trim_to_common

from conftest import FIXTURES

DEVSET = FIXTURES / "libri2mix"
ESTIMATES = DEVSET / "mossformer2_estimates"
# MossFormer2's published estimates of the two fixture clips, scored once with fast_bss_eval (512 taps)
KNOWN = {"item10": {"si_snri": 13.7684, "sdri": 14.3683, "perm": [0, 1]},
         "item28": {"si_snri": 20.5588, "sdri": 21.0289, "perm": [1, 0]}}


def _copy_estimates(tmp_path: Path, name: str = "{id}_source{k}.wav", swap: bool = False, rate: int | None = None,
                    pad: int = 0) -> Path:
    """The fixture's estimates under another naming / order / sample rate / length."""
    out = tmp_path / "est"
    out.mkdir(exist_ok=True)
    for item in ("item10", "item28"):
        for k in (1, 2):
            x, sr = sf.read(str(ESTIMATES / f"{item}_source{k}.wav"))
            if rate:
                x, sr = resample(x, sr, rate), rate
            x = np.concatenate([x, np.zeros(pad)])
            kk = 3 - k if swap else k
            sf.write(str(out / name.format(id=item, stem=f"{item}_mix", k=kk)), x, sr, subtype="FLOAT")
    return out


def _cli(*args: str) -> int:
    try:
        main([str(a) for a in args])
    except SystemExit as e:
        return int(e.code or 0)
    return 0


# ---------------------------------------------------------------- estimates on disk
def test_fixture_estimates_reproduce_known_scores():
    calls = []
    report = evaluate_dataset(DEVSET, estimates=ESTIMATES, on_item=lambda *a: calls.append(a))
    assert [(d, t, s and s.id) for d, t, s in calls] == [(0, 2, None), (1, 2, "item10"), (2, 2, "item28")]
    assert report.layout == "numbered"
    for s in report.items:
        assert s.si_snri == pytest.approx(KNOWN[s.id]["si_snri"], abs=1e-3)
        assert s.sdri == pytest.approx(KNOWN[s.id]["sdri"], abs=1e-3)
        assert s.perm == KNOWN[s.id]["perm"]
        assert s.process_s is None and s.rtf is None
        assert s.si_snr - s.input_si_snr == pytest.approx(s.si_snri)
    summary = report.summary()
    assert summary["si_snri"] == pytest.approx(np.mean([k["si_snri"] for k in KNOWN.values()]), abs=1e-3)
    assert summary["duration_s"] == pytest.approx((24040 + 24360) / 8000, abs=0.05)
    assert summary["rtf"] is None


def test_mixture_copies_score_no_improvement(tmp_path):
    out = tmp_path / "est"
    out.mkdir()
    for item in ("item10", "item28"):
        for k in (1, 2):
            shutil.copy(DEVSET / f"{item}_mix.wav", out / f"{item}_source{k}.wav")
    report = evaluate_dataset(DEVSET, estimates=out)
    for s in report.items:
        assert s.si_snri == pytest.approx(0.0, abs=1e-6) and s.sdri == pytest.approx(0.0, abs=1e-6)
        assert abs(s.si_snr) < 1.0  # two talkers at similar level


def test_mossep_naming_swapped_order_and_other_rate(tmp_path):
    est = _copy_estimates(tmp_path, name="{stem}_spk{k}.wav", swap=True, rate=16000, pad=40)  # 2.5 ms longer
    report = evaluate_dataset(DEVSET, estimates=est)
    for s in report.items:
        assert s.perm == KNOWN[s.id]["perm"][::-1]
        assert s.si_snri == pytest.approx(KNOWN[s.id]["si_snri"], abs=0.3)  # 8k -> 16k -> 8k is nearly lossless
        assert s.sdri == pytest.approx(KNOWN[s.id]["sdri"], abs=0.3)


def test_estimate_errors(tmp_path):
    est = _copy_estimates(tmp_path, pad=800)  # 100 ms longer than the references
    with pytest.raises(MossepError, match=r"lengths may differ by at most 10 ms"):
        evaluate_dataset(DEVSET, estimates=est)
    shutil.rmtree(est)
    est = _copy_estimates(tmp_path)
    shutil.copy(est / "item10_source1.wav", est / "item10_source3.wav")
    with pytest.raises(MossepError, match=r"3 estimates for item10 .* but 2 references"):
        evaluate_dataset(DEVSET, estimates=est)
    (est / "item10_source3.wav").unlink()
    (est / "item28_source1.wav").unlink()
    (est / "item28_source2.wav").unlink()
    with pytest.raises(MossepError, match=r"no estimates for item item28 \(looked for item28_source1.wav"):
        evaluate_dataset(DEVSET, estimates=est)
    assert len(evaluate_dataset(DEVSET, estimates=est, limit=1).items) == 1
    with pytest.raises(MossepError, match="estimates folder not found"):
        evaluate_dataset(DEVSET, estimates=tmp_path / "nothing")


def test_find_estimates_librimix_style(tmp_path):
    _, items = find_items(DEVSET)
    for k in (1, 2):
        (tmp_path / f"s{k}").mkdir()
        shutil.copy(ESTIMATES / f"item10_source{k}.wav", tmp_path / f"s{k}" / "item10.wav")
    assert find_estimates(tmp_path, items[0]) == [tmp_path / "s1" / "item10.wav", tmp_path / "s2" / "item10.wav"]


def test_trim_to_common():
    a, b = np.zeros((2, 8000)), np.zeros(8030)
    ta, tb = trim_to_common([a, b], 8000, ["a", "b"])
    assert ta.shape == (2, 8000) and tb.shape == (8000,)
    with pytest.raises(MossepError, match=r"a: 1.000 s but b is 1.100 s"):
        trim_to_common([a, np.zeros(8800)], 8000, ["a", "b"])


# ---------------------------------------------------------------- separator path (duck-typed stand-in)
class OracleSeparator:
    """Returns the item's references (swapped), at the mixture's rate: the scores must be very high."""

    num_speakers = 2

    def __init__(self, refs: dict[int, np.ndarray]):
        self.refs, self.calls = refs, []

    def separate(self, mix, sample_rate, progress=None):
        self.calls.append((len(mix), sample_rate))
        return self.refs[len(mix)][::-1].astype(np.float32)


def test_separator_path_is_timed_and_scored(tmp_path):
    _, items = find_items(DEVSET)
    refs = {}
    for it in items:
        r = np.stack([sf.read(str(p))[0] for p in it.sources])
        refs[r.shape[1]] = r
    sep = OracleSeparator(refs)
    report = evaluate_dataset(DEVSET, separator=sep)
    assert [c[1] for c in sep.calls] == [8000, 8000]
    for s in report.items:
        assert s.si_snr > 60 and s.perm == [1, 0]
        assert s.process_s is not None and s.process_s >= 0 and s.rtf == pytest.approx(s.process_s / s.duration_s)
    assert report.summary()["rtf"] is not None

    sep.num_speakers = 3
    with pytest.raises(MossepError, match="separates 3 speakers but the item has 2 references"):
        evaluate_dataset(DEVSET, separator=sep)


class SignSensitiveSeparator:
    """Separates perfectly what it is given as is, returns two halves of an inverted mixture."""

    num_speakers = 2

    def __init__(self, pairs):
        self.pairs = {mix.tobytes(): src for mix, src in pairs}

    def separate(self, mix, sample_rate):
        src = self.pairs.get(np.asarray(mix).tobytes())
        return np.stack([mix / 2, mix / 2]) if src is None else src[::-1]


def test_score_mixtures_in_memory_pairs_and_inverted_input():
    rng = np.random.default_rng(0)
    pairs = []
    for _ in range(3):
        src = rng.standard_normal((2, 4000))
        pairs.append((src.sum(0), src))
    sep = SignSensitiveSeparator(pairs)
    as_is = score_mixtures(sep, pairs, 8000)
    assert as_is.shape == (3,) and (as_is > 60).all()
    inverted = score_mixtures(sep, pairs, 8000, sign=-1.0)
    assert np.allclose(inverted, 0.0, atol=1e-6)  # the mixture itself, scored against the sources


# ---------------------------------------------------------------- CLI
def test_cli_estimates_json_and_csv(tmp_path, capsys):
    js, cs = tmp_path / "r.json", tmp_path / "r.csv"
    assert _cli("evaluate", DEVSET, "--estimates", ESTIMATES, "--json", js, "--csv", cs) == 0
    out = capsys.readouterr().out
    assert "item10" in out and "SI-SNRi 17.16 dB, SDRi 17.70 dB" in out
    data = json.loads(js.read_text())
    assert data["layout"] == "numbered" and data["model"] is None and data["sdr_filter_length"] == 512
    assert [i["id"] for i in data["items"]] == ["item10", "item28"]
    assert data["items"][1]["si_snri"] == pytest.approx(KNOWN["item28"]["si_snri"], abs=1e-3)
    assert data["summary"]["items"] == 2 and data["summary"]["sdri"] == pytest.approx(17.6986, abs=1e-3)
    rows = list(csv.DictReader(cs.open()))
    assert [r["id"] for r in rows] == ["item10", "item28"]
    assert float(rows[0]["sdri"]) == pytest.approx(KNOWN["item10"]["sdri"], abs=1e-3)
    assert rows[1]["perm"] == "1 0" and rows[0]["rtf"] == ""
    assert not list(tmp_path.glob(".*.part"))  # no temporary files left

    # an existing output is kept unless --overwrite; the check happens before any work
    js.write_text("keep")
    assert _cli("evaluate", DEVSET, "--estimates", ESTIMATES, "--json", js, "-q") == 1
    assert "already exists" in capsys.readouterr().err and js.read_text() == "keep"
    assert _cli("evaluate", DEVSET, "--estimates", ESTIMATES, "--json", js, "--overwrite", "--quiet", "--limit", "1") == 0
    out = capsys.readouterr().out
    assert out.startswith("1 items, 3.0 s of audio") and "┃" not in out
    assert len(json.loads(js.read_text())["items"]) == 1


def test_cli_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert _cli("evaluate", tmp_path / "empty", "--estimates", ESTIMATES) == 1
    err = capsys.readouterr().err
    assert err.startswith("mossep: error: ") and "not a known dataset layout" in err and err.count("\n") == 1
    assert _cli("evaluate", DEVSET, "--estimates", tmp_path / "empty") == 1
    assert "no estimates for item item10" in capsys.readouterr().err


def test_cli_with_tiny_model(tiny_model_path, tmp_path, capsys):
    js = tmp_path / "tiny.json"
    assert _cli("evaluate", DEVSET, "--model", tiny_model_path, "--device", "cpu", "--json", js, "--limit", "1") == 0
    out = capsys.readouterr().out
    assert "RTF" in out and "real-time factor" in out
    data = json.loads(js.read_text())
    assert data["model"]["path"] == str(tiny_model_path) and data["model"]["num_speakers"] == 2
    item = data["items"][0]
    assert item["id"] == "item10" and np.isfinite(item["si_snr"]) and item["process_s"] > 0
    assert item["rtf"] == pytest.approx(item["process_s"] / item["duration_s"])
    assert data["summary"]["rtf"] == pytest.approx(item["rtf"])
    assert (data["settings"]["passes"], data["settings"]["wiener"]) == (1, False)  # the tiny model recommends none
    assert _cli("evaluate", DEVSET, "--model", tiny_model_path, "--device", "cpu", "--json", js, "--overwrite",
                "--limit", "1", "--passes", "2", "--wiener", "-q") == 0
    data = json.loads(js.read_text())
    assert (data["settings"]["passes"], data["settings"]["wiener"]) == (2, True)


@pytest.mark.parametrize("bad, words", [("item10_source1.wav", "NaN or infinite"), ("item10_mix.wav", "NaN or infinite"),
                                        ("short", "too short")])
def test_cli_bad_audio_names_the_file(tiny_model_path, tmp_path, capsys, bad, words):
    """A NaN reference used to score as NaN with exit 0; a NaN or too-short mixture was reported as 'mixture: ...'
    without saying which file."""
    data = tmp_path / "set"
    data.mkdir()
    for name in ("item10_mix.wav", "item10_source1.wav", "item10_source2.wav"):
        x, sr = sf.read(str(DEVSET / name))
        if bad == "short":
            x = x[:10]
        elif name == bad:
            x[100] = np.nan
        sf.write(str(data / name), x, sr, subtype="FLOAT")
    js = tmp_path / "r.json"
    code = _cli("evaluate", data, "--model", tiny_model_path, "--device", "cpu", "--quiet", "--json", js)
    out, err = capsys.readouterr()
    target = data / ("item10_mix.wav" if bad == "short" else bad)
    assert code == 1 and out == "" and err.count("\n") == 1, err
    assert err.startswith(f"mossep: error: {target}: ") and words in err
    assert not js.exists()


def test_unwritable_report_folder_fails_before_scoring(tmp_path, capsys, monkeypatch, refuse_writes_in):
    """--json/--csv into a folder that cannot be written: one line before the (long) evaluation, not a
    traceback after it."""
    import mossep.cli.evaluate as cli_evaluate

    folder = tmp_path / "reports"
    folder.mkdir()
    refuse_writes_in(folder)
    monkeypatch.setattr(cli_evaluate, "evaluate_dataset", lambda *a, **k: pytest.fail("evaluated anyway"))
    for opt in ("--json", "--csv"):
        assert _cli("evaluate", DEVSET, "--estimates", ESTIMATES, opt, folder / "r.out") == 1
        err = capsys.readouterr().err
        assert err.startswith(f"mossep: error: {folder}") and "not writable" in err and err.count("\n") == 1, err
    assert list(folder.iterdir()) == []
