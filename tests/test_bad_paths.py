"""Bad paths: outputs in the way, names too long, globs leaving DIR, report files that are folders, a training
folder that holds an earlier run. Each is one line, exit 1, checked before the work, nothing replaced."""
from __future__ import annotations

import pytest
import soundfile as sf

from faults import leftovers, one_line_error, run, tone


@pytest.fixture()
def model(tiny_model_path) -> list[str]:
    return ["--model", str(tiny_model_path), "--device", "cpu", "--quiet"]


def test_a_folder_in_place_of_an_output_replaces_nothing(tmp_path, capsys, model):
    """`mkdir o/x_spk2.wav` then --overwrite: x_spk1.wav must not be replaced (all outputs or none)."""
    src = tone(tmp_path / "x.wav")
    out = tmp_path / "o"
    out.mkdir()
    (out / "x_spk1.wav").write_bytes(b"an earlier output")
    (out / "x_spk2.wav").mkdir()
    code, _, err = run(["separate", src, "-o", out, "--overwrite", *model], capsys)
    one_line_error(code, err, "x_spk2.wav", "is a directory")
    assert (out / "x_spk1.wav").read_bytes() == b"an earlier output"
    assert leftovers(out) == []


def test_a_folder_appearing_during_the_work_still_leaves_the_set_whole(tmp_path, capsys, model, monkeypatch):
    """The targets are checked again just before the first rename: a folder made meanwhile is found there."""
    import mossep.audio as audio

    src = tone(tmp_path / "x.wav")
    out = tmp_path / "o"
    out.mkdir()
    (out / "x_spk1.wav").write_bytes(b"old")
    real = audio.SpeakerSink.pad_to_expected

    def pad(self):
        (out / "x_spk2.wav").mkdir(exist_ok=True)
        real(self)

    monkeypatch.setattr(audio.SpeakerSink, "pad_to_expected", pad)
    code, _, err = run(["separate", src, "-o", out, "--overwrite", *model], capsys)
    one_line_error(code, err, "x_spk2.wav", "is a directory")
    assert (out / "x_spk1.wav").read_bytes() == b"old"
    assert leftovers(out) == []


def test_an_output_name_too_long_is_refused_before_the_work(tmp_path, capsys, model):
    src = tone(tmp_path / ("n" * 250 + ".wav"))  # the input's name fits, its outputs' do not
    code, _, err = run(["separate", src, "-o", tmp_path / "o", *model], capsys)
    one_line_error(code, err, "name too long")
    assert not (tmp_path / "o").exists()


def test_an_output_name_near_the_limit_still_works(tmp_path, capsys, model):
    """A temporary name is longer than its target; it must not make a valid name fail."""
    stem = "n" * (255 - len("_spk1.wav"))
    src = tone(tmp_path / "in" / f"{stem}.wav")
    code, _, err = run(["separate", src, "-o", tmp_path / "o", *model], capsys)
    assert code == 0, err
    assert sf.info(tmp_path / "o" / f"{stem}_spk2.wav").frames == 8000
    assert leftovers(tmp_path / "o") == []


@pytest.mark.parametrize("pattern", ["../elsewhere/*.wav", "sub/../../elsewhere/*.wav", "ABS/*.wav", "/*"])
def test_batch_glob_cannot_leave_dir(tmp_path, capsys, model, pattern):
    tone(tmp_path / "dir" / "sub" / "in.wav")
    victim = tone(tmp_path / "elsewhere" / "v.wav")
    (tmp_path / "elsewhere" / "v_spk1.wav").write_bytes(b"not mossep's")
    pattern = pattern.replace("ABS", str(tmp_path / "elsewhere"))
    code, _, err = run(["batch", tmp_path / "dir", "-o", tmp_path / "out", "--glob", pattern, "--overwrite",
                        *model], capsys)
    one_line_error(code, err, "--glob", "inside DIR")
    assert sorted(p.name for p in victim.parent.iterdir()) == ["v.wav", "v_spk1.wav"]
    assert (tmp_path / "elsewhere" / "v_spk1.wav").read_bytes() == b"not mossep's"
    assert not (tmp_path / "out").exists()


def test_a_template_giving_two_talkers_one_name_says_so(tmp_path, capsys, model):
    src = tone(tmp_path / "a.wav")
    for cmd in (["separate", src], ["batch", tmp_path]):
        code, _, err = run([*cmd, "-o", tmp_path / "o", "--filename", "{stem}_{k!s:.0}.wav", *model], capsys)
        one_line_error(code, err, "same name", "{k}")
        assert "given twice" not in err
    assert not (tmp_path / "o").exists()


def test_batch_where_every_file_fails_leaves_no_output_folder(tmp_path, capsys, model):
    (tmp_path / "in" / "d").mkdir(parents=True)
    (tmp_path / "in" / "d" / "bad.wav").write_bytes(b"RIFF but not audio")
    (tmp_path / "in" / "short.wav").write_bytes(b"")
    code, _, err = run(["batch", tmp_path / "in", "-o", tmp_path / "out" / "deep", *model], capsys)
    assert code == 1 and "2 failed" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_evaluate_report_path_that_is_a_folder_fails_before_the_work(tmp_path, capsys):
    """--json DIR --overwrite: refused up front (a missing model would be the error if it were checked late)."""
    (tmp_path / "report").mkdir()
    code, _, err = run(["evaluate", tmp_path / "data", "--json", tmp_path / "report", "--overwrite",
                        "--model", tmp_path / "no-such-model"], capsys)
    one_line_error(code, err, "report", "is a directory")
    code, _, err = run(["evaluate", tmp_path / "data", "--csv", tmp_path / ("r" * 300 + ".csv"),
                        "--model", tmp_path / "no-such-model"], capsys)
    one_line_error(code, err, "name too long")


# -- training into a folder that holds a run --------------------------------------------------------------------
@pytest.fixture(scope="module")
def speakers(tmp_path_factory):
    import numpy as np

    root = tmp_path_factory.mktemp("spk")
    rng = np.random.default_rng(0)
    for i, f0 in enumerate((110, 170, 230, 290)):
        (root / f"s{i}").mkdir()
        t = np.arange(8000) / 8000
        x = 0.1 * np.sin(2 * np.pi * f0 * t * (1 + 0.1 * np.sin(2 * np.pi * 3 * t))) + 0.01 * rng.standard_normal(8000)
        sf.write(root / f"s{i}" / "u.wav", x.astype(np.float32), 8000)
    return root


def _train_args(speakers, out, *extra) -> list:
    return ["train", "--size", "tiny", "--train-dir", speakers, "--valid-dir", speakers, "--segment-seconds", "0.5",
            "--batch-size", "2", "--steps", "2", "--valid-every", "2", "--checkpoint-every", "2", "--device", "cpu",
            "-o", out, "--quiet", *extra]


def test_training_into_an_earlier_run_needs_resume_or_overwrite(tmp_path, capsys, speakers):
    out = tmp_path / "run"
    code, _, err = run(_train_args(speakers, out), capsys)
    assert code == 0, err
    before = {n: (out / n).read_bytes() for n in ("best.safetensors", "last.pt", "config.yaml", "log.csv")}
    code, _, err = run(_train_args(speakers, out, "--seed", "7"), capsys)
    one_line_error(code, err, str(out), "--resume", "--overwrite")
    assert {n: (out / n).read_bytes() for n in before} == before  # nothing replaced, nothing appended
    code, _, err = run(_train_args(speakers, out, "--resume", "--overwrite"), capsys)
    one_line_error(code, err, "--resume", "--overwrite")
    code, _, err = run(_train_args(speakers, out, "--seed", "7", "--overwrite"), capsys)
    assert code == 0, err
    assert (out / "best.safetensors").read_bytes() != before["best.safetensors"]
    assert (out / "log.csv").read_text().count("step,") == 1  # a fresh log, not the old one appended to


def test_resuming_a_run_that_is_not_there_creates_nothing(tmp_path, capsys, speakers):
    out = tmp_path / "missing" / "run"
    code, _, err = run(_train_args(speakers, out, "--resume"), capsys)
    one_line_error(code, err, "last.pt", "no training state")
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("command", ["separate", "info", "evaluate"])
def test_an_input_name_too_long_for_the_file_system_is_one_line(tmp_path, capsys, model, command):
    """A 300-character input name made os.stat raise 'File name too long' through a traceback (found for
    `info` and `separate` by the checkpoint mutation run): one line with the shortened name, exit 1, nothing made."""
    name = tmp_path / ("n" * 300 + ".wav")
    args = {"separate": ["separate", name, "-o", tmp_path / "out", *model], "info": ["info", name],
            "evaluate": ["evaluate", name, *model]}[command]
    code, _, err = run(args, capsys)
    one_line_error(code, err, "name too long", "...nnnn", "n.wav")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
