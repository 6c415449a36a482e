#!/usr/bin/env bash
# Methods and variants compared through ds4d-batch's whole job (train, ds4d-eval model, ds4d-render,
# ds4d-export), several clips sharing one GPU at once: quality by method, motion levers, clips per hour.
#
# Motion levers of ds4d-base at the full recipe (windmill, clean pseudo views), run with seeds 0 and 1:
#   LIMIT_S=540 benchmarks/batch_methods_parallel.sh OUT "windmill:0.0:base:ds4d-base:--pipeline.datamanager.frame-sampling-seed 0" \
#     "windmill:0.0:capacity:ds4d-base:--pipeline.model.deformation-width 128 --pipeline.model.deformation-depth 2" \
#     "windmill:0.0:dynamic:ds4d-base:--pipeline.model.static-stage-steps 500" \
#     "windmill:0.0:smooth:ds4d-base:--pipeline.model.time-smoothness-weight 1e-3"
#
# Each SPEC is one clip: a ds4d-synth scene (30 frames at 256 px, cached in /tmp/ds4d-bench as
# train_recipe.py's) trained by one ds4d-batch process with its own method and ns-train flags. The
# processes run at the same time, which is what Ray does with `--gpus-per-job 1/N` on one GPU (Ray
# itself is not on the GPU machine: its wheel is too large to carry there). Their wall times are not
# step times (recipe_times_alone.sh gives those); the batch as a whole gives clips per hour.
#
# Usage: benchmarks/batch_methods_parallel.sh OUTDIR SPEC...
#   SPEC = SCENE:NOISE:TAG:METHOD[:NS-TRAIN FLAGS], e.g.
#   windmill:1.0:static:ds4d-base:--pipeline.model.static-stage-steps 6990
# Writes OUTDIR/TAG-SCENE-NOISE/ (each batch's OUT), OUTDIR/batch_methods.json (every clip's eval
# metrics and minutes, the batch's wall time and clips per hour) and prints a table.
# Environment: FRAMES=30 RESOLUTION=256 EVAL_METRICS="psnr ssim psnr_moving" PYTHON=python3
#   LIMIT_S: stop every batch after this many seconds (the table is still written, with what finished);
#   keep within the GPU call's limit, or a killed script writes nothing
# ds4d and ds4d-ga train with LPIPS + SDS on a GPU: without those weights add
#   --pipeline.model.lpips-loss-weight 0 --pipeline.model.sds.weight 0 (and, without DINOv2's,
#   --pipeline.datamanager.frame-features.extractor.weights random-init) to their flags.
# The processes load gsplat's CUDA kernels themselves: build them once before on a fresh machine
# (python3 -c 'from gsplat.cuda._backend import _C'), or they all build at once (benchmarks/RESULTS.md).
set -uo pipefail
out=$1
shift
mkdir -p "$out"
py=${PYTHON:-python3}
frames=${FRAMES:-30}
resolution=${RESOLUTION:-256}
metrics=${EVAL_METRICS:-psnr ssim psnr_moving}
work=${WORKDIR:-/tmp/ds4d-bench}
declare -A made
for spec in "$@"; do
  IFS=: read -r scene noise _ <<< "$spec"
  made["$work/$scene-${frames}x$resolution-noise$noise"]=1
done
# The scenes first, each once, at the same time with the cores split between them: three syntheses
# left at torch's default threads (every core each) ran for over eight minutes on the 16-core GPU
# machine without finishing, where one alone took 15 s (benchmarks/RESULTS.md, 2026-12-04).
threads=$(( $(nproc) / ${#made[@]} ))
for spec in "$@"; do
  IFS=: read -r scene noise _ <<< "$spec"
  data="$work/$scene-${frames}x$resolution-noise$noise"
  [ "${made[$data]}" = started ] && continue
  made[$data]=started
  OMP_NUM_THREADS=$(( threads > 0 ? threads : 1 )) "$py" -m ds4d_ns.scripts.synth "$data" --scene "$scene" --frames "$frames" --resolution "$resolution" \
    --pseudo-noise "$noise" > "$out/synth-$scene-$noise.log" 2>&1 &
done
wait
start=$(date +%s.%N)
for spec in "$@"; do
  IFS=: read -r scene noise tag method flags <<< "$spec"
  name="$tag-$scene-$noise"
  data="$work/$scene-${frames}x$resolution-noise$noise"
  printf 'input,name\n%s,%s\n' "$data" "$name" > "$out/$name.csv"
  # shellcheck disable=SC2086
  OMP_NUM_THREADS=2 timeout "${LIMIT_S:-0}" "$py" -m ds4d_ns.scripts.batch "$out/$name.csv" "$out/$name" --method "$method" \
    --sequential --eval-metrics $metrics "--train-args=${flags:-}" > "$out/$name.log" 2>&1 &
done
wait
end=$(date +%s.%N)
"$py" - "$out" "$start" "$end" "$@" <<'PY'
import csv, datetime, json, sys
from pathlib import Path
out, start, end, specs = Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4:]
try:
    import torch
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
except Exception:
    device = "unknown"
clips = []
for spec in specs:
    scene, noise, tag, method, *flags = spec.split(":", 4)
    name = f"{tag}-{scene}-{noise}"
    row = {"clip": name, "scene": scene, "pseudo_noise": float(noise), "tag": tag, "method": method,
           "train_args": flags[0] if flags else ""}
    summary = out / name / "summary.csv"
    if summary.is_file():
        for entry in csv.DictReader(summary.open()):
            row.update({k: v for k, v in entry.items() if k not in row})
    metrics = out / name / "clips" / name / "eval" / "metrics.json"
    if metrics.is_file():  # ds4d-eval's own record (there even when a later stage failed)
        row["eval"] = json.loads(metrics.read_text())
    clips.append(row)
hours = (end - start) / 3600
done = [c for c in clips if c.get("status") == "done"]
record = {
    "benchmark": "batch_methods_parallel",
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "device": device,
    "concurrent_clips": len(specs),
    "wall_clock_min": round(hours * 60, 2),
    "clips_done": len(done),
    "clips_per_hour": round(len(done) / hours, 2) if hours > 0 else None,
    "clips": clips,
}
(out / "batch_methods.json").write_text(json.dumps(record, indent=2) + "\n")
for c in clips:
    means = (c.get("eval") or {}).get("means", {})
    print(f"{c['clip']:28s} {c.get('status', '?'):7s} {c.get('minutes', '?'):>6s} min  psnr {means.get('psnr', '?')} "
          f"ssim {means.get('ssim', '?')} psnr_moving {means.get('psnr_moving', '?')}  {c.get('error', '')[:120]}")
print(f"{len(done)} of {len(clips)} clips done in {record['wall_clock_min']} min: {record['clips_per_hour']} clips/hour")
PY
