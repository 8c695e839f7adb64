#!/usr/bin/env bash
# The GPU stage of the robust fine-tune (issue 15), for a session lent a GPU: `mossep train` with
# recipes/gpu-robust-8k.yaml (mixing on the device; noise, rooms, babble; the four validation sets), continuing
# INIT (default: weights/robust.safetensors, the shipped noisy-room model, trained on as the specialist the
# default's gate uses) for MINUTES of training.
#
# Prepare here first:  bash recipes/gpu_prepare.sh   (fills data_cache/gpu/, about 67 MB with the working tree's
# 9: more than one call carries, so it travels in two calls, the second at once while the machine is warm; the
# device keeps ignored files between calls). Take the test fixtures and weights/training out of the index for both
# calls (`git rm -r -q --cached tests/fixtures weights/training`, back with `git reset -q tests/fixtures
# weights/training`; see gpu_prepare.sh), then:
#   call 1, carry [data_cache/gpu/cache, data_cache/gpu/noise, data_cache/gpu/whl], timeout_s 120:
#       bash recipes/gpu_robust_8k.sh stage
#   call 2 at once, carry [data_cache/gpu/corpus], timeout_s 600 (with 15 device minutes, of which starting,
#   loading and compiling take about 3):
#       bash recipes/gpu_robust_8k.sh 8
# Results in $OUT (runs/gpu-robust unless set): best.safetensors, log.csv, config.yaml, train.txt. Then measure
# it here (benchmarks/bench_realistic.py, bench_inference.py, the dev clips) before shipping (weights/README.md).
set -o pipefail
MINUTES=${1:-8}
G=data_cache/gpu
if [ "$MINUTES" = stage ]; then   # call 1: check what it carried, leave it in place for call 2
  ls $G/cache/rooms/*.npz $G/noise/ambient/*.flac $G/whl/*.whl | wc -l; du -sh $G; exit 0
fi
for d in $G/cache/rooms $G/noise/ambient $G/noise/rirs $G/whl $G/corpus/librispeech-train-clean-100; do
  [ -d $d ] || { echo "missing $d: run call 1 first, on the same warm machine"; exit 1; }
done
INIT=${INIT:-weights/robust.safetensors}
OUT=${OUT:-runs/gpu-robust}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site $G/whl/*.whl \
  || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 MOSSEP_CACHE=/tmp/mossep-cache
python3 -m mossep train -c recipes/gpu-robust-8k.yaml --init "$INIT" --max-minutes "$MINUTES" -o "$OUT" --overwrite \
  -q ${EXTRA:-} 2>&1 | tee "$OUT/train.txt"
rm -f "$OUT/last.pt"   # what comes back: the best checkpoint, the log, the config
