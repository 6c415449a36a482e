#!/usr/bin/env bash
# Sweeps of CPU-recipe variants for the demo's motion, run on the GPU machine: quality
# with gsplat on the GPU (the CPU configuration's recipe; only the rasteriser differs) and, in
# parallel, CPU runs pinned to two cores each (timing, and quality with the pure-torch rasteriser).
# Results: benchmarks/RESULTS.md, "CPU demo". Usage (device tool, repo root, .whl carried):
#   source .whl/bootstrap.sh && pip install -q --no-deps --no-build-isolation --no-index -e . \
#     && bash benchmarks/cpu_demo_sweep.sh "$OUT" 1     # or 2: the second sweep
set -uo pipefail
out=${1:?output folder}
sweep=${2:-1}
mkdir -p "$out/sweep"
bench() { python3 benchmarks/cpu_demo_motion.py --output "$out/sweep/$1.json" --tag "$@" > "$out/sweep/$1.log" 2>&1 || echo "$1 failed"; }
cpu() {
  local tag=$1 cores=$2 limit=$3; shift 3
  mkdir -p "/tmp/cpu-$tag" && cp -r /tmp/ds4d-cpu-demo/windmill-30x256 "/tmp/cpu-$tag/"
  timeout "$limit" taskset -c "$cores" python3 benchmarks/cpu_demo_motion.py --device cpu --threads 2 \
    --workdir "/tmp/cpu-$tag" --output "$out/sweep/cpu-$tag.json" --tag "cpu-$tag" "$@" > "$out/sweep/cpu-$tag.log" 2>&1 \
    || echo "cpu $tag failed"
}
python3 -c "from pathlib import Path; from ds4d_ns.scripts.synth import SynthConfig, main; main(SynthConfig(output=Path('/tmp/ds4d-cpu-demo/windmill-30x256')))" >/dev/null 2>&1

if [ "$sweep" = 1 ]; then  # resolution, steps, deformation rates, HexPlane size, time smoothness
  cpu base 2-3 480 &
  cpu r128 4-5 480 --static-steps 20 --dynamic-steps 80 --res-scale 0.5 &
  bench base --device cuda
  bench lr5 --device cuda --deformation-lr-scale 2.5
  bench d600 --device cuda --dynamic-steps 600
  bench r128-600 --device cuda --dynamic-steps 600 --res-scale 0.5
  bench r128-600-lr5 --device cuda --dynamic-steps 600 --res-scale 0.5 --deformation-lr-scale 2.5
  bench r128-1000 --device cuda --dynamic-steps 1000 --res-scale 0.5
  bench r128-1000-lr5 --device cuda --dynamic-steps 1000 --res-scale 0.5 --deformation-lr-scale 2.5
  bench r128-600-hex32 --device cuda --dynamic-steps 600 --res-scale 0.5 --model-set hexplane_resolution=32
  bench r128-600-lr10 --device cuda --dynamic-steps 600 --res-scale 0.5 --deformation-lr-scale 5
  bench r128-600-smooth --device cuda --dynamic-steps 600 --res-scale 0.5 --deformation-lr-scale 2.5 \
    --model-set time_smoothness_weight=0.001
  bench r128-s200-600-lr5 --device cuda --static-steps 200 --dynamic-steps 600 --res-scale 0.5 --deformation-lr-scale 2.5
else  # cheaper steps (fewer pseudo views per step, 96 px) at the larger rates; plus the GPU tests
  declare -A variants=(
    [A]="--dynamic-steps 600 --res-scale 0.375 --deformation-lr-scale 5"
    [B]="--dynamic-steps 600 --res-scale 0.5 --deformation-lr-scale 5 --datamanager-set pseudo_views_per_step=2"
    [C]="--dynamic-steps 400 --res-scale 0.5 --deformation-lr-scale 5 --datamanager-set pseudo_views_per_step=2"
    [D]="--dynamic-steps 500 --res-scale 0.375 --deformation-lr-scale 5 --datamanager-set pseudo_views_per_step=3"
    [E]="--dynamic-steps 800 --res-scale 0.375 --deformation-lr-scale 5 --datamanager-set pseudo_views_per_step=2"
    [F]="--static-steps 50 --dynamic-steps 500 --res-scale 0.5 --deformation-lr-scale 5 --datamanager-set pseudo_views_per_step=1"
  )
  i=0
  for v in A B C D E F; do
    # shellcheck disable=SC2086
    cpu "$v" "$((2 + 2 * i))-$((3 + 2 * i))" 420 ${variants[$v]} &
    i=$((i + 1))
  done
  (HF_HUB_OFFLINE=1 python3 -m pytest -q -p no:cacheprovider -m gpu tests/ > "$out/sweep/gpu-tests.log" 2>&1; tail -3 "$out/sweep/gpu-tests.log")
  # shellcheck disable=SC2086
  for v in A B C D E F; do bench "$v" --device cuda ${variants[$v]}; done
fi
wait
python3 - "$out" "$sweep" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
rows = [json.loads(p.read_text()) for p in sorted((out / "sweep").glob("*.json"))]
(out / f"sweep{sys.argv[2]}.json").write_text(json.dumps(rows, indent=1))
for r in rows:
    f = r["front_view"]
    print(f'{r["tag"]:22s} {r["device"][:14]:14s} t={r["train_seconds"]:7.1f}s n={r["num_gaussians"]:6d} '
          f'recall={f["motion_recall"]:.3f} ratio={f["change_ratio"]:.3f} psnr_mov={f["psnr_moving"]:.2f} '
          f'psnr={f["psnr"]:.2f} eval={r["eval"]["psnr"]:.2f} move_p99={r["gaussian_motion"]["p99"]:.3f} '
          f'{r["steps"]} {r["camera_res_scale_factor"]} {r.get("datamanager_overrides", [])}')
PY
tar -czf "$out/sweep_logs.tgz" -C "$out" sweep
