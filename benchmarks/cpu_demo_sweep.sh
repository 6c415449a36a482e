#!/usr/bin/env bash
# Sweep of CPU-recipe variants for the demo's motion (issue 15), run on the GPU machine:
# quality with gsplat on the GPU (same recipe as the CPU configuration), plus CPU timings of
# chosen variants pinned to two cores in parallel. Usage (device tool, repo root, .whl carried):
#   source .whl/bootstrap.sh && pip install -q --no-deps --no-build-isolation --no-index -e . \
#     && bash benchmarks/cpu_demo_sweep.sh "$OUT"
set -uo pipefail
out=${1:?output folder}
mkdir -p "$out/sweep"
bench() { python3 benchmarks/cpu_demo_motion.py --output "$out/sweep/$1.json" --tag "$@" > "$out/sweep/$1.log" 2>&1 || echo "$1 failed"; }
# CPU timings (2 threads each, pinned), in the background
cpu() { local tag=$1 cores=$2; shift 2; timeout 480 taskset -c "$cores" python3 benchmarks/cpu_demo_motion.py --device cpu --threads 2 \
  --workdir "/tmp/cpu-$tag" --output "$out/sweep/cpu-$tag.json" --tag "cpu-$tag" "$@" > "$out/sweep/cpu-$tag.log" 2>&1 || echo "cpu $tag failed"; }
python3 -c "from ds4d_ns.scripts.synth import SynthConfig, main; main(SynthConfig(output=__import__('pathlib').Path('/tmp/ds4d-cpu-demo/windmill-30x256')))" >/dev/null 2>&1
for d in /tmp/cpu-base /tmp/cpu-r128; do mkdir -p $d; cp -r /tmp/ds4d-cpu-demo/windmill-30x256 $d/; done
cpu base 2-3 &
cpu r128 4-5 --static-steps 20 --dynamic-steps 80 --res-scale 0.5 &
bench base --device cuda
bench lr5 --device cuda --deformation-lr-scale 2.5
bench d600 --device cuda --dynamic-steps 600
bench r128-600 --device cuda --dynamic-steps 600 --res-scale 0.5
bench r128-600-lr5 --device cuda --dynamic-steps 600 --res-scale 0.5 --deformation-lr-scale 2.5
bench r128-1000 --device cuda --dynamic-steps 1000 --res-scale 0.5
bench r128-1000-lr5 --device cuda --dynamic-steps 1000 --res-scale 0.5 --deformation-lr-scale 2.5
bench r128-600-hex32 --device cuda --dynamic-steps 600 --res-scale 0.5 --model-set hexplane_resolution=32
bench r128-600-lr10 --device cuda --dynamic-steps 600 --res-scale 0.5 --deformation-lr-scale 5
bench r128-600-smooth --device cuda --dynamic-steps 600 --res-scale 0.5 --deformation-lr-scale 2.5 --model-set time_smoothness_weight=0.001
bench r128-s200-600-lr5 --device cuda --static-steps 200 --dynamic-steps 600 --res-scale 0.5 --deformation-lr-scale 2.5
wait
python3 - "$out" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
rows = [json.loads(p.read_text()) for p in sorted((out / "sweep").glob("*.json"))]
(out / "sweep.json").write_text(json.dumps(rows, indent=1))
for r in rows:
    f = r["front_view"]
    print(f'{r["tag"]:22s} {r["device"][:14]:14s} t={r["train_seconds"]:7.1f}s n={r["num_gaussians"]:6d} recall={f["motion_recall"]:.3f} ratio={f["change_ratio"]:.3f} psnr_mov={f["psnr_moving"]:.2f} psnr={f["psnr"]:.2f} eval={r["eval"]["psnr"]:.2f} move_p99={r["gaussian_motion"]["p99"]:.3f}')
PY
tar -czf "$out/sweep_logs.tgz" -C "$out" sweep
