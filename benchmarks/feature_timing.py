"""Benchmark: DSFD decoupling time, and DINOv2 feature extraction time and memory per model size.

DSFD: our decoupling (dot products) against the "direct" one (per-patch projection matrices,
``dsfd.decouple_with_projection_matrices``; the paper does not define its direct variant) on
features of a 30-frame clip x 7 views, median of repeated runs. The paper reports 8.2 ms against
118 ms on an RTX 3090 (supplement, Tab. 4).

Extraction: DINOv2 small/base/large in fp16 on 30 x 7 images, at 224 and 448 px. No weights can
be downloaded here, so the backbones are built with RANDOM weights (``weights="random-init"``):
time and memory do not depend on the weights. Run on a GPU machine::

    python benchmarks/feature_timing.py --output results.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import time
from pathlib import Path


def _median_ms(function, repeats: int) -> float:
    import torch

    function()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        begin = time.perf_counter()
        function()
        torch.cuda.synchronize()
        times.append(1000 * (time.perf_counter() - begin))
    return round(statistics.median(times), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--views", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    import torch

    from ds4d_ns.features import dsfd
    from ds4d_ns.features.backbone import (
        DINOV2_ARCHITECTURES,
        FrameFeatureExtractorConfig,
        load_backbone,
        patch_features,
        preprocess,
    )

    device = torch.device("cuda")
    decoupling = []
    for patches_per_side, channels in ((16, 384), (32, 384), (16, 768)):
        features = torch.randn(args.frames, args.views, patches_per_side**2, channels, device=device)
        reference = dsfd.reference_features(features, args.frames // 2)
        ours = _median_ms(
            lambda: dsfd.decouple(features, dsfd.reference_features(features, args.frames // 2)), args.repeats
        )
        direct = _median_ms(lambda: dsfd.decouple_with_projection_matrices(features, reference), args.repeats)
        decoupling.append(
            {
                "patches": f"{patches_per_side}x{patches_per_side}",
                "channels": channels,
                "ours_ms": ours,
                "direct_ms": direct,
                "speedup": round(direct / ours, 1),
            }
        )
        print(decoupling[-1], flush=True)

    extraction = []
    images = torch.rand(args.frames * args.views, 256, 256, 3, device=device)
    for model_id in ("facebook/dinov2-small", "facebook/dinov2-base", "facebook/dinov2-large"):
        config = FrameFeatureExtractorConfig(model_id=model_id, weights="random-init")
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        backbone = load_backbone(config, device)
        weights_gib = torch.cuda.memory_allocated() / 2**30
        for size in (224, 448):
            torch.cuda.reset_peak_memory_stats()

            def run() -> None:
                for start in range(0, images.shape[0], config.batch_size):
                    patch_features(backbone, preprocess(images[start : start + config.batch_size], size))

            seconds = _median_ms(run, 3) / 1000
            extraction.append(
                {
                    "backbone": config.describe(),
                    "hidden_size": DINOV2_ARCHITECTURES[model_id]["hidden_size"],
                    "image_size": size,
                    "images": images.shape[0],
                    "seconds": round(seconds, 3),
                    "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3),
                    "weights_gib": round(weights_gib, 3),
                    "cache_mib_fp16": round(
                        images.shape[0]
                        * (size // 14) ** 2
                        * int(DINOV2_ARCHITECTURES[model_id]["hidden_size"])
                        * 2
                        / 2**20,
                        1,
                    ),
                }
            )
            print(extraction[-1], flush=True)

    record = {
        "benchmark": "feature_timing",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "device": torch.cuda.get_device_name(0),
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
        "clip": {"frames": args.frames, "views": args.views},
        "dsfd_decoupling": decoupling,
        "dinov2_extraction": extraction,
        "note": "backbones built with RANDOM weights (no download possible); timing does not depend on weights",
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
