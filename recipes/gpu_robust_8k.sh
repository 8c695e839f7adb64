#!/usr/bin/env bash
# The GPU stage of the robust fine-tune (issue 15), for a session lent a GPU: `mossep train` with
# recipes/gpu-robust-8k.yaml (mixing on the device; noise, rooms, babble; the four validation sets), continuing
# INIT (default: weights/default.safetensors; or the CPU fine-tune's runs/robust-cpu/best.safetensors if it
# is better), for MINUTES of training. Prepare here first:  bash recipes/gpu_prepare.sh
# Then one device call (carry .gpu and .whl), e.g. with 15 device minutes, of which loading and compiling take ~3:
#   run: INIT=weights/default.safetensors bash recipes/gpu_robust_8k.sh 8     (timeout_s 600)
# Results in $OUT (runs/gpu-robust unless set): best.safetensors, log.csv, train.txt. Back here: git reset -q,
# then measure with benchmarks/bench_realistic.py and bench_inference.py before shipping (weights/README.md).
set -o pipefail
MINUTES=${1:-8}
INIT=${INIT:-weights/default.safetensors}
OUT=${OUT:-runs/gpu-robust}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 MOSSEP_CACHE=/tmp/mossep-cache
python3 -m mossep train -c recipes/gpu-robust-8k.yaml --init "$INIT" --max-minutes "$MINUTES" -o "$OUT" --overwrite \
  -q ${EXTRA:-} 2>&1 | tee "$OUT/train.txt"
rm -f "$OUT/last.pt"   # what comes back: the best checkpoint, the log, the config
