#!/usr/bin/env bash
# A clip from frames to exported asset, each command timed: a 32-frame clip (ds4d-synth's windmill input
# view at 512 px, RGBA frames 0.png .. 31.png, as Consistent4D's clips are given) through
#   ds4d-process (Zero123++ v1.2 at full size with RANDOM weights: every step of the generation runs, the
#                 views are meaningless; timing does not depend on the weights),
#   ns-train ds4d-base (the full recipe),
#   ds4d-export (PLY frames + --mesh + --web).
# Usage (GPU machine, after `source .whl/bootstrap.sh` and installing the project):
#   bash benchmarks/end_to_end_gpu.sh OUTDIR
# Writes OUTDIR/end-to-end.json (seconds per command, total, device, commit) and each command's log.
# Environment (a CPU check of this script, tests/test_benchmark_scripts.py, shrinks everything): FRAMES (32),
# SIZE (512 px), METHOD (ds4d-base), PROCESS_ARGS / TRAIN_ARGS (more ds4d-process / ns-train flags; later
# flags win), WORK (scratch folder).
set -uo pipefail
out=$1
work=${WORK:-/tmp/ds4d-e2e}
frames=${FRAMES:-32}
method=${METHOD:-ds4d-base}
rm -rf "$work" && mkdir -p "$work/clip" "$out"
python3 -m ds4d_ns.scripts.synth "$work/source" --scene windmill --frames "$frames" --resolution "${SIZE:-512}" \
  > "$out/e2e-synth.log" 2>&1
for f in "$work"/source/images/input_00/frame_*.png; do
  n=${f##*frame_}; n=$((10#${n%.png})); cp "$f" "$work/clip/$n.png"
done
timed() {  # name, command...: seconds into $work/seconds-NAME
  local name=$1 start=$SECONDS
  shift
  "$@" > "$out/e2e-$name.log" 2>&1 || { echo "$name failed:"; tail -5 "$out/e2e-$name.log"; }
  echo $((SECONDS - start)) > "$work/seconds-$name"
  echo "$name: $((SECONDS - start)) s"
}
# shellcheck disable=SC2086
timed process ds4d-process "$work/clip" "$work/data" --num-frames "$frames" --weights random-init ${PROCESS_ARGS:-}
# shellcheck disable=SC2086
timed train ns-train "$method" --vis tensorboard --output-dir "$work/outputs" --timestamp e2e ${TRAIN_ARGS:-} \
  ds4d-data --data "$work/data"
config=$(ls "$work"/outputs/*/"$method"/e2e/config.yml 2>/dev/null | head -1)
timed export ds4d-export --load-config "$config" --output-dir "$work/export" --mesh --web
python3 - "$work" "$out/end-to-end.json" "$frames" "${SIZE:-512}" "$method" "${PROCESS_ARGS:-}" "${TRAIN_ARGS:-}" <<'PY'
import datetime, json, subprocess, sys
from pathlib import Path
import torch
work, output = Path(sys.argv[1]), Path(sys.argv[2])
seconds = {name: int((work / f"seconds-{name}").read_text()) for name in ("process", "train", "export")}
record = {
    "benchmark": "end_to_end",
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "command": "bash benchmarks/end_to_end_gpu.sh OUT",
    "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
    "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
    "clip": f"ds4d-synth windmill input view, {sys.argv[3]} frames, {sys.argv[4]} px RGBA",
    "zero123plus": "as process_flags say" if sys.argv[6] else "v1.2 full size, RANDOM weights",
    "process_flags": f"--num-frames {sys.argv[3]} --weights random-init {sys.argv[6]}".strip(),
    "method": sys.argv[5],
    "train_flags": sys.argv[7],
    "seconds": seconds,
    "total_minutes": round(sum(seconds.values()) / 60, 2),
}
output.write_text(json.dumps(record, indent=2) + "\n")
print(json.dumps(record))
PY
