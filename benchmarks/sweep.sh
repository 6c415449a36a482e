#!/usr/bin/env bash
# Run several train_recipe.py variants at once on one GPU (each uses well under 1 GB and leaves
# the GPU mostly idle, so they share it). Usage: benchmarks/sweep.sh OUTDIR SCENE TAG:ARGS...
# Set NOISE to degrade the pseudo views (ds4d-synth --pseudo-noise). Step times measured in a sweep
# are shared-GPU times: compare them only within one sweep.
set -uo pipefail
out=$1 scene=$2; shift 2
noise=${NOISE:-0.0}
# Render the scene once, single process: concurrent renders oversubscribe the CPU threads.
python3 -c "from ds4d_ns.scripts.synth import SynthConfig, main; from pathlib import Path; \
main(SynthConfig(output=Path('/tmp/ds4d-bench/$scene-30x256-noise$noise'), scene='$scene', pseudo_noise=$noise))" > "$out/$scene-synth.log" 2>&1
pids=()
for spec in "$@"; do
  tag=${spec%%:*} extra=${spec#*:}
  # shellcheck disable=SC2086
  OMP_NUM_THREADS=3 python3 benchmarks/train_recipe.py --scene "$scene" --tag "$tag" --workdir /tmp/ds4d-bench \
    --pseudo-noise "$noise" --output "$out/$scene-$tag.json" $extra > "$out/$scene-$tag.log" 2>&1 &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
for spec in "$@"; do tag=${spec%%:*}; python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(r['tag'], r['eval']['psnr'], r['eval']['ssim'], r.get('eval_dynamic_region'), r['train_seconds'], r.get('median_dynamic_step_ms'), r['peak_gpu_memory_gib'], r['num_gaussians'], r['feature_backbone'] if 'feature_backbone' in r else '')" "$out/$scene-$tag.json" || tail -5 "$out/$scene-$tag.log"; done
