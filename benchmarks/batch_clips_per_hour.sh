#!/usr/bin/env bash
# Clips per hour of ds4d-batch on this machine, through Ray: N ds4d-synth clips (the two scenes in turn,
# one seed each), each through the whole job of ds4d-batch (training with the ds4d-base recipe, which
# needs no pretrained weights; ds4d-eval on the eval views; ds4d-render views + orbit; ds4d-export).
# Prints clips/hour over the batch's wall-clock time (making the clips is not counted; the batch's own
# start-up is) and the mean minutes per clip. Usage, in the repository root:
#   bash benchmarks/batch_clips_per_hour.sh [N_CLIPS=8] [WORKDIR=outputs/batch-bench]
# Environment (all optional):
#   METHOD=ds4d-base        the recipe (ds4d needs DINOv2/VGG16/Zero123 weights)
#   GPUS_PER_JOB=1          per clip's Ray task; 0.5 puts two clips on each GPU (Ray only)
#   RAY_ADDRESS=auto        a running cluster (`ray start --head`); unset: a local Ray instance
#   FRAMES=30 RESOLUTION=256  the clips (the paper's setting)
#   TRAIN_ARGS=... BATCH_ARGS=...  more ns-train flags / more ds4d-batch flags (smoke run on a CPU:
#   N=1 FRAMES=3 RESOLUTION=32 METHOD=ds4d-base-cpu GPUS_PER_JOB=0 TRAIN_ARGS="--max-num-iterations 6")
# Without Ray installed ds4d-batch runs the clips one after the other (what one GPU does with
# GPUS_PER_JOB=1 anyway); the output says which ran.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-8}
work=${2:-outputs/batch-bench}
py=${PYTHON:-python3}
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && py=.venv/bin/python
method=${METHOD:-ds4d-base}
frames=${FRAMES:-30}
resolution=${RESOLUTION:-256}

scenes=(windmill waving)
for ((i = 0; i < n; i++)); do  # reruns reuse the clips (ds4d-synth resumes a folder of the same settings)
  "$py" -m ds4d_ns.scripts.synth "$work/clips-$frames-$resolution/clip$i" --scene "${scenes[i % 2]}" \
    --frames "$frames" --resolution "$resolution" --seed "$i" > /dev/null
done
# only the first n clips of the folder take part
jobs="$work/jobs-$n-$frames-$resolution.csv"
{ echo "input"; for ((i = 0; i < n; i++)); do echo "clips-$frames-$resolution/clip$i"; done; } > "$jobs"

out="$work/run-$(date +%Y%m%d-%H%M%S)"
args=(--method "$method" --gpus-per-job "${GPUS_PER_JOB:-1}")
[ -n "${RAY_ADDRESS:-}" ] && args+=(--ray-address "$RAY_ADDRESS")
[ -n "${TRAIN_ARGS:-}" ] && args+=("--train-args=$TRAIN_ARGS")
# shellcheck disable=SC2206
[ -n "${BATCH_ARGS:-}" ] && args+=($BATCH_ARGS)
start=$(date +%s.%N)
status=0
"$py" -m ds4d_ns.scripts.batch "$jobs" "$out" "${args[@]}" > "$out.log" 2>&1 || status=$?
end=$(date +%s.%N)
[ -f "$out/summary.csv" ] || { tail -30 "$out.log"; echo "ds4d-batch stopped (status $status): see $out.log"; exit 1; }

"$py" - "$out" "$start" "$end" "$method" "$frames" "$resolution" "${GPUS_PER_JOB:-1}" "${BATCH_ARGS:-}" <<'EOF'
import csv, json, sys
out, start, end, method, frames, resolution, gpus_per_job, batch_args = sys.argv[1:]
rows = list(csv.DictReader(open(f"{out}/summary.csv")))
done = [r for r in rows if r["status"] == "done"]
hours = (float(end) - float(start)) / 3600.0
try:
    import torch
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
except Exception:
    gpus = []
try:
    import ray  # noqa: F401
    runner = "in-process, one clip after the other (--sequential)" if "--sequential" in batch_args else "Ray"
except ImportError:
    runner = "in-process, one clip after the other (Ray not installed)"
minutes = [float(r["minutes"]) for r in done if r["minutes"]]
result = {
    "clips": len(rows),
    "done": len(done),
    "failed": [r["clip"] for r in rows if r["status"] != "done"],
    "wall_clock_min": round(hours * 60, 2),
    "clips_per_hour": round(len(done) / hours, 2) if hours > 0 else None,
    "mean_clip_min": round(sum(minutes) / len(minutes), 2) if minutes else None,
    "mean_psnr": round(sum(float(r["psnr"]) for r in done) / len(done), 2) if done and "psnr" in rows[0] else None,
    "method": method,
    "clip": f"{frames} frames at {resolution} px",
    "gpus_per_job": float(gpus_per_job),
    "gpus": gpus,
    "runner": runner,
    "output": out,
}
json.dump(result, open(f"{out}/clips_per_hour.json", "w"), indent=2)
print(json.dumps(result, indent=2))
print(f"clips/hour: {result['clips_per_hour']} ({len(done)} of {len(rows)} clips in {result['wall_clock_min']} min)")
EOF
