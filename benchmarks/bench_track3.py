"""Three-talker stitching and speaker tracking on real voices, without a 3-talker model.

No 3-talker model is trained here, so the chunk estimates are oracles made worse: each output is its talker
plus the two others at `--leak-db` (times 0.5-1.5, drawn per chunk and output) and a little noise, in a random
order per chunk. Triples of held-out speakers (bench_long.talker_stream: utterances with short pauses, so the
three talk over each other most of the time) are mixed into files of `--seconds`, separated in 16 s chunks with
2 s overlap (the defaults), and stitched with tracking off and on (the default margin for three talkers,
mossep.tracking.override_margin, and the two-talker 1.2). Each file is stitched as is and with one injected
change of order inside a chunk of its second half: a rotation of all three outputs or a swap of two. Columns as
in bench_long.py: "wrong chunks" disagree with their oracle order; "overrides" are the tracker's changes of
the overlap match, "healed" made a wrong chunk right, "broke" the reverse.

    python benchmarks/bench_track3.py --seconds 180 --leak-db -10
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_long import CORPUS, chunk_oracles, decision_counts, talker_stream  # noqa: E402

from mossep.chunking import OverlapAdd, plan_chunks  # noqa: E402
from mossep.dynamic_mix import load_speaker_folders  # noqa: E402
from mossep.metrics import si_snr_improvement  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sets", nargs="+", default=[str(CORPUS / "librispeech-test-other"), str(CORPUS / "vctk")])
    p.add_argument("--seconds", type=float, default=180.0)
    p.add_argument("--leak-db", type=float, default=-10.0, help="level of the other talkers in each output")
    p.add_argument("--seed", type=int, default=3)
    a = p.parse_args()
    rate, chunk, overlap = 8000, 16 * 8000, 2 * 8000
    rng = np.random.default_rng(a.seed)
    files = []
    for root in a.sets:
        spk = load_speaker_folders([Path(root)], rate)
        names = list(spk)
        for i in range(0, len(names) - 2, 3):  # disjoint triples
            src = np.stack([talker_stream(spk[names[i + j]], a.seconds, rate, rng) for j in range(3)])
            src *= 10 ** (rng.uniform(-2.5, 2.5, (3, 1)) / 20)
            files.append(src.astype(np.float64))
    g = 10 ** (a.leak_db / 20)
    variants = [("off", None), ("on", None), ("on", 1.2)]
    totals: dict = {}
    for src in files:
        mix = src.sum(0)
        n = len(mix)
        plan = plan_chunks(n, chunk, overlap)
        est = []
        for s, e in plan:
            leak = np.eye(3) + g * rng.uniform(0.5, 1.5, (3, 3)) * (1 - np.eye(3))
            x = leak @ src[:, s:e] + 1e-4 * rng.standard_normal((3, e - s))
            est.append(x[rng.permutation(3)])
        for inject in ("none", "rotation", "swap of two"):
            cur = [x.copy() for x in est]
            if inject != "none":
                k = int(rng.integers(len(plan) // 2, len(plan) - 2))
                cut = int(rng.uniform(0.3, 0.9) * cur[k].shape[-1])
                cur[k][:, cut:] = cur[k][[1, 2, 0] if inject == "rotation" else [1, 0, 2], cut:]
            oracles = chunk_oracles(plan, np.stack([x.astype(np.float32) for x in cur]), src.astype(np.float32))
            for track, margin in variants:
                ola = OverlapAdd(3, overlap, track_speakers=track == "on", sample_rate=rate)
                if margin is not None:
                    ola.tracker.thresholds["margin"] = margin
                for (s, e), x in zip(plan, cur):
                    ola.add(s, x, mix[s:e], first=s == 0, last=e == n)
                out = ola.pop(n)
                c = decision_counts(ola, oracles, si_snr_improvement(out, src, mix)["perm"])
                t = totals.setdefault((inject, track, margin), {"files": 0, "right files": 0, **{k: 0 for k in c}})
                t["files"] += 1
                t["right files"] += c["wrong"] == 0
                for key in c:
                    t[key] += c[key]
    print(f"{len(files)} files of {a.seconds:g} s, three talkers each; other talkers at {a.leak_db:g} dB in each output")
    print("| injected | tracking (margin) | files with no wrong chunk | wrong chunks | overrides (healed / broke) |")
    print("|---|---|---|---|---|")
    for (inject, track, margin), t in totals.items():
        label = "off" if track == "off" else f"on ({'default, 0.6' if margin is None else margin})"
        over = "-" if track == "off" else f"{t['overrides']} ({t['healed']} / {t['broke']})"
        print(f"| {inject} | {label} | {t['right files']} / {t['files']} | {t['wrong']} / {t['chunks']} | {over} |")


if __name__ == "__main__":
    main()
