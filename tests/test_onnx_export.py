"""`mossep export` (mossep.export): ONNX files that onnxruntime runs like PyTorch, at any length.

For each conformance kit in tests/fixtures, ONE exported file runs every case of the kit (lengths 2400 to
32000 samples, odd ones, whole and partial attention groups): onnxruntime's output is within 1e-4 (max |d| /
RMS, the kits' criterion) of PyTorch's and of the official reference. Skipped when the `onnx` extra
(onnx, onnxscript, onnxruntime) is not installed, except the test that says what is missing.
"""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from faults import one_line_error, run
from mossep.checkpoints import load_checkpoint
from mossep.errors import MossepError

FIXTURES = Path(__file__).parent / "fixtures"
MF, CV = FIXTURES / "mossformer_8k", FIXTURES / "mossformer2_8k"
HF, MS = FIXTURES / "mossformer2_standalone_8k", FIXTURES / "mossformer2_modelscope_8k"
TOL = 1e-4
HAVE_ONNX = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript", "onnxruntime"))
needs_onnx = pytest.mark.skipif(not HAVE_ONNX, reason="the onnx extra is not installed (pip install 'mossep[onnx]')")


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def kit_cases(kit: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, input [T] float32, reference output [C, T]) of every raw-forward case of a kit."""
    if kit == "mossformer":
        idx = _json(MF / "cases" / "index.json")["cases"]
        return [(n, np.load(MF / "cases" / c["input"]).reshape(-1), np.load(MF / "cases" / c["output"]))
                for n, c in sorted(idx.items())]
    if kit == "mossformer2-clearvoice":
        idx = _json(CV / "cases" / "index.json")["cases"]
        return [(c["name"], np.load(CV / c["input"]).reshape(-1), np.load(CV / c["output"]))
                for c in idx if "pipeline" not in c and c["name"] in ("noise_1s", "mix_4s", "noise_odd_4005")]
    root, prefix = (MS, "") if kit == "mossformer2-modelscope" else (HF, kit.split(":")[1] + "/")
    idx = _json(root / "cases" / "index.json")
    return [(c["name"], np.load(root / idx["inputs"][c["input"]]["file"]).astype(np.float32),
             np.load(root / c["output"]["file"])) for c in idx["cases"] if c["name"].startswith(prefix)]


CHECKPOINTS = {
    "mossformer": MF / "tiny_checkpoint",
    "mossformer2-clearvoice": CV / "tiny_checkpoint.pt",
    "standalone:wsj0mix_3spk": HF / "tiny" / "wsj0mix_3spk",
    "standalone:whamr_2spk": HF / "tiny" / "whamr_2spk",
    "standalone:librimix_2spk": HF / "tiny" / "librimix_2spk",
    "mossformer2-modelscope": MS / "tiny_checkpoint",
}
DEFAULT_RUN = ("mossformer", "standalone:wsj0mix_3spk")  # the others are @slow (an export takes seconds)
KITS = [k if k in DEFAULT_RUN else pytest.param(k, marks=pytest.mark.slow) for k in CHECKPOINTS]


def rel(a: np.ndarray, ref: np.ndarray) -> float:
    ref = ref.astype(np.float64)
    return float(np.abs(a - ref).max() / np.sqrt(np.mean(ref**2)))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """kit -> (LoadedModel, path of its export, onnxruntime session); each kit exported once. The MossFormer kit
    goes through the CLI (`mossep export CHECKPOINT out.onnx`), the others through the API."""
    from mossep.cli import main
    from mossep.export import export_onnx, open_session

    done: dict = {}

    def get(kit: str):
        if kit not in done:
            out = tmp_path_factory.mktemp("onnx") / f"{kit.replace(':', '_')}.onnx"
            if kit == "mossformer":
                with pytest.raises(SystemExit) as e:
                    main(["export", str(CHECKPOINTS[kit]), str(out)])
                assert e.value.code in (0, None)
            else:
                export_onnx(CHECKPOINTS[kit], out)
            done[kit] = (load_checkpoint(CHECKPOINTS[kit]), out, open_session(out, threads=1))
        return done[kit]

    return get


@needs_onnx
@pytest.mark.parametrize("kit", KITS)
def test_onnxruntime_reproduces_pytorch_and_the_reference_on_every_case(exported, kit):
    loaded, path, session = exported(kit)
    cases = kit_cases(kit)
    assert len({len(x) for _, x, _ in cases}) >= 2  # one file, several lengths
    for name, x, ref in cases:
        with torch.inference_mode():
            ours = loaded.model(torch.from_numpy(x)[None])[0].numpy()
        got = session.run(["sources"], {"mix": x[None]})[0][0]
        assert got.shape == ref.shape == (loaded.config.num_spks, len(x)), name
        assert rel(got, ours) <= TOL, (kit, name, rel(got, ours))
        assert rel(got, ref) <= TOL, (kit, name, rel(got, ref))


@needs_onnx
def test_batch_is_dynamic_and_rows_are_independent(exported):
    loaded, path, session = exported("standalone:wsj0mix_3spk")
    rng = np.random.default_rng(5)
    x = (0.1 * rng.standard_normal((3, 5001))).astype(np.float32)
    batch = session.run(["sources"], {"mix": x})[0]
    assert batch.shape == (3, 3, 5001)
    for b in range(3):
        single = session.run(["sources"], {"mix": x[b:b + 1]})[0][0]
        assert rel(batch[b], single) <= 1e-5


@needs_onnx
def test_metadata_describes_the_model(exported):
    from mossep.export import read_metadata

    loaded, path, session = exported("mossformer")
    meta = read_metadata(session)
    assert meta["arch"] == "mossformer" and meta["sample_rate"] == 8000 and meta["num_spks"] == 2
    assert meta["min_samples"] == loaded.config.min_samples and meta["source_format"] == "modelscope"


@needs_onnx
@pytest.mark.slow
def test_float32_norm_statistics_would_miss_the_tolerance(exported):
    """Why ExactNorm exists: the same network with torch's GroupNorm/InstanceNorm, exported as they are, misses
    1e-4 on a 4 s input in onnxruntime (float32 reductions); the shipped export meets it (test above)."""
    from mossep.export import _to_onnx, open_session

    loaded, _, _ = exported("standalone:wsj0mix_3spk")
    x = np.load(HF / "cases" / "inputs" / "mix3_4s.npy").astype(np.float32)[None]
    with torch.inference_mode():
        ref = loaded.model(torch.from_numpy(x)).numpy()
    plain = Path(exported("mossformer")[1]).with_name("plain_norms.onnx")
    _to_onnx(loaded.model, torch.from_numpy(np.repeat(x[:, :8133], 2, axis=0)), plain)
    got = open_session(plain, threads=1).run(["sources"], {"mix": x})[0]
    assert rel(got[0], ref[0]) > TOL


# ---------------------------------------------------------------- the command's contract


def test_existing_output_needs_overwrite(tmp_path, capsys):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"keep")
    code, _, err = run(["export", CHECKPOINTS["mossformer"], out], capsys)
    one_line_error(code, err, str(out), "--overwrite")
    assert out.read_bytes() == b"keep"


@pytest.mark.parametrize("bad", ["m.txt", "missing/m.onnx", "folder.onnx"])
def test_bad_outputs_are_one_line_errors(tmp_path, capsys, bad):
    (tmp_path / "folder.onnx").mkdir()
    code, _, err = run(["export", CHECKPOINTS["mossformer"], tmp_path / bad], capsys)
    one_line_error(code, err, bad.split("/")[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.onnx"]


def test_unknown_model_is_one_line_error(tmp_path, capsys):
    code, _, err = run(["export", tmp_path / "nothing-here", tmp_path / "m.onnx"], capsys)
    one_line_error(code, err, "nothing-here")
    assert list(tmp_path.iterdir()) == []


def test_without_the_extra_says_how_to_install(tmp_path, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    code, _, err = run(["export", CHECKPOINTS["mossformer"], tmp_path / "m.onnx"], capsys)
    one_line_error(code, err, "onnxruntime", "mossep[onnx]")
    assert list(tmp_path.iterdir()) == []


@needs_onnx
def test_a_failing_export_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    import mossep.export as ex

    def broken(model, example, path):
        Path(path).write_bytes(b"half a model")
        raise RuntimeError("Failed to export the model with torch.export.\nmany more lines")

    monkeypatch.setattr(ex, "_to_onnx", broken)
    code, _, err = run(["export", CHECKPOINTS["mossformer"], tmp_path / "m.onnx"], capsys)
    one_line_error(code, err, "ONNX export failed", "Failed to export")
    assert list(tmp_path.iterdir()) == []


@needs_onnx
def test_an_export_that_differs_from_pytorch_is_not_kept(exported, tmp_path, monkeypatch):
    """The check is real: a file whose network is not the checkpoint's (another kit's export) is refused."""
    import mossep.export as ex

    _, other, _ = exported("standalone:wsj0mix_3spk")
    old = tmp_path / "m.onnx"
    old.write_bytes(b"previous")
    monkeypatch.setattr(ex, "_to_onnx", lambda model, example, path: shutil.copyfile(other, path))
    with pytest.raises(MossepError, match="differs from PyTorch"):
        ex.export_onnx(CHECKPOINTS["standalone:whamr_2spk"], old, overwrite=True)
    assert old.read_bytes() == b"previous" and [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


# ---------------------------------------------------------------- --backend onnx (Separator(backend="onnx"))


@pytest.fixture()
def onnx_cache(exported, tmp_path, monkeypatch):
    """A cache folder holding the MossFormer kit's export under the key the backend looks up (no second export)."""
    from mossep.export import model_key

    loaded, path, _ = exported("mossformer")
    monkeypatch.setenv("MOSSEP_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache" / "onnx").mkdir(parents=True)
    shutil.copyfile(path, tmp_path / "cache" / "onnx" / f"{model_key(loaded)}.onnx")
    return tmp_path / "cache"


@needs_onnx
def test_backend_onnx_gives_the_torch_output_with_the_same_chunking(onnx_cache, monkeypatch):
    import mossep.export as ex
    from mossep import Separator

    monkeypatch.setattr(ex, "export_onnx", lambda *a, **k: pytest.fail("exported again despite the cache"))
    x = np.concatenate([np.load(MF / "cases" / "case2_input.npy").reshape(-1)] * 2)  # 8 s: several chunks
    kw = dict(model=CHECKPOINTS["mossformer"], chunk_seconds=2.0, overlap_seconds=0.5, threads=1)
    ours = Separator(backend="onnx", **kw)
    assert ours.backend == "onnx" and ours.device.type == "cpu"
    got, ref = ours.separate(x, 8000), Separator(**kw).separate(x, 8000)
    assert got.shape == ref.shape == (2, len(x))
    assert rel(got, ref) <= TOL


@needs_onnx
def test_backend_onnx_exports_once_into_the_cache(exported, tmp_path, monkeypatch):
    import mossep.export as ex
    from mossep import Separator

    _, path, _ = exported("mossformer")
    calls = []

    def fake_export(loaded, out, overwrite=False):  # the real export is tested above; count the calls here
        calls.append(out)
        shutil.copyfile(path, out)

    monkeypatch.setenv("MOSSEP_CACHE", str(tmp_path))
    monkeypatch.setattr(ex, "export_onnx", fake_export)
    for _ in range(2):
        Separator(CHECKPOINTS["mossformer"], backend="onnx", threads=1)
    assert len(calls) == 1 and calls[0].parent == tmp_path / "onnx" and calls[0].is_file()


@needs_onnx
def test_cli_backend_onnx_writes_what_the_api_gives(onnx_cache, tmp_path, capsys):
    import soundfile as sf

    from mossep import Separator

    x = np.load(MF / "cases" / "case2_input.npy").reshape(-1)
    sf.write(tmp_path / "in.wav", x, 8000, subtype="FLOAT")
    code, _, err = run(["separate", tmp_path / "in.wav", "-o", tmp_path / "out", "--model", CHECKPOINTS["mossformer"],
                        "--backend", "onnx", "--threads", "1", "--subtype", "FLOAT", "--quiet"], capsys)
    assert code == 0, err
    got = np.stack([sf.read(tmp_path / "out" / f"in_spk{k}.wav", dtype="float32")[0] for k in (1, 2)])
    api = Separator(CHECKPOINTS["mossformer"], backend="onnx", threads=1).separate(x, 8000)
    assert rel(got, api) <= 1e-6


@pytest.mark.parametrize("args, words", [(["--backend", "tensorrt"], ["--backend", "tensorrt"]),
                                         (["--backend", "onnx", "--fast"], ["--fast", "--backend onnx"]),
                                         (["--backend", "onnx", "--device", "cuda"], ["--backend onnx", "cuda"])])
def test_backend_conflicts_are_one_line_errors(tmp_path, capsys, args, words):
    import soundfile as sf

    sf.write(tmp_path / "in.wav", np.zeros(8000, np.float32), 8000)
    code, _, err = run(["separate", tmp_path / "in.wav", "-o", tmp_path / "out", "--model", CHECKPOINTS["mossformer"],
                        *args], capsys)
    one_line_error(code, err, *words)
    assert not (tmp_path / "out").exists()
