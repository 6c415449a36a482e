"""Benchmark: Zero123++ pseudo-view generation, seconds per frame at batch 1 and 4 (with the default
STAG4D temporal anchor and without), peak GPU memory, and whether the batch size changes the views.

No Zero123++ weights can be downloaded here: on a GPU the pipeline is built at full size (SD2 UNet,
SD VAE, OpenCLIP-H text encoder, CLIP-H vision encoder, the release's processors and scheduler) with
RANDOM weights (``weights="random-init"``), in fp16. Timing and memory do not depend on the weights;
the views themselves are meaningless. Each frame's noise comes from the seed alone, so generating
the clip one frame per call or four per call must give the same views, up to the arithmetic's
rounding (fp16 kernels may differ between batch sizes).

    python benchmarks/zero123plus_timing.py --output results.json          # GPU, full size
    python benchmarks/zero123plus_timing.py --smoke --output /tmp/z.json   # CPU, tiny random parts
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import platform
import sys
import time
from pathlib import Path
from typing import Dict, List

import numpy as np


def condition_images(count: int, size: int) -> List[np.ndarray]:
    """Square RGBA crops (source resolution) of a disc that moves and a bar that turns over the clip."""
    ys, xs = np.mgrid[0:size, 0:size] / size
    images = []
    for i in range(count):
        t = i / max(count - 1, 1)
        disc = (xs - 0.4 - 0.2 * t) ** 2 + (ys - 0.5) ** 2 < 0.2**2
        angle = np.pi * t
        along = (xs - 0.5) * np.cos(angle) + (ys - 0.5) * np.sin(angle)
        across = -(xs - 0.5) * np.sin(angle) + (ys - 0.5) * np.cos(angle)
        bar = (np.abs(along) < 0.35) & (np.abs(across) < 0.04)
        rgba = np.zeros((size, size, 4), dtype=np.uint8)
        rgba[disc] = (200, 60, 40, 255)
        rgba[bar] = (40, 90, 200, 255)
        images.append(rgba)
    return images


def tiny_pipeline(config):
    """The pipeline on tiny random parts (for the CPU smoke run)."""
    import torch
    from diffusers import AutoencoderKL, EulerAncestralDiscreteScheduler, UNet2DConditionModel
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTokenizer,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    from ds4d_ns.guidance.zero123 import clip_image_processor_class
    from ds4d_ns.process.zero123plus import (
        RELEASE_CLIP_PROCESSOR,
        RELEASE_SCHEDULER,
        RELEASE_VAE_PROCESSOR,
        Zero123PlusParts,
        Zero123PlusPipeline,
        _offline_tokenizer,
    )

    torch.manual_seed(0)
    processor = clip_image_processor_class()
    parts = {
        "unet": UNet2DConditionModel(
            sample_size=8,
            in_channels=4,
            out_channels=4,
            layers_per_block=1,
            block_out_channels=(8, 16),
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=16,
            attention_head_dim=2,
            norm_num_groups=4,
        ),
        "vae": AutoencoderKL(
            block_out_channels=(8, 8),
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
            latent_channels=4,
            layers_per_block=1,
            norm_num_groups=4,
            sample_size=32,
        ),
        "text_encoder": CLIPTextModel(
            CLIPTextConfig(
                hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, vocab_size=8
            )
        ),
        "tokenizer": _offline_tokenizer(CLIPTokenizer),
        "vision_encoder": CLIPVisionModelWithProjection(
            CLIPVisionConfig(
                hidden_size=16,
                intermediate_size=32,
                num_hidden_layers=1,
                num_attention_heads=2,
                patch_size=14,
                image_size=28,
                projection_dim=16,
            )
        ),
        "scheduler": EulerAncestralDiscreteScheduler(**RELEASE_SCHEDULER, timestep_spacing="trailing"),
        "vae_processor": processor(
            **{**RELEASE_VAE_PROCESSOR, "size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32}}
        ),
        "clip_processor": processor(
            **{**RELEASE_CLIP_PROCESSOR, "size": {"shortest_edge": 28}, "crop_size": {"height": 28, "width": 28}}
        ),
    }
    return Zero123PlusPipeline(Zero123PlusParts(**parts), torch.linspace(0.0, 1.0, 77), config, "cpu")


def generate(pipeline, images: List[np.ndarray], batch: int):
    """The clip's views, ``batch`` frames per call, with a fresh anchor cache (as ds4d-process does)."""
    import torch

    from ds4d_ns.process.zero123plus import AnchorCache

    cache = AnchorCache()
    tiles = []
    for start in range(0, len(images), batch):
        frames = list(range(start, min(start + batch, len(images))))
        tiles.append(pipeline([images[f] for f in frames], anchor=cache, frames=frames).float().cpu())
    return torch.cat(tiles)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=75)
    parser.add_argument("--frames", type=int, default=8, help="frames of the synthetic clip (a multiple of 4)")
    parser.add_argument("--source-size", type=int, default=480, help="side of the condition crops in pixels")
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny random parts, 2 steps: does it run")
    args = parser.parse_args()

    import torch

    from ds4d_ns.process.zero123plus import Zero123PlusConfig, Zero123PlusPipeline

    cuda = torch.cuda.is_available() and not args.smoke
    if not cuda and not args.smoke:
        sys.exit("no CUDA device: run with --smoke for the CPU check")
    steps = 2 if args.smoke else args.steps
    started = time.perf_counter()
    if args.smoke:
        pipeline = tiny_pipeline(Zero123PlusConfig(weights="random-init", num_inference_steps=steps, tile_size=16))
    else:
        pipeline = Zero123PlusPipeline.load(Zero123PlusConfig(weights="random-init", num_inference_steps=steps), "cuda")
    load_seconds = time.perf_counter() - started
    base_config = pipeline.config
    images = condition_images(4 if args.smoke else args.frames, args.source_size)

    def synchronize() -> None:
        if cuda:
            torch.cuda.synchronize()

    results: Dict[str, dict] = {}
    for mode in ("stag4d", "none"):
        pipeline.config = dataclasses.replace(base_config, temporal_anchor=mode)
        views, rows = {}, []
        for batch in (1, 4):
            pipeline(images[:batch], frames=list(range(batch)))  # warm-up at this batch size
            synchronize()
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            begin = time.perf_counter()
            views[batch] = generate(pipeline, images, batch)
            synchronize()
            seconds = time.perf_counter() - begin
            rows.append(
                {
                    "batch": batch,
                    "seconds_per_frame": round(seconds / len(images), 3),
                    "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
                }
            )
            print(mode, rows[-1], flush=True)
        difference = (views[4] - views[1]).abs()
        as_bytes = lambda v: (v.clamp(0, 1) * 255).round().to(torch.int16)  # noqa: E731
        byte_difference = (as_bytes(views[4]) - as_bytes(views[1])).abs()
        results[mode] = {
            "timing": rows,
            "batch_4_vs_1": {
                "max_abs_difference": float(difference.max()),
                "mean_abs_difference": float(difference.mean()),
                "share_of_8bit_values_that_differ": float((byte_difference > 0).float().mean()),
                "max_8bit_difference": int(byte_difference.max()),
            },
        }
        print(mode, results[mode]["batch_4_vs_1"], flush=True)

    tolerance = 1e-4 if not cuda else 4 / 255  # fp32 on the CPU; fp16 kernels may differ with the batch shape
    invariant = all(r["batch_4_vs_1"]["max_abs_difference"] <= tolerance for r in results.values())
    record = {
        "benchmark": "zero123plus_timing",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "device": torch.cuda.get_device_name(0) if cuda else "cpu (smoke: tiny random parts)",
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
        "model": "Zero123++ v1.2 architecture [RANDOM weights, not pretrained]" if cuda else "tiny random parts",
        "steps": steps,
        "fp16": cuda,
        "frames": len(images),
        "condition_size_px": args.source_size,
        "load_seconds": round(load_seconds, 1),
        "results": results,
        "batch_size_does_not_change_the_views": invariant,
        "tolerance": tolerance,
        "note": "random weights: timing/memory valid, the views themselves are meaningless",
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=2) + "\n")
    if not invariant:
        sys.exit(f"batch size changed the views by more than {tolerance}")


if __name__ == "__main__":
    main()
