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
set -uo pipefail
out=$1
work=/tmp/ds4d-e2e
rm -rf "$work" && mkdir -p "$work/clip" "$out"
python3 -m ds4d_ns.scripts.synth "$work/source" --scene windmill --frames 32 --resolution 512 > "$out/e2e-synth.log" 2>&1
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
timed process ds4d-process "$work/clip" "$work/data" --num-frames 32 --weights random-init
timed train ns-train ds4d-base --vis tensorboard --output-dir "$work/outputs" --timestamp e2e ds4d-data --data "$work/data"
config=$(ls "$work"/outputs/*/ds4d-base/e2e/config.yml 2>/dev/null | head -1)
timed export ds4d-export --load-config "$config" --output-dir "$work/export" --mesh --web
python3 - "$work" "$out/end-to-end.json" <<'PY'
import datetime, json, subprocess, sys
from pathlib import Path
import torch
work, output = Path(sys.argv[1]), Path(sys.argv[2])
seconds = {name: int((work / f"seconds-{name}").read_text()) for name in ("process", "train", "export")}
record = {
    "benchmark": "end_to_end",
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "command": "bash benchmarks/end_to_end_gpu.sh OUT",
    "device": torch.cuda.get_device_name(0),
    "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
    "clip": "ds4d-synth windmill input view, 32 frames, 512 px RGBA; Zero123++ v1.2 full size, RANDOM weights",
    "seconds": seconds,
    "total_minutes": round(sum(seconds.values()) / 60, 2),
}
output.write_text(json.dumps(record, indent=2) + "\n")
print(json.dumps(record))
PY
