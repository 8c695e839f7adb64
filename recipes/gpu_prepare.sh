#!/usr/bin/env bash
# Prepare, on the CPU machine, what a lent GPU needs for recipes/gpu_robust_8k.sh or gpu_default_8k.sh: the device
# copies the working tree (64 MiB at most, with the folders named in `carry`) and reaches no network. All of it
# goes under data_cache/gpu/ (git-ignored), to be carried as one path:
#   corpus/   the training speakers and the held-out validation speakers (../shared/corpus)
#   noise/    the ambient recordings at 8 kHz (half the bytes; the split into training and held-out parts is by
#             position in each file, as on the CPU) and the measured room responses as they are
#   cache/    the room banks (built here, seeded, with pyroomacoustics, which the device does not need then)
#   whl/      wheels the device lacks: soundfile, soxr, and typer/rich for the `mossep` command
# Usage, from the repository root:  bash recipes/gpu_prepare.sh
# The tracked test fixtures (about 58 MB) and the CPU runs' resumable states under weights/training (about 50 MB)
# do not fit beside it and are not needed there: as the earlier GPU sessions did with the fixtures, take them out
# of the index for the device calls (`git rm -r -q --cached tests/fixtures weights/training`) and put them back
# right after (`git reset -q tests/fixtures weights/training`), in a session where no one else commits meanwhile.
set -euo pipefail
PY=${PY:-.venv/bin/python}
S=../shared
G=data_cache/gpu
mkdir -p $G/corpus $G/noise/ambient $G/cache $G/whl
for c in librispeech-train-clean-100 librispeech-test-other vctk; do
  [ -d $G/corpus/$c ] || cp -r $S/corpus/$c $G/corpus/
done
cp $S/corpus/README.md $G/corpus/
cp -r $S/noise/rirs $G/noise/ && cp $S/noise/README.md $G/noise/
$PY - <<'PYEOF'
from pathlib import Path
import soundfile as sf
from mossep.dynamic_mix import load_mono
for f in sorted(Path("../shared/noise/ambient").glob("*.flac")):
    sf.write(Path("data_cache/gpu/noise/ambient") / f.name, load_mono(f, 8000), 8000, subtype="PCM_16")
PYEOF
mkdir -p $G/cache/rooms && cp -n data_cache/rooms/*.npz $G/cache/rooms/ 2>/dev/null || true  # built here already
# the banks, for the GPU config's folders (the same rooms as on the CPU: the key holds the rooms' parameters and
# the measured files' names and sizes, not their folders)
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
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
  --platform manylinux_2_17_x86_64 -d $G/whl soundfile cffi pycparser soxr typer click rich shellingham \
  typing_extensions markdown-it-py mdurl pygments
du -sh $G
echo "working tree without the fixtures and weights/training (what travels with each call besides its carry):"
git ls-files -z --cached --others --exclude-standard | grep -zv '^tests/fixtures/\|^weights/training/' \
  | du -ch --files0-from=- | tail -1
