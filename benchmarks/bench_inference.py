"""Inference settings on held-out speakers: one pass or two (polarity ensemble), with or without the Wiener
post-filter. This is how a checkpoint's recommended settings ("inference" in its metadata) are chosen: on the
training recipe's validation mixtures (LibriSpeech test-other and VCTK speakers, mossep.dynamic_mix's fixed
set, seed 20231), never on the devset.

    python benchmarks/bench_inference.py --model weights/default.safetensors --count 256 --threads 2
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from mossep import Separator
from mossep import dynamic_mix as dm
from mossep.checkpoints import load_checkpoint
from mossep.evaluate import score_mixtures

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None)
    p.add_argument("--sets", nargs="+", default=[str(CORPUS / "librispeech-test-other"), str(CORPUS / "vctk")])
    p.add_argument("--count", type=int, default=256)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--settings", nargs="+", default=["1", "1w", "2", "2w"],
                   help="passes, then w for the Wiener post-filter, i to feed the polarity-inverted mixture")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()

    loaded = load_checkpoint(a.model)  # once, shared by every setting
    seps = {}
    for s in a.settings:
        seps[s] = Separator(loaded, device="cpu", threads=a.threads, passes=int(s[0]), wiener="w" in s)
    rate = next(iter(seps.values())).sample_rate
    items = dm.validation_mixtures(a.sets, rate, a.count, a.seconds)
    print(f"{len(items)} mixtures of {a.seconds:g} s from held-out speakers ({', '.join(Path(s).name for s in a.sets)}); "
          f"model {a.model or 'default'}")
    print("| passes | Wiener | input | SI-SNRi (dB) | median | seconds |")
    print("| ---: | --- | --- | ---: | ---: | ---: |")
    for s, sep in seps.items():
        sign = -1.0 if "i" in s else 1.0
        t0 = time.time()
        scores = score_mixtures(sep, items, rate, sign)
        print(f"| {sep.passes} | {'on' if sep.wiener else 'off'} | {'inverted' if sign < 0 else 'as is'} "
              f"| {np.mean(scores):.2f} | {np.median(scores):.2f} | {time.time() - t0:.0f} |", flush=True)


if __name__ == "__main__":
    main()
