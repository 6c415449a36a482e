"""Benchmark: Zero123++ pseudo-view generation, seconds per frame and peak GPU memory, and what the
temporal anchor changes in the consistency of the views over time.

No Zero123++ weights can be downloaded here: the pipeline is built at full size (SD2 UNet, SD VAE,
OpenCLIP-H text encoder, CLIP-H vision encoder) with RANDOM weights (``weights="random-init"``).
Timing and memory do not depend on the weights. The consistency numbers only show what the anchor
does mechanically (random-weight views are noise-like); they say nothing about real views.

    python benchmarks/zero123plus_timing.py --output results.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=75)
    parser.add_argument("--frames", type=int, default=4, help="frames of the windmill clip for the anchor test")
    args = parser.parse_args()

    import numpy as np
    import torch

    from ds4d_ns.process.zero123plus import AnchorCache, Zero123PlusConfig, Zero123PlusPipeline
    from ds4d_ns.scripts.synth import SynthConfig
    from ds4d_ns.scripts.synth import main as synth_main

    config = Zero123PlusConfig(weights="random-init", num_inference_steps=args.steps)
    started = time.perf_counter()
    pipeline = Zero123PlusPipeline.load(config, "cuda")
    load_seconds = time.perf_counter() - started

    timings = []
    for batch in (1, 4):
        images = torch.rand(batch, 320, 320, 3, device="cuda")
        pipeline(images)  # warm-up
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        begin = time.perf_counter()
        pipeline(images)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - begin
        timings.append(
            {
                "batch": batch,
                "seconds_per_call": round(seconds, 2),
                "seconds_per_frame": round(seconds / batch, 2),
                "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
            }
        )
        print(timings[-1], flush=True)

    data = Path("/tmp/ds4d-bench/windmill-anchor")
    synth_main(SynthConfig(output=data, scene="windmill", frames=args.frames, resolution=320))
    from PIL import Image

    frames = []
    for i in range(args.frames):
        with Image.open(data / f"images/input_00/frame_{i:04d}.png") as pil:
            rgba = torch.from_numpy(np.asarray(pil.convert("RGBA"))).float() / 255
        frames.append(rgba[..., :3] * rgba[..., 3:] + 0.5 * (1 - rgba[..., 3:]))
    consistency = {}
    for anchored in (False, True):
        cache = AnchorCache() if anchored else None
        views = [pipeline(frame[None].cuda(), anchor=cache)[0] for frame in frames]
        steps = [float((views[i + 1] - views[i]).abs().mean()) for i in range(len(views) - 1)]
        consistency["anchor" if anchored else "no_anchor"] = round(sum(steps) / len(steps), 4)
    print(consistency, flush=True)

    record = {
        "benchmark": "zero123plus_timing",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "device": torch.cuda.get_device_name(0),
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
        "model": "Zero123++ v1.2 architecture [RANDOM weights, not pretrained]",
        "steps": args.steps,
        "fp16": True,
        "load_seconds": round(load_seconds, 1),
        "generation": timings,
        "mean_abs_change_between_consecutive_frames": consistency,
        "note": "random weights: timing/memory valid; consistency only shows the anchor's mechanical effect",
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
