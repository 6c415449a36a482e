"""Does the demo's ``front.mp4`` move as the sample does? One line for a person, a JSON record for the benchmarks.

``ds4d-render views`` renders the front view (azimuth 0: the input camera) at the clip's frame times,
played forward and back; its first ``T`` frames are the clip forward. They are compared with the
dataset's ``T`` input frames (composited on white) by ``cpu_demo_motion.front_view_motion``:
the share of the pixels whose ground truth changes between the first and last frame that also
change in the render (``motion_recall``), the ratio of the mean changes, and PSNR on the moving region::

    python benchmarks/demo_front_motion.py data/ds4d-sample-windmill-128 outputs/.../renders/front.mp4
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu_demo_motion import front_view_motion  # noqa: E402

from ds4d_ns.io.video import read_video_frames  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path, help="the ds4d dataset the run was trained on")
    parser.add_argument("front_video", type=Path, help="front.mp4 written by ds4d-render views")
    parser.add_argument("--output", type=Path, default=None, help="also write the measures as JSON here")
    args = parser.parse_args()

    records = json.loads((args.dataset / "transforms.json").read_text())["frames"]
    inputs = sorted((r for r in records if r.get("role", "input") == "input"), key=lambda r: r["time"])
    video = read_video_frames(args.front_video)
    if len(video) < len(inputs):
        sys.exit(f"{args.front_video}: {len(video)} frames, fewer than the {len(inputs)} input frames")
    size = video.shape[1:3][::-1]
    truths = []
    for record in inputs:
        with Image.open(args.dataset / record["file_path"]) as pil:
            rgba = np.asarray(pil.convert("RGBA").resize(size, Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
        truths.append(rgba[..., :3] * rgba[..., 3:] + (1.0 - rgba[..., 3:]))
    renders = torch.from_numpy(video[: len(inputs)].astype(np.float32) / 255.0)
    motion = front_view_motion(renders, torch.from_numpy(np.stack(truths)))
    print(
        f"[demo] front view: {100 * motion['motion_recall']:.0f} % of the pixels that change in the input video "
        f"change in the render too (mean change {100 * motion['change_ratio']:.0f} % of the input's); "
        f"PSNR {motion['psnr']:.1f} dB, {motion['psnr_moving']:.1f} dB on the moving region"
    )
    if args.output is not None:
        args.output.write_text(json.dumps({"video": str(args.front_video), **motion}, indent=2) + "\n")


if __name__ == "__main__":
    main()
