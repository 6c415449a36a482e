#!/usr/bin/env bash
# The recipe's times, each run alone on the GPU, one after the other:
#   1. the GPU tests (`pytest -m gpu`);
#   2. the full 1000 + 6000 recipe of ds4d-base and of ds4d (DINOv2-small with random weights: the
#      timing does not depend on them), with eval PSNR / SSIM / moving-region PSNR;
#   3. the recipe with LPIPS + Zero123 SDS (full-size networks with random weights), timed on 300 + 900
#      steps and projected to 1000 + 6000 (as `recipe_variants.sh` projects it);
#   4. a second ds4d-base recipe, when the time left allows (BUDGET_S, default 540 s from the start).
# Records: OUTDIR/recipe-*.json (train_recipe.py's). Usage: benchmarks/recipe_times_alone.sh OUTDIR [SCENE]
set -uo pipefail
out=$1 scene=${2:-windmill}
budget=${BUDGET_S:-540}
mkdir -p "$out"
work=/tmp/ds4d-bench
summary() {  # one line per record
  python3 benchmarks/recipe_summary.py "$1"
}
recipe() {  # tag, then train_recipe.py arguments
  local tag=$1
  shift
  python3 benchmarks/train_recipe.py --scene "$scene" --workdir "$work" --tag "$tag" --output "$out/recipe-$tag.json" \
    "$@" > "$out/recipe-$tag.log" 2>&1 || tail -5 "$out/recipe-$tag.log"
  summary "$out/recipe-$tag.json"
}
evaluate() {  # ds4d-eval model on a recipe run (after the timing: it is not part of it)
  local config
  config=$(ls "$work"/outputs/"$scene"-30x256-noise0.0-"$1"/*/bench/config.yml 2>/dev/null | head -1)
  [ -n "$config" ] && ds4d-eval model --load-config "$config" --metrics psnr ssim psnr_moving \
    --output-dir "$out/eval-$1" > "$out/eval-$1.log" 2>&1
  python3 -c "import json,sys; print('ds4d-eval', sys.argv[1], json.load(open(sys.argv[2]))['means'])" "$1" \
    "$out/eval-$1/metrics.json" || tail -3 "$out/eval-$1.log"
}
{ command -v ffmpeg nvidia-cuda-mps-control; python3 -c "import av; print('PyAV', av.__version__)"; nproc
  nvidia-smi --query-gpu=name,driver_version,memory.used --format=csv; } > "$out/machine.txt" 2>&1
timeout 150 python3 -m pytest -q -p no:cacheprovider -m gpu tests > "$out/pytest-gpu.log" 2>&1
echo "pytest -m gpu: $(tail -1 "$out/pytest-gpu.log") (${SECONDS} s)"
recipe base-alone1 --method ds4d-base
evaluate base-alone1
echo "(${SECONDS} s)"
recipe ds4d-alone1 --method ds4d --feature-weights random-init
evaluate ds4d-alone1
echo "(${SECONDS} s)"
recipe sds-priors --method ds4d --feature-weights random-init --priors random-init --static-steps 300 --dynamic-steps 900
echo "(${SECONDS} s)"
if ((SECONDS + 150 < budget)); then
  recipe base-alone2 --method ds4d-base
  evaluate base-alone2
  echo "(${SECONDS} s)"
fi
