#!/usr/bin/env bash
# Per-step cost of frame features + TSSF against the no-feature model: short runs of each variant,
# one after the other, each alone on the GPU (so step times compare). Usage:
#   benchmarks/step_overhead.sh OUTDIR [SCENE] [NOISE]
# The ds4d variants use DINOv2 with RANDOM weights (no download possible): timing does not depend on them.
set -uo pipefail
out=$1 scene=${2:-windmill} noise=${3:-1.0}
mkdir -p "$out"
for spec in "base:--method ds4d-base" \
  "ds4d:--method ds4d --feature-weights random-init" \
  "ds4d-deformed:--method ds4d --feature-weights random-init --features-set sampling_points='deformed'" \
  "ds4d-ga:--method ds4d-ga --feature-weights random-init"; do
  tag=${spec%%:*} extra=${spec#*:}
  # shellcheck disable=SC2086
  python3 benchmarks/train_recipe.py --scene "$scene" --pseudo-noise "$noise" --static-steps 500 --dynamic-steps 1500 \
    --workdir /tmp/ds4d-bench --tag "overhead-$tag" --output "$out/overhead-$tag.json" $extra > "$out/overhead-$tag.log" 2>&1
  python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(r['tag'], 'median dynamic step ms', r['median_dynamic_step_ms'], 'gaussians', r['num_gaussians'], r['feature_backbone'])" \
    "$out/overhead-$tag.json" || tail -5 "$out/overhead-$tag.log"
done
