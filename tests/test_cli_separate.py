"""`mossep separate` and `mossep batch` through the real entry point."""
from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mossep.cli import main
from faults import run


def tone(path: Path, seconds: float = 1.0, rate: int = 8000, channels: int = 1, subtype: str | None = None,
         fmt: str | None = None) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 347 * t + 1.0)
    if channels > 1:
        x = np.stack([x * (c + 1) / channels for c in range(channels)], 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, rate, subtype=subtype, format=fmt)
    return path


def no_temp_files(root: Path) -> bool:
    return not [p for p in root.rglob("*") if p.name.endswith(".part")]


@pytest.fixture()
def model(tiny_model_path) -> list[str]:
    return ["--model", str(tiny_model_path), "--device", "cpu", "--quiet"]


def test_separate_writes_one_file_per_speaker(tmp_path, capsys, model):
    src = tone(tmp_path / "in" / "talk.wav", rate=16000)
    code, out, err = run(["separate", src, "-o", tmp_path / "out", *model], capsys)
    assert code == 0, err
    assert out == ""
    outs = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert outs == ["talk_spk1.wav", "talk_spk2.wav"]
    info = sf.info(tmp_path / "out" / "talk_spk1.wav")
    assert (info.samplerate, info.frames, info.subtype) == (16000, 16000, "PCM_16")


def test_format_subtype_rate_filename_options(tmp_path, capsys, model):
    src = tone(tmp_path / "a.flac", rate=22050, channels=2)
    code, _, err = run(["separate", src, "-o", tmp_path / "o", "--format", "flac", "--subtype", "PCM_24",
                        "--sample-rate", "8000", "--filename", "{stem}-speaker{k}.flac", *model], capsys)
    assert code == 0, err
    info = sf.info(tmp_path / "o" / "a-speaker2.flac")
    assert (info.format, info.subtype, info.samplerate, info.frames) == ("FLAC", "PCM_24", 8000, 8000)
    code, _, err = run(["separate", src, "-o", tmp_path / "f", "--subtype", "float", *model], capsys)
    assert code == 0, err
    assert sf.info(tmp_path / "f" / "a_spk1.wav").subtype == "FLOAT"
    code, _, err = run(["separate", src, "-o", tmp_path / "g", "--format", "flac", "--subtype", "FLOAT", *model],
                       capsys)
    assert code == 1 and "FLOAC" not in err and "cannot store FLOAT" in err


def test_channel_option_picks_one_channel(tmp_path, capsys, model):
    t = np.arange(8000) / 8000
    x = np.stack([0.5 * np.sin(2 * np.pi * 300 * t), np.zeros_like(t)], 1)  # channel 2 is silent
    src = tmp_path / "st.wav"
    sf.write(src, x, 8000)
    assert run(["separate", src, "-o", tmp_path / "c2", "--channel", "2", "--subtype", "FLOAT", *model], capsys)[0] == 0
    assert run(["separate", src, "-o", tmp_path / "c1", "--channel", "1", "--subtype", "FLOAT", *model], capsys)[0] == 0
    silent = np.abs(sf.read(tmp_path / "c2" / "st_spk1.wav")[0]).max()
    loud = max(np.abs(sf.read(tmp_path / "c1" / f"st_spk{k}.wav")[0]).max() for k in (1, 2))
    assert silent == 0.0 and loud > 0.01
    code, _, err = run(["separate", src, "-o", tmp_path / "c3", "--channel", "3", *model], capsys)
    assert code == 1 and "st.wav" in err and "--channel 3" in err


def test_chunk_options_and_whole_file(tmp_path, capsys, model):
    src = tone(tmp_path / "long.wav", seconds=3.0)
    for extra in (["--chunk-seconds", "0"], ["--chunk-seconds", "0.5", "--overlap-seconds", "0.1"]):
        out = tmp_path / extra[1]
        code, _, err = run(["separate", src, "-o", out, *extra, *model], capsys)
        assert code == 0, err
        assert sf.info(out / "long_spk2.wav").frames == 24000
    code, _, err = run(["separate", src, "-o", tmp_path / "x", "--chunk-seconds", "1", "--overlap-seconds", "2",
                        *model], capsys)
    assert code == 1 and "shorter than --chunk-seconds" in err


def test_passes_and_wiener_options_change_the_output(tmp_path, capsys, model):
    src = tone(tmp_path / "talk.wav", seconds=1.5)
    outs = {}
    for extra in (["--passes", "1", "--no-wiener"], ["--passes", "2", "--no-wiener"], ["--passes", "1", "--wiener"]):
        out = tmp_path / "-".join(extra)
        # --no-solo: a tone is one voice, which mossep.solo would give whole to one output in every setting
        code, _, err = run(["separate", src, "-o", out, *extra, "--no-solo", *model], capsys)
        assert code == 0, err
        outs[" ".join(extra)] = sf.read(out / "talk_spk1.wav")[0]
    plain = outs["--passes 1 --no-wiener"]
    assert all(len(v) == len(plain) for v in outs.values())
    assert not np.allclose(outs["--passes 2 --no-wiener"], plain, atol=1e-3)
    assert not np.allclose(outs["--passes 1 --wiener"], plain, atol=1e-3)
    code, _, err = run(["separate", src, "-o", tmp_path / "bad", "--passes", "3", *model], capsys)
    assert code == 1 and err.strip() == "mossep: error: --passes must be 1 or 2, got 3"
    assert not (tmp_path / "bad").exists()


def test_dehum_and_track_options_reach_the_separator(tmp_path, capsys, model):
    t = np.arange(3 * 8000) / 8000
    hum = sum(0.05 / k * np.sin(2 * np.pi * 50 * k * t + k) for k in range(1, 6))
    hummed = tmp_path / "hum.wav"
    sf.write(hummed, 0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 1.3 * t) > 0) + hum, 8000,
             subtype="FLOAT")
    clean = tone(tmp_path / "clean.wav", seconds=3.0, subtype="FLOAT")

    def outputs(src: Path, *extra: str) -> np.ndarray:
        out = tmp_path / f"{src.stem}{'-'.join(extra)}"
        code, _, err = run(["separate", src, "-o", out, *extra, *model], capsys)
        assert code == 0, err
        return np.stack([sf.read(out / f"{src.stem}_spk{k}.wav")[0] for k in (1, 2)])

    assert not np.allclose(outputs(hummed), outputs(hummed, "--no-dehum"), atol=1e-3)  # the hum was taken out
    assert np.array_equal(outputs(clean), outputs(clean, "--no-dehum"))  # nothing to take out
    tracked = outputs(hummed, "--track", "--chunk-seconds", "1", "--overlap-seconds", "0.25")
    assert tracked.shape == (2, len(t)) and np.isfinite(tracked).all()


def test_progress_and_notes_go_to_stderr_only(tmp_path, capsys, tiny_model_path):
    src = tone(tmp_path / "p.wav")
    code, out, err = run(["separate", src, "-o", tmp_path / "o", "--model", tiny_model_path, "--device", "cpu"],
                         capsys)
    assert code == 0 and out == "" and "p_spk1.wav" in err


def _wav_bytes(x: np.ndarray, rate: int) -> bytes:
    import io

    buf = io.BytesIO()
    sf.write(buf, x, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def test_stdin_to_stdout_pipe(tmp_path, tiny_model_path):
    """`... | mossep separate - --stdout | ...`: one WAV with C channels on stdout and nothing else."""
    t = np.arange(12000) / 16000
    data = _wav_bytes(0.3 * np.sin(2 * np.pi * 200 * t), 16000)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "mossep", "separate", "-", "--stdout", "--model",
                           str(tiny_model_path), "--device", "cpu"], input=data, capture_output=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()
    wav = proc.stdout
    assert wav[:4] == b"RIFF" and struct.unpack("<I", wav[4:8])[0] + 8 == len(wav)  # nothing after the WAV
    import io

    y, sr = sf.read(io.BytesIO(wav))
    assert sr == 16000 and y.shape == (12000, 2)


def test_stdin_in_process(tmp_path, capsysbinary, monkeypatch, tiny_model_path):
    """stdin with -o names the outputs after "stdin"; with --stdout only WAV bytes reach stdout."""
    import io

    t = np.arange(4000) / 8000
    data = _wav_bytes(0.3 * np.sin(2 * np.pi * 200 * t), 8000)
    args = ["--model", str(tiny_model_path), "--device", "cpu"]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    with pytest.raises(SystemExit) as e:
        main(["separate", "-", "-o", str(tmp_path), "--quiet", *args])
    assert e.value.code in (0, None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stdin_spk1.wav", "stdin_spk2.wav"]
    capsysbinary.readouterr()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    with pytest.raises(SystemExit) as e:
        main(["separate", "-", "--stdout", *args])
    assert e.value.code in (0, None)
    out, err = capsysbinary.readouterr()
    y, sr = sf.read(io.BytesIO(out))
    assert sr == 8000 and y.shape == (4000, 2)
    assert struct.unpack("<I", out[4:8])[0] + 8 == len(out)
    # not audio on stdin
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"garbage" * 10)))
    with pytest.raises(SystemExit) as e:
        main(["separate", "-", "--stdout", *args])
    out, err = capsysbinary.readouterr()
    assert e.value.code == 1 and out == b"" and b"<stdin>: not a readable audio file" in err


def test_stdout_rejects_bad_combinations(tmp_path, capsys, model):
    """Conflicting or missing output options: exit status 1, one line naming the problem, nothing on stdout (a
    pipe would take it for audio) and nothing written: no output folder, no file beside the input."""
    src = tone(tmp_path / "a.wav")
    out_dir = tmp_path / "out"
    for args, words in [([src, src, "--stdout"], "--stdout takes exactly one input"),
                        ([src, "--stdout", "-o", out_dir], "give either -o OUTDIR or --stdout, not both"),
                        ([src], "no output: give -o OUTDIR (or --stdout)"),
                        ([src, "--stdout", "--format", "flac"], "--stdout writes WAV"),
                        (["-", "-", "-o", out_dir], "- (stdin) can be given only once")]:
        code, out, err = run(["separate", *args, *model], capsys)
        _assert_clean_error(code, out, err, words)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav"], args


def _assert_clean_error(code: int, out: str, err: str, name: str) -> None:
    assert code == 1
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mossep: error: "), err
    assert name in lines[0] and "Traceback" not in err


def _bad_inputs(tmp_path: Path) -> dict[str, Path]:
    d = tmp_path / "bad"
    d.mkdir()
    (d / "text.wav").write_text("hello, this is not audio\n")
    sf.write(d / "empty.wav", np.zeros(0), 8000)
    sf.write(d / "short.wav", np.zeros(5), 8000)
    x = np.zeros(2000, np.float32)
    x[1500] = np.inf
    sf.write(d / "inf.wav", x, 8000, subtype="FLOAT")
    (d / "folder.wav").mkdir()
    return {"missing": d / "missing.wav", "folder": d / "folder.wav", "text": d / "text.wav",
            "empty": d / "empty.wav", "short": d / "short.wav", "inf": d / "inf.wav"}


@pytest.mark.parametrize("case, words", [("missing", "no such file"), ("folder", "directory"),
                                         ("text", "not a readable audio file"), ("empty", "no audio"),
                                         ("short", "too short"), ("inf", "NaN or infinite")])
def test_bad_input_is_one_line_error(tmp_path, capsys, model, case, words):
    path = _bad_inputs(tmp_path)[case]
    out_dir = tmp_path / "out"
    code, out, err = run(["separate", path, "-o", out_dir, *model], capsys)
    _assert_clean_error(code, out, err, path.name)
    assert words in err
    assert not out_dir.exists() or list(out_dir.iterdir()) == []


def test_nan_late_in_a_long_file_leaves_no_partial_outputs(tmp_path, capsys, model):
    x = (np.random.default_rng(0).standard_normal(8000 * 12) * 0.1).astype(np.float32)
    x[8000 * 11] = np.nan  # found only after several chunks were separated and written
    src = tmp_path / "late.wav"
    sf.write(src, x, 8000, subtype="FLOAT")
    out_dir = tmp_path / "out"
    code, out, err = run(["separate", src, "-o", out_dir, "--chunk-seconds", "1", "--overlap-seconds", "0.2",
                          *model], capsys)
    _assert_clean_error(code, out, err, "late.wav")
    assert not out_dir.exists()  # not even the folder this run created


def test_unwritable_output_directory(tmp_path, capsys, model):
    src = tone(tmp_path / "a.wav")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, out, err = run(["separate", src, "-o", blocker / "sub", *model], capsys)
    _assert_clean_error(code, out, err, "file/sub")
    assert "not writable" in err


def test_existing_outputs_need_overwrite(tmp_path, capsys, model):
    src = tone(tmp_path / "a.wav")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "a_spk2.wav").write_bytes(b"mine")
    code, out, err = run(["separate", src, "-o", out_dir, *model], capsys)
    _assert_clean_error(code, out, err, "a_spk2.wav")
    assert sorted(p.name for p in out_dir.iterdir()) == ["a_spk2.wav"]  # speaker 1 was not written either
    assert (out_dir / "a_spk2.wav").read_bytes() == b"mine"
    code, _, err = run(["separate", src, "-o", out_dir, "--overwrite", *model], capsys)
    assert code == 0, err
    assert sf.info(out_dir / "a_spk2.wav").frames == 8000


def test_second_input_error_stops_before_writing_anything(tmp_path, capsys, model):
    good = tone(tmp_path / "good.wav")
    out_dir = tmp_path / "out"
    code, out, err = run(["separate", good, tmp_path / "nope.wav", "-o", out_dir, *model], capsys)
    _assert_clean_error(code, out, err, "nope.wav")
    assert not out_dir.exists() or list(out_dir.iterdir()) == []


def test_broken_checkpoint(tmp_path, capsys):
    """A checkpoint that is not one: exit status 1, one line naming the file, and nothing left behind (the
    model is loaded before any output folder or file is made)."""
    src = tone(tmp_path / "a.wav")
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x00" * 100)
    for cmd in (["separate", src, "-o", tmp_path / "o"], ["separate", src, "--stdout"]):
        code, out, err = run([*cmd, "--model", bad, "--quiet"], capsys)
        _assert_clean_error(code, out, err, "broken.safetensors")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "broken.safetensors"]
    assert bad.read_bytes() == b"\x00" * 100


def _tree(root: Path) -> None:
    tone(root / "a.wav")
    tone(root / "sub" / "b.flac", rate=16000)
    tone(root / "sub" / "deeper" / "c.wav")
    (root / "notes.txt").write_text("not audio, not matched")
    (root / "sub" / "broken.wav").write_text("corrupt")


def test_batch_mirrors_tree_continues_past_bad_files_and_resumes(tmp_path, capsys, model):
    src, out_dir = tmp_path / "in", tmp_path / "out"
    _tree(src)
    code, out, err = run(["batch", src, "-o", out_dir, *model], capsys)
    assert code == 1 and out == ""
    assert "broken.wav" in err and "4 files: 3 separated, 0 skipped (outputs exist), 1 failed" in err
    assert "Traceback" not in err
    made = sorted(str(p.relative_to(out_dir)) for p in out_dir.rglob("*.wav"))
    assert made == ["a_spk1.wav", "a_spk2.wav", "sub/b_spk1.wav", "sub/b_spk2.wav",
                    "sub/deeper/c_spk1.wav", "sub/deeper/c_spk2.wav"]
    assert sf.info(out_dir / "sub" / "b_spk1.wav").samplerate == 16000
    assert no_temp_files(out_dir)
    # resume: everything already done is skipped (files untouched)
    (src / "sub" / "broken.wav").unlink()
    stamp = (out_dir / "a_spk1.wav").stat().st_mtime_ns
    code, _, err = run(["batch", src, "-o", out_dir, *model], capsys)
    assert code == 0, err
    assert "3 files: 0 separated, 3 skipped" in err
    assert (out_dir / "a_spk1.wav").stat().st_mtime_ns == stamp
    # a file whose outputs are incomplete is redone; --overwrite redoes all
    (out_dir / "sub" / "deeper" / "c_spk2.wav").unlink()
    (out_dir / "sub" / "deeper" / "c_spk1.wav").unlink()
    code, _, err = run(["batch", src, "-o", out_dir, *model], capsys)
    assert code == 0 and "1 separated, 2 skipped" in err
    code, _, err = run(["batch", src, "-o", out_dir, "--overwrite", *model], capsys)
    assert code == 0 and "3 separated, 0 skipped" in err


def test_batch_glob_and_output_inside_input(tmp_path, capsys, model):
    src = tmp_path / "in"
    _tree(src)
    out_dir = src / "separated"  # outputs inside the input tree are not picked up as inputs
    code, _, err = run(["batch", src, "-o", out_dir, "--glob", "*.flac", *model], capsys)
    assert code == 0, err
    assert sorted(str(p.relative_to(out_dir)) for p in out_dir.rglob("*.wav")) == ["sub/b_spk1.wav",
                                                                                 "sub/b_spk2.wav"]
    code, _, err = run(["batch", src, "-o", out_dir, "--glob", "*.flac", *model], capsys)
    assert code == 0 and "1 files: 0 separated, 1 skipped" in err
    code, out, err = run(["batch", src, "-o", out_dir, "--glob", "*.mp4", *model], capsys)
    _assert_clean_error(code, out, err, "in")
    code, out, err = run(["batch", tmp_path / "nowhere", "-o", out_dir, *model], capsys)
    _assert_clean_error(code, out, err, "nowhere")


def test_output_name_collisions_are_refused(tmp_path, capsys, model):
    a_wav, a_flac = tone(tmp_path / "in" / "a.wav"), tone(tmp_path / "in" / "a.flac")
    code, out, err = run(["separate", a_wav, a_flac, "-o", tmp_path / "o", *model], capsys)
    _assert_clean_error(code, out, err, "a.flac")
    assert not (tmp_path / "o").exists()
    code, _, err = run(["batch", tmp_path / "in", "-o", tmp_path / "b", *model], capsys)
    assert code == 1 and "1 separated" in err and "1 failed" in err
    code, _, err = run(["batch", tmp_path / "in", "-o", tmp_path / "c", "--filename", "{stem}.{ext}_spk{k}.wav",
                        *model], capsys)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["a.flac_spk1.wav", "a.flac_spk2.wav",
                                                                 "a.wav_spk1.wav", "a.wav_spk2.wav"]
    code, out, err = run(["separate", a_wav, "-o", tmp_path / "d", "--filename", "{stem}.wav", *model], capsys)
    _assert_clean_error(code, out, err, "{k}")


_SIGNAL_SCRIPT = """
import os, signal, sys
import mossep.separator as s
calls = []
real = s.Separator._forward
def forward(self, audios):
    calls.append(1)
    if len(calls) == 2:  # mid-file: some output is already in the temporary file
        os.kill(os.getpid(), getattr(signal, sys.argv[1]))
    return real(self, audios)
s.Separator._forward = forward
from mossep.cli import main
main(sys.argv[2:])
"""


@pytest.mark.parametrize("sig, code, word", [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "terminated")])
def test_signal_mid_file_is_one_line_and_leaves_nothing(tmp_path, tiny_model_path, sig, code, word):
    """Ctrl-C or `kill` during a separation: one line on stderr, 128 + signal, no outputs, no .part files."""
    src = tone(tmp_path / "long.wav", seconds=6.0)
    out_dir = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", _SIGNAL_SCRIPT, sig, "separate", str(src), "-o", str(out_dir),
                           "--chunk-seconds", "1", "--overlap-seconds", "0.2", "--model", str(tiny_model_path),
                           "--device", "cpu"], capture_output=True, env=env, timeout=300)
    err = proc.stderr.decode()
    assert proc.returncode == code, err
    assert err.strip().splitlines() == [f"mossep: {word}"]
    assert proc.stdout == b""
    assert not out_dir.exists()  # neither outputs nor hidden temporary files, nor the folder it created


@pytest.mark.parametrize("template", ["{stem}_{k", "{stem}_spk{k}}x", "ABS/abs_{k}.wav", "../up_{k}.wav",
                                      "sub/../../up_{k}.wav"])
def test_bad_filename_template_is_one_line_error(tmp_path, capsys, model, template):
    """Malformed braces, or names that would leave the output folder, are refused before anything is written."""
    template = template.replace("ABS", str(tmp_path))
    src = tone(tmp_path / "a.wav")
    out_dir = tmp_path / "deep" / "out"
    code, out, err = run(["separate", src, "-o", out_dir, "--filename", template, *model], capsys)
    _assert_clean_error(code, out, err, "--filename")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [src]


@pytest.mark.parametrize("rate", ["0", "-8000"])
def test_nonpositive_output_rate_is_refused(tmp_path, capsys, model, rate):
    """--sample-rate 0 used to mean "the input's rate" silently; it is an error like any rate <= 0."""
    src = tone(tmp_path / "a.wav")
    for where in (["-o", tmp_path / "out"], ["--stdout"]):
        code, out, err = run(["separate", src, *where, "--sample-rate", rate, *model], capsys)
        _assert_clean_error(code, out, err, "sample rate")
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("opts, words", [(["--format", "flac", "--subtype", "FLOAT"], "cannot store FLOAT"),
                                         (["--filename", "{stem}"], "--filename"),
                                         (["--filename", "{stem}_{k"], "--filename"),
                                         (["--sample-rate", "0"], "sample rate"),
                                         (["-o", "FILE"], "not a directory")])
def test_batch_bad_options_fail_once_up_front(tmp_path, capsys, model, opts, words):
    """An option that would fail every file is one error line before any file is read, not one per file."""
    _tree(tmp_path / "in")
    (tmp_path / "FILE").write_text("x")
    opts = [str(tmp_path / "FILE") if o == "FILE" else o for o in opts]
    code, out, err = run(["batch", tmp_path / "in", "-o", tmp_path / "out", *opts, *model], capsys)
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and words in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


def test_batch_into_unwritable_folder_is_one_error(tmp_path, capsys, model, refuse_writes_in):
    _tree(tmp_path / "in")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    refuse_writes_in(out_dir)
    code, out, err = run(["batch", tmp_path / "in", "-o", out_dir, *model], capsys)
    _assert_clean_error(code, out, err, "not writable")
    assert list(out_dir.iterdir()) == []


def test_same_input_twice_says_so(tmp_path, capsys, model):
    """The collision message suggested adding {ext} to --filename, which cannot help here."""
    src = tone(tmp_path / "a.wav")
    code, out, err = run(["separate", src, src, "-o", tmp_path / "out", *model], capsys)
    _assert_clean_error(code, out, err, "given twice")
    assert not (tmp_path / "out").exists()


def test_failure_after_the_checks_leaves_no_new_folders(tmp_path, capsys, model):
    """NaN found mid-file: besides no outputs, the output folders that this run created are gone again
    (a folder that existed before stays)."""
    x = (np.random.default_rng(0).standard_normal(8000 * 4) * 0.1).astype(np.float32)
    x[8000 * 3] = np.nan
    src = tmp_path / "late.wav"
    sf.write(src, x, 8000, subtype="FLOAT")
    code, out, err = run(["separate", src, "-o", tmp_path / "new" / "deeper", "--chunk-seconds", "1",
                          "--overlap-seconds", "0.2", *model], capsys)
    _assert_clean_error(code, out, err, "late.wav")
    assert not (tmp_path / "new").exists()
    (tmp_path / "old").mkdir()
    code, out, err = run(["separate", src, "-o", tmp_path / "old", "--filename", "sub/{stem}_{k}.wav", *model], capsys)
    _assert_clean_error(code, out, err, "late.wav")
    assert (tmp_path / "old").is_dir() and list((tmp_path / "old").iterdir()) == []


def test_batch_with_a_bad_model_creates_no_output_folder(tmp_path, capsys):
    _tree(tmp_path / "in")
    code, out, err = run(["batch", tmp_path / "in", "-o", tmp_path / "out", "--model", tmp_path / "nope", "-q"],
                         capsys)
    _assert_clean_error(code, out, err, "nope")
    assert not (tmp_path / "out").exists()


_KILL_SCRIPT = """
import os, signal, sys
from pathlib import Path
real, done = os.replace, []
def replace(src, dst):
    if Path(dst).name.startswith(sys.argv[1]):
        done.append(dst)
        if len(done) == 2:  # SIGKILL between the renames of one recording's outputs
            os.kill(os.getpid(), signal.SIGKILL)
    real(src, dst)
os.replace = replace
from mossep.cli import main
main(sys.argv[2:])
"""


def test_batch_resumes_a_recording_killed_between_its_output_renames(tmp_path, capsys, tiny_model_path, model):
    """SIGKILL after one of b's outputs was renamed into place but before the other: the rerun finishes b (it
    reported b as failed, refusing the lone output), leaves a alone and cleans up the killed run's temporary
    outputs."""
    src, out_dir = tmp_path / "in", tmp_path / "out"
    tone(src / "a.wav")
    tone(src / "b.wav", seconds=1.5)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", _KILL_SCRIPT, "b_spk", "batch", str(src), "-o", str(out_dir),
                           *model], capture_output=True, env=env, timeout=300)
    assert proc.returncode == -9, proc.stderr.decode()
    assert sorted(p.name for p in out_dir.glob("*.wav")) == ["a_spk1.wav", "a_spk2.wav", "b_spk1.wav"]
    assert list(out_dir.glob(".b_spk2.wav.*.part"))  # the kill left b_spk2's temporary file
    stamp = (out_dir / "a_spk1.wav").stat().st_mtime_ns
    code, _, err = run(["batch", src, "-o", out_dir, *model], capsys)
    assert code == 0, err
    assert "2 files: 1 separated, 1 skipped (outputs exist), 0 failed" in err
    assert (out_dir / "a_spk1.wav").stat().st_mtime_ns == stamp
    assert sf.info(out_dir / "b_spk1.wav").frames == sf.info(out_dir / "b_spk2.wav").frames == 12000
    assert not [p for p in out_dir.iterdir() if p.name.startswith(".b_")]  # no journal, no temporary outputs
    # the finished set is complete: a third run skips it
    code, _, err = run(["batch", src, "-o", out_dir, *model], capsys)
    assert code == 0 and "2 files: 0 separated, 2 skipped" in err


def _fail_rename(monkeypatch, name: str, after: bool = False) -> None:
    """Make the rename of output `name` fail (after it happened, with after=True), as a kill there would."""
    real = os.replace

    def replace(src, dst):
        if Path(dst).name == name and not after:
            raise OSError("simulated kill")
        real(src, dst)
        if Path(dst).name == name:
            raise OSError("simulated kill")

    monkeypatch.setattr(os, "replace", replace)


def test_resume_never_replaces_a_file_it_did_not_leave(tmp_path, capsys, model, monkeypatch):
    """Only an unchanged leftover of the interrupted set is replaced: a user's file at that name, or a set
    that was complete when the run died, needs --overwrite."""
    src, out_dir = tone(tmp_path / "b.wav"), tmp_path / "out"
    with monkeypatch.context() as m:
        _fail_rename(m, "b_spk2.wav")
        code, _, err = run(["batch", tmp_path, "-o", out_dir, "--glob", "b.wav", *model], capsys)
    assert code == 1 and "simulated kill" in err
    assert sorted(p.name for p in out_dir.glob("*.wav")) == ["b_spk1.wav"]
    (out_dir / "b_spk1.wav").write_bytes(b"mine now")  # the user put their own file there
    for cmd in (["batch", tmp_path, "--glob", "b.wav"], ["separate", src]):
        code, _, err = run([*cmd, "-o", out_dir, *model], capsys)
        assert code == 1 and "b_spk1.wav: already exists (use --overwrite)" in err
    assert (out_dir / "b_spk1.wav").read_bytes() == b"mine now"
    assert not (out_dir / "b_spk2.wav").exists()
    # killed after its last rename: complete outputs of that run are not redone without --overwrite
    (out_dir / "b_spk1.wav").unlink()
    with monkeypatch.context() as m:
        _fail_rename(m, "b_spk2.wav", after=True)
        code, _, err = run(["batch", tmp_path, "-o", out_dir, "--glob", "b.wav", *model], capsys)
    assert code == 1 and "simulated kill" in err and (out_dir / "b_spk2.wav").exists()
    stamps = [(out_dir / f"b_spk{k}.wav").stat().st_mtime_ns for k in (1, 2)]
    code, _, err = run(["separate", src, "-o", out_dir, *model], capsys)
    assert code == 1 and "already exists" in err
    code, _, err = run(["batch", tmp_path, "-o", out_dir, "--glob", "b.wav", *model], capsys)
    assert code == 0 and "1 files: 0 separated, 1 skipped" in err
    assert [(out_dir / f"b_spk{k}.wav").stat().st_mtime_ns for k in (1, 2)] == stamps
    # a run with the interrupted set's leftover unchanged finishes it (separate as well as batch)
    (out_dir / "b_spk2.wav").unlink()
    code, _, err = run(["separate", src, "-o", out_dir, *model], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out_dir.iterdir()) == ["b_spk1.wav", "b_spk2.wav"]
