#!/usr/bin/env bash
# One lent-GPU session (H100/H200, no network) for the default checkpoint (clean speech): stage A continues
# weights/default.safetensors, stage B continues A's best at a lower peak; each stage's learning rate follows a
# cosine over its time budget (`mossep train -c recipes/gpu-default-8k.yaml`, mixing on the device). Then the
# GPU real-time factor of a 1-hour file. Rounds 1-5 below ran the same settings through the former second
# trainer, recipes/gpu_default_8k.py (`git show e98e060:recipes/gpu_default_8k.py`), with these arguments
# (EXTRA=--compile is now compile: true in the config; its --reverb/--noise/--eq lines were never run). As run:
#   round 1-2 (session 2):  bash recipes/gpu_default_8k.sh 6.5 4
#   round 4 (session 4), two device calls, as one call may run 10 minutes at most:
#     LR_A=7e-4 RTF=0 bash recipes/gpu_default_8k.sh 8.6 0          (the first call: ~9 min with the loading)
#     cp <returned A/best.safetensors> .gpu/init/A.safetensors         (here, then the second call at once,
#     INIT=.gpu/init/A.safetensors LR_B=2.5e-4 VALID_B=50 RTF=0 bash recipes/gpu_default_8k.sh 0 3.3
#                                                                    while the machine is still warm)
#   round 5 (session 5), the same two calls with EXTRA=--compile, stage B 3.6 minutes:
#     LR_A=7e-4 RTF=0 EXTRA=--compile bash recipes/gpu_default_8k.sh 8.6 0                (543 s wall)
#     INIT=.gpu/init/A.safetensors LR_B=2.5e-4 VALID_B=50 RTF=0 EXTRA=--compile bash recipes/gpu_default_8k.sh 0 3.6
#                                                                                         (234 s wall)
#   (VALID_B was then a period in seconds; it is now in steps.) The noisy/reverberant stage: recipes/gpu_robust_8k.sh.
#
# Prepare on the CPU machine:  bash recipes/gpu_prepare.sh   (then carry data_cache/gpu)
# Run there:  bash recipes/gpu_default_8k.sh MINUTES_A MINUTES_B      (results in $OUT)
# MINUTES_B=0 runs stage A only; MINUTES_A=0 runs stage B only, from INIT; RTF=0 skips the real-time-factor
# runs. EXTRA adds `mossep train` options to both stages (e.g. EXTRA=--no-compile).
set -o pipefail
MIN_A=${1:-6.5}; MIN_B=${2:-4}
INIT=${INIT:-weights/default.safetensors}   # what stage A continues (stage B's start when MINUTES_A=0)
LR_A=${LR_A:-1e-3}; LR_B=${LR_B:-4e-4}; VALID_B=${VALID_B:-800}   # peak learning rates; B's validation period (steps)
OUT=${OUT:-runs/gpu}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site data_cache/gpu/whl/*.whl \
  || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 MOSSEP_CACHE=/tmp/mossep-cache
TRAIN="python3 -m mossep train -c recipes/gpu-default-8k.yaml -q --overwrite ${EXTRA:-}"
if [ "$MIN_A" = 0 ]; then
  A_BEST="$INIT"
else
  $TRAIN --init "$INIT" --max-minutes "$MIN_A" --lr "$LR_A" -o "$OUT/A" 2>&1 | tee "$OUT/train_A.txt" || exit 1
  A_BEST="$OUT/A/best.safetensors"
fi
if [ "$MIN_B" = 0 ]; then
  BEST="$OUT/A/best.safetensors"
else
  $TRAIN --init "$A_BEST" --max-minutes "$MIN_B" --lr "$LR_B" --valid-every "$VALID_B" -o "$OUT/B" 2>&1 \
    | tee "$OUT/train_B.txt" || exit 1
  rm -f "$OUT"/A/*.safetensors
  BEST="$OUT/B/best.safetensors"
fi
rm -f "$OUT"/*/last.pt   # what comes back: the best checkpoint, the logs
[ "${RTF:-1}" = 0 ] && exit 0
# GPU real-time factor, 16 kHz input end to end (read, resample, separate, write)
timeout 100 python3 benchmarks/bench_separate.py speed --model "$BEST" --minutes 60 --device cuda \
  --threads 8 2>&1 | tee "$OUT/rtf.txt"
timeout 60 python3 benchmarks/bench_separate.py speed --preset paper-l --minutes 10 --device cuda --threads 8 2>&1 \
  | tee -a "$OUT/rtf.txt"
