"""Sets of mixtures with their clean references, in the layouts mossep recognises.

Each layout is a plain function from a path to a list of `Item`s (mixture path, reference paths, id):

- LibriMix: `mix_clean/` (or `mix_both/`, `mix_single/`) beside `s1/`, `s2/`, ... holding files of the same
  names; `metadata/mixture_<split>_<mixdir>.csv` (in the folder or its parent, as LibriMix writes it) fixes
  the list and order of items when present. The path may also name the mixture folder itself.
- numbered: `<id>_mix.wav` with `<id>_source1.wav`, `<id>_source2.wav`, ... in one folder.
- manifest: a CSV file with a `mix,s1,s2[,...]` header (optionally an `id` column); paths are relative to the CSV.

`find_items` picks the layout; `read_audio` loads one file as mono float64, optionally resampled.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .audio import check_finite
from .errors import MossepError, reason
from .fsutil import os_error_text

AUDIO_SUFFIXES = (".wav", ".flac")
MIX_DIRS = ("mix_clean", "mix_both", "mix_single")  # in order of preference
LAYOUTS = ("librimix", "numbered", "manifest")


class Item(NamedTuple):
    mix: Path
    sources: list[Path]
    id: str


def natural_key(text: str) -> list:
    """Sort key that orders item2 before item10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _audio_files(folder: Path) -> dict[str, Path]:
    """stem -> path for the audio files directly in `folder`."""
    return {p.stem: p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES}


# ---------------------------------------------------------------- LibriMix
def _source_dirs(root: Path) -> list[Path]:
    dirs = []
    while (root / f"s{len(dirs) + 1}").is_dir():
        dirs.append(root / f"s{len(dirs) + 1}")
    return dirs


def _librimix_root(path: Path) -> tuple[Path, Path] | None:
    """(root with s1/, s2/, mixture folder), or None when `path` is not a LibriMix folder."""
    if path.name in MIX_DIRS and path.is_dir() and len(_source_dirs(path.parent)) >= 2:
        return path.parent, path
    if len(_source_dirs(path)) >= 2:
        for name in MIX_DIRS:
            if (path / name).is_dir():
                return path, path / name
    return None


def _librimix_metadata(root: Path, mix_dir: Path) -> Path | None:
    """The metadata CSV for this split and mixture folder, if LibriMix's metadata is there."""
    for meta in (root / "metadata", root.parent / "metadata"):
        if not meta.is_dir():
            continue
        exact = [meta / f"mixture_{root.name}_{mix_dir.name}.csv", meta / f"mixture_{mix_dir.name}.csv"]
        for cand in exact:
            if cand.is_file():
                return cand
        found = sorted(meta.glob(f"mixture_*_{mix_dir.name}.csv"))
        if len(found) == 1:
            return found[0]
    return None


def librimix_items(path: str | Path) -> list[Item]:
    """Items of a LibriMix split folder (or its mixture folder). Raises MossepError if it is not one."""
    path = Path(path)
    found = _librimix_root(path)
    if found is None:
        raise MossepError(f"{path}: not a LibriMix folder (expected {'/, '.join(MIX_DIRS)}/ beside s1/ and s2/)")
    root, mix_dir = found
    src_dirs = _source_dirs(root)
    mixes = _audio_files(mix_dir)
    meta = _librimix_metadata(root, mix_dir)
    if meta is not None:
        ids = _metadata_ids(meta)
        missing = [i for i in ids if i not in mixes]
        if missing:
            raise MossepError(f"{meta}: lists {len(missing)} mixtures missing from {mix_dir} (first: {missing[0]})")
    else:
        ids = sorted(mixes, key=natural_key)
    items = []
    for item_id in ids:
        mix = mixes[item_id]
        sources = [d / mix.name for d in src_dirs]
        for s in sources:
            if not s.is_file():
                raise MossepError(f"{s}: reference for mixture {mix} is missing")
        items.append(Item(mix, sources, item_id))
    return items


def _metadata_ids(meta: Path) -> list[str]:
    try:
        with open(meta, newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise MossepError(f"{meta}: cannot read LibriMix metadata ({e})") from None
    if not rows or "mixture_ID" not in rows[0]:
        raise MossepError(f"{meta}: LibriMix metadata without a mixture_ID column")
    return [r["mixture_ID"] for r in rows]


# ---------------------------------------------------------------- numbered
_MIX_RE = re.compile(r"^(?P<id>.+)_mix$")


def numbered_items(path: str | Path) -> list[Item]:
    """Items `<id>_mix.wav` + `<id>_source1.wav`, `<id>_source2.wav`, ... of one folder."""
    path = Path(path)
    files = _audio_files(path) if path.is_dir() else {}
    items = []
    for stem, mix in files.items():
        m = _MIX_RE.match(stem)
        if not m:
            continue
        item_id = m["id"]
        sources = []
        while f"{item_id}_source{len(sources) + 1}" in files:
            sources.append(files[f"{item_id}_source{len(sources) + 1}"])
        if not sources:
            raise MossepError(f"{mix}: no references beside it (expected {item_id}_source1{mix.suffix}, ...)")
        items.append(Item(mix, sources, item_id))
    if not items:
        raise MossepError(f"{path}: no <id>_mix.wav files with <id>_source1.wav, <id>_source2.wav references")
    counts = {len(it.sources) for it in items}
    if len(counts) > 1:
        odd = min(items, key=lambda it: len(it.sources))
        raise MossepError(f"{odd.mix}: has {len(odd.sources)} references where others have {max(counts)}")
    return sorted(items, key=lambda it: natural_key(it.id))


# ---------------------------------------------------------------- manifest
def manifest_items(path: str | Path) -> list[Item]:
    """Items of a CSV manifest with a `mix,s1,s2[,...]` header (optional `id`); paths relative to the CSV."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # a spreadsheet's byte-order mark is no header
            reader = csv.DictReader(f)
            header = [h.strip() for h in (reader.fieldnames or [])]
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise MossepError(f"{path}: cannot read manifest ({e})") from None
    src_cols = []
    while f"s{len(src_cols) + 1}" in header:
        src_cols.append(f"s{len(src_cols) + 1}")
    if "mix" not in header or len(src_cols) < 1:
        raise MossepError(f"{path}: manifest needs a header with mix,s1,s2 columns (found: {','.join(header) or 'none'})")
    items, seen = [], set()
    for line, raw in enumerate(rows, start=2):
        if None in raw:  # DictReader puts the cells past the header under None
            raise MossepError(f"{path}:{line}: more cells than the header has columns ({len(header)})")
        row = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
        if not any(row.values()):
            continue
        cells = [row.get("mix", "")] + [row.get(c, "") for c in src_cols]
        if not all(cells):
            empty = (["mix"] + src_cols)[cells.index("")]
            raise MossepError(f"{path}:{line}: empty {empty} path (every row needs mix and {','.join(src_cols)}: "
                              "a set holds mixtures of one talker count)")
        mix, *sources = [(path.parent / c) for c in cells]
        for p in (mix, *sources):
            _check_listed_file(p, f"{path}:{line}")
        if len({p.resolve() for p in (mix, *sources)}) < len(cells):
            raise MossepError(f"{path}:{line}: names the same file twice (a mixture and its references are "
                              "different files)")
        item_id = row.get("id") or mix.stem
        if item_id in seen:
            raise MossepError(f"{path}:{line}: duplicate item id {item_id!r}")
        seen.add(item_id)
        items.append(Item(mix, sources, item_id))
    return items


def _check_listed_file(p: Path, where: str) -> None:
    """A file named by a manifest must be a regular file; the message says what it is instead."""
    if "\0" in str(p):
        raise MossepError(f"{where}: a file name contains a NUL character")
    try:
        if p.is_file():
            return
        what = ("is a directory, not an audio file" if p.is_dir() else
                "is not a regular file" if p.exists() else "does not exist")
    except (OSError, ValueError) as e:  # e.g. a name too long for the file system
        what = f"cannot be accessed ({os_error_text(e) if isinstance(e, OSError) else e})"
    raise MossepError(f"{where}: {p} {what}")


# ---------------------------------------------------------------- detection
def detect_layout(path: str | Path) -> str:
    """Name of the layout of `path` (one of LAYOUTS); MossepError when none fits."""
    path = Path(path)
    if not path.exists():
        raise MossepError(f"{path}: dataset not found")
    if path.is_file():
        if path.suffix.lower() == ".csv":
            return "manifest"
        raise MossepError(f"{path}: a dataset is a folder or a .csv manifest")
    if not path.is_dir():
        raise MossepError(f"{path}: a dataset is a folder or a .csv manifest (this is neither a regular file "
                          "nor a folder)")
    if _librimix_root(path) is not None:
        return "librimix"
    if any(_MIX_RE.match(p.stem) for p in path.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES):
        return "numbered"
    raise MossepError(f"{path}: not a known dataset layout (expected LibriMix mix_clean/ + s1/ + s2/, "
                      "<id>_mix.wav + <id>_source1.wav files, or a mix,s1,s2 CSV manifest)")


def find_items(path: str | Path) -> tuple[str, list[Item]]:
    """(layout, items) of any recognised dataset; MossepError if unknown or empty."""
    layout = detect_layout(path)
    items = {"librimix": librimix_items, "numbered": numbered_items, "manifest": manifest_items}[layout](path)
    if not items:
        raise MossepError(f"{path}: dataset holds no mixtures")
    return layout, items


# ---------------------------------------------------------------- audio
def read_audio(path: str | Path, sample_rate: int | None = None, dtype: str = "float64") -> tuple[np.ndarray, int]:
    """Mono samples of `path` (channels averaged) in `dtype` and their rate, resampled to `sample_rate` if given."""
    import soundfile as sf

    path = Path(path)
    try:
        data, rate = sf.read(str(path), dtype=dtype, always_2d=True)
    except Exception as e:  # missing, truncated, not audio ...
        raise MossepError(f"{path}: cannot read audio ({reason(e)})") from None
    if data.shape[0] == 0:
        raise MossepError(f"{path}: audio file is empty")
    check_finite(data, str(path))
    audio = data.mean(axis=1)
    if sample_rate is not None and sample_rate != rate:
        audio, rate = resample(audio, rate, sample_rate), sample_rate
    return audio, rate


def resample(audio: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Band-limited resampling (soxr, high quality) of [..., T] along the last axis; float32 audio is resampled
    in float32 (as training data is), anything else in float64."""
    if rate == target:
        return audio
    import soxr

    a = np.asarray(audio)
    a = a if a.dtype == np.float32 else a.astype(np.float64)
    if a.ndim == 1:
        return soxr.resample(a, rate, target, quality="HQ")
    return np.stack([soxr.resample(ch, rate, target, quality="HQ") for ch in a.reshape(-1, a.shape[-1])]).reshape(
        *a.shape[:-1], -1)
