"""Make a training run's checkpoint the shipped default (weights/default.safetensors), with its history.

Keeps the training stages already recorded in the current default's metadata and appends the new run's
stages, sets the inference settings the checkpoint recommends (chosen on held-out validation speakers with
benchmarks/bench_inference.py, never on the devset), then measures what the card reports: the validation
mixtures (network alone and with the recommended settings), the Libri2Mix dev clips (measurement only), the
two fixture clips the tests use, the example. A run of two stages (gpu_default_8k.sh's A then B) passes A's
checkpoint as --earlier. --remeasure measures the shipped default again, after a change to the inference path.

    python recipes/ship_default.py runs/gpu/B/best.safetensors --earlier runs/gpu/A/best.safetensors \
        --hardware "NVIDIA H200" --command "bash recipes/gpu_default_8k.sh ..." --passes 2 --wiener --name "..."
    python recipes/ship_default.py --remeasure --passes 2 --wiener

Prints the new metadata; weights/README.md and the test floors are then updated by hand from it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mossep.checkpoints import load_checkpoint  # noqa: E402
from mossep.checkpoints.native import save_native  # noqa: E402
from mossep import dynamic_mix as dm  # noqa: E402
from mossep.evaluate import evaluate_dataset, score_mixtures  # noqa: E402
from mossep.separator import Separator  # noqa: E402

DEFAULT = ROOT / "weights" / "default.safetensors"
DEVSET = ROOT.parent / "shared" / "devset" / "libri2mix"
VALID_SETS = [ROOT.parent / "shared" / "corpus" / name for name in ("librispeech-test-other", "vctk")]
STAGE_KEYS = ("steps", "mixtures", "batch", "peak_lr", "segment_seconds", "train_seconds", "augment",
              "valid48_si_snri", "valid_si_snri", "valid_count")


def scores(sep: Separator, dataset: Path) -> dict:
    s = evaluate_dataset(dataset, separator=sep).summary()
    return {"items": s["items"], "si_snri_db": round(s["si_snri"], 2), "sdri_db": round(s["sdri"], 2)}


def stage_record(metadata: dict) -> dict:
    """A run's training metadata in the stage keys (STAGE_KEYS); `mossep train`'s own names (batch_size,
    train_hours, dynamic_mixing, its validation block) are translated."""
    run = dict(metadata.get("training", {}))
    if "batch_size" in run:  # written by mossep train
        run.setdefault("batch", run["batch_size"])
        run.setdefault("mixtures", run.get("steps", 0) * run["batch_size"])
        run.setdefault("train_seconds", round(run.get("train_hours", 0) * 3600, 1))
        run["augment"] = {**run.get("dynamic_mixing", {}), **run.get("augment", {})}
        valid = metadata.get("validation", {})
        run.setdefault("valid_si_snri", valid.get("si_snri_db"))
        run.setdefault("valid_count", valid.get("mixtures"))
    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("candidate", nargs="?", help="the new checkpoint (not with --remeasure)")
    p.add_argument("--remeasure", action="store_true",
                   help="measure the shipped default again (after a change to the inference path), history kept")
    p.add_argument("--earlier", nargs="*", default=[], help="checkpoints of the same run's earlier stages, in order")
    p.add_argument("--hardware")
    p.add_argument("--command", help="the command that trained the candidate")
    p.add_argument("--name")
    p.add_argument("--passes", type=int, default=1)
    p.add_argument("--wiener", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--valid-count", type=int, default=256, help="validation mixtures to score (0: skip)")
    p.add_argument("--out", default=str(DEFAULT))
    a = p.parse_args()
    if a.remeasure == bool(a.candidate) or not (a.remeasure or (a.hardware and a.command and a.name)):
        p.error("give a candidate with --hardware, --command and --name, or --remeasure alone")

    current = load_checkpoint(DEFAULT)
    previous = current.metadata
    inference = {"passes": a.passes, "wiener": a.wiener,
                 "chosen_with": "benchmarks/bench_inference.py (held-out validation speakers)"}
    if a.remeasure:
        measure(current, {**previous, "inference": inference}, a)
        return
    cand = load_checkpoint(a.candidate)
    runs = [stage_record(load_checkpoint(path).metadata) for path in a.earlier]
    runs.append(stage_record(cand.metadata))
    new = [{"hardware": a.hardware, **{k: r[k] for k in STAGE_KEYS if k in r}, "command": a.command} for r in runs]
    run = runs[-1]
    training = dict(previous.get("training", {}))
    stages = list(training.get("stages", [])) + new
    gpu_seconds = sum(s.get("train_seconds", s.get("gpu_seconds", 0)) for s in stages
                      if "NVIDIA" in s.get("hardware", ""))
    training.update(stages=stages, steps=sum(s.get("steps", 0) for s in stages),
                    mixtures=sum(s.get("mixtures", 0) for s in stages), gpu_minutes=round(gpu_seconds / 60, 1))
    meta = {**previous, "name": a.name, "training": training, "inference": inference,
            "validation": {"si_snri_db": run.get("valid_si_snri"), "mixtures": run.get("valid_count"),
                           "seconds": run.get("segment_seconds"), "first48_si_snri_db": run.get("valid48_si_snri"),
                           "settings": "1 pass, no post-filter (the training recipe's validation)"}}
    measure(cand, meta, a)


def measure(cand, meta: dict, a: argparse.Namespace) -> None:
    """Score `cand` with the settings in `a` (validation, dev clips, fixtures, example) into `meta`; save."""
    sep = Separator(cand, device="cpu", threads=a.threads, passes=a.passes, wiener=a.wiener)
    settings = f"--passes {a.passes} --{'' if a.wiener else 'no-'}wiener (the checkpoint's recommendation)"
    if a.valid_count and all(d.is_dir() for d in VALID_SETS):
        mixtures = dm.validation_mixtures(VALID_SETS, sep.sample_rate, a.valid_count)
        plain = Separator(cand, device="cpu", threads=a.threads, passes=1, wiener=False)
        recommended = f"{a.passes}{'w' if a.wiener else ''}"
        meta["validation"] = {
            "si_snri_db": round(float(score_mixtures(plain, mixtures, sep.sample_rate).mean()), 2),
            "mixtures": len(mixtures), "seconds": 4.0, "settings": "1 pass, no post-filter",
            "recommended_settings_si_snri_db": round(float(score_mixtures(sep, mixtures, sep.sample_rate).mean()), 2),
            "command": f"python benchmarks/bench_inference.py --count {len(mixtures)} --settings 1 {recommended}"}
    evaluation = {}
    if DEVSET.is_dir():
        evaluation["libri2mix_dev_clips"] = {**scores(sep, DEVSET), "settings": settings,
                                             "command": "mossep evaluate ../shared/devset/libri2mix --threads 2"}
    fixtures = ROOT / "tests" / "fixtures" / "libri2mix"
    report = evaluate_dataset(fixtures, separator=sep)
    evaluation["fixture_clips"] = {**{s.id: round(s.si_snri, 2) for s in report.items},
                                   "command": "mossep evaluate tests/fixtures/libri2mix"}
    evaluation["example"] = {**scores(sep, ROOT / "examples"), "command": "mossep evaluate examples"}
    meta["evaluation"] = evaluation
    save_native(cand.model, Path(a.out), meta)
    print(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
