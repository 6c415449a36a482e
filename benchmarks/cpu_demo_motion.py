"""Benchmark: does the CPU configuration learn the sample's motion? (the first run a newcomer sees)

Trains a ``-cpu`` recipe on the ``ds4d-synth`` sample (as ``scripts/demo.sh`` does) through the
same code path as ``ns-train`` and looks at the result the way a user does: the ``front`` view
(``ds4d-render views``: azimuth 0, the input camera) over the clip, against the input frames.

Measures, written as one JSON record (device, date, command, versions):

* ``moving_region``: pixels of the front view whose ground truth changes by more than 20/255
  (any channel, over white) between the first and the last frame.
* ``motion_recall``: share of those pixels whose *render* also changes by more than 20/255
  between the first and last frame (1 = every moving pixel moves; a static render gives about 0).
* ``change_ratio``: mean absolute render change / mean absolute ground-truth change on that region.
* ``psnr_moving`` / ``psnr``: PSNR of the front view on the moving region (the union over frames of
  pixels that differ from the temporal median) and on the whole image, averaged over frames.
* ``gaussian_motion``: how far the Gaussians travel between time 0 and 1 (max and 99th percentile),
  what ``ds4d-export``'s PLY sequence shows.
* ``train_seconds`` and the eval PSNR on the held-out views.

Quality sweeps can run on a GPU (``--device cuda``: gsplat, same recipe); CPU timing with
``--device cpu --threads 2`` (the CI machine has 2 cores)::

    python benchmarks/cpu_demo_motion.py --device cpu --threads 2 --output results/cpu-demo.json
    python benchmarks/cpu_demo_motion.py --device cuda --dynamic-steps 600 --res-scale 0.5 --tag r128 ...
"""

from __future__ import annotations

import argparse
import ast
import datetime
import json
import platform
import sys
import time
from pathlib import Path

CHANGE_THRESHOLD = 20.0 / 255.0
"""A pixel 'changes' when some channel moves by more than this (the issue's measure)."""


def front_view_motion(renders, truths, threshold: float = CHANGE_THRESHOLD) -> dict:
    """Motion measures of rendered frames against ground-truth frames, both ``[T, H, W, 3]`` in [0, 1]."""
    import torch

    gt_change = (truths[-1] - truths[0]).abs().amax(dim=-1)
    render_change = (renders[-1] - renders[0]).abs().amax(dim=-1)
    region = gt_change > threshold
    count = int(region.sum())
    varying = ((truths - truths.median(dim=0).values).abs().amax(dim=-1) > threshold).any(dim=0)
    psnr_moving, psnr = [], []
    for render, truth in zip(renders, truths):
        squared = (render - truth).square().mean(dim=-1)
        psnr.append(float(-10 * torch.log10(squared.mean().clamp_min(1e-10))))
        if varying.any():
            psnr_moving.append(float(-10 * torch.log10(squared[varying].mean().clamp_min(1e-10))))
    return {
        "moving_region_pixels": count,
        "moving_region_fraction": round(count / region.numel(), 4),
        "motion_recall": round(float((render_change[region] > threshold).float().mean()) if count else 0.0, 4),
        "change_ratio": round(float(render_change[region].mean() / gt_change[region].mean()) if count else 0.0, 4),
        "render_changed_fraction": round(float((render_change > threshold).float().mean()), 5),
        "psnr_moving": round(sum(psnr_moving) / max(len(psnr_moving), 1), 3),
        "psnr": round(sum(psnr) / len(psnr), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scene", default="windmill")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--resolution", type=int, default=256, help="dataset resolution (the demo's)")
    parser.add_argument("--method", default="ds4d-base-cpu", help="a method of ds4d_ns.method_configs")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--static-steps", type=int, default=None, help="override the method's static steps")
    parser.add_argument("--dynamic-steps", type=int, default=None, help="override the method's dynamic steps")
    parser.add_argument("--res-scale", type=float, default=None, help="override camera_res_scale_factor")
    parser.add_argument("--deformation-lr-scale", type=float, default=1.0, help="multiply the deformation lrs")
    parser.add_argument("--model-set", action="append", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--datamanager-set", action="append", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--render-resolution", type=int, default=256, help="front-view render size (the demo's)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ds4d-cpu-demo"))
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--tag", default="default")
    args = parser.parse_args()

    import numpy as np
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    import nerfstudio
    from nerfstudio.configs.base_config import MachineConfig
    from PIL import Image

    from ds4d_ns.method_configs import ds4d_config
    from ds4d_ns.rendering.orbit_cameras import orbit_cameras
    from ds4d_ns.scripts.synth import SynthConfig
    from ds4d_ns.scripts.synth import main as synth_main

    data = args.workdir / f"{args.scene}-{args.frames}x{args.resolution}"
    synth_main(SynthConfig(output=data, scene=args.scene, frames=args.frames, resolution=args.resolution))

    spec = {
        "ds4d-base-cpu": ds4d_config.ds4d_base_cpu_method,
        "ds4d-cpu": ds4d_config.ds4d_cpu_method,
    }[args.method]
    config = spec.config
    model, datamanager = config.pipeline.model, config.pipeline.datamanager
    if args.static_steps is not None or args.dynamic_steps is not None:
        # rebuild through the factory so that every schedule-derived setting follows
        static = args.static_steps if args.static_steps is not None else model.static_stage_steps
        dynamic = args.dynamic_steps if args.dynamic_steps is not None else config.max_num_iterations - static
        priors = model.lpips_loss_weight > 0
        config = ds4d_config.make_ds4d_config(
            method_name=args.method,
            static_steps=static,
            dynamic_steps=dynamic,
            cpu=True,
            frame_features=datamanager.frame_features.mode,
            priors=priors,
        )
        model, datamanager = config.pipeline.model, config.pipeline.datamanager
    if args.res_scale is not None:
        datamanager.camera_res_scale_factor = args.res_scale
    for assignment in args.model_set:
        name, value = assignment.split("=", 1)
        setattr(model, name, ast.literal_eval(value))
    for assignment in args.datamanager_set:
        name, value = assignment.split("=", 1)
        setattr(datamanager, name, ast.literal_eval(value))
    for group in ("deformation_grid", "deformation_mlp"):
        optimizer = config.optimizers[group]
        optimizer["optimizer"].lr *= args.deformation_lr_scale
        optimizer["scheduler"].lr_final *= args.deformation_lr_scale
    config.machine = MachineConfig(device_type=args.device)
    config.output_dir = args.workdir / "outputs"
    config.experiment_name = f"{data.name}-{args.tag}"
    config.timestamp = "bench"
    config.vis = "tensorboard"
    config.steps_per_eval_image = 10**9
    config.steps_per_eval_all_images = 10**9
    config.steps_per_save = 10**9
    datamanager.data = data
    model.eval_lpips = False
    config.set_timestamp()
    config.save_config()
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    started = time.perf_counter()
    trainer.train()
    if args.device == "cuda":
        torch.cuda.synchronize()
    train_seconds = time.perf_counter() - started

    pipeline = trainer.pipeline
    model_ = pipeline.model
    model_.eval()
    # the front view's ground truth: the input view's frames, composited over white as renders are
    transforms = json.loads((data / "transforms.json").read_text())
    inputs = sorted(
        (record for record in transforms["frames"] if record["role"] == "input"), key=lambda r: r["frame_index"]
    )
    truths, times = [], []
    for record in inputs:
        with Image.open(data / record["file_path"]) as pil:
            rgba = pil.convert("RGBA").resize((args.render_resolution,) * 2, Image.Resampling.BILINEAR)
        image = torch.from_numpy(np.asarray(rgba)).float() / 255.0
        truths.append(image[..., :3] * image[..., 3:] + (1.0 - image[..., 3:]))
        times.append(float(record["time"]))
    with torch.no_grad():
        cameras = orbit_cameras([0.0] * len(times), times, resolution=args.render_resolution)
        renders = [model_.get_outputs_for_camera(cameras[i : i + 1])["rgb"].cpu() for i in range(len(times))]
        start, end = model_.gaussians_at(0.0).means, model_.gaussians_at(1.0).means
        travel = (end - start).norm(dim=-1).cpu()
    motion = front_view_motion(torch.stack(renders), torch.stack(truths))
    metrics = pipeline.get_average_eval_image_metrics()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from train_recipe import moving_psnr_by_frame

    record = {
        "benchmark": "cpu_demo_motion",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "device": torch.cuda.get_device_name(0) if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads",
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "nerfstudio": getattr(nerfstudio, "__version__", "1.1.5"),
        },
        "tag": args.tag,
        "method": args.method,
        "steps": {"static": model.static_stage_steps, "dynamic": config.max_num_iterations - model.static_stage_steps},
        "camera_res_scale_factor": datamanager.camera_res_scale_factor,
        "deformation_lr_scale": args.deformation_lr_scale,
        "model_overrides": args.model_set,
        "datamanager_overrides": args.datamanager_set,
        "train_seconds": round(train_seconds, 1),
        "num_gaussians": int(model_.num_points),
        "front_view": motion,
        "gaussian_motion": {
            "max": round(float(travel.max()), 4),
            "p99": round(float(travel.quantile(0.99)), 4),
            "mean": round(float(travel.mean()), 4),
        },
        "eval": {key: round(float(value), 4) for key, value in metrics.items()},
        "train_motion": moving_psnr_by_frame(pipeline, "train"),
        "eval_motion": moving_psnr_by_frame(pipeline, "eval"),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
