#!/usr/bin/env bash
# Issue 12's motion levers at the full recipe, four clips at once on one GPU through ds4d-batch
# (batch_methods_parallel.sh; each scored by ds4d-eval: PSNR, SSIM, moving-region PSNR), windmill with
# clean pseudo views, the default sample. Each lever changes one thing of ds4d-base:
#   base      ds4d-base as it is (the reference of the same call)
#   capacity  a wider, deeper deformation MLP (128 wide, 2 hidden layers; default 64 x 1)
#   dynamic   a shorter static stage (500 steps; default 1000): 500 more steps for the motion
#   smooth    ten times weaker time smoothness of the HexPlane (1e-3; 4D-GS's 1e-2)
# Run it twice with seeds 0 and 1 (frame order) for two runs of each. On a fresh GPU machine build
# gsplat's kernels first (see batch_methods_parallel.sh). Usage:
#   benchmarks/motion_levers.sh OUTDIR [SEED=0]
set -uo pipefail
out=$1 seed=${2:-0}
order="--pipeline.datamanager.frame-sampling-seed $seed"
LIMIT_S=${LIMIT_S:-540} bash "$(dirname "$0")/batch_methods_parallel.sh" "$out" \
  "windmill:0.0:base-s$seed:ds4d-base:$order" \
  "windmill:0.0:capacity-s$seed:ds4d-base:$order --pipeline.model.deformation-width 128 --pipeline.model.deformation-depth 2" \
  "windmill:0.0:dynamic-s$seed:ds4d-base:$order --pipeline.model.static-stage-steps 500" \
  "windmill:0.0:smooth-s$seed:ds4d-base:$order --pipeline.model.time-smoothness-weight 1e-3"
