#!/usr/bin/env bash
# Second sweep for the CPU demo (issue 15): cheaper steps (fewer pseudo views per step, 96 px)
# at the larger deformation rates the first sweep favoured; GPU quality and, pinned to two cores
# each in parallel, full CPU runs of the candidates (timing + quality with the CPU rasteriser).
# Usage as cpu_demo_sweep.sh.
set -uo pipefail
out=${1:?output folder}
mkdir -p "$out/sweep"
bench() { python3 benchmarks/cpu_demo_motion.py --output "$out/sweep/$1.json" --tag "$@" > "$out/sweep/$1.log" 2>&1 || echo "$1 failed"; }
cpu() { local tag=$1 cores=$2; shift 2; timeout 420 taskset -c "$cores" python3 benchmarks/cpu_demo_motion.py --device cpu --threads 2 \
  --workdir "/tmp/cpu-$tag" --output "$out/sweep/cpu-$tag.json" --tag "cpu-$tag" "$@" > "$out/sweep/cpu-$tag.log" 2>&1 || echo "cpu $tag failed"; }
python3 -c "from ds4d_ns.scripts.synth import SynthConfig, main; main(SynthConfig(output=__import__('pathlib').Path('/tmp/ds4d-cpu-demo/windmill-30x256')))" >/dev/null 2>&1
A="--dynamic-steps 600 --res-scale 0.375 --deformation-lr-scale 5"
B="--dynamic-steps 600 --res-scale 0.5 --deformation-lr-scale 5 --datamanager-set pseudo_views_per_step=2"
C="--dynamic-steps 400 --res-scale 0.5 --deformation-lr-scale 5 --datamanager-set pseudo_views_per_step=2"
D="--dynamic-steps 500 --res-scale 0.375 --deformation-lr-scale 5 --datamanager-set pseudo_views_per_step=3"
E="--dynamic-steps 800 --res-scale 0.375 --deformation-lr-scale 5 --datamanager-set pseudo_views_per_step=2"
F="--static-steps 50 --dynamic-steps 500 --res-scale 0.5 --deformation-lr-scale 5 --datamanager-set pseudo_views_per_step=1"
i=0
for v in A B C D E F; do
  d=/tmp/cpu-$v; mkdir -p $d; cp -r /tmp/ds4d-cpu-demo/windmill-30x256 $d/
  cpu $v "$((2 + 2 * i))-$((3 + 2 * i))" ${!v} & i=$((i + 1))
done
(HF_HUB_OFFLINE=1 python3 -m pytest -q -p no:cacheprovider -m gpu tests/ > "$out/sweep/gpu-tests.log" 2>&1; tail -3 "$out/sweep/gpu-tests.log")
for v in A B C D E F; do bench "$v" --device cuda ${!v}; done
wait
python3 - "$out" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
rows = [json.loads(p.read_text()) for p in sorted((out / "sweep").glob("*.json"))]
(out / "sweep2.json").write_text(json.dumps(rows, indent=1))
for r in rows:
    f = r["front_view"]
    print(f'{r["tag"]:8s} {r["device"][:14]:14s} t={r["train_seconds"]:7.1f}s n={r["num_gaussians"]:6d} recall={f["motion_recall"]:.3f} ratio={f["change_ratio"]:.3f} psnr_mov={f["psnr_moving"]:.2f} psnr={f["psnr"]:.2f} eval={r["eval"]["psnr"]:.2f} move_p99={r["gaussian_motion"]["p99"]:.3f} {r["steps"]} {r["camera_res_scale_factor"]} {r["datamanager_overrides"]}')
PY
tar -czf "$out/sweep_logs.tgz" -C "$out" sweep
