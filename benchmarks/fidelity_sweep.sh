#!/usr/bin/env bash
# Reward-fidelity sweep recorded in docs/benchmarks.md: one factor at a time around
# N=1000 ratings, K=4 classes, noise 0, for every method, 3 seeds, on each environment.
# Usage: benchmarks/fidelity_sweep.sh [OUT_DIR] [ENV ...]
set -euo pipefail
out=${1:-benchmarks/results}
shift || true
envs=("$@")
[ ${#envs[@]} -gt 0 ] || envs=(HalfCheetah-v5 dmc/walker-walk)
bin=${RATINGRL:-.venv/bin/ratingrl}
mkdir -p "$out"
for env in "${envs[@]}"; do
  tag=${env//\//_}
  "$bin" bench fidelity --env "$env" --ratings 100,300,1000 --classes 4 --noise 0 \
    --seeds 3 --out "$out/fidelity_${tag}_ratings.json"
  "$bin" bench fidelity --env "$env" --ratings 1000 --classes 2,6 --noise 0 \
    --seeds 3 --out "$out/fidelity_${tag}_classes.json"
  "$bin" bench fidelity --env "$env" --ratings 1000 --classes 4 --noise 0.2,0.4 \
    --seeds 3 --out "$out/fidelity_${tag}_noise.json"
done
"$bin" plot "$out"/fidelity_*.json --out docs/figures/fidelity_tau.png
