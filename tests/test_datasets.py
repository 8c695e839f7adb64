"""Dataset layouts: detection, item lists and their errors, on tiny sets built in tmp_path."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mossep.datasets import (detect_layout, find_items, librimix_items, manifest_items, numbered_items,
                             read_audio)
from mossep.errors import MossepError

SR = 8000


def _wav(path: Path, seconds: float = 0.1, channels: int = 1, rate: int = SR, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = 0.1 * np.random.default_rng(seed).standard_normal((int(seconds * rate), channels))
    sf.write(str(path), x, rate, subtype="PCM_16")
    return path


def _librimix(root: Path, ids: list[str], mix_dirs=("mix_clean",), speakers: int = 2) -> Path:
    for i in ids:
        for d in (*mix_dirs, *(f"s{k + 1}" for k in range(speakers))):
            _wav(root / d / f"{i}.wav")
    return root


IDS = ["61-70968-0000_8455-210777-0012", "1089-134686-0000_121-121726-0000", "2-x_10-y"]


def test_librimix_without_metadata(tmp_path):
    root = _librimix(tmp_path / "test", IDS)
    assert detect_layout(root) == "librimix"
    items = librimix_items(root)
    assert [it.id for it in items] == ["2-x_10-y", "61-70968-0000_8455-210777-0012", "1089-134686-0000_121-121726-0000"]
    mix, sources, item_id = items[0]
    assert mix == root / "mix_clean" / "2-x_10-y.wav"
    assert sources == [root / "s1" / "2-x_10-y.wav", root / "s2" / "2-x_10-y.wav"]


def test_librimix_metadata_fixes_order_and_subset(tmp_path):
    root = _librimix(tmp_path / "wav8k" / "min" / "test", IDS)
    meta = tmp_path / "wav8k" / "min" / "metadata"
    meta.mkdir()
    (meta / "mixture_test_mix_clean.csv").write_text(
        "mixture_ID,mixture_path,source_1_path,source_2_path,length\n"
        f"{IDS[1]},/elsewhere/a.wav,/x,/y,800\n{IDS[0]},/elsewhere/b.wav,/x,/y,800\n")
    (meta / "mixture_train-360_mix_clean.csv").write_text("mixture_ID\nnot-here\n")  # another split: ignored
    assert [it.id for it in librimix_items(root)] == [IDS[1], IDS[0]]
    (meta / "mixture_test_mix_clean.csv").write_text(f"mixture_ID\n{IDS[0]}\nmissing-one\n")
    with pytest.raises(MossepError, match="missing-one"):
        librimix_items(root)


def test_librimix_prefers_mix_clean_and_accepts_the_mix_folder(tmp_path):
    root = _librimix(tmp_path / "dev", IDS[:1], mix_dirs=("mix_both", "mix_clean"))
    assert librimix_items(root)[0].mix.parent.name == "mix_clean"
    layout, items = find_items(root / "mix_both")
    assert layout == "librimix" and items[0].mix.parent.name == "mix_both"
    assert items[0].sources[0] == root / "s1" / f"{IDS[0]}.wav"


def test_librimix_three_speakers_and_missing_reference(tmp_path):
    root = _librimix(tmp_path / "l3", IDS[:2], speakers=3)
    assert all(len(it.sources) == 3 for it in librimix_items(root))
    (root / "s2" / f"{IDS[1]}.wav").unlink()
    with pytest.raises(MossepError, match=r"s2/.*reference .* is missing"):
        librimix_items(root)


def test_numbered_layout(tmp_path):
    for n in (10, 2, 1):
        for suffix in ("mix", "source1", "source2"):
            _wav(tmp_path / f"item{n}_{suffix}.wav")
    _wav(tmp_path / "estimates" / "item1_mix.wav")  # sub-folders are not part of the set
    assert detect_layout(tmp_path) == "numbered"
    items = numbered_items(tmp_path)
    assert [it.id for it in items] == ["item1", "item2", "item10"]
    assert items[2].sources == [tmp_path / "item10_source1.wav", tmp_path / "item10_source2.wav"]


def test_numbered_errors(tmp_path):
    _wav(tmp_path / "a_mix.wav")
    with pytest.raises(MossepError, match=r"a_mix.wav: no references"):
        numbered_items(tmp_path)
    for s in ("source1", "source2"):
        _wav(tmp_path / f"a_{s}.wav")
    for s in ("mix", "source1"):
        _wav(tmp_path / f"b_{s}.wav")
    with pytest.raises(MossepError, match=r"b_mix.wav: has 1 references where others have 2"):
        numbered_items(tmp_path)


def test_manifest(tmp_path):
    for name in ("m1", "a1", "b1", "m2", "a2", "b2"):
        _wav(tmp_path / "audio" / f"{name}.wav")
    csv = tmp_path / "lists" / "set.csv"
    csv.parent.mkdir()
    csv.write_text("mix,s1,s2\n../audio/m1.wav,../audio/a1.wav,../audio/b1.wav\n\n"
                   "../audio/m2.wav,../audio/a2.wav,../audio/b2.wav\n")
    layout, items = find_items(csv)
    assert layout == "manifest"
    assert [it.id for it in items] == ["m1", "m2"]
    assert items[1].sources[1].resolve() == (tmp_path / "audio" / "b2.wav").resolve()
    csv.write_text("id,mix,s1,s2\nfirst,../audio/m1.wav,../audio/a1.wav,../audio/b1.wav\n")
    assert manifest_items(csv)[0].id == "first"


def test_manifest_errors(tmp_path):
    _wav(tmp_path / "m.wav")
    _wav(tmp_path / "a.wav")
    csv = tmp_path / "set.csv"
    csv.write_text("mixture,source\nm.wav,a.wav\n")
    with pytest.raises(MossepError, match=r"set.csv: manifest needs a header with mix,s1,s2"):
        manifest_items(csv)
    csv.write_text("mix,s1,s2\nm.wav,a.wav,b.wav\n")
    with pytest.raises(MossepError, match=r"set.csv:2: .*b.wav does not exist"):
        manifest_items(csv)
    csv.write_text("mix,s1,s2\n")
    with pytest.raises(MossepError, match="holds no mixtures"):
        find_items(csv)


def test_unknown_missing_and_empty(tmp_path):
    with pytest.raises(MossepError, match="dataset not found"):
        detect_layout(tmp_path / "nope")
    _wav(tmp_path / "plain.wav")
    with pytest.raises(MossepError, match="not a known dataset layout"):
        find_items(tmp_path)
    with pytest.raises(MossepError, match="a dataset is a folder or a .csv manifest"):
        find_items(tmp_path / "plain.wav")
    for d in ("mix_clean", "s1", "s2"):
        (tmp_path / "empty" / d).mkdir(parents=True)
    with pytest.raises(MossepError, match="holds no mixtures"):
        find_items(tmp_path / "empty")


def test_read_audio(tmp_path):
    stereo = _wav(tmp_path / "st.wav", seconds=0.5, channels=2, rate=16000)
    x, rate = read_audio(stereo)
    raw, _ = sf.read(str(stereo))
    assert rate == 16000 and x.dtype == np.float64
    np.testing.assert_allclose(x, raw.mean(1))
    y, rate = read_audio(stereo, 8000)
    assert rate == 8000 and abs(len(y) - 4000) <= 1
    (tmp_path / "bad.wav").write_bytes(b"RIFF1234WAVEjunk")
    with pytest.raises(MossepError, match=r"bad.wav: cannot read audio"):
        read_audio(tmp_path / "bad.wav")


def test_resample_keeps_float32_training_audio_bit_exact():
    """dynamic_mix resamples through datasets.resample: float32 stays float32, bit-identical to soxr's float32
    path it used before (so cached and speed-perturbed training audio did not change); other input in float64."""
    import soxr

    from mossep.datasets import resample

    x = np.random.default_rng(3).standard_normal(9000).astype(np.float32)
    y = resample(x, 16000, 8000)
    assert y.dtype == np.float32 and np.array_equal(y, soxr.resample(x, 16000, 8000, quality="HQ"))
    z = resample(x.astype(np.float64), 16000, 8000)
    assert z.dtype == np.float64 and np.array_equal(z, soxr.resample(x.astype(np.float64), 16000, 8000, quality="HQ"))
    assert np.array_equal(resample(x[None, :], 16000, 8000)[0], y)
