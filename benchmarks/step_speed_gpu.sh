#!/usr/bin/env bash
# The training step's speed levers on one GPU, each run alone, one after the other (what it measures is
# in benchmarks/RESULTS.md, "Training time and where a step goes"):
#   1. the CUDA-graph tests (`pytest -m gpu tests/test_step_graphs.py tests/test_guidance_gpu.py`); if they fail, every run below
#      is eager (--model-set cuda_graphs=False) so the call still yields its other figures;
#   2. the mesh export on both sample scenes (benchmarks/mesh_fidelity_gpu.sh: trains ds4d-base with the
#      default step, so its windmill record is also the first timed run with CUDA graphs);
#   3. ds4d-base on windmill eager (cuda_graphs=False): the step as before, on this machine;
#   4. the step profile with graphs (short schedule); 5. ds4d-base with graphs again (the second run the
#   targets ask for); 6. the eager step profile; 7. the step's operations by part (step_operations.py, gsplat's
#   included); 8. ds4d (DINOv2-small, random weights) with graphs and eager. From 3 on, each only while the
#   time left (BUDGET_S, seconds from the start) allows.
# Usage (GPU machine, after `source .whl/bootstrap.sh` and installing the project):
#   bash benchmarks/step_speed_gpu.sh OUTDIR      (SCENES="windmill": the mesh of one scene; SCENES="": none)
# Records: OUTDIR/recipe-*.json (train_recipe.py), OUTDIR/profile-*.json, OUTDIR/mesh-*.json; logs beside them.
# SMOKE=1: every step on a tiny scene and schedule, on whatever device there is (the CPU check of this
# script that tests/test_benchmark_scripts.py runs, so that a GPU call is not spent on a typo); times nothing.
set -uo pipefail
out=$1
budget=${BUDGET_S:-570}
work=${WORK:-/tmp/ds4d-bench}
size=()          # train_recipe.py's scene and schedule: the script's defaults (the full recipe)
mesh_size=()     # the mesh runs' (a smoke run trains them longer: after a few steps no Gaussian is opaque enough to mesh)
profile_size=(--static-steps 100 --warmup-steps 300 --profile-steps 30)
operations_size=()
if [ -n "${SMOKE:-}" ]; then
  operations_size=(--frames 3 --resolution 32 --static-steps 4 --warmup-steps 3 --count-steps 2)
  size=(--frames 3 --resolution 32 --static-steps 4 --dynamic-steps 6)
  mesh_size=(--frames 3 --resolution 32 --static-steps 40 --dynamic-steps 10)
  profile_size=(--frames 3 --resolution 32 --static-steps 2 --warmup-steps 2 --profile-steps 2 --smoke)
  budget=100000
fi
mkdir -p "$out"
summary() {  # one line per record
  python3 benchmarks/recipe_summary.py "$1"
}
recipe() {  # tag, then train_recipe.py arguments
  local tag=$1
  shift
  python3 benchmarks/train_recipe.py --scene windmill --workdir "$work" --tag "$tag" --output "$out/recipe-$tag.json" \
    "${size[@]}" $graphs_flag "$@" > "$out/recipe-$tag.log" 2>&1 || tail -5 "$out/recipe-$tag.log"
  summary "$out/recipe-$tag.json"
  echo "  (${SECONDS} s)"
}
profile() {  # tag, then profile_step.py arguments
  local tag=$1
  shift
  python3 benchmarks/profile_step.py "${profile_size[@]}" --workdir "$work" --tag "$tag" \
    --output "$out/profile-$tag.json" $graphs_flag "$@" > "$out/profile-$tag.log" 2>&1 || tail -5 "$out/profile-$tag.log"
  grep -E "step|syncs|busy|floor" "$out/profile-$tag.log" | tail -6
  echo "  (${SECONDS} s)"
}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$out/machine.txt" 2>&1
git rev-parse HEAD >> "$out/machine.txt" 2>/dev/null
graphs_flag="--model-set cuda_graphs=True"  # explicit, whatever the configuration's default
if ! timeout 150 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_step_graphs.py tests/test_guidance_gpu.py > "$out/pytest-graphs.log" 2>&1; then
  graphs_flag="--model-set cuda_graphs=False"
  echo "CUDA-graph tests failed: every run below is eager"
fi
echo "pytest -m gpu (graph tests): $(tail -1 "$out/pytest-graphs.log") (${SECONDS} s)"
# one scene at a time, each with its own limit (about 150 s a scene on an H200: synthesis, training,
# ds4d-eval, export, measurement), so that a slow first scene does not cost the second its figures
for scene in ${SCENES-windmill waving}; do  # SCENES="" skips the meshes (a second call)
  RECIPE_ARGS="$graphs_flag ${mesh_size[*]}" WORK="$work/mesh" timeout 220 bash benchmarks/mesh_fidelity_gpu.sh "$out" "$scene"
  summary "$out/recipe-$scene.json"
  echo "  (${SECONDS} s)"
done
((SECONDS + 120 < budget)) && recipe base-eager --method ds4d-base --model-set cuda_graphs=False
((SECONDS + 50 < budget)) && profile base-graphs --method ds4d-base
((SECONDS + 90 < budget)) && recipe base-graphs2 --method ds4d-base
((SECONDS + 50 < budget)) && profile base-eager --method ds4d-base --model-set cuda_graphs=False
if ((SECONDS + 40 < budget)); then  # operations a step by part, gsplat's included (benchmarks/step_operations.py)
  # eager: the count is of what the graphs would replace (a capture under the counting mode is not wanted)
  python3 benchmarks/step_operations.py --method ds4d-base --workdir "$work" --output "$out/operations-base.json" \
    --model-set cuda_graphs=False "${operations_size[@]}" > "$out/operations-base.log" 2>&1 \
    || tail -5 "$out/operations-base.log"
  tail -1 "$out/operations-base.log"
fi
((SECONDS + 120 < budget)) && recipe ds4d-graphs --method ds4d --feature-weights random-init
((SECONDS + 150 < budget)) && recipe ds4d-eager --method ds4d --feature-weights random-init --model-set cuda_graphs=False
echo "done (${SECONDS} s)"
