#!/usr/bin/env bash
# Usage: bash benchmarks/arch/run.sh [MINUTES]   (from the repository root, ../shared beside it)
# Trains MossFormer and MossFormer2 side by side (1 thread each) for MINUTES of wall time each and
# prints their validation SI-SNRi against CPU hours (log.csv in runs/arch-*).
set -euo pipefail
minutes=${1:-12}
for arch in mossformer mossformer2; do
  mossep train -c benchmarks/arch/compare.yaml --arch "$arch" -o "runs/arch-$arch" --max-minutes "$minutes" --quiet &
done
wait
for arch in mossformer mossformer2; do
  echo "== $arch (step, wall hours, CPU hours, validation SI-SNRi dB)"
  awk -F, 'NR > 1 && $6 != "" {print $1, $2, $3, $6}' "runs/arch-$arch/log.csv"
done
