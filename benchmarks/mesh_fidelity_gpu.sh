#!/usr/bin/env bash
# ds4d-export --mesh on the full GPU recipe of both sample scenes: trains ds4d-base (1000 + 6000 steps,
# 30 frames x 7 views at 256 px) on windmill and waving, scores each run with ds4d-eval, exports the
# mesh (timed) and measures it with benchmarks/mesh_export.py (silhouette IoU and vertex-colour PSNR
# against the Gaussian render at the eval cameras, every frame; motion distance).
# Usage (GPU machine, after `source .whl/bootstrap.sh` and installing the project):
#   bash benchmarks/mesh_fidelity_gpu.sh OUTDIR [SCENE ...]
# Records: OUTDIR/mesh-SCENE.json, OUTDIR/recipe-SCENE.json, OUTDIR/eval-SCENE/metrics.json, logs beside them.
# RECIPE_ARGS (environment): more train_recipe.py flags, e.g. "--model-set cuda_graphs=False"; WORK: scratch folder.
set -uo pipefail
out=$1
shift
scenes=("$@")
[ ${#scenes[@]} -gt 0 ] || scenes=(windmill waving)
work=${WORK:-/tmp/ds4d-mesh}
mkdir -p "$out"
for scene in "${scenes[@]}"; do
  python3 benchmarks/train_recipe.py --scene "$scene" --workdir "$work" --tag "mesh-$scene" --method ds4d-base \
    ${RECIPE_ARGS:-} --output "$out/recipe-$scene.json" > "$out/recipe-$scene.log" 2>&1 || tail -5 "$out/recipe-$scene.log"
  config=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["run_config"])' "$out/recipe-$scene.json" \
    2>/dev/null)
  if [ -z "$config" ] || [ ! -f "$config" ]; then echo "$scene: no trained run"; continue; fi
  ds4d-eval model --load-config "$config" --metrics psnr ssim --output-dir "$out/eval-$scene" \
    > "$out/eval-$scene.log" 2>&1 || tail -3 "$out/eval-$scene.log"
  start=$SECONDS
  if ! ds4d-export --load-config "$config" --output-dir "$work/export-$scene" --mesh > "$out/export-$scene.log" 2>&1; then
    echo "$scene: ds4d-export --mesh failed:"; tail -5 "$out/export-$scene.log"; continue
  fi
  echo "$scene: ds4d-export --mesh took $((SECONDS - start)) s"
  python3 benchmarks/mesh_export.py --load-config "$config" --export-dir "$work/export-$scene" \
    --output "$out/mesh-$scene.json" > "$out/mesh-$scene.log" 2>&1 || tail -5 "$out/mesh-$scene.log"
  tail -3 "$out/mesh-$scene.log"
done
