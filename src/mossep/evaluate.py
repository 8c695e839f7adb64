"""Score separations of a dataset: SI-SNR(i) with the best speaker permutation and BSS-eval SDR(i).

Estimates come either from a separator (an object with `separate(mix, sample_rate) -> [C, T]` and
`num_speakers`, i.e. `mossep.separator.Separator`, so scores are what `mossep separate` users get) or from a
folder of files separated earlier. Every signal is scored at its reference's sample rate.
"""
from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from .datasets import AUDIO_SUFFIXES, Item, find_items, read_audio, resample
from .errors import MossepError
from . import fsutil
from .fsutil import atomic_path
from .metrics import SDR_FILTER_LENGTH, sdr_improvement, si_snr_improvement

LENGTH_TOLERANCE_S = 0.010  # estimates/references/mixture may differ by this much; they are trimmed to the shortest


class SeparatorLike(Protocol):
    num_speakers: int

    def separate(self, mix: np.ndarray, sample_rate: int, progress: Any = None) -> np.ndarray: ...


@dataclass
class ItemScore:
    id: str
    mix: str
    duration_s: float  # mixture length
    si_snr: float  # dB, mean over sources, best permutation
    si_snri: float
    sdr: float
    sdri: float
    input_si_snr: float  # the mixture used as every estimate
    input_sdr: float
    perm: list[int]  # estimate perm[i] matched to reference i
    process_s: float | None  # separation time; None when scoring existing estimates

    @property
    def rtf(self) -> float | None:
        return None if self.process_s is None else self.process_s / self.duration_s

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rtf": self.rtf}


@dataclass
class EvalReport:
    dataset: str
    layout: str
    items: list[ItemScore]
    estimates: str | None = None
    model: dict[str, Any] | None = None  # source, path, sample_rate, num_speakers, settings
    sdr_filter_length: int = SDR_FILTER_LENGTH
    wall_s: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        def mean(key: str) -> float | None:
            vals = [getattr(s, key) for s in self.items if not math.isnan(getattr(s, key))]
            return float(np.mean(vals)) if vals else None

        duration = sum(s.duration_s for s in self.items)
        times = [s.process_s for s in self.items if s.process_s is not None]
        process = sum(times) if times else None
        return {
            "items": len(self.items),
            "duration_s": duration,
            "si_snr": mean("si_snr"), "si_snri": mean("si_snri"),
            "sdr": mean("sdr"), "sdri": mean("sdri"),
            "input_si_snr": mean("input_si_snr"), "input_sdr": mean("input_sdr"),
            "sdr_undefined": sum(math.isnan(s.sdr) for s in self.items),
            "process_s": process,
            "rtf": None if process is None or duration == 0 else process / duration,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset, "layout": self.layout, "estimates": self.estimates, "model": self.model,
            "settings": self.settings, "sdr_filter_length": self.sdr_filter_length, "wall_s": self.wall_s,
            "summary": self.summary(), "items": [s.to_dict() for s in self.items],
        }


# ---------------------------------------------------------------- pure scoring
def trim_to_common(signals: Sequence[np.ndarray], sample_rate: int, names: Sequence[str],
                   tolerance_s: float = LENGTH_TOLERANCE_S) -> list[np.ndarray]:
    """Cut every [..., T] signal to the shortest length if all lengths agree within the tolerance."""
    lengths = [s.shape[-1] for s in signals]
    shortest, longest = min(lengths), max(lengths)
    if longest - shortest > max(1, round(tolerance_s * sample_rate)):
        a, b = names[lengths.index(shortest)], names[lengths.index(longest)]
        raise MossepError(f"{a}: {shortest / sample_rate:.3f} s but {b} is {longest / sample_rate:.3f} s "
                          f"(lengths may differ by at most {tolerance_s * 1000:g} ms)")
    return [s[..., :shortest] for s in signals]


def score(est: np.ndarray, ref: np.ndarray, mix: np.ndarray,
          filter_length: int = SDR_FILTER_LENGTH) -> dict[str, Any]:
    """All metrics of one item. est, ref: [C, T]; mix: [T]; same rate and length."""
    si = si_snr_improvement(est, ref, mix)
    sd = sdr_improvement(est, ref, mix, filter_length)
    return {"si_snr": si["si_snr"], "si_snri": si["si_snri"], "sdr": sd["sdr"], "sdri": sd["sdri"],
            "input_si_snr": si["si_snr"] - si["si_snri"], "input_sdr": sd["sdr"] - sd["sdri"], "perm": si["perm"]}


# ---------------------------------------------------------------- estimates on disk
ESTIMATE_PATTERNS = ("{id}_source{k}", "{id}_spk{k}", "{stem}_spk{k}", "{stem}_source{k}", "s{k}/{id}")


def find_estimates(folder: Path, item: Item) -> list[Path]:
    """Estimate files of `item` in `folder`: `<id>_source1.wav` (devset), `<stem>_spk1.wav` (mossep separate),
    or `s1/<id>.wav` (LibriMix style); .wav or .flac. MossepError if none or a different count than references."""
    for pattern in ESTIMATE_PATTERNS:
        found = []
        while True:
            name = pattern.format(id=item.id, stem=item.mix.stem, k=len(found) + 1)
            hit = next((folder / (name + sfx) for sfx in AUDIO_SUFFIXES if (folder / (name + sfx)).is_file()), None)
            if hit is None:
                break
            found.append(hit)
        if found:
            if len(found) != len(item.sources):
                raise MossepError(f"{folder}: {len(found)} estimates for {item.id} "
                                  f"({found[0].name}, ...) but {len(item.sources)} references")
            return found
    tried = ", ".join(p.format(id=item.id, stem=item.mix.stem, k=1) + ".wav" for p in ESTIMATE_PATTERNS[:3])
    raise MossepError(f"{folder}: no estimates for item {item.id} (looked for {tried})")


# ---------------------------------------------------------------- one item, whole set
def load_references(item: Item) -> tuple[np.ndarray, int]:
    """[C, T] references at the first reference's rate (others resampled), lengths checked."""
    first, rate = read_audio(item.sources[0])
    refs = [first] + [read_audio(p, rate)[0] for p in item.sources[1:]]
    refs = trim_to_common(refs, rate, [str(p) for p in item.sources])
    for p, r in zip(item.sources, refs):
        if not np.any(r != 0):
            raise MossepError(f"{p}: reference is silent; its SI-SNR and SDR are undefined")
    return np.stack(refs), rate


def score_mixtures(separator: SeparatorLike, mixtures: Sequence[tuple[np.ndarray, np.ndarray]], sample_rate: int,
                   sign: float = 1.0) -> np.ndarray:
    """SI-SNRi (dB) of each in-memory (mixture [T], sources [C, T]) pair at `sample_rate`, e.g. the training
    recipes' fixed validation mixtures. sign=-1 feeds the polarity-inverted mixture (SI-SNR ignores the sign)."""
    return np.array([si_snr_improvement(separator.separate(sign * mix, sample_rate), src, mix)["si_snri"]
                     for mix, src in mixtures])


def evaluate_item(item: Item, separator: SeparatorLike | None = None, estimates: Path | None = None,
                  filter_length: int = SDR_FILTER_LENGTH) -> ItemScore:
    """Separate (or load the estimates of) one mixture and score it at the reference rate."""
    if (separator is None) == (estimates is None):
        raise ValueError("evaluate_item needs exactly one of separator or estimates")
    ref, rate = load_references(item)
    mix_native, mix_rate = read_audio(item.mix)
    duration = mix_native.shape[-1] / mix_rate
    mix = resample(mix_native, mix_rate, rate)
    process_s = None
    if separator is not None:
        if separator.num_speakers != len(item.sources):
            raise MossepError(f"{item.mix}: the model separates {separator.num_speakers} speakers "
                              f"but the item has {len(item.sources)} references")
        start = time.perf_counter()
        try:
            out = np.asarray(separator.separate(mix_native.astype(np.float32), mix_rate), dtype=np.float64)
        except MossepError as e:  # e.g. too short for the model: say which file
            raise MossepError(f"{item.mix}: {str(e).removeprefix('mixture: ')}") from None
        process_s = time.perf_counter() - start
        est, est_names = resample(out, mix_rate, rate), [f"estimate {k + 1} of {item.mix}" for k in range(len(out))]
        if est.ndim != 2 or est.shape[0] != len(item.sources):
            raise MossepError(f"{item.mix}: separator returned {est.shape[0] if est.ndim == 2 else est.shape} "
                              f"signals for {len(item.sources)} references")
    else:
        paths = find_estimates(estimates, item)
        est_list = [read_audio(p, rate)[0] for p in paths]
        est_names = [str(p) for p in paths]
        est_list = trim_to_common(est_list, rate, est_names)
        est = np.stack(est_list)
    names = [str(item.mix), str(item.sources[0]), est_names[0]]
    mix, ref, est = trim_to_common([mix, ref, est], rate, names)
    s = score(est, ref, mix, filter_length)
    return ItemScore(id=item.id, mix=str(item.mix), duration_s=duration, process_s=process_s, **s)


def evaluate_dataset(dataset: str | Path, separator: SeparatorLike | None = None, estimates: str | Path | None = None,
                     limit: int | None = None, filter_length: int = SDR_FILTER_LENGTH,
                     on_item: Callable[[int, int, ItemScore | None], None] | None = None) -> EvalReport:
    """Score every item of `dataset` (any layout of mossep.datasets), separated by `separator` or read from
    the `estimates` folder. `on_item(done, total, score)` is called before the first item (done=0,
    score=None) and after each item."""
    if (separator is None) == (estimates is None):
        raise ValueError("evaluate_dataset needs exactly one of separator or estimates")
    if limit is not None and limit < 1:
        raise MossepError(f"--limit must be at least 1, got {limit}")
    start = time.perf_counter()
    layout, items = find_items(dataset)
    items = items[:limit] if limit else items
    est_dir = None
    if estimates is not None:
        est_dir = Path(estimates)
        if not est_dir.is_dir():
            raise MossepError(f"{est_dir}: estimates folder not found")
    scores = []
    if on_item is not None:
        on_item(0, len(items), None)
    for i, item in enumerate(items):
        scores.append(evaluate_item(item, separator, est_dir, filter_length))
        if on_item is not None:
            on_item(i + 1, len(items), scores[-1])
    return EvalReport(dataset=str(dataset), layout=layout, items=scores,
                      estimates=None if est_dir is None else str(est_dir),
                      sdr_filter_length=filter_length, wall_s=time.perf_counter() - start)


# ---------------------------------------------------------------- output files
CSV_COLUMNS = ("id", "mix", "duration_s", "si_snr", "si_snri", "sdr", "sdri", "input_si_snr", "input_sdr",
               "perm", "process_s", "rtf")


def _json_safe(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


def write_json(report: EvalReport, path: str | Path, overwrite: bool = False) -> None:
    """The whole report (settings, summary, items) as JSON, written atomically. NaN becomes null."""
    with _atomic(path, overwrite) as tmp:
        tmp.write_text(json.dumps(_json_safe(report.to_dict()), indent=2) + "\n")


def write_csv(report: EvalReport, path: str | Path, overwrite: bool = False) -> None:
    """One row per item (CSV_COLUMNS), written atomically; perm as e.g. `1 0`, missing values empty."""
    with _atomic(path, overwrite) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for s in report.items:
            d = s.to_dict()
            d["perm"] = " ".join(str(p) for p in d["perm"])
            w.writerow(["" if d[c] is None or (isinstance(d[c], float) and math.isnan(d[c])) else d[c]
                        for c in CSV_COLUMNS])


def _atomic(path: str | Path, overwrite: bool):
    fsutil.check_new_file(path, overwrite)
    return atomic_path(path, overwrite=overwrite)
