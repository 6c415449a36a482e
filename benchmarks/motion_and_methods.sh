#!/usr/bin/env bash
# Issues 11 and 12 on one GPU in one go (quality only: the runs share the GPU, so their wall times are
# not step times; `profile_step.py` and `train_recipe.py` alone give those).
#   1. the step profile of ds4d-base (alone, first);
#   2. in parallel, the full 1000 + 6000 recipe of: the motion variants of ds4d-base on the clean scene
#      (issue 12's motion table) and ds4d-base / ds4d / ds4d-ga / a static baseline on the scene with
#      degraded pseudo views (issue 11's method comparison);
#   3. ds4d-eval on every run (PSNR, SSIM, moving-region PSNR: the metrics that need no downloaded weights).
# Usage: benchmarks/motion_and_methods.sh OUTDIR [SCENE]
set -uo pipefail
out=$1 scene=${2:-windmill}
mkdir -p "$out"
work=/tmp/ds4d-bench
python3 benchmarks/profile_step.py --method ds4d-base --tag fused --static-steps 100 --warmup-steps 200 \
  --profile-steps 30 --output "$out/profile-base.json" > "$out/profile-base.log" 2>&1
grep -A14 "ms/step unprofiled" "$out/profile-base.log" || tail -20 "$out/profile-base.log"
for noise in 0.0 1.0; do
  python3 -c "from ds4d_ns.scripts.synth import SynthConfig, main; from pathlib import Path; \
main(SynthConfig(output=Path('$work/$scene-30x256-noise$noise'), scene='$scene', pseudo_noise=$noise))" \
    > "$out/synth-$noise.log" 2>&1 &
done
wait
runs=(
  "0.0:base:--method ds4d-base"
  "0.0:base-motion4:--method ds4d-base --model-set motion_loss_weight=4.0"
  "0.0:base-time30:--method ds4d-base --model-set hexplane_time_resolution=30"
  "1.0:base:--method ds4d-base"
  "1.0:ds4d:--method ds4d --feature-weights random-init"
  "1.0:ds4d-ga:--method ds4d-ga --feature-weights random-init"
  "1.0:static:--method ds4d-base --static-steps 6990 --dynamic-steps 10"
)
pids=()
for spec in "${runs[@]}"; do
  IFS=: read -r noise tag extra <<< "$spec"
  # shellcheck disable=SC2086
  OMP_NUM_THREADS=1 python3 benchmarks/train_recipe.py --scene "$scene" --pseudo-noise "$noise" --tag "$tag" \
    --workdir "$work" --output "$out/recipe-$noise-$tag.json" $extra > "$out/recipe-$noise-$tag.log" 2>&1 &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
for spec in "${runs[@]}"; do
  IFS=: read -r noise tag extra <<< "$spec"
  config=$(ls "$work"/outputs/"$scene-30x256-noise$noise-$tag"/*/bench/config.yml 2>/dev/null | head -1)
  [ -n "$config" ] && ds4d-eval model --load-config "$config" --metrics psnr ssim psnr_moving \
    --output-dir "$out/eval-$noise-$tag" > "$out/eval-$noise-$tag.log" 2>&1 &
done
wait
for spec in "${runs[@]}"; do
  IFS=: read -r noise tag extra <<< "$spec"
  python3 - "$out" "$noise" "$tag" <<'PY' || tail -3 "$1/recipe-$2-$3.log"
import json, sys
out, noise, tag = sys.argv[1:]
r = json.load(open(f"{out}/recipe-{noise}-{tag}.json"))
try:
    e = json.load(open(f"{out}/eval-{noise}-{tag}/metrics.json"))
except OSError:
    e = {}
print(f"noise {noise} {tag:14s} ns-eval psnr {r['eval']['psnr']:.2f} ssim {r['eval']['ssim']:.4f} "
      f"psnr_moving {r['eval'].get('psnr_moving', float('nan')):.2f} | train-views moving {r.get('train_motion', {})} | "
      f"ds4d-eval {json.dumps(e.get('mean', e.get('metrics', {})))[:200]}")
PY
done
