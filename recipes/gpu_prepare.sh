#!/usr/bin/env bash
# Prepare, on the CPU machine, what a lent GPU needs for recipes/gpu_robust_8k.sh or gpu_default_8k.sh (the device
# copies the working tree, 64 MiB at most, and reaches no network):
#   .gpu/corpus/   the training speakers and the held-out validation speakers (../shared/corpus)
#   .gpu/noise/    the ambient recordings, at 8 kHz (half the bytes; the split into training and held-out parts
#                  is by position in each file, as on the CPU), and the measured room responses as they are
#   .gpu/cache/    the room banks (simulated here, or copied from data_cache/ when built already)
#   .whl/          wheels the device lacks: soundfile, soxr, and typer/rich for the `mossep` command
# Then (as the last GPU sessions did) large test fixtures are taken out of the index for the call; run
# `git reset -q` here afterwards to restore it. Usage, from the repository root:  bash recipes/gpu_prepare.sh
set -euo pipefail
PY=${PY:-.venv/bin/python}
S=../shared
mkdir -p .gpu/corpus .gpu/noise .gpu/cache .whl
for c in librispeech-train-clean-100 librispeech-test-other vctk; do
  [ -d .gpu/corpus/$c ] || cp -r $S/corpus/$c .gpu/corpus/
done
cp $S/corpus/README.md .gpu/corpus/
mkdir -p .gpu/noise/ambient && cp -r $S/noise/rirs .gpu/noise/ && cp $S/noise/README.md .gpu/noise/
$PY - <<'PYEOF'
from pathlib import Path
import soundfile as sf
from mossep.dynamic_mix import load_mono
for f in sorted(Path("../shared/noise/ambient").glob("*.flac")):
    sf.write(Path(".gpu/noise/ambient") / f.name, load_mono(f, 8000), 8000, subtype="PCM_16")
PYEOF
# the banks for the GPU config's paths (same keys as on the CPU: they depend on the rooms, not on the folders)
$PY - <<'PYEOF'
import os
from mossep import scenes as sc
from mossep.train import TrainConfig
o = TrainConfig.from_file("recipes/gpu-robust-8k.yaml")
cfg = sc.SceneConfig(rir_dirs=tuple(o["rir_dirs"]), held_out_rirs=tuple(o["held_out_rirs"]), rooms=o["rooms"],
                     rt60=tuple(o["rt60"]), cache=o["data_cache"], workers=os.cpu_count() or 1)
for split in ("train", "valid"):
    b = sc.room_bank(cfg, 8000, split)
    print(split, "rooms", len(b), "RT60", round(float(b.rt60.min()), 2), "-", round(float(b.rt60.max()), 2), "s")
PYEOF
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
  --platform manylinux_2_17_x86_64 -d .whl soundfile cffi pycparser soxr typer click rich shellingham \
  typing_extensions markdown-it-py mdurl pygments
grep -qx '/.gpu/' .git/info/exclude || printf '/.gpu/\n/.whl/\n/tests/fixtures/\n' >> .git/info/exclude
git rm -r -q --cached tests/fixtures
echo "carry: .gpu .whl; working tree for the device:"
du -sh .gpu .whl
git ls-files -z --cached --others --exclude-standard | du -ch --files0-from=- | tail -1
