"""How much of the eval moving-region PSNR better motion could explain: per-frame scores against the canonical frame.

A ds4d model's canonical Gaussians are fitted to the middle frame, so that frame's moving region needs no
motion at all. If the deformation were perfect, every other frame would score about as well there as the
middle one, so ``middle - mean over frames`` bounds what better motion alone can add to the eval
moving-region PSNR of a run (an estimate: other frames show the moving part elsewhere, not harder or
easier to see). A static twin (ds4d-base trained on the middle frame only, ``static`` in
``batch_methods_parallel.sh``) gives a second, motion-free reference: its score at its own frame.
Training views are reported too (tensorboard's ``Train Metrics Dict/psnr_moving``, the mean of the last
ten logged values): they show how well the motion is fitted where it is seen.

Reads ds4d-batch output folders of ``batch_methods_parallel.sh`` (``eval/per_frame.csv`` and the
training's tensorboard events of each clip); writes a JSON record and prints a table. Usage::

    python benchmarks/motion_headroom.py OUT.json BATCH_OUT [BATCH_OUT ...]
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
from collections import defaultdict
from pathlib import Path
from statistics import mean
from typing import Dict, List, Optional

from ds4d_ns.data.dataset_format import middle_frame

LAST_LOGS = 10
"""Training-view values averaged at the end of training (nerfstudio logs every few steps)."""


def per_frame_means(per_frame_csv: Path, metric: str) -> List[float]:
    """Mean over the eval views of ``metric`` for each frame, in frame order."""
    by_frame: Dict[int, List[float]] = defaultdict(list)
    with per_frame_csv.open() as handle:
        for row in csv.DictReader(handle):
            by_frame[int(row["frame"])].append(float(row[metric]))
    return [mean(by_frame[frame]) for frame in sorted(by_frame)]


def train_moving_psnr(run_dir: Path) -> Optional[float]:
    """Mean of the last logged training-view moving-region PSNRs, None without tensorboard events."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = sorted(run_dir.glob("events.out.tfevents.*"))
    if not events:
        return None
    accumulator = EventAccumulator(str(events[0]), size_guidance={"scalars": 0})
    accumulator.Reload()
    tag = "Train Metrics Dict/psnr_moving"
    if tag not in accumulator.Tags()["scalars"]:
        return None
    values = [event.value for event in accumulator.Scalars(tag)][-LAST_LOGS:]
    return round(mean(values), 2)


def clip_record(clip_dir: Path) -> Optional[Dict]:
    """Per-frame eval means and training-view moving PSNR of one clip of a batch, None if it has no eval."""
    name = clip_dir.name
    per_frame = clip_dir / "clips" / name / "eval" / "per_frame.csv"
    if not per_frame.is_file():
        return None
    moving = per_frame_means(per_frame, "psnr_moving")
    whole = per_frame_means(per_frame, "psnr")
    middle = middle_frame(len(moving))
    runs = sorted((clip_dir / "clips" / name / "train").glob("*/*"))
    return {
        "clip": name,
        "frames": len(moving),
        "middle_frame": middle,
        "eval_psnr_per_frame": [round(v, 2) for v in whole],
        "eval_moving_per_frame": [round(v, 2) for v in moving],
        "eval_moving_mean": round(mean(moving), 2),
        "eval_moving_middle": round(moving[middle], 2),
        "eval_moving_best": round(max(moving), 2),
        "motion_headroom_db": round(moving[middle] - mean(moving), 2),
        "train_moving_last": train_moving_psnr(runs[0]) if runs else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="JSON record to write")
    parser.add_argument("batches", type=Path, nargs="+", help="output folders of batch_methods_parallel.sh")
    args = parser.parse_args()
    clips = []
    for batch in args.batches:
        for clip_dir in sorted(path for path in batch.iterdir() if (path / "clips").is_dir()):
            record = clip_record(clip_dir)
            if record is not None:
                clips.append(record)
    content = {
        "benchmark": "motion headroom: eval moving-region PSNR per frame against the canonical frame",
        "date": datetime.date.today().isoformat(),
        "batches": [str(batch) for batch in args.batches],
        "clips": clips,
    }
    args.output.write_text(json.dumps(content, indent=2) + "\n")
    print(f"{'clip':24s} {'eval moving':>11s} {'at middle':>9s} {'best':>6s} {'headroom':>8s} {'train moving':>12s}")
    for clip in clips:
        print(
            f"{clip['clip']:24s} {clip['eval_moving_mean']:11.2f} {clip['eval_moving_middle']:9.2f} "
            f"{clip['eval_moving_best']:6.2f} {clip['motion_headroom_db']:8.2f} {str(clip['train_moving_last']):>12s}"
        )


if __name__ == "__main__":
    main()
