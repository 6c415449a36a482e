#!/usr/bin/env bash
# Run several train_recipe.py variants at once on one GPU (each uses well under 1 GB and leaves
# the GPU mostly idle, so they share it). Usage: benchmarks/sweep.sh OUTDIR SCENE TAG:ARGS...
set -uo pipefail
out=$1 scene=$2; shift 2
# Render the scene once, single process: concurrent renders oversubscribe the CPU threads.
python3 -c "from ds4d_ns.scripts.synth import SynthConfig, main; from pathlib import Path; \
main(SynthConfig(output=Path('/tmp/ds4d-bench/$scene-30x256-noise0.0'), scene='$scene'))" > "$out/$scene-synth.log" 2>&1
pids=()
for spec in "$@"; do
  tag=${spec%%:*} extra=${spec#*:}
  # shellcheck disable=SC2086
  OMP_NUM_THREADS=3 python3 benchmarks/train_recipe.py --scene "$scene" --tag "$tag" --workdir /tmp/ds4d-bench \
    --output "$out/$scene-$tag.json" $extra > "$out/$scene-$tag.log" 2>&1 &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
for spec in "$@"; do tag=${spec%%:*}; python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(r['tag'], r['eval']['psnr'], r['eval']['ssim'], r['train_seconds'], r['peak_gpu_memory_gib'], r['num_gaussians'], r['eval_psnr_per_view'])" "$out/$scene-$tag.json" || tail -5 "$out/$scene-$tag.log"; done
