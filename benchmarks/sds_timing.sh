#!/usr/bin/env bash
# Step time and memory of the generative priors (LPIPS-VGG + Zero123 SDS) against ds4d without them:
# short runs, one after the other, each alone on the GPU. Zero123-XL (UNet, VAE, CLIP ViT-L/14) and
# VGG16 are built at full size with RANDOM weights (none can be downloaded here); timing does not
# depend on the weights, quality does (the SDS runs' PSNR means nothing). Usage:
#   benchmarks/sds_timing.sh OUTDIR [SCENE]
set -uo pipefail
out=$1 scene=${2:-windmill}
mkdir -p "$out"
for spec in "ds4d:" "ds4d-priors:--priors random-init"; do
  tag=${spec%%:*} extra=${spec#*:}
  # shellcheck disable=SC2086
  python3 benchmarks/train_recipe.py --scene "$scene" --static-steps 300 --dynamic-steps 900 --method ds4d \
    --feature-weights random-init --workdir /tmp/ds4d-bench --tag "sds-$tag" --output "$out/sds-$tag.json" \
    $extra > "$out/sds-$tag.log" 2>&1
  python3 -c "import json,sys; r=json.load(open(sys.argv[1])); s, d = r['median_static_step_ms'], r['median_dynamic_step_ms']; \
print(r['tag'], 'static ms', s, 'dynamic ms', d, 'projected 1000+6000 s', round((1000*s + 6000*d)/1000, 1), \
'peak GiB', r['peak_gpu_memory_gib'], r['priors'])" "$out/sds-$tag.json" || tail -20 "$out/sds-$tag.log"
done
