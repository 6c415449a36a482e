#!/usr/bin/env bash
# Variants of the training recipe on one ds4d-synth scene, each through train_recipe.py (one JSON record
# per variant, with its device, date and command), then one summary line per variant.
#
# Usage: benchmarks/recipe_variants.sh OUTDIR SCENE TAG:ARGS...
#   ARGS are train_recipe.py flags, e.g. "deflr5:--deformation-lr-scale 5" or
#   "ds4d:--method ds4d --feature-weights random-init".
# Environment:
#   NOISE=0.0     degrade the pseudo views (ds4d-synth --pseudo-noise)
#   ALONE=1       run the variants one after the other, each alone on the GPU, so their step times
#                 compare (timing). Unset: all at once, sharing the GPU (quality; each run uses well
#                 under 1 GB and leaves the GPU mostly idle). Step times of a shared run are not a
#                 method's speed: compare them only within one call.
#   STEPS="S D"   static and dynamic steps (default: the full recipe, 1000 6000)
#
# What it has measured (benchmarks/RESULTS.md):
#   learning rates and pseudo weight:  bash benchmarks/recipe_variants.sh OUT windmill "base:" \
#       "pseudo1:--model-set pseudo_rgb_weight=1.0" "deflr5:--deformation-lr-scale 5"
#   methods on degraded views:         NOISE=1.0 bash benchmarks/recipe_variants.sh OUT windmill \
#       "ds4d:--method ds4d --feature-weights random-init" "ds4d-ga:--method ds4d-ga --feature-weights random-init" \
#       "base:--method ds4d-base"
#   per-step cost of the features:     ALONE=1 NOISE=1.0 STEPS="500 1500" bash benchmarks/recipe_variants.sh OUT windmill \
#       "base:--method ds4d-base" "ds4d:--method ds4d --feature-weights random-init" \
#       "ds4d-deformed:--method ds4d --feature-weights random-init --features-set sampling_points='deformed'" \
#       "ds4d-ga:--method ds4d-ga --feature-weights random-init"
#   step time of LPIPS + Zero123 SDS:  ALONE=1 STEPS="300 900" bash benchmarks/recipe_variants.sh OUT windmill \
#       "ds4d:--method ds4d --feature-weights random-init" \
#       "ds4d-priors:--method ds4d --feature-weights random-init --priors random-init"
#     (projected full recipe = 1000 x static step + 6000 x dynamic step; the networks have random
#     weights: timing does not depend on them, quality does)
set -uo pipefail
out=${1:?output folder} scene=${2:?scene}
shift 2
mkdir -p "$out"
noise=${NOISE:-0.0}
read -r static dynamic <<< "${STEPS:-1000 6000}"
work=/tmp/ds4d-bench
# Render the scene once, in one process: concurrent renders oversubscribe the CPU threads.
python3 -c "from ds4d_ns.scripts.synth import SynthConfig, main; from pathlib import Path; \
main(SynthConfig(output=Path('$work/$scene-30x256-noise$noise'), scene='$scene', pseudo_noise=$noise))" \
  > "$out/$scene-synth.log" 2>&1
run() {  # tag, then train_recipe.py flags
  local tag=$1
  shift
  OMP_NUM_THREADS=${OMP_NUM_THREADS:-3} python3 benchmarks/train_recipe.py --scene "$scene" --tag "$tag" \
    --workdir "$work" --pseudo-noise "$noise" --static-steps "$static" --dynamic-steps "$dynamic" \
    --output "$out/$scene-$tag.json" "$@" > "$out/$scene-$tag.log" 2>&1
}
pids=()
for spec in "$@"; do
  tag=${spec%%:*} extra=${spec#*:}
  if [ -n "${ALONE:-}" ]; then
    # shellcheck disable=SC2086
    run "$tag" $extra
  else
    # shellcheck disable=SC2086
    run "$tag" $extra &
    pids+=($!)
  fi
done
for pid in "${pids[@]}"; do wait "$pid"; done
for spec in "$@"; do
  tag=${spec%%:*}
  python3 - "$out/$scene-$tag.json" <<'PY' || tail -5 "$out/$scene-$tag.log"
import json, sys
r = json.load(open(sys.argv[1]))
e = r["eval"]
s, d = r.get("median_static_step_ms"), r.get("median_dynamic_step_ms")
projected = round((1000 * s + 6000 * d) / 1000, 1) if s and d else None
print(f"{r['tag']:14s} psnr {e.get('psnr', float('nan')):.2f} ssim {e.get('ssim', float('nan')):.4f} "
      f"dynamic region {r.get('eval_dynamic_region')} | train {r['train_seconds']} s, static step {s} ms, "
      f"dynamic step {d} ms, projected 1000+6000 {projected} s | {r['num_gaussians']} Gaussians, "
      f"{r['peak_gpu_memory_gib']} GiB | {r.get('feature_backbone', '')} {r.get('priors', '')}")
PY
done
