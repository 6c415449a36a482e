"""Benchmark: the ds4d recipe on a ds4d-synth scene; eval-view quality, wall time, peak GPU memory.

Trains through the same code path as ``ns-train`` (``TrainerConfig.setup`` -> ``Trainer.train``)
and writes one JSON record with the device, versions, date and command. Run on a GPU machine::

    python benchmarks/train_recipe.py --scene windmill --output results.json

Targets of the end-to-end issue: eval PSNR >= 28 dB, under 10 minutes on one H100, under 8 GB.
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


def eval_psnr_per_view(pipeline) -> dict:
    """Mean PSNR of each eval camera (view_index) over the frames, to see which views are weak."""
    import torch

    model, dataset = pipeline.model, pipeline.datamanager.eval_dataset
    cameras = dataset.cameras
    sums: dict = {}
    model.eval()
    with torch.no_grad():
        for index, data in enumerate(pipeline.datamanager.cached_eval):
            outputs = model.get_outputs_for_camera(cameras[index : index + 1])
            metrics, _ = model.get_image_metrics_and_images(outputs, {"image": data["image"].to(model.device)})
            view = int(cameras.metadata["view_index"][index])
            sums.setdefault(view, []).append(metrics["psnr"])
    return {str(view): round(sum(values) / len(values), 3) for view, values in sorted(sums.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scene", default="windmill")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--pseudo-noise", type=float, default=0.0)
    parser.add_argument("--static-steps", type=int, default=1000)
    parser.add_argument("--dynamic-steps", type=int, default=6000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ds4d-bench"))
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--tag", default="default", help="name of this variant in the results")
    parser.add_argument(
        "--model-set", action="append", default=[], metavar="FIELD=VALUE", help="override a Ds4dModelConfig field"
    )
    parser.add_argument("--deformation-lr-scale", type=float, default=1.0, help="multiply the deformation lrs")
    args = parser.parse_args()

    import gsplat
    import nerfstudio
    import torch
    from ds4d_ns.method_configs.ds4d_config import make_ds4d_config

    from ds4d_ns.scripts.synth import SynthConfig
    from ds4d_ns.scripts.synth import main as synth_main

    data = args.workdir / f"{args.scene}-{args.frames}x{args.resolution}-noise{args.pseudo_noise}"
    started = time.perf_counter()
    synth_main(
        SynthConfig(
            output=data,
            scene=args.scene,
            frames=args.frames,
            resolution=args.resolution,
            pseudo_noise=args.pseudo_noise,
        )
    )
    synth_seconds = time.perf_counter() - started

    config = make_ds4d_config(static_steps=args.static_steps, dynamic_steps=args.dynamic_steps)
    config.output_dir = args.workdir / "outputs"
    config.experiment_name = f"{data.name}-{args.tag}"
    config.timestamp = "bench"
    config.vis = "tensorboard"
    config.steps_per_eval_image = 10**9
    config.steps_per_eval_all_images = 10**9
    config.pipeline.datamanager.data = data
    config.pipeline.model.eval_lpips = False
    for assignment in args.model_set:
        name, value = assignment.split("=", 1)
        setattr(config.pipeline.model, name, ast.literal_eval(value))
    for group in ("deformation_grid", "deformation_mlp"):
        optimizer = config.optimizers[group]
        optimizer["optimizer"].lr *= args.deformation_lr_scale
        optimizer["scheduler"].lr_final *= args.deformation_lr_scale
    config.set_timestamp()
    config.save_config()
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    trainer.train()
    torch.cuda.synchronize()
    train_seconds = time.perf_counter() - started
    peak_gib = torch.cuda.max_memory_allocated() / 2**30
    metrics = trainer.pipeline.get_average_eval_image_metrics()
    per_view = eval_psnr_per_view(trainer.pipeline)

    record = {
        "benchmark": "train_recipe",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "device": torch.cuda.get_device_name(0),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "gsplat": gsplat.__version__,
            "nerfstudio": getattr(nerfstudio, "__version__", "1.1.5"),
        },
        "scene": {
            "name": args.scene,
            "frames": args.frames,
            "resolution": args.resolution,
            "pseudo_noise": args.pseudo_noise,
        },
        "steps": {"static": args.static_steps, "dynamic": args.dynamic_steps},
        "synth_seconds": round(synth_seconds, 1),
        "train_seconds": round(train_seconds, 1),
        "seconds_per_step_ms": round(1000 * train_seconds / (args.static_steps + args.dynamic_steps), 2),
        "peak_gpu_memory_gib": round(peak_gib, 3),
        "num_gaussians": int(trainer.pipeline.model.num_points),
        "tag": args.tag,
        "model_overrides": args.model_set,
        "deformation_lr_scale": args.deformation_lr_scale,
        "eval": {key: round(float(value), 4) for key, value in metrics.items()},
        "eval_psnr_per_view": per_view,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
